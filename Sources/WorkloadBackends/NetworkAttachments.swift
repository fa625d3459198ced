import GridTypes
import Provisioner
import WorkloadNetwork

/// The provisioner's container networks on this node's `NodeNetwork`.
public struct NetworkAttachments: ContainerNetworking {
    public let network: NodeNetwork

    public init(network: NodeNetwork) {
        self.network = network
    }

    public func attach(_ id: WorkloadID, network wanted: ContainerNetwork) async throws(ProvisionerError) -> ContainerLaunch.Network {
        do {
            let attachment = try await network.attach(contractID: id.contractID, name: id.name, network: wanted)
            return .init(namespacePath: attachment.namespacePath, address: attachment.address, resolvConf: attachment.resolvConf)
        } catch {
            let permanent: Bool
            switch error {
            case .invalid, .rangeExhausted: permanent = true
            default: permanent = false
            }
            throw .workload(name: id.description, operation: "network", detail: "\(error)", permanent: permanent)
        }
    }

    public func detach(_ id: WorkloadID) async throws(ProvisionerError) {
        do { try await network.detach(contractID: id.contractID, name: id.name) } catch {
            throw .workload(name: id.description, operation: "remove network", detail: "\(error)", permanent: false)
        }
    }

    public func attached() async throws(ProvisionerError) -> [WorkloadID] {
        await network.attached().map { WorkloadID(contractID: $0.contractID, name: $0.name) }
    }
}
