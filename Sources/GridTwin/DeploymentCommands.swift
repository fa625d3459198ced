import ArgumentParser
import ChainClient
import Foundation
import GridTypes
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Deployments from the twin's side: check what you sign (`hash`), reserve and sign (`create`),
/// co-sign (`sign`), hand to the node (`send`), or all at once (`deploy`); then `get`, `list` and
/// `changes` through the node's API.
struct DeploymentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deployment", abstract: "Build, sign, send and inspect deployments.",
        subcommands: [Hash.self, Create.self, Sign.self, Send.self, Get.self, List.self, Changes.self])

    static func load(_ path: String) throws -> Deployment {
        guard let data = FileManager.default.contents(atPath: path) else { throw GridTwinFailure("cannot read deployment file \(path)") }
        guard data.count <= Deployment.Limits.maxBodyBytes else {
            throw GridTwinFailure("\(path) is \(data.count) bytes; a deployment is at most \(Deployment.Limits.maxBodyBytes)")
        }
        do { return try JSONDecoder().decode(Deployment.self, from: data) } catch {
            throw GridTwinFailure("\(path) is not a valid deployment: \(error)")
        }
    }

    static func save(_ deployment: Deployment, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(deployment)
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: 0o600]),
              rename(temporary, path) == 0 else { throw GridTwinFailure("cannot write \(path)") }
    }

    /// Fills in the caller's twin: in twin_id, and in signature requests left at twin 0 (or, with
    /// none, a single required request of weight 1), so a file can be written before the twin exists.
    static func claim(_ deployment: inout Deployment, twin: UInt32) {
        deployment.twinID = twin
        if deployment.signatureRequirement.requests.isEmpty {
            deployment.signatureRequirement.requests = [SignatureRequest(twinID: twin, required: true, weight: 1)]
            deployment.signatureRequirement.weightRequired = max(1, deployment.signatureRequirement.weightRequired)
        }
        for i in deployment.signatureRequirement.requests.indices where deployment.signatureRequirement.requests[i].twinID == 0 {
            deployment.signatureRequirement.requests[i].twinID = twin
        }
        deployment.signatureRequirement.signatures = []
    }

    /// Loads a deployment file, claims it for the caller's twin, checks the rules, creates its node
    /// contract on `node` and signs it: what `create` and `deploy` both start with.
    static func contracted(_ file: String, node: UInt32, ledger: LocalLedger, identity: NodeIdentity, chain: ChainOptions) async throws -> Deployment {
        var deployment = try load(file)
        claim(&deployment, twin: try await chain.twinID(ledger, identity))
        try validate(deployment)
        let inclusion = try await ledger.submit(.createNodeContract(nodeID: node, deploymentHash: DeploymentChallenge.hash(deployment),
                                                                    deploymentData: [], publicIPs: 0), signer: identity.keyPair)
        guard case .contractCreated(let contract)? = inclusion.events.first else {
            throw GridTwinFailure("the ledger included the call but reported no ContractCreated event")
        }
        deployment.contractID = contract.id
        DeploymentChallenge.sign(&deployment, twinID: deployment.twinID, keyPair: identity.keyPair)
        return deployment
    }

    static func validate(_ deployment: Deployment) throws {
        do { try DeploymentRules.validate(deployment) } catch { throw GridTwinFailure("\(error)") }
    }

    struct Hash: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a deployment's challenge string and MD5 hash (what a contract stores and signers sign).")
        @Argument(help: "Deployment JSON file.") var file: String
        @Flag(name: .long, help: "Print JSON.") var json = false

        func run() async throws {
            let deployment = try DeploymentCommand.load(file)
            let challenge = DeploymentChallenge.text(deployment), hash = DeploymentChallenge.hash(deployment)
            if json {
                let out = try JSONEncoder().encode(["challenge": challenge, "hash": hash])
                print(String(decoding: out, as: UTF8.self))
            } else {
                print("challenge: \(challenge)")
                print("hash:      \(hash)")
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the node contract for a deployment, fill in twin_id and contract_id, and sign it.",
            discussion: "Other signers then run `grid-twin deployment sign`, and anyone sends it with `grid-twin deployment send`.")
        @OptionGroup var chain: ChainOptions
        @Argument(help: "Deployment JSON file (updated in place unless --out).") var file: String
        @Option(name: .long, help: "Node id.") var node: UInt32
        @Option(name: .long, help: "Write the signed deployment here.") var out: String?

        func run() async throws {
            let ledger = try chain.openLedger()
            let identity = try chain.loadKey()
            let deployment = try await DeploymentCommand.contracted(file, node: node, ledger: ledger, identity: identity, chain: chain)
            let hash = DeploymentChallenge.hash(deployment)
            try DeploymentCommand.save(deployment, to: out ?? file)
            try chain.emit(["contract_id": String(deployment.contractID), "hash": hash, "file": out ?? file]) {
                "created contract \(deployment.contractID) on node \(node) for hash \(hash); signed as twin \(deployment.twinID) into \(out ?? file)"
            }
        }
    }

    struct Sign: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add your twin's signature to a deployment (multisig co-signing).")
        @OptionGroup var chain: ChainOptions
        @Argument(help: "Deployment JSON file (updated in place unless --out).") var file: String
        @Option(name: .long, help: "Write the signed deployment here.") var out: String?

        func run() async throws {
            let ledger = try chain.openLedger()
            let identity = try chain.loadKey()
            var deployment = try DeploymentCommand.load(file)
            let twin = try await chain.twinID(ledger, identity)
            guard deployment.signatureRequirement.requests.contains(where: { $0.twinID == twin }) else {
                throw GridTwinFailure("twin \(twin) is not one of this deployment's signature requests")
            }
            DeploymentChallenge.sign(&deployment, twinID: twin, keyPair: identity.keyPair)
            try DeploymentCommand.save(deployment, to: out ?? file)
            try chain.emit(["twin_id": String(twin), "hash": DeploymentChallenge.hash(deployment)]) {
                "signed hash \(DeploymentChallenge.hash(deployment)) as twin \(twin)"
            }
        }
    }

    struct Send: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Hand a signed deployment to its node (sealed to the node's key) and wait for its workloads.")
        @OptionGroup var chain: ChainOptions
        @OptionGroup var api: NodeAPIOptions
        @Argument(help: "Signed deployment JSON file.") var file: String
        @Flag(name: .long, help: "Send as an update of the node's current deployment.") var update = false

        func run() async throws {
            let ledger = try chain.openLedger()
            let identity = try chain.loadKey()
            let twin = try await chain.twinID(ledger, identity)
            let deployment = try DeploymentCommand.load(file)
            try await api.send(deployment, update: update, ledger: ledger, identity: identity, twin: twin, chain: chain)
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a deployment on its node, with each workload's result.")
        @OptionGroup var chain: ChainOptions
        @OptionGroup var api: NodeAPIOptions
        @Argument(help: "Contract id.") var contract: UInt64

        func run() async throws {
            let (ledger, identity) = (try chain.openLedger(), try chain.loadKey())
            let twin = try await chain.twinID(ledger, identity)
            let deployment: Deployment = try await api.request("GET", "/api/v1/deployments/\(contract)", twin: twin, identity: identity)
            try chain.emit(deployment) { NodeAPIOptions.describe(deployment) }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List your deployments on a node.")
        @OptionGroup var chain: ChainOptions
        @OptionGroup var api: NodeAPIOptions

        func run() async throws {
            let (ledger, identity) = (try chain.openLedger(), try chain.loadKey())
            let twin = try await chain.twinID(ledger, identity)
            let deployments: [Deployment] = try await api.request("GET", "/api/v1/deployments", twin: twin, identity: identity)
            try chain.emit(deployments) { deployments.isEmpty ? "no deployments on this node" : deployments.map(NodeAPIOptions.describe).joined(separator: "\n") }
        }
    }

    struct Changes: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A deployment's history on its node, deleted workloads included.")
        @OptionGroup var chain: ChainOptions
        @OptionGroup var api: NodeAPIOptions
        @Argument(help: "Contract id.") var contract: UInt64

        struct Change: Codable {
            var time: Int64
            var deployment_version: UInt32
            var name: String
            var type: String
            var workload_version: UInt32
            var state: String
            var message: String
        }

        func run() async throws {
            let (ledger, identity) = (try chain.openLedger(), try chain.loadKey())
            let twin = try await chain.twinID(ledger, identity)
            let changes: [Change] = try await api.request("GET", "/api/v1/deployments/\(contract)/changes", twin: twin, identity: identity)
            try chain.emit(changes) {
                var table = TextTable(["TIME", "VERSION", "WORKLOAD", "TYPE", "STATE", "MESSAGE"])
                for c in changes { table.add([String(c.time), String(c.deployment_version), c.name, c.type, c.state, c.message]) }
                return table.render()
            }
        }
    }
}

