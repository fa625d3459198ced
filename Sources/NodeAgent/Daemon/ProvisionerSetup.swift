import CapacityReporter
import ChainClient
import ContainerRuntime
import Foundation
import GridTypes
import Logging
import Provisioner
import ShardServer
import WorkloadBackends
import WorkloadNetwork

/// Builds the provisioner for `node-agent run`: its store, the workload managers this node runs,
/// capacity for admission, and the twin API. Start-up reconciliation (orphans removed, recorded
/// deployments restored) completes before the API takes requests.
enum ProvisionerSetup {
    struct Running: Sendable {
        let provisioner: Provisioner
        let api: TwinAPI
        /// Container networks' traffic counters, for the reporter's NRU reports (nil: networking off).
        let network: NodeNetwork?
        let host: String
        let port: Int
        let logger: Logger

        func serveAPI() async {
            do {
                try await api.run(host: host, port: port) { bound in
                    logger.info("twin API listening", metadata: ["address": "\(host):\(bound)"])
                }
            } catch is CancellationError {
            } catch {
                logger.critical("the twin API cannot serve", metadata: ["address": "\(host):\(port)", "error": "\(error)"])
            }
        }
    }

    /// `capacity` is the reporter's measurement with the system reserve taken off: the same
    /// allocatable numbers status and the chain see.
    static func start(config: AgentConfig, identity: NodeIdentity, chain: any GridChain, book: ContractBook, nodeID: UInt32,
                      capacity: NodeCapacity, shardServer: ShardServer?, logger: Logger) async throws -> Running {
        guard let (host, port) = ShardServerCommand.parseListen(config.provisioner.apiListen) else {
            throw NodeAgentError.config(file: "(config)", key: "provisioner.api_listen", message: "value \"\(config.provisioner.apiListen)\" is not HOST:PORT")
        }
        let stateDir = config.node.stateDir
        let store = try DeploymentStore(path: stateDir + "/deployments.sqlite")
        var managers: [any WorkloadManager] = [VolumeManager(root: stateDir + "/volumes")]
        if let shardServer, let (shardHost, shardPort) = ShardServerCommand.parseListen(config.shardServer.listen) {
            managers.append(ZdbManager(service: ShardNamespaces(server: shardServer, host: shardHost, port: shardServer.port ?? shardPort)))
        }
        let network = try await startNetwork(config: config, logger: logger)
        managers.append(contentsOf: try containerManagers(stateDir: stateDir, network: network, logger: logger))
        var reserved = Set<UInt16>([UInt16(clamping: port)])
        if let (_, shardPort) = ShardServerCommand.parseListen(config.shardServer.listen) { reserved.insert(UInt16(clamping: shardPort)) }
        let policy = NetworkPolicy(minPublicPort: UInt16(clamping: config.network.minPublicPort), maxInterfaces: config.network.maxInterfaces,
                                   pool: IPv4Network(config.network.pool) ?? NetworkPolicy.defaultPool, reservedPorts: reserved)
        let provisioner = Provisioner(
            configuration: .init(nodeID: nodeID, total: capacity.total, allocatable: capacity.allocatable,
                                 overcommitRatio: config.provisioner.overcommitRatio, network: policy),
            store: store, book: book, chain: chain, managers: managers, logger: Logger(label: "provisioner"))
        if let shardServer {
            // Orphan removal must see the namespaces: wait (bounded) for the shard server to be up.
            let deadline = ContinuousClock.now + .seconds(30)
            while shardServer.port == nil, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        }
        await provisioner.start()
        let api = TwinAPI(provisioner: provisioner, chain: chain, nodeKeys: identity.keyPair, logger: Logger(label: "provisioner.api"))
        return Running(provisioner: provisioner, api: api, network: network, host: host, port: port, logger: logger)
    }
}

extension ProvisionerSetup {
    /// The node's container networks: forwarding on, the agent's nft tables in place, leftovers of
    /// a crash or of removed deployments swept before the provisioner reconciles. Unavailable
    /// networking (no nft, not root) leaves containers with networks failing, not the agent.
    static func startNetwork(config: AgentConfig, logger: Logger) async throws -> NodeNetwork? {
        guard config.network.enabled else { return nil }
        let network = try NodeNetwork(configuration: .init(
            prefix: config.network.prefix, table: config.network.table, pool: IPv4Network(config.network.pool) ?? NetworkPolicy.defaultPool,
            stateDirectory: config.node.stateDir + "/network", nameservers: config.network.nameservers))
        for warning in await network.startupWarnings { logger.error("\(warning)") }
        do { try await network.start() } catch {
            logger.error("container networking unavailable", metadata: ["error": "\(error)"])
            return nil
        }
        return network
    }

    /// Container workloads: images in `<state_dir>/images`, bundles in `<state_dir>/containers`,
    /// runtime state in `<state_dir>/runtime` (it must survive reboots' /run wipe only as far as the
    /// reconciler needs: a missing record is a container to start again).
    static func containerManagers(stateDir: String, network: NodeNetwork? = nil, logger: Logger) throws -> [any WorkloadManager] {
        // A container's root is bound by its init inside the user namespace, as the unprivileged
        // uid the container's root maps to: every directory on the way must be searchable (not
        // readable) by others. Secrets in the state directory are 0600 files, so 0711 lists nothing.
        for path in [stateDir, stateDir + "/containers"] {
            if mkdir(path, 0o711) != 0 && errno != EEXIST { throw NodeAgentError.io(operation: "create", path: path, errno: errno) }
            var info = stat()
            if stat(path, &info) == 0, info.st_mode & 0o111 != 0o111 { chmod(path, (info.st_mode & 0o777) | 0o711) }
        }
        let images = try ImageStore(root: stateDir + "/images")
        let runtime = OCIRuntime(stateRoot: stateDir + "/runtime", cgroupParent: containerCgroupParent(logger: logger))
        return [ContainerManager(service: RuntimeContainers(runtime: runtime, images: images, bundles: stateDir + "/containers"),
                                 networking: network.map { NetworkAttachments(network: $0) })]
    }

    /// Below the unit's own cgroup when systemd delegated it (Delegate=yes, cgroup v2), else the
    /// top-level `node-agent`. Containers made before keep the cgroup on their record.
    static func containerCgroupParent(logger: Logger) -> String {
        do {
            if let delegated = try DelegatedCgroup.prepare() {
                logger.info("containers go below the agent's delegated cgroup", metadata: ["cgroup": .string(delegated)])
                return delegated
            }
        } catch {
            logger.warning("cannot use the unit's delegated cgroup; containers go to /node-agent", metadata: ["error": "\(error)"])
        }
        return "node-agent"
    }
}
