// storage-bench: put and get throughput of the storage client across local shard servers, beside
// the throughput of each pipeline stage alone (zstd, XChaCha20-Poly1305, ISA-L) measured in the
// same run on the same data, so the ratio shows what the pipeline (I/O, RESP, servers, checksums,
// scheduling) costs on top of its slowest stage.
//
//   swift build -c release --product storage-bench && .build/release/storage-bench [--size-mib 1024]
//       [-k 4] [-m 2] [--block-mib 4] [--level 3] [--parallel 4] [--rounds 3] [--data mixed|text|random] [--dir /dev/shm]
//
// Stages run with the same number of blocks in flight as the pipeline. Each stage is reported in
// bytes of the file per second (its time over the whole file), and in bytes of its own input.
// Each round measures every stage and then put, get and a get with m nodes stopped, back to back
// (fresh servers each round); the table shows per-round figures and the medians, since other
// work on a shared machine moves single figures by 2x.
import CISAL
import CSodium
import CZstd
import Foundation
import GridTypes
import Logging
import ShardServer
import StorageClient

// MARK: - Arguments

struct Config: Sendable {
    var sizeMiB = 1024, k = 4, m = 2, blockMiB = 4, level: Int32 = 3, parallel = 4, rounds = 3, dataKind = "mixed"
    var trace = false
    /// tmpfs when there is one: the figures are the client's, not the VM disk's writeback.
    var baseDir = FileManager.default.isWritableFile(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
}

func parseArguments() -> Config {
    var c = Config()
    var args = CommandLine.arguments.dropFirst()
    while let flag = args.popFirst() {
        if flag == "--trace" { c.trace = true; continue }
        let value = args.popFirst() ?? ""
        switch flag {
        case "--size-mib": c.sizeMiB = Int(value) ?? c.sizeMiB
        case "-k": c.k = Int(value) ?? c.k
        case "-m": c.m = Int(value) ?? c.m
        case "--block-mib": c.blockMiB = Int(value) ?? c.blockMiB
        case "--level": c.level = Int32(value) ?? c.level
        case "--parallel": c.parallel = Int(value) ?? c.parallel
        case "--rounds": c.rounds = max(1, Int(value) ?? c.rounds)
        case "--data": c.dataKind = value
        case "--dir": c.baseDir = value
        default:
            FileHandle.standardError.write(Data("unknown option \(flag)\n".utf8))
            exit(2)
        }
    }
    return c
}

/// What the machine was doing during a phase: this process's CPU time (client, servers, stages:
/// all in this process), every process's (from /proc/stat), and the load average at its end.
struct Usage {
    var processCPU = 0.0, machineBusy = 0.0, machineTotal = 0.0

    static func sample() -> Usage {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let cpu = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        // First line of /proc/stat: user nice system idle iowait irq softirq steal (in ticks).
        let fields = ((try? String(contentsOfFile: "/proc/stat", encoding: .utf8)) ?? "").split(separator: "\n").first?
            .split(separator: " ").dropFirst().compactMap { Double($0) } ?? []
        let total = fields.prefix(8).reduce(0, +)
        let idle = fields.count > 4 ? fields[3] + fields[4] : total
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        return Usage(processCPU: cpu, machineBusy: (total - idle) / ticks, machineTotal: total / ticks)
    }

    static func - (a: Usage, b: Usage) -> Usage {
        Usage(processCPU: a.processCPU - b.processCPU, machineBusy: a.machineBusy - b.machineBusy, machineTotal: a.machineTotal - b.machineTotal)
    }

    static func loadAverage() -> String {
        ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "?").split(separator: " ").prefix(3).joined(separator: " ")
    }
}

/// A phase's wall time and what the machine did meanwhile.
struct Phase {
    var seconds = 0.0
    var usage = Usage()
    var load = ""

    /// "cpu 1.85 of 2 cores (others 0.10), load 2.1": cores this process kept busy, cores other
    /// processes took, one-minute load average at the end.
    func describe(cores: Int) -> String {
        let own = usage.processCPU / seconds
        let all = usage.machineBusy / max(1e-9, usage.machineTotal) * Double(cores)
        return String(format: "cpu %.2f of %d (others %.2f), load %@", own, cores, max(0, all - own), load)
    }
}