/// `deploy`: create the contract, sign, send and wait, in one step.
struct DeployCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "deploy", abstract: "Deploy a deployment file to a node: contract, signature, delivery, wait.")
    @OptionGroup var chain: ChainOptions
    @OptionGroup var api: NodeAPIOptions
    @Argument(help: "Deployment JSON file.") var file: String
    @Option(name: .long, help: "Node id.") var node: UInt32
    @Option(name: .long, help: "Also write the signed deployment (with its contract id) here.") var out: String?

    func run() async throws {
        let ledger = try chain.openLedger()
        let identity = try chain.loadKey()
        let deployment = try await DeploymentCommand.contracted(file, node: node, ledger: ledger, identity: identity, chain: chain)
        if let out { try DeploymentCommand.save(deployment, to: out) }
        if !chain.json { print("contract \(deployment.contractID) created on node \(node) (hash \(DeploymentChallenge.hash(deployment)))") }
        try await api.send(deployment, update: false, ledger: ledger, identity: identity, twin: deployment.twinID, chain: chain)
    }
}

/// Where the node's twin API is, and how requests to it are made: signed with the twin's key,
/// deployment bodies sealed to the node's key as registered on chain.
struct NodeAPIOptions: ParsableArguments {
    @Option(name: .long, help: "The node's twin API, e.g. http://10.0.0.2:2021 (env GRID_NODE_API).")
    var api: String = ProcessInfo.processInfo.environment["GRID_NODE_API"] ?? "http://127.0.0.1:2021"

