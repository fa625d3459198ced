import ArgumentParser
import ChainClient
import Foundation
import GridTypes

struct ContractCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "contract", abstract: "Create, update or cancel a node contract.",
                                                    subcommands: [Create.self, Update.self, Cancel.self])

    static func validateHash(_ hash: String) throws {
        guard hash.count == 32, hash.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else {
            throw ValidationError("--hash must be the deployment's MD5 challenge hash: 32 lowercase hex characters, got '\(hash)'")
        }
    }

    static func validateData(_ data: String) throws -> [UInt8] {
        let bytes = Array(data.utf8)
        guard bytes.count <= NodeContract.maxDeploymentData else {
            throw ValidationError("--data is \(bytes.count) bytes; the chain allows at most \(NodeContract.maxDeploymentData)")
        }
        return bytes
    }

    static func describe(_ c: Contract) -> String {
        "contract \(c.id) on node \(c.node.nodeID): \(c.state.shortName), hash \(c.node.deploymentHash)"
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Reserve a deployment on a node.")
        @OptionGroup var chain: ChainOptions
        @Option(name: .long, help: "Node id.") var node: UInt32
        @Option(name: .long, help: "Deployment hash (32 hex characters).") var hash: String
        @Option(name: .long, help: "Deployment data (at most 512 bytes).") var data: String = ""
        @Option(name: .long, help: "Public IPv4 addresses to reserve.") var publicIps: UInt32 = 0

        func run() async throws {
            try ContractCommand.validateHash(hash)
            let bytes = try ContractCommand.validateData(data)
            let ledger = try chain.openLedger()
            let identity = try chain.loadKey()
            let inclusion = try await ledger.submit(.createNodeContract(nodeID: node, deploymentHash: hash, deploymentData: bytes,
                                                                        publicIPs: publicIps), signer: identity.keyPair)
            guard case .contractCreated(let contract)? = inclusion.events.first else {
                throw GridTwinFailure("the ledger included the call but reported no ContractCreated event")
            }
            try chain.emit(contract) { "created " + ContractCommand.describe(contract) + " in block \(inclusion.blockNumber)" }
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Point a contract at a new deployment hash.")
        @OptionGroup var chain: ChainOptions
        @Option(name: .long, help: "Contract id.") var id: UInt64
        @Option(name: .long, help: "New deployment hash.") var hash: String
        @Option(name: .long, help: "New deployment data.") var data: String = ""

        func run() async throws {
            try ContractCommand.validateHash(hash)
            let bytes = try ContractCommand.validateData(data)
            let ledger = try chain.openLedger()
            let identity = try chain.loadKey()
            let inclusion = try await ledger.submit(.updateNodeContract(contractID: id, deploymentHash: hash, deploymentData: bytes),
                                                    signer: identity.keyPair)
            guard case .contractUpdated(let contract)? = inclusion.events.first else {
                throw GridTwinFailure("the ledger included the call but reported no ContractUpdated event")
            }
            try chain.emit(contract) { "updated " + ContractCommand.describe(contract) }
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Cancel a contract: the node removes its workloads.")
        @OptionGroup var chain: ChainOptions
        @Option(name: .long, help: "Contract id.") var id: UInt64

        func run() async throws {
            let ledger = try chain.openLedger()
            let identity = try chain.loadKey()
            let inclusion = try await ledger.submit(.cancelContract(contractID: id), signer: identity.keyPair)
            try chain.emit(["contract_id": "\(id)", "block": "\(inclusion.blockNumber)"]) {
                "canceled contract \(id) in block \(inclusion.blockNumber)"
            }
        }
    }
}

struct ContractsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "contracts", abstract: "List contracts (yours by default).")
    @OptionGroup var chain: ChainOptions
    @Option(name: .long, help: "Whose contracts (default: yours).") var twin: UInt32?
    @Option(name: .long, help: "Only contracts on this node.") var node: UInt32?
    @Flag(name: .long, help: "Include deleted contracts.") var all = false

    func run() async throws {
        let ledger = try chain.openLedger()
        let owner: UInt32?
        if let twin { owner = twin } else if node != nil { owner = nil } else { owner = try await chain.twinID(ledger, try chain.loadKey()) }
        let list = try ledger.contracts(twin: owner, node: node, includeDeleted: all)
        try chain.emit(list) {
            var table = TextTable(["ID", "NODE", "TWIN", "STATE", "HASH", "BILLED", "USED"])
            for s in list {
                table.add(["\(s.contract.id)", "\(s.contract.node.nodeID)", "\(s.contract.twinID)", s.contract.state.shortName,
                           s.contract.node.deploymentHash, TFT.format(s.totalBilled),
                           "cru \(s.used.cru) mru \(ByteFormat.binary(s.used.mru)) sru \(ByteFormat.binary(s.used.sru)) hru \(ByteFormat.binary(s.used.hru))"])
            }
            return list.isEmpty ? "no contracts" : table.render()
        }
    }
}

struct NodesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "nodes", abstract: "List nodes with their total, used and free capacity.")
    @OptionGroup var chain: ChainOptions
    @Option(name: .long, help: "Only nodes with at least this many free CPUs.") var minCru: UInt64 = 0
    @Option(name: .long, help: "Only nodes with at least this much free memory, in GiB.") var minMemoryGib: UInt64 = 0

    func run() async throws {
        let ledger = try chain.openLedger()
        let nodes = try ledger.nodes().filter { $0.free.cru >= minCru && $0.free.mru >= minMemoryGib << 30 }
        try chain.emit(nodes) {
            var table = TextTable(["NODE", "FARM", "TWIN", "CRU free/total", "MRU free/total", "SRU free/total", "HRU free/total", "CONTRACTS"])
            for n in nodes {
                let t = n.node.resources, f = n.free
                table.add(["\(n.node.id)", "\(n.node.farmID)", "\(n.node.twinID)", "\(f.cru)/\(t.cru)",
                           "\(ByteFormat.binary(f.mru))/\(ByteFormat.binary(t.mru))", "\(ByteFormat.binary(f.sru))/\(ByteFormat.binary(t.sru))",
                           "\(ByteFormat.binary(f.hru))/\(ByteFormat.binary(t.hru))", "\(n.activeContracts)"])
            }
            return nodes.isEmpty ? "no nodes match" : table.render()
        }
    }
}

struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "events", abstract: "Show recent chain events.")
    @OptionGroup var chain: ChainOptions
    @Option(name: .long, help: "Only events of this contract.") var contract: UInt64?
    @Option(name: .long, help: "Only events of this node.") var node: UInt32?
    @Option(name: .long, help: "How many (newest).") var last: Int = 30

    func run() async throws {
        let ledger = try chain.openLedger()
        let events = try ledger.events(contract: contract, node: node, limit: max(1, min(last, 10_000)))
        try chain.emit(events) {
            var table = TextTable(["BLOCK", "EVENT", "DETAIL"])
            for e in events { table.add(["\(e.block)", e.event.name, e.event.summary]) }
            return events.isEmpty ? "no events" : table.render()
        }
    }
}