/// Times `body` and samples the machine around it; with `--trace`, prints CLOCK_MONOTONIC marks
/// (for `perf record -k CLOCK_MONOTONIC` and `perf report --time`).
func phase<T>(_ name: String, trace: Bool, _ body: () async throws -> T) async rethrows -> (T, Phase) {
    let before = Usage.sample()
    let start = now()
    if trace { print(String(format: "trace %@ start %.6f", name, start)) }
    let value = try await body()
    let end = now()
    if trace { print(String(format: "trace %@ end %.6f", name, end)) }
    return (value, Phase(seconds: end - start, usage: Usage.sample() - before, load: Usage.loadAverage()))
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Every block's bytes at each stage, kept for the next stage. Filled before timing (allocation
/// and page faults are not what a stage measures); each block is written by one worker only.
final class Blocks: @unchecked Sendable {
    var plain: [UnsafeMutableRawBufferPointer] = []
    /// Room for zstd's bound; `compressedLength` says how much holds the block's payload
    /// (the block itself when zstd does not shrink it, as the client stores it).
    var compressed: [UnsafeMutableRawBufferPointer] = []
    var compressedLength: [Int] = []
    /// Ciphertext and tag, zero-padded to k shards of equal length.
    var sealed: [UnsafeMutableRawBufferPointer] = []
    var sealedLength: [Int] = []
}

/// Reused per-worker state, as the client keeps it: zstd contexts (creating one per block would
/// be measured too) and scratch buffers of a block's size (a fresh one per block costs a page
/// fault and a kernel zero-fill per page, which the client does not pay either).
final class Reusables: @unchecked Sendable {
    private let lock = NSLock()
    private var c: [OpaquePointer] = [], d: [OpaquePointer] = []
    private var buffers: [UnsafeMutableRawBufferPointer] = []
    let bufferSize: Int
    init(bufferSize: Int) { self.bufferSize = bufferSize }
    func takeC() -> OpaquePointer? { lock.lock(); defer { lock.unlock() }; return c.popLast() ?? ZSTD_createCCtx() }
    func giveC(_ p: OpaquePointer?) { lock.lock(); if let p { c.append(p) }; lock.unlock() }
    func takeD() -> OpaquePointer? { lock.lock(); defer { lock.unlock() }; return d.popLast() ?? ZSTD_createDCtx() }
    func giveD(_ p: OpaquePointer?) { lock.lock(); if let p { d.append(p) }; lock.unlock() }
    func takeBuffer() -> UnsafeMutableRawBufferPointer {
        lock.lock(); defer { lock.unlock() }
        if let b = buffers.popLast() { return b }
        let b = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 64)
        b.initializeMemory(as: UInt8.self, repeating: 0)  // touched once, outside any timing that matters
        return b
    }
    func giveBuffer(_ b: UnsafeMutableRawBufferPointer) { lock.lock(); buffers.append(b); lock.unlock() }
}

