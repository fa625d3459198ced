/// Chain-level types shared by every module, shaped after TFChain's pallets (see tfchain.md).
/// Both chain backends produce these; nothing above the chain module sees backend types.

/// Capacity in TFChain's units: bytes for hru/sru/mru, logical CPUs for cru.
public struct Resources: Codable, Equatable, Hashable, Sendable {
    public var hru: UInt64
    public var sru: UInt64
    public var cru: UInt64
    public var mru: UInt64

    public init(hru: UInt64 = 0, sru: UInt64 = 0, cru: UInt64 = 0, mru: UInt64 = 0) {
        self.hru = hru
        self.sru = sru
        self.cru = cru
        self.mru = mru
    }

    public static let zero = Resources()

    /// Component-wise sum; nil on overflow.
    public func adding(_ other: Resources) -> Resources? {
        let (h, o1) = hru.addingReportingOverflow(other.hru)
        let (s, o2) = sru.addingReportingOverflow(other.sru)
        let (c, o3) = cru.addingReportingOverflow(other.cru)
        let (m, o4) = mru.addingReportingOverflow(other.mru)
        return o1 || o2 || o3 || o4 ? nil : Resources(hru: h, sru: s, cru: c, mru: m)
    }
}

/// TFChain's cost units, from tfchain.md: SU = hru/1200 + sru/200; CU = min(max(mru/4, cru/2),
/// max(mru/8, cru), max(mru/2, cru/4)); sizes in GiB.
public enum CostUnits {
    static let gib = Double(1 << 30)

    public static func su(_ r: Resources) -> Double {
        Double(r.hru) / gib / 1200 + Double(r.sru) / gib / 200
    }

    public static func cu(_ r: Resources) -> Double {
        let mru = Double(r.mru) / gib
        let cru = Double(r.cru)
        return min(max(mru / 4, cru / 2), max(mru / 8, cru), max(mru / 2, cru / 4))
    }
}

public enum DeletionCause: Int, Codable, Equatable, Sendable {
    case canceledByUser = 0
    case outOfFunds = 1
    case canceledByCollective = 2

    public var name: String {
        switch self {
        case .canceledByUser: return "CanceledByUser"
        case .outOfFunds: return "OutOfFunds"
        case .canceledByCollective: return "CanceledByCollective"
        }
    }
}

/// TFChain's ContractState: Created | Deleted(Cause) | GracePeriod(block).
public enum ContractState: Codable, Equatable, Hashable, Sendable, CustomStringConvertible {
    case created
    case deleted(DeletionCause)
    case gracePeriod(since: UInt64)

    public var isActive: Bool {
        if case .deleted = self { return false }
        return true
    }

    public var description: String {
        switch self {
        case .created: return "Created"
        case .deleted(let cause): return "Deleted(\(cause.name))"
        case .gracePeriod(let block): return "GracePeriod(\(block))"
        }
    }
}

/// A node contract: the chain's record that a twin reserves a deployment on a node.
public struct NodeContract: Codable, Equatable, Hashable, Sendable {
    public var nodeID: UInt32
    /// The 32 ASCII hex characters of the deployment's MD5 challenge hash.
    public var deploymentHash: String
    public var deploymentData: [UInt8]
    public var publicIPs: UInt32

    public init(nodeID: UInt32, deploymentHash: String, deploymentData: [UInt8] = [], publicIPs: UInt32 = 0) {
        self.nodeID = nodeID
        self.deploymentHash = deploymentHash
        self.deploymentData = deploymentData
        self.publicIPs = publicIPs
    }

    public static let maxDeploymentData = 512
}

public struct Contract: Codable, Equatable, Hashable, Sendable {
    public var id: UInt64
    public var version: UInt32
    public var state: ContractState
    public var twinID: UInt32
    public var node: NodeContract

    public init(id: UInt64, version: UInt32 = 4, state: ContractState, twinID: UInt32, node: NodeContract) {
        self.id = id
        self.version = version
        self.state = state
        self.twinID = twinID
        self.node = node
    }
}

public struct Twin: Codable, Equatable, Sendable {
    public var id: UInt32
    public var publicKey: Ed25519PublicKey

    public init(id: UInt32, publicKey: Ed25519PublicKey) {
        self.id = id
        self.publicKey = publicKey
    }
}

public struct Node: Codable, Equatable, Sendable {
    public var id: UInt32
    public var farmID: UInt32
    public var twinID: UInt32
    public var resources: Resources

    public init(id: UInt32, farmID: UInt32, twinID: UInt32, resources: Resources) {
        self.id = id
        self.farmID = farmID
        self.twinID = twinID
        self.resources = resources
    }
}

public struct ContractResources: Codable, Equatable, Sendable {
    public var contractID: UInt64
    public var used: Resources

    public init(contractID: UInt64, used: Resources) {
        self.contractID = contractID
        self.used = used
    }
}

public struct NruConsumption: Codable, Equatable, Sendable {
    public var contractID: UInt64
    public var timestamp: UInt64
    public var window: UInt64
    public var nru: UInt64

    public init(contractID: UInt64, timestamp: UInt64, window: UInt64, nru: UInt64) {
        self.contractID = contractID
        self.timestamp = timestamp
        self.window = window
        self.nru = nru
    }
}

