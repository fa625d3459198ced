import GridTypes
import Logging

/// The TFChain backend of `GridChain`: storage and events read through the runtime metadata's
/// type registry, calls signed with the node's ed25519 key, all over `JSONRPCClient`.
/// Metadata is loaded on first use and loaded again whenever a block's runtime spec_version differs.
public actor TFChainClient: GridChain {
    struct Runtime: Sendable {
        var metadata: RuntimeMetadata
        var builder: ExtrinsicBuilder
        var specVersion: UInt32
        var transactionVersion: UInt32
    }

    public let rpc: JSONRPCClient
    private let logger: Logger
    /// How long a submitted extrinsic may take to be included.
    let inclusionTimeout: Duration
    private var runtime: Runtime?
    private var genesisHash: [UInt8]?
    /// The newest finalized block seen; storage is read there so reads agree with the events.
    private var finalizedHash: String?
    /// Next nonce per account as this client has used them: the node's system_accountNextIndex
    /// lags while our previous extrinsic is still in the pool.
    private var nextNonce: [[UInt8]: UInt64] = [:]
    /// Times metadata was (re)loaded, for tests and logs.
    public private(set) var metadataLoads = 0

    public init(configuration: RPCConfiguration, inclusionTimeout: Duration = .seconds(120),
                logger: Logger = Logger(label: "chain.tfchain")) {
        self.rpc = JSONRPCClient(configuration: configuration, logger: logger)
        self.inclusionTimeout = inclusionTimeout
        self.logger = logger
    }

    /// Connects (in the background) and loads the runtime metadata and genesis hash.
    public func start() async throws(ChainError) {
        try await rpc.start()
        _ = try await currentRuntime()
        _ = try await genesis()
    }

    public func stop() async { await rpc.stop() }

    // MARK: runtime and metadata

    public func metadata() async throws(ChainError) -> RuntimeMetadata { try await currentRuntime().metadata }

    public var specVersion: UInt32? { runtime?.specVersion }

    func currentRuntime() async throws(ChainError) -> Runtime {
        if let runtime { return runtime }
        return try await loadRuntime(at: nil)
    }

    /// The runtime in force at `blockHash`; reloads the metadata when its spec_version changed.
    func runtime(at blockHash: String) async throws(ChainError) -> Runtime {
        let version = try await rpc.request("state_getRuntimeVersion", [.string(blockHash)])
        guard let spec = version["specVersion"]?.uint64 else {
            throw .decode(type: "RuntimeVersion", position: 0, detail: "no specVersion in \(version.description.prefix(200))")
        }
        if let runtime, UInt64(runtime.specVersion) == spec { return runtime }
        return try await loadRuntime(at: blockHash)
    }

    private func loadRuntime(at blockHash: String?) async throws(ChainError) -> Runtime {
        let at: [JSONValue] = blockHash.map { [.string($0)] } ?? []
        let version = try await rpc.request("state_getRuntimeVersion", at)
        guard let spec = version["specVersion"]?.uint64, let tx = version["transactionVersion"]?.uint64,
              let spec32 = UInt32(exactly: spec), let tx32 = UInt32(exactly: tx) else {
            throw .decode(type: "RuntimeVersion", position: 0, detail: "specVersion/transactionVersion missing in \(version.description.prefix(200))")
        }
        guard let hex = try await rpc.request("state_getMetadata", at).string else {
            throw .decode(type: "RuntimeMetadata", position: 0, detail: "state_getMetadata returned no hex string")
        }
        let metadata = try RuntimeMetadata(hex: hex)
        if let old = runtime, old.specVersion != spec32 {
            logger.notice("runtime upgraded; metadata reloaded", metadata: ["from": "\(old.specVersion)", "to": "\(spec32)"])
        }
        let loaded = Runtime(metadata: metadata, builder: ExtrinsicBuilder(metadata: metadata), specVersion: spec32, transactionVersion: tx32)
        runtime = loaded
        metadataLoads += 1
        return loaded
    }

    /// The chain's block 0 hash: what a node id registered on this chain is tied to.
    public func genesisHash() async throws(ChainError) -> [UInt8] { try await genesis() }

    func genesis() async throws(ChainError) -> [UInt8] {
        if let genesisHash { return genesisHash }
        let hash = try Self.bytes(try await rpc.request("chain_getBlockHash", [.number(0)]), "genesis hash")
        genesisHash = hash
        return hash
    }

    static func bytes(_ value: JSONValue, _ what: String) throws(ChainError) -> [UInt8] {
        guard let text = value.string else { throw .decode(type: what, position: 0, detail: "expected a hex string, got \(value.description.prefix(100))") }
        do { return try Hex.decode(text.hasPrefix("0x") ? String(text.dropFirst(2)) : text, context: what) } catch {
            throw .decode(type: what, position: 0, detail: "\(error)")
        }
    }

    static func hex(_ bytes: [UInt8]) -> String { "0x" + Hex.encode(bytes) }

    // MARK: storage

    /// A storage value decoded with its registry type; nil when absent from an Optional item.
    func storage(_ pallet: String, _ item: String, keys: [[UInt8]] = [], at blockHash: String? = nil) async throws(ChainError) -> SCALEValue? {
        let runtime = try await currentRuntime()
        let (_, entry) = try runtime.metadata.storageEntry(pallet, item)
        let key = try runtime.metadata.storageKey(pallet, item, keys: keys)
        var params: [JSONValue] = [.string(Self.hex(key))]
        if let at = blockHash ?? finalizedHash { params.append(.string(at)) }
        let reply = try await rpc.request("state_getStorage", params)
        return try decodeStorage(reply, entry: entry, metadata: runtime.metadata, what: "\(pallet).\(item)")
    }

    private func decodeStorage(_ reply: JSONValue, entry: RuntimeMetadata.StorageEntry, metadata: RuntimeMetadata,
                               what: String) throws(ChainError) -> SCALEValue? {
        let raw: [UInt8]
        if reply.isNull {
            if entry.isOptional { return nil }
            raw = entry.defaultValue
        } else {
            raw = try Self.bytes(reply, what)
        }
        do { return try metadata.registry.decode(entry.valueType, from: raw) } catch {
            throw .decode(type: what, position: Self.position(error), detail: "\(error)")
        }
    }

    static func position(_ error: ChainError) -> Int {
        if case .decode(_, let position, _) = error { return position }
        return 0
    }

    static func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func u64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

    // MARK: GridChain reads

    public func activeContracts(node: UInt32) async throws(ChainError) -> [UInt64] {
        guard let value = try await storage("SmartContractModule", "ActiveNodeContracts", keys: [Self.u32(node)]) else { return [] }
        guard let items = value.items else { throw .decode(type: "ActiveNodeContracts", position: 0, detail: "not a list: \(value.description.prefix(100))") }
        var ids = [UInt64]()
        for item in items {
            guard let id = item.uint else { throw .decode(type: "ActiveNodeContracts", position: 0, detail: "contract id \(item) is not an integer") }
            ids.append(id)
        }
        return ids
    }

    public func contract(id: UInt64) async throws(ChainError) -> Contract? {
        guard let value = try await storage("SmartContractModule", "Contracts", keys: [Self.u64(id)]) else { return nil }
        return try TFChainMapping.contract(value)
    }

    /// All at once with state_queryStorageAt: one round trip per watcher pass, not one per contract.
    public func contracts(ids: [UInt64]) async throws(ChainError) -> [Contract] {
        guard !ids.isEmpty else { return [] }
        let runtime = try await currentRuntime()
        let (_, entry) = try runtime.metadata.storageEntry("SmartContractModule", "Contracts")
        var keyToID = [String: UInt64]()
        var keys = [JSONValue]()
        for id in ids {
            let key = Self.hex(try runtime.metadata.storageKey("SmartContractModule", "Contracts", keys: [Self.u64(id)]))
            keyToID[key] = id
            keys.append(.string(key))
        }
        var params: [JSONValue] = [.array(keys)]
        if let finalizedHash { params.append(.string(finalizedHash)) }
        let reply = try await rpc.request("state_queryStorageAt", params)
        var found = [UInt64: Contract]()
        for changeSet in reply.array ?? [] {
            for change in changeSet["changes"]?.array ?? [] {
                guard let pair = change.array, pair.count == 2, let key = pair[0].string?.lowercased(), let id = keyToID[key] else { continue }
                if let value = try decodeStorage(pair[1], entry: entry, metadata: runtime.metadata, what: "SmartContractModule.Contracts"),
                   let contract = try TFChainMapping.contract(value) {
                    found[id] = contract
                }
            }
        }
        return ids.compactMap { found[$0] }
    }

    public func twin(id: UInt32) async throws(ChainError) -> Twin? {
        guard let value = try await storage("TfgridModule", "Twins", keys: [Self.u32(id)]) else { return nil }
        return try TFChainMapping.twin(value)
    }

    public func twinID(account: Ed25519PublicKey) async throws(ChainError) -> UInt32? {
        guard let value = try await storage("TfgridModule", "TwinIdByAccountID", keys: [account.bytes]) else { return nil }
        return value.uint.flatMap { UInt32(exactly: $0) }
    }

    public func node(id: UInt32) async throws(ChainError) -> Node? {
        guard let value = try await storage("TfgridModule", "Nodes", keys: [Self.u32(id)]) else { return nil }
        return try TFChainMapping.node(value)
    }

    public func nodeID(twin: UInt32) async throws(ChainError) -> UInt32? {
        guard let value = try await storage("TfgridModule", "NodeIdByTwinID", keys: [Self.u32(twin)]) else { return nil }
        // A ValueQuery map answers 0 for "no node".
        guard let id = value.uint, id != 0 else { return nil }
        return UInt32(exactly: id)
    }

    public func farmExists(id: UInt32) async throws(ChainError) -> Bool {
        try await storage("TfgridModule", "Farms", keys: [Self.u32(id)]) != nil
    }

    // MARK: blocks

    public func finalizedHead() async throws(ChainError) -> BlockHeader {
        guard let hash = try await rpc.request("chain_getFinalizedHead").string else {
            throw .decode(type: "chain_getFinalizedHead", position: 0, detail: "no block hash")
        }
        let header = try await rpc.request("chain_getHeader", [.string(hash)])
        guard let number = header["number"]?.uint64 else {
            throw .decode(type: "Header", position: 0, detail: "no number in \(header.description.prefix(200))")
        }
        finalizedHash = hash
        return BlockHeader(number: number, hash: try Self.bytes(.string(hash), "block hash"),
                           timestampMilliseconds: try await timestamp(at: hash))
    }

    func timestamp(at hash: String) async throws(ChainError) -> UInt64 {
        try await storage("Timestamp", "Now", at: hash)?.uint ?? 0
    }

    /// Whether a node's error means "that state is gone" (pruned), not "I am broken".
    static func isPruned(_ error: ChainError) -> Bool {
        guard case .rpc(_, _, let message) = error else { return false }
        let lower = message.lowercased()
        return lower.contains("discarded") || lower.contains("pruned") || lower.contains("unknown block") || lower.contains("not found")
    }

    public func block(number: UInt64) async throws(ChainError) -> FinalizedBlock? {
        let hashValue = try await rpc.request("chain_getBlockHash", [.number(Double(number))])
        guard let hash = hashValue.string else { return nil }
        do {
            let events = try await events(at: hash)
            let header = BlockHeader(number: number, hash: try Self.bytes(.string(hash), "block hash"),
                                     timestampMilliseconds: try await timestamp(at: hash))
            if finalizedHash == nil || number >= finalizedNumber {
                finalizedHash = hash
                finalizedNumber = number
            }
            return FinalizedBlock(header: header, events: events.map(TFChainMapping.chainEvent))
        } catch let error where Self.isPruned(error) {
            return nil
        }
    }

    private var finalizedNumber: UInt64 = 0

    /// Every event of a block, decoded through the registry of the runtime in force at that block.
    public func events(at hash: String) async throws(ChainError) -> [DecodedEvent] {
        let runtime = try await runtime(at: hash)
        let key = try runtime.metadata.storageKey("System", "Events")
        let reply = try await rpc.request("state_getStorage", [.string(Self.hex(key)), .string(hash)])
        if reply.isNull { return [] }
        return try runtime.metadata.decodeEvents(try Self.bytes(reply, "System.Events"))
    }

    public nonisolated func finalizedBlocks(after: UInt64) -> AsyncThrowingStream<FinalizedBlock, any Error> {
        let (stream, continuation) = AsyncThrowingStream<FinalizedBlock, any Error>.makeStream(bufferingPolicy: .bufferingOldest(256))
        let task = Task {
            do {
                try await self.follow(after: after, into: continuation)
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    private func follow(after: UInt64, into continuation: AsyncThrowingStream<FinalizedBlock, any Error>.Continuation) async throws {
        var next = after + 1
        let heads = await rpc.subscribe("chain_subscribeFinalizedHeads", unsubscribe: "chain_unsubscribeFinalizedHeads")
        for try await head in heads {
            guard let number = head["number"]?.uint64 else { continue }
            // Finalization can jump several blocks at once: deliver each one, in order.
            while next <= number {
                try Task.checkCancellation()
                if let block = try await blockRetrying(number: next) {
                    if case .terminated = continuation.yield(block) { return }
                }
                next += 1
            }
        }
    }

    /// A reconnect in the middle of catching up fails the request in flight; the subscription
    /// itself survives, so retry a few times before giving the error to the watcher.
    private func blockRetrying(number: UInt64) async throws -> FinalizedBlock? {
        var delay = Duration.milliseconds(100)
        for attempt in 0..<8 {
            do { return try await block(number: number) } catch {
                switch error {
                case .unavailable, .timeout:
                    if attempt == 7 { throw error }
                    try await Task.sleep(for: delay)
                    delay = min(delay * 2, .seconds(5))
                default: throw error
                }
            }
        }
        return nil
    }

    // MARK: submitting

    public func submit(_ call: ChainCall, signer: Ed25519KeyPair) async throws(ChainError) -> Inclusion {
        let (pallet, name, arguments) = try TFChainMapping.call(call)
        let runtime = try await currentRuntime()
        let callBytes = try runtime.builder.call(pallet, name, arguments)
        let context = SigningContext(specVersion: runtime.specVersion, transactionVersion: runtime.transactionVersion,
                                     genesisHash: try await genesis())
        let account = signer.publicKey.bytes
        let chainNonce = try await rpc.request("system_accountNextIndex", [.string(SS58.encode(publicKey: account))])
        guard let fromChain = chainNonce.uint64 else {
            throw .decode(type: "system_accountNextIndex", position: 0, detail: "not a number: \(chainNonce)")
        }
        // No suspension between reading and bumping the local nonce: concurrent submissions
        // from this actor get consecutive nonces.
        let nonce = max(fromChain, nextNonce[account] ?? 0)
        nextNonce[account] = nonce + 1
        let extrinsic = try runtime.builder.signed(call: callBytes, signer: signer, nonce: nonce, context: context)
        let extrinsicHex = Self.hex(extrinsic)
        do {
            let blockHash = try await watchInclusion(extrinsicHex, call: call.name)
            return try await inclusion(of: extrinsicHex, in: blockHash, call: call.name)
        } catch {
            if case .rejected(_, let module, _, _) = error, module != "TransactionPool" {
                // Included but failed: the nonce was used.
            } else {
                nextNonce[account] = nil   // ask the node again next time
            }
            throw error
        }
    }

    private func watchInclusion(_ extrinsicHex: String, call: String) async throws(ChainError) -> String {
        let updates = await rpc.subscribe("author_submitAndWatchExtrinsic", [.string(extrinsicHex)],
                                          unsubscribe: "author_unwatchExtrinsic", resubscribe: false)
        let timeout = inclusionTimeout
        do {
            return try await withThrowingTaskGroup(of: String.self) { group in
                group.addTask {
                    for try await status in updates {
                        if let hash = status["inBlock"]?.string ?? status["finalized"]?.string { return hash }
                        let word = status.string ?? status.description
                        for failure in ["dropped", "invalid", "usurped", "finalityTimeout"] where word.contains(failure) {
                            throw ChainError.rejected(call: call, module: "TransactionPool", error: failure, detail: "the node reported \(word)")
                        }
                    }
                    throw ChainError.unavailable("the node ended the watch of \(call) before inclusion")
                }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    throw ChainError.timeout(operation: "inclusion of \(call)", seconds: JSONRPCClient.seconds(timeout))
                }
                defer { group.cancelAll() }
                guard let hash = try await group.next() else { throw ChainError.unavailable("no inclusion result") }
                return hash
            }
        } catch let error as ChainError {
            if case .rpc(_, let code, let message) = error {
                throw .rejected(call: call, module: "TransactionPool", error: "invalid transaction (\(code))", detail: message)
            }
            throw error
        } catch {
            throw .unavailable("\(call): \(error)")
        }
    }

    /// Finds the extrinsic in its block and reads its events; System.ExtrinsicFailed becomes
    /// `.rejected` with the pallet and error names from the metadata.
    private func inclusion(of extrinsicHex: String, in blockHash: String, call: String) async throws(ChainError) -> Inclusion {
        let block = try await rpc.request("chain_getBlock", [.string(blockHash)])
        guard let number = block["block"]?["header"]?["number"]?.uint64, let extrinsics = block["block"]?["extrinsics"]?.array else {
            throw .decode(type: "SignedBlock", position: 0, detail: "no header number or extrinsics in block \(blockHash)")
        }
        let wanted = extrinsicHex.lowercased()
        guard let index = extrinsics.firstIndex(where: { $0.string?.lowercased() == wanted }) else {
            throw .unavailable("the node reported \(call) in block \(blockHash) but the block does not contain it")
        }
        let runtime = try await runtime(at: blockHash)
        let mine = try await events(at: blockHash).filter { $0.extrinsicIndex == UInt32(index) }
        if let failed = mine.first(where: { $0.pallet == "System" && $0.name == "ExtrinsicFailed" }) {
            let (module, error) = Self.dispatchError(failed.fields, metadata: runtime.metadata)
            throw .rejected(call: call, module: module, error: error, detail: "in block \(number)")
        }
        return Inclusion(blockNumber: number, events: mine.map(TFChainMapping.chainEvent))
    }

    /// DispatchError::Module { index, error } names the pallet and error; other variants
    /// (BadOrigin, Token(..), ...) are reported by their own name.
    static func dispatchError(_ fields: SCALEValue, metadata: RuntimeMetadata) -> (module: String, error: String) {
        let dispatch = fields[field: "dispatch_error"] ?? fields[position: 0] ?? fields
        guard dispatch.variantName == "Module", let moduleError = dispatch[position: 0] else {
            return ("DispatchError", dispatch.variantName ?? dispatch.description)
        }
        let index = moduleError[field: "index"]?.uint ?? 255
        let errorField = moduleError[field: "error"]
        let errorIndex = errorField?.bytes?.first.map(UInt64.init) ?? errorField?.uint ?? 255
        let names = metadata.moduleError(palletIndex: UInt8(truncatingIfNeeded: index), errorIndex: UInt8(truncatingIfNeeded: errorIndex))
        return (names.pallet, names.error)
    }
}
