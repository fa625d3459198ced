import GridTypes

/// What the agent asks of a chain. Both backends (the embedded ledger and TFChain) implement it;
/// nothing above this module knows which one is in use.
public protocol GridChain: Sendable {
    /// Ids of the node's contracts that are Created or in GracePeriod (TFChain's ActiveNodeContracts).
    func activeContracts(node: UInt32) async throws(ChainError) -> [UInt64]
    func contract(id: UInt64) async throws(ChainError) -> Contract?
    /// Several contracts at once (one storage query on TFChain, one read on the ledger); missing ids are left out.
    func contracts(ids: [UInt64]) async throws(ChainError) -> [Contract]
    func twin(id: UInt32) async throws(ChainError) -> Twin?
    /// The twin whose account is this key, if any (TFChain's TwinIdByAccountID).
    func twinID(account: Ed25519PublicKey) async throws(ChainError) -> UInt32?
    func node(id: UInt32) async throws(ChainError) -> Node?
    /// The node registered by this twin, if any (TFChain's NodeIdByTwinID).
    func nodeID(twin: UInt32) async throws(ChainError) -> UInt32?
    func farmExists(id: UInt32) async throws(ChainError) -> Bool

    /// The newest finalized block.
    func finalizedHead() async throws(ChainError) -> BlockHeader
    /// A finalized block with its events, nil when the chain no longer has it (pruned).
    func block(number: UInt64) async throws(ChainError) -> FinalizedBlock?
    /// Finalized blocks from `after + 1` on, in order, as they are produced.
    func finalizedBlocks(after: UInt64) -> AsyncThrowingStream<FinalizedBlock, any Error>

    /// Signs and submits a call, waits for its inclusion, and reports how it ended.
    func submit(_ call: ChainCall, signer: Ed25519KeyPair) async throws(ChainError) -> Inclusion
}

extension GridChain {
    public func contracts(ids: [UInt64]) async throws(ChainError) -> [Contract] {
        var result = [Contract]()
        for id in ids { if let contract = try await contract(id: id) { result.append(contract) } }
        return result
    }
}

/// The calls the agent (and the twin's command line) make, named after TFChain's extrinsics.
public enum ChainCall: Codable, Equatable, Sendable {
    // Account and registration (TfgridModule).
    case createTwin
    case createFarm(name: String)
    case createNode(farmID: UInt32, resources: Resources)
    case updateNode(nodeID: UInt32, resources: Resources)
    // The twin's contracts (SmartContractModule).
    case createNodeContract(nodeID: UInt32, deploymentHash: String, deploymentData: [UInt8], publicIPs: UInt32)
    case updateNodeContract(contractID: UInt64, deploymentHash: String, deploymentData: [UInt8])
    case cancelContract(contractID: UInt64)
    // The node's reports.
    case reportUptime(uptime: UInt64, timestampHint: UInt64)
    case reportContractResources([ContractResources])
    case addNruReports([NruConsumption])

    public var name: String {
        switch self {
        case .createTwin: return "TfgridModule.create_twin"
        case .createFarm: return "TfgridModule.create_farm"
        case .createNode: return "TfgridModule.create_node"
        case .updateNode: return "TfgridModule.update_node"
        case .createNodeContract: return "SmartContractModule.create_node_contract"
        case .updateNodeContract: return "SmartContractModule.update_node_contract"
        case .cancelContract: return "SmartContractModule.cancel_contract"
        case .reportUptime: return "TfgridModule.report_uptime_v2"
        case .reportContractResources: return "SmartContractModule.report_contract_resources"
        case .addNruReports: return "SmartContractModule.add_nru_reports"
        }
    }
}

/// How a submitted call ended: included in a block, with the events it caused.
public struct Inclusion: Equatable, Sendable {
    public var blockNumber: UInt64
    public var events: [ChainEvent]

    public init(blockNumber: UInt64, events: [ChainEvent]) {
        self.blockNumber = blockNumber
        self.events = events
    }
}