    @Flag(name: .long, help: "Send the deployment in clear instead of sealed to the node's key.")
    var noSeal = false

    @Option(name: .long, help: "Seconds to wait for every workload to be ok (0: don't wait).")
    var wait: Int = 120

    struct APIError: Error, CustomStringConvertible {
        var status: Int
        var message: String
        var description: String { "the node answered \(status): \(message)" }
    }

    func request<T: Decodable>(_ method: String, _ path: String, body: [UInt8] = [], contentType: String = "application/json",
                               twin: UInt32, identity: NodeIdentity) async throws -> T {
        let data = try await raw(method, path, body: body, contentType: contentType, twin: twin, identity: identity)
        return try JSONDecoder().decode(T.self, from: data)
    }

    func raw(_ method: String, _ path: String, body: [UInt8], contentType: String, twin: UInt32, identity: NodeIdentity) async throws -> Data {
        guard let url = URL(string: api.trimmingCharacters(in: CharacterSet(charactersIn: "/")) + path) else {
            throw ValidationError("--api \(api) is not a URL")
        }
        var request = URLRequest(url: url, timeoutInterval: 30)
        request.httpMethod = method
        request.setValue(contentType, forHTTPHeaderField: "Content-Type")
        for (name, value) in TwinRequestSignature.headers(method: method, path: path, body: body, twinID: twin, keyPair: identity.keyPair) {
            request.setValue(value, forHTTPHeaderField: name)
        }
        if !body.isEmpty { request.httpBody = Data(body) }
        let (data, response): (Data, URLResponse)
        do { (data, response) = try await URLSession.shared.data(for: request) } catch {
            throw GridTwinFailure("cannot reach the node's API at \(api): \(error.localizedDescription); is the agent running, and is provisioner.api_listen reachable?")
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard (200..<300).contains(status) else {
            let message = (try? JSONDecoder().decode([String: JSONValue].self, from: data))?["error"]?.string ?? String(decoding: data.prefix(500), as: UTF8.self)
            throw APIError(status: status, message: message)
        }
        return data
    }

    func send(_ deployment: Deployment, update: Bool, ledger: LocalLedger, identity: NodeIdentity, twin: UInt32, chain: ChainOptions) async throws {
        var body = Array(try JSONEncoder().encode(deployment))
        var contentType = "application/json"
        if !noSeal {
            let contract = try await ledger.contract(id: deployment.contractID)
            guard let contract else { throw GridTwinFailure("contract \(deployment.contractID) is not on the chain") }
            guard let node = try await ledger.node(id: contract.node.nodeID), let nodeTwin = try await ledger.twin(id: node.twinID) else {
                throw GridTwinFailure("node \(contract.node.nodeID) or its twin is not on the chain, so its key for sealing is unknown")
            }
            body = try SealedBox.seal(body, to: nodeTwin.publicKey)
            contentType = SealedBox.contentType
        }
        let path = update ? "/api/v1/deployments/\(deployment.contractID)" : "/api/v1/deployments"
        let _: [String: JSONValue] = try await request(update ? "PUT" : "POST", path, body: body, contentType: contentType, twin: twin, identity: identity)
        if !chain.json { print("deployment \(deployment.contractID) version \(deployment.version) accepted by the node") }
        guard wait > 0 else { return }
        let started = Date()
        var last = ""
        while true {
            let current: Deployment = try await request("GET", "/api/v1/deployments/\(deployment.contractID)", twin: twin, identity: identity)
            let states = current.workloads.map { $0.result?.state ?? .initializing }
            let line = current.workloads.map { "\($0.name)=\($0.result?.state.rawValue ?? "init")" }.joined(separator: " ")
            if line != last, !chain.json {
                print(String(format: "  [%5.1fs] %@", Date().timeIntervalSince(started), line))
                last = line
            }
            if states.allSatisfy({ $0 == .ok || $0 == .paused }) {
                try chain.emit(current) { Self.describe(current) }
                return
            }
            if let failed = current.workloads.first(where: { $0.result?.state == .error }) {
                throw GridTwinFailure("workload \(failed.name) failed on the node: \(failed.result?.message ?? "")")
            }
            guard Date().timeIntervalSince(started) < Double(wait) else {
                throw GridTwinFailure("workloads not ready after \(wait) s: \(line); see `grid-twin deployment get \(deployment.contractID)`")
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    static func describe(_ d: Deployment) -> String {
        var lines = ["deployment \(d.contractID) version \(d.version) of twin \(d.twinID)"]
        for w in d.workloads {
            var line = "  \(w.name) (\(w.type)): \(w.result?.state.rawValue ?? "init")"
            if let message = w.result?.message, !message.isEmpty { line += " — \(message)" }
            if let data = w.result?.data { line += " \(data)" }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }
}