/// The chain events the agent reacts to, with TFChain's names and fields.
public enum ChainEvent: Codable, Equatable, Sendable {
    case contractCreated(Contract)
    case contractUpdated(Contract)
    case nodeContractCanceled(contractID: UInt64, nodeID: UInt32, twinID: UInt32)
    case contractGracePeriodStarted(contractID: UInt64, nodeID: UInt32, twinID: UInt32, blockNumber: UInt64)
    case contractGracePeriodEnded(contractID: UInt64, nodeID: UInt32, twinID: UInt32)
    case updatedUsedResources(ContractResources)
    case nruConsumptionReportReceived(NruConsumption)
    case nodeUptimeReported(nodeID: UInt32, timestamp: UInt64, uptime: UInt64)
    case contractBilled(contractID: UInt64, amount: UInt64)
    case twinStored(Twin)
    case nodeStored(Node)
    case farmStored(id: UInt32, name: String, twinID: UInt32)
    case transfer(to: UInt32, amount: UInt64)
    /// An event this agent has no use for, kept by name so nothing breaks on new events.
    case other(pallet: String, name: String)

    /// "Pallet.Event" as TFChain names it.
    public var name: String {
        switch self {
        case .contractCreated: return "SmartContractModule.ContractCreated"
        case .contractUpdated: return "SmartContractModule.ContractUpdated"
        case .nodeContractCanceled: return "SmartContractModule.NodeContractCanceled"
        case .contractGracePeriodStarted: return "SmartContractModule.ContractGracePeriodStarted"
        case .contractGracePeriodEnded: return "SmartContractModule.ContractGracePeriodEnded"
        case .updatedUsedResources: return "SmartContractModule.UpdatedUsedResources"
        case .nruConsumptionReportReceived: return "SmartContractModule.NruConsumptionReportReceived"
        case .nodeUptimeReported: return "TfgridModule.NodeUptimeReported"
        case .contractBilled: return "SmartContractModule.ContractBilled"
        case .twinStored: return "TfgridModule.TwinStored"
        case .nodeStored: return "TfgridModule.NodeStored"
        case .farmStored: return "TfgridModule.FarmStored"
        case .transfer: return "Balances.Transfer"
        case .other(let pallet, let name): return "\(pallet).\(name)"
        }
    }

    /// The event's fields in one line, for tables and logs.
    public var summary: String {
        switch self {
        case .contractCreated(let c), .contractUpdated(let c):
            return "contract \(c.id) twin \(c.twinID) node \(c.node.nodeID) hash \(c.node.deploymentHash)"
        case .nodeContractCanceled(let id, let node, let twin):
            return "contract \(id) twin \(twin) node \(node)"
        case .contractGracePeriodStarted(let id, let node, let twin, let block):
            return "contract \(id) twin \(twin) node \(node) since block \(block)"
        case .contractGracePeriodEnded(let id, let node, let twin):
            return "contract \(id) twin \(twin) node \(node)"
        case .updatedUsedResources(let r):
            return "contract \(r.contractID) cru \(r.used.cru) mru \(r.used.mru) sru \(r.used.sru) hru \(r.used.hru)"
        case .nruConsumptionReportReceived(let n):
            return "contract \(n.contractID) nru \(n.nru) bytes over \(n.window) s"
        case .nodeUptimeReported(let node, let timestamp, let uptime):
            return "node \(node) uptime \(uptime) s at \(timestamp)"
        case .contractBilled(let id, let amount):
            return "contract \(id) amount \(amount) units"
        case .twinStored(let twin):
            return "twin \(twin.id)"
        case .nodeStored(let node):
            return "node \(node.id) farm \(node.farmID) twin \(node.twinID)"
        case .farmStored(let id, let name, let twin):
            return "farm \(id) \(name) twin \(twin)"
        case .transfer(let twin, let amount):
            return "twin \(twin) amount \(amount) units"
        case .other:
            return ""
        }
    }

    /// The contract an event concerns, when it concerns one.
    public var contractID: UInt64? {
        switch self {
        case .contractCreated(let c), .contractUpdated(let c): return c.id
        case .nodeContractCanceled(let id, _, _), .contractGracePeriodStarted(let id, _, _, _),
             .contractGracePeriodEnded(let id, _, _), .contractBilled(let id, _):
            return id
        case .updatedUsedResources(let r): return r.contractID
        case .nruConsumptionReportReceived(let n): return n.contractID
        default: return nil
        }
    }

    /// The node an event concerns, when the event says.
    public var nodeID: UInt32? {
        switch self {
        case .contractCreated(let c), .contractUpdated(let c): return c.node.nodeID
        case .nodeContractCanceled(_, let node, _), .contractGracePeriodStarted(_, let node, _, _),
             .contractGracePeriodEnded(_, let node, _), .nodeUptimeReported(let node, _, _):
            return node
        case .nodeStored(let n): return n.id
        default: return nil
        }
    }
}

public struct BlockHeader: Codable, Equatable, Sendable {
    public var number: UInt64
    public var hash: [UInt8]
    public var timestampMilliseconds: UInt64

    public init(number: UInt64, hash: [UInt8], timestampMilliseconds: UInt64) {
        self.number = number
        self.hash = hash
        self.timestampMilliseconds = timestampMilliseconds
    }
}

public struct FinalizedBlock: Equatable, Sendable {
    public var header: BlockHeader
    public var events: [ChainEvent]

    public init(header: BlockHeader, events: [ChainEvent]) {
        self.header = header
        self.events = events
    }
}