func run(_ config: Config) async throws {
    let sizeMiB = config.sizeMiB, k = config.k, m = config.m, blockMiB = config.blockMiB, level = config.level
    let parallel = config.parallel, dataKind = config.dataKind, baseDir = config.baseDir
    let size = sizeMiB << 20
    let blockSize = blockMiB << 20
    let blocks = (size + blockSize - 1) / blockSize
    guard sodium_init() >= 0 else { fatalError("sodium_init failed") }

    // MARK: - Input

    /// Deterministic data: "text" compresses about 3:1, "random" not at all, "mixed" alternates 1 MiB of each.
    func makeChunk(_ index: Int, _ count: Int) -> [UInt8] {
        var state = UInt64(index) &* 0x9E37_79B9_7F4A_7C15 | 1
        func next() -> UInt64 { state = state &* 6364136223846793005 &+ 1442695040888963407; return state >> 11 }
        let text = dataKind == "text" || (dataKind == "mixed" && index % 2 == 0)
        var out = [UInt8]()
        out.reserveCapacity(count + 32)
        if text {
            let words = ["the", "node", "stores", "shards", "of", "twin", "files", "across", "farms", "and", "grid", "block", "capacity",
                         "contract", "zdb", "namespace", "parity", "checksum", "on", "a"]
            while out.count < count {
                let r = next()
                out += Array(words[Int(r % UInt64(words.count))].utf8)
                out.append(r % 7 == 0 ? 0x0A : 0x20)
                if r % 11 == 0 { out += Array(String(r % 100_000).utf8) }
            }
        } else {
            while out.count < count { withUnsafeBytes(of: next()) { out += $0 } }
        }
        return Array(out.prefix(count))
    }

    let dir = baseDir + "/storage-bench-\(getpid())"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let inputPath = dir + "/input.bin"
    _ = FileManager.default.createFile(atPath: inputPath, contents: nil)
    let input = try FileHandle(forWritingTo: URL(fileURLWithPath: inputPath))
    var chunkIndex = 0
    var written = 0
    while written < size {
        let chunk = makeChunk(chunkIndex, min(1 << 20, size - written))
        try input.write(contentsOf: Data(chunk))
        written += chunk.count
        chunkIndex += 1
    }
    try input.close()
    print("storage-bench: \(sizeMiB) MiB \(dataKind) data, k=\(k) m=\(m), \(blockMiB) MiB blocks, zstd level \(level), \(parallel) blocks in flight, "
          + "\(ProcessInfo.processInfo.activeProcessorCount) cores")

    // MARK: - Stages alone

    /// A stage's wall time over the whole file and the CPU time this process spent on it.
    struct Timing { var seconds = 0.0, cpu = 0.0 }

    /// Runs `body(block)` for every block with `parallel` blocks at a time.
    func timed(_ body: @escaping @Sendable (Int) -> Void) -> Timing {
        let before = Usage.sample()
        let start = now()
        let queue = OperationQueue()
        queue.maxConcurrentOperationCount = parallel
        for block in 0..<blocks { queue.addOperation { body(block) } }
        queue.waitUntilAllOperationsAreFinished()
        return Timing(seconds: now() - start, cpu: (Usage.sample() - before).processCPU)
    }

    let store = Blocks()
    let tag = Int(crypto_aead_xchacha20poly1305_ietf_ABYTES)
    do {
        let reader = try FileHandle(forReadingFrom: URL(fileURLWithPath: inputPath))
        for _ in 0..<blocks {
            let bytes = try reader.read(upToCount: blockSize) ?? Data()
            let plain = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, bytes.count), alignment: 64)
            bytes.withUnsafeBytes { plain.copyMemory(from: $0) }
            store.plain.append(UnsafeMutableRawBufferPointer(rebasing: plain[0..<bytes.count]))
            for target in [\Blocks.compressed, \Blocks.sealed] {
                let room = UnsafeMutableRawBufferPointer.allocate(byteCount: ZSTD_compressBound(blockSize) + tag + k + 64, alignment: 64)
                room.initializeMemory(as: UInt8.self, repeating: 0)
                store[keyPath: target].append(room)
            }
        }
        try reader.close()
        store.compressedLength = Array(repeating: 0, count: blocks)
        store.sealedLength = Array(repeating: 0, count: blocks)
    }
    let reusables = Reusables(bufferSize: ZSTD_compressBound(blockSize) + tag + 2 * (k + m) * (blockSize / k + 64))

    let fileKey = [UInt8](repeating: 7, count: 32)
    let nonce = [UInt8](repeating: 1, count: 24)
    let ad = [UInt8](repeating: 2, count: 57)  // the client's associated data is 57 bytes

    var generated = [UInt8](repeating: 0, count: (k + m) * k)
    gf_gen_cauchy1_matrix(&generated, Int32(k + m), Int32(k))
    let matrix = generated
    var generatedTables = [UInt8](repeating: 0, count: 32 * k * m)
    do {
        var parityRows = Array(matrix[(k * k)...])
        ec_init_tables(Int32(k), Int32(m), &parityRows, &generatedTables)
    }
    let encodeTables = generatedTables
    let lost = Array(0..<min(m, k))

    struct StageTimes {
        var zstd = Timing(), seal = Timing(), ec = Timing(), hash = Timing(), open = Timing(), unzstd = Timing(), ecDecode = Timing()
        var readInput = Timing(), writeOutput = Timing()
    }
    var compressedBytes = 0, shardBytes = 0
    @Sendable func shardLength(_ block: Int) -> Int { (store.sealedLength[block] + k - 1) / k }
    /// Each stage does what the client does to a block, with the same libraries and calls, reading
    /// the previous stage's output; outputs go to buffers allocated before timing.
    func measureStages() -> StageTimes {
        var t = StageTimes()
        t.zstd = timed { block in
            let source = store.plain[block], out = store.compressed[block]
            let context = reusables.takeC()
            let n = ZSTD_compressCCtx(context, out.baseAddress, out.count, source.baseAddress, source.count, level)
            reusables.giveC(context)
            // Incompressible blocks are stored as they are (the client copies them, too).
            if ZSTD_isError(n) != 0 || n >= source.count {
                if let base = source.baseAddress { out.baseAddress?.copyMemory(from: base, byteCount: source.count) }
                store.compressedLength[block] = -source.count
            } else {
                store.compressedLength[block] = n
            }
        }
        compressedBytes = store.compressedLength.reduce(0) { $0 + abs($1) }

        t.seal = timed { block in
            let source = store.compressed[block], out = store.sealed[block]
            let length = abs(store.compressedLength[block])
            var outLength: UInt64 = 0
            guard let target = out.baseAddress?.assumingMemoryBound(to: UInt8.self),
                  let input = source.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
            _ = crypto_aead_xchacha20poly1305_ietf_encrypt(target, &outLength, input, UInt64(length), ad, UInt64(ad.count), nil, nonce, fileKey)
            let s = (Int(outLength) + k - 1) / k
            UnsafeMutableRawBufferPointer(rebasing: out[Int(outLength)..<(s * k)]).initializeMemory(as: UInt8.self, repeating: 0)
            store.sealedLength[block] = Int(outLength)
        }
        shardBytes = (0..<blocks).reduce(0) { $0 + shardLength($1) * (k + m) }

        t.ec = timed { block in
            let s = shardLength(block)
            guard let data = store.sealed[block].baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
            let scratch = reusables.takeBuffer()
            guard let parity = scratch.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
            var sources: [UnsafeMutablePointer<UInt8>?] = (0..<k).map { data + $0 * s }
            var outputs: [UnsafeMutablePointer<UInt8>?] = (0..<m).map { parity + $0 * s }
            var tables = encodeTables
            ec_encode_data(Int32(s), Int32(k), Int32(m), &tables, &sources, &outputs)
            reusables.giveBuffer(scratch)
        }

        t.hash = timed { block in
            let s = shardLength(block)
            guard let data = store.sealed[block].baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
            var out = [UInt8](repeating: 0, count: 32)
            // k data shards, and m more of the same length standing in for the parity.
            for i in 0..<(k + m) { crypto_generichash(&out, 32, data + (i % k) * s, UInt64(s), nil, 0) }
        }

        // Decode direction, the inverse stages: open (decrypt + tag check), decompress, and ISA-L
        // rebuilding the m lost data shards (tables from the inverted matrix per block, as the client).
        t.open = timed { block in
            let scratch = reusables.takeBuffer()
            var outLength: UInt64 = 0
            guard let target = scratch.baseAddress?.assumingMemoryBound(to: UInt8.self),
                  let input = store.sealed[block].baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
            let rc = crypto_aead_xchacha20poly1305_ietf_decrypt(target, &outLength, nil, input, UInt64(store.sealedLength[block]),
                                                               ad, UInt64(ad.count), nonce, fileKey)
            precondition(rc == 0, "the bench's own block does not open")
            reusables.giveBuffer(scratch)
        }
        t.unzstd = timed { block in
            let length = store.compressedLength[block]
            guard length > 0 else { return }  // stored as it was: nothing to decompress
            let scratch = reusables.takeBuffer()
            let context = reusables.takeD()
            let n = ZSTD_decompressDCtx(context, scratch.baseAddress, store.plain[block].count, store.compressed[block].baseAddress, length)
            precondition(n == store.plain[block].count, "the bench's own block does not decompress")
            reusables.giveD(context)
            reusables.giveBuffer(scratch)
        }
        t.ecDecode = timed { block in
            let s = shardLength(block)
            guard let data = store.sealed[block].baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
            let scratch = reusables.takeBuffer()
            guard let targets = scratch.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
            let sources = Array((0..<(k + m)).filter { !lost.contains($0) }.prefix(k))
            var b = [UInt8](repeating: 0, count: k * k), inverse = [UInt8](repeating: 0, count: k * k)
            for (r, index) in sources.enumerated() { for c in 0..<k { b[r * k + c] = matrix[index * k + c] } }
            _ = gf_invert_matrix(&b, &inverse, Int32(k))
            var coefficients = [UInt8](repeating: 0, count: lost.count * k)
            for (t, index) in lost.enumerated() { for c in 0..<k { coefficients[t * k + c] = inverse[index * k + c] } }
            var decodeTables = [UInt8](repeating: 0, count: 32 * k * max(1, lost.count))
            ec_init_tables(Int32(k), Int32(lost.count), &coefficients, &decodeTables)
            // Sources: the surviving data shards and, standing in for parity, others of the same
            // length (the contents do not change the cost).
            var src: [UnsafeMutablePointer<UInt8>?] = (0..<k).map { data + ($0 % k) * s }
            var dst: [UnsafeMutablePointer<UInt8>?] = (0..<lost.count).map { targets + $0 * s }
            ec_encode_data(Int32(s), Int32(k), Int32(lost.count), &decodeTables, &src, &dst)
            reusables.giveBuffer(scratch)
        }
        // The file I/O put and get do besides the stages: pread of the input, and pwrite of a
        // new file in the same directory (as get's temporary file; then fsync, like get).
        let inputFD = open(inputPath, O_RDONLY | O_CLOEXEC)
        t.readInput = timed { block in
            let scratch = reusables.takeBuffer()
            let n = pread(inputFD, scratch.baseAddress, store.plain[block].count, off_t(block) * off_t(blockSize))
            precondition(n == store.plain[block].count, "short read of the bench's input")
            reusables.giveBuffer(scratch)
        }
        close(inputFD)
        let outputPath = dir + "/stage-output.bin"
        let outputFD = open(outputPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        t.writeOutput = timed { block in
            let plain = store.plain[block]
            let n = pwrite(outputFD, plain.baseAddress, plain.count, off_t(block) * off_t(blockSize))
            precondition(n == plain.count, "short write of the bench's output")
            if block == blocks - 1 { fsync(outputFD) }
        }
        close(outputFD)
        unlink(outputPath)
        return t
    }

    // MARK: - Servers and the client

    struct PipelineTimes {
        var put = 0.0, get = 0.0, degraded = 0.0
        var same = false
        var phases: [(String, Phase)] = []
        var decodedBlocks = 0, degradedDecodedBlocks = 0
    }
    var logger = Logger(label: "bench")
    logger.logLevel = .error
    let settleSeconds = Double(ProcessInfo.processInfo.environment["BENCH_SETTLE_SECONDS"] ?? "") ?? 3
    func measurePipeline(round: Int) async throws -> PipelineTimes {
        var servers: [ShardServer] = []
        var endpoints: [ShardEndpoint] = []
        try FileManager.default.createDirectory(atPath: dir + "/round-\(round)", withIntermediateDirectories: true)
        for i in 0..<(k + m) {
            var config = ShardServerConfig(host: "127.0.0.1", port: 0, dataDirectory: dir + "/round-\(round)/node-\(i)", fsync: .never, threads: 1)
            config.scrubBytesPerSecond = 0
            config.compactionDeadRatio = 0
            let server = ShardServer(logger: logger)
            let port = try await server.start(config)
            let password = "bench-\(i)"
            try server.createNamespace("bench", settings: NamespaceSettings(password: password, isPublic: false))
            servers.append(server)
            endpoints.append(ShardEndpoint(node: "node-\(i)", address: "127.0.0.1:\(port)", namespace: "bench", password: password))
        }
        let client = StorageClient(key: TwinStorageKey(keyPair: try Ed25519KeyPair.generate()),
                                   localStore: LocalFileStore(directory: dir + "/files"), parallelBlocks: parallel)
        let options = StorageOptions(k: k, m: m, blockSize: blockSize, zstdLevel: Int(level), parallelBlocks: parallel)
        let trace = config.trace
        let (put, putPhase) = try await phase("put", trace: trace) { try await client.put(path: inputPath, placement: endpoints, options: options) }
        let output = dir + "/output.bin"
        // Let the servers finish what a burst of writes leaves them (index snapshots, page cache
        // work) first: a get usually comes long after the put.
        try await Task.sleep(for: .seconds(settleSeconds))
        let (get, getPhase) = try await phase("get", trace: trace) { try await client.get(fileID: put.fileID, to: output) }
        let same = FileManager.default.contentsEqual(atPath: inputPath, andPath: output)
        try? FileManager.default.removeItem(atPath: output)
        for i in lost { try await servers[i].stop() }
        let (degraded, degradedPhase) = try await phase("degraded", trace: trace) { try await client.get(fileID: put.fileID, to: output) }
        try? FileManager.default.removeItem(atPath: output)
        for (i, server) in servers.enumerated() where !lost.contains(i) { try await server.stop() }
        try? FileManager.default.removeItem(atPath: dir + "/round-\(round)")
        return PipelineTimes(put: put.seconds, get: get.seconds, degraded: degraded.seconds, same: same,
                             phases: [("put", putPhase), ("get", getPhase), ("get, \(lost.count) down", degradedPhase)],
                             decodedBlocks: get.decodedBlocks, degradedDecodedBlocks: degraded.decodedBlocks)
    }

    var stageRounds: [StageTimes] = []
    var pipelineRounds: [PipelineTimes] = []
    var stagePhases: [Phase] = []
    let cores = ProcessInfo.processInfo.activeProcessorCount
    for round in 0..<config.rounds {
        let (stages, stagePhase) = await phase("stages", trace: config.trace) { measureStages() }
        stageRounds.append(stages)
        stagePhases.append(stagePhase)
        let pipeline = try await measurePipeline(round: round)
        pipelineRounds.append(pipeline)
        print("round \(round + 1): stages \(stagePhase.describe(cores: cores)); "
              + pipeline.phases.map { "\($0.0) \($0.1.describe(cores: cores))" }.joined(separator: "; ")
              + "; blocks decoded: get \(pipeline.decodedBlocks), degraded \(pipeline.degradedDecodedBlocks)")
    }

    // MARK: - Report

    func rate(_ bytes: Int, _ seconds: Double) -> Double { Double(bytes) / seconds / 1e6 }
    func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }
    let file = size
    print(String(format: "input compressed to %.1f%% by zstd, %.0f MB of shards", Double(compressedBytes) * 100 / Double(size), Double(shardBytes) / 1e6))
    print("")
    print("stage (alone, same data, \(parallel) in flight)      file MB/s per round      median   CPU s/GiB   own-input MB/s")
    func stage(_ name: String, _ timing: (StageTimes) -> Timing, own: Int) {
        let rates = stageRounds.map { rate(file, timing($0).seconds) }
        let cpu = median(stageRounds.map { timing($0).cpu }) * Double(1 << 30) / Double(file)
        print(name.padding(toLength: 46, withPad: " ", startingAt: 0)
              + rates.map { String(format: "%6.0f", $0) }.joined().padding(toLength: max(22, 6 * config.rounds + 2), withPad: " ", startingAt: 0)
              + String(format: "%8.0f   %9.2f   %14.0f", median(rates), cpu, rate(own, median(stageRounds.map { timing($0).seconds }))))
    }
    stage("zstd compress (level \(level))", \.zstd, own: size)
    stage("XChaCha20-Poly1305 seal", \.seal, own: compressedBytes)
    stage("ISA-L encode (\(k)+\(m))", \.ec, own: compressedBytes)
    stage("BLAKE2b shard checksums", \.hash, own: shardBytes)
    stage("XChaCha20-Poly1305 open (decrypt + tag)", \.open, own: compressedBytes)
    stage("zstd decompress", \.unzstd, own: compressedBytes)
    stage("ISA-L decode (\(lost.count) data shards lost)", \.ecDecode, own: compressedBytes)
    stage("read the input file (pread)", \.readInput, own: size)
    stage("write a new file (pwrite, as get's output)", \.writeOutput, own: size)

    /// A pipeline against the stages of the same round: `anchor` are the stages the issue names
    /// for it (the target is against the slowest), `runs` those it actually runs on every block.
    struct Comparison {
        var rates: [Double] = [], slowest: [Double] = [], ratios: [Double] = []
        var backToBack: [Double] = [], cpuRatios: [Double] = [], slowestCPURatios: [Double] = []
    }
    func compare(_ seconds: (PipelineTimes) -> Double, _ phase: Int, anchor: [(StageTimes) -> Timing],
                 runs: [(StageTimes) -> Timing]) -> Comparison {
        var c = Comparison()
        for (stages, pipeline) in zip(stageRounds, pipelineRounds) {
            let r = rate(file, seconds(pipeline))
            let slow = anchor.map { rate(file, $0(stages).seconds) }.min() ?? 0
            let slowCPU = anchor.map { $0(stages).cpu }.max() ?? 0
            c.slowestCPURatios.append(slowCPU / pipeline.phases[phase].1.usage.processCPU)
            c.rates.append(r)
            c.slowest.append(slow)
            c.ratios.append(r / slow)
            // The stages one after another on the same cores: what a pipeline doing nothing else
            // could reach here, when the stages cannot run on cores of their own.
            c.backToBack.append(rate(file, runs.reduce(0) { $0 + $1(stages).seconds }))
            c.cpuRatios.append(runs.reduce(0) { $0 + $1(stages).cpu } / pipeline.phases[phase].1.usage.processCPU)
        }
        return c
    }
    let put = compare(\.put, 0, anchor: [\.zstd, \.seal, \.ec], runs: [\.readInput, \.zstd, \.seal, \.ec, \.hash])
    let get = compare(\.get, 1, anchor: [\.unzstd, \.open, \.ecDecode], runs: [\.open, \.unzstd, \.writeOutput])
    let degraded = compare(\.degraded, 2, anchor: [\.unzstd, \.open, \.ecDecode], runs: [\.open, \.unzstd, \.ecDecode, \.writeOutput])
    print("")
    print("pipeline (\(k + m) local shard servers)   MB/s per round       median   slowest stage   ratio per round     median   target")
    func line(_ name: String, _ c: Comparison, target: Double?) {
        let verdict = target.map { median(c.ratios) >= $0 ? String(format: ">= %.2f met", $0) : String(format: ">= %.2f NOT met", $0) } ?? ""
        print(name.padding(toLength: 38, withPad: " ", startingAt: 0)
              + c.rates.map { String(format: "%6.0f", $0) }.joined().padding(toLength: max(22, 6 * config.rounds + 2), withPad: " ", startingAt: 0)
              + String(format: "%6.0f   %13.0f   ", median(c.rates), median(c.slowest))
              + c.ratios.map { String(format: "%5.2f", $0) }.joined(separator: " ").padding(toLength: max(20, 6 * config.rounds + 2), withPad: " ", startingAt: 0)
              + String(format: "%6.2f   ", median(c.ratios)) + verdict)
    }
    line("put", put, target: 0.7)
    line("get (all nodes up)", get, target: 0.8)
    line("get (\(lost.count) nodes down, decoding)", degraded, target: nil)
    print("")
    print("the same runs against the stages each one runs, back to back (medians)")
    print("pipeline                              stages                       back to back MB/s   ratio   CPU: stages / pipeline   slowest / pipeline")
    func bound(_ name: String, _ stages: String, _ c: Comparison) {
        print(name.padding(toLength: 38, withPad: " ", startingAt: 0) + stages.padding(toLength: 29, withPad: " ", startingAt: 0)
              + String(format: "%17.0f   %5.2f   %22.2f   %18.2f", median(c.backToBack), median(zip(c.rates, c.backToBack).map { $0 / $1 }),
                       median(c.cpuRatios), median(c.slowestCPURatios)))
    }
    bound("put", "read+zstd+seal+encode+BLAKE2b", put)
    bound("get (all nodes up)", "open+decompress+write", get)
    bound("get (\(lost.count) nodes down, decoding)", "open+decompress+decode+write", degraded)
    print("(back to back: the stages one after another with the same blocks in flight, all that a pipeline must compute")
    print(" besides the network and the shard servers. On \(cores) shared cores the stages cannot each have cores of their own,")
    print(" so this, not the slowest stage, is the ceiling here. CPU: the stages' CPU time over the pipeline's (client and")
    print(" the \(k + m) servers, all in this process), and the slowest stage's over the pipeline's: the wall ratios as they")
    print(" would be if both had the cores to themselves, much less moved by what other processes take.)")
    let same = pipelineRounds.allSatisfy(\.same)
    print("round trip identical: \(same ? "yes" : "NO")")
    if !same { exit(1) }
}

try await run(parseArguments())
