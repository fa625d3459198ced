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

final class Blocks: @unchecked Sendable {
    var plain: [[UInt8]] = []
    var compressed: [[UInt8]] = []
    var sealed: [[UInt8]] = []
    let lock = NSLock()
}

/// Reused zstd contexts, as the client keeps them (creating one per block would be measured too).
final class Contexts: @unchecked Sendable {
    private let lock = NSLock()
    private var c: [OpaquePointer] = [], d: [OpaquePointer] = []
    func takeC() -> OpaquePointer? { lock.lock(); defer { lock.unlock() }; return c.popLast() ?? ZSTD_createCCtx() }
    func giveC(_ p: OpaquePointer?) { lock.lock(); if let p { c.append(p) }; lock.unlock() }
    func takeD() -> OpaquePointer? { lock.lock(); defer { lock.unlock() }; return d.popLast() ?? ZSTD_createDCtx() }
    func giveD(_ p: OpaquePointer?) { lock.lock(); if let p { d.append(p) }; lock.unlock() }
}
let contexts = Contexts()

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

    /// Runs `body(block)` for every block with `parallel` blocks at a time; returns seconds.
    func timed(_ body: @escaping @Sendable (Int) -> Void) -> Double {
        let start = now()
        let queue = OperationQueue()
        queue.maxConcurrentOperationCount = parallel
        for block in 0..<blocks { queue.addOperation { body(block) } }
        queue.waitUntilAllOperationsAreFinished()
        return now() - start
    }

    let store = Blocks()
    let reader = try FileHandle(forReadingFrom: URL(fileURLWithPath: inputPath))
    for _ in 0..<blocks { store.plain.append(Array(try reader.read(upToCount: blockSize) ?? Data())) }
    try reader.close()
    store.compressed = Array(repeating: [], count: blocks)
    store.sealed = Array(repeating: [], count: blocks)

    let fileKey = [UInt8](repeating: 7, count: 32)
    let nonce = [UInt8](repeating: 1, count: 24)
    let ad = [UInt8](repeating: 2, count: 48)

    struct StageTimes {
        var zstd = 0.0, seal = 0.0, ec = 0.0, hash = 0.0, open = 0.0, unzstd = 0.0, ecDecode = 0.0
    }
    var compressedBytes = 0, shardBytes = 0
    func measureStages() -> StageTimes {
        let zstdSeconds = timed { block in
            let source = store.plain[block]
            var out = [UInt8](repeating: 0, count: ZSTD_compressBound(source.count))
            let context = contexts.takeC()
            let n = ZSTD_compressCCtx(context, &out, out.count, source, source.count, level)
            contexts.giveC(context)
            let result = n < source.count ? Array(out[0..<n]) : source
            store.lock.lock(); store.compressed[block] = result; store.lock.unlock()
        }
        compressedBytes = store.compressed.reduce(0) { $0 + $1.count }

        let sealSeconds = timed { block in
            var buffer = store.compressed[block] + [UInt8](repeating: 0, count: 16)
            var outLength: UInt64 = 0
            let count = buffer.count - 16
            buffer.withUnsafeMutableBufferPointer { p in
                guard let base = p.baseAddress else { return }
                _ = crypto_aead_xchacha20poly1305_ietf_encrypt(base, &outLength, base, UInt64(count), ad, UInt64(ad.count), nil, nonce, fileKey)
            }
            store.lock.lock(); store.sealed[block] = buffer; store.lock.unlock()
        }

        var generated = [UInt8](repeating: 0, count: (k + m) * k)
        gf_gen_cauchy1_matrix(&generated, Int32(k + m), Int32(k))
        let matrix = generated
        var parityRows = Array(matrix[(k * k)...])
        var tables = [UInt8](repeating: 0, count: 32 * k * m)
        ec_init_tables(Int32(k), Int32(m), &parityRows, &tables)
        let encodeTables = tables
        shardBytes = store.sealed.reduce(0) { $0 + ($1.count + k - 1) / k * (k + m) }

        let ecSeconds = timed { block in
            let sealed = store.sealed[block]
            let s = (sealed.count + k - 1) / k
            var data = sealed + [UInt8](repeating: 0, count: s * k - sealed.count)
            var parity = [UInt8](repeating: 0, count: s * m)
            var t = encodeTables
            data.withUnsafeMutableBufferPointer { d in
                parity.withUnsafeMutableBufferPointer { p in
                    guard let dataBase = d.baseAddress, let parityBase = p.baseAddress else { return }
                    var sources: [UnsafeMutablePointer<UInt8>?] = (0..<k).map { dataBase + $0 * s }
                    var outputs: [UnsafeMutablePointer<UInt8>?] = (0..<m).map { parityBase + $0 * s }
                    ec_encode_data(Int32(s), Int32(k), Int32(m), &t, &sources, &outputs)
                }
            }
        }

        let hashSeconds = timed { block in
            let sealed = store.sealed[block]
            let s = (sealed.count + k - 1) / k
            var out = [UInt8](repeating: 0, count: 32)
            for i in 0..<(k + m) {
                let slice = i < k ? Array(sealed[min(sealed.count, i * s)..<min(sealed.count, (i + 1) * s)]) : Array(sealed[0..<min(s, sealed.count)])
                crypto_generichash(&out, 32, slice, UInt64(slice.count), nil, 0)
            }
        }

        // Decode direction: open (decrypt + verify) and decompress; ISA-L rebuilding m lost data shards.
        let openSeconds = timed { block in
            var buffer = store.sealed[block]
            var outLength: UInt64 = 0
            let count = buffer.count
            buffer.withUnsafeMutableBufferPointer { p in
                guard let base = p.baseAddress else { return }
                _ = crypto_aead_xchacha20poly1305_ietf_decrypt(base, &outLength, nil, base, UInt64(count), ad, UInt64(ad.count), nonce, fileKey)
            }
        }
        let unzstdSeconds = timed { block in
            let compressed = store.compressed[block]
            guard compressed.count < store.plain[block].count else { return }
            var out = [UInt8](repeating: 0, count: store.plain[block].count)
            let context = contexts.takeD()
            _ = ZSTD_decompressDCtx(context, &out, out.count, compressed, compressed.count)
            contexts.giveD(context)
        }
        let lost = Array(0..<min(m, k))
        let ecDecodeSeconds = timed { block in
            let sealed = store.sealed[block]
            let s = (sealed.count + k - 1) / k
            // Sources: the data shards that survived plus enough parity (contents do not change the cost).
            let sources = Array((0..<(k + m)).filter { !lost.contains($0) }.prefix(k))
            var b = [UInt8](repeating: 0, count: k * k), inverse = [UInt8](repeating: 0, count: k * k)
            for (r, index) in sources.enumerated() { for c in 0..<k { b[r * k + c] = matrix[index * k + c] } }
            _ = gf_invert_matrix(&b, &inverse, Int32(k))
            var coefficients = [UInt8](repeating: 0, count: lost.count * k)
            for (t, index) in lost.enumerated() { for c in 0..<k { coefficients[t * k + c] = inverse[index * k + c] } }
            var decodeTables = [UInt8](repeating: 0, count: 32 * k * max(1, lost.count))
            ec_init_tables(Int32(k), Int32(lost.count), &coefficients, &decodeTables)
            var work = [UInt8](repeating: 0, count: s * (k + lost.count))
            work.withUnsafeMutableBufferPointer { w in
                guard let base = w.baseAddress else { return }
                var src: [UnsafeMutablePointer<UInt8>?] = (0..<k).map { base + $0 * s }
                var dst: [UnsafeMutablePointer<UInt8>?] = (0..<lost.count).map { base + (k + $0) * s }
                ec_encode_data(Int32(s), Int32(k), Int32(lost.count), &decodeTables, &src, &dst)
            }
        }
        return StageTimes(zstd: zstdSeconds, seal: sealSeconds, ec: ecSeconds, hash: hashSeconds, open: openSeconds, unzstd: unzstdSeconds,
                          ecDecode: ecDecodeSeconds)
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
    let lost = Array(0..<min(m, k))
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
    print(String(format: "input compressed to %.1f%% by zstd; %.0f MB of shards", Double(compressedBytes) * 100 / Double(size), Double(shardBytes) / 1e6))
    print("")
    print("stage (alone, same data, \(parallel) in flight)     file MB/s per round      median   own-input MB/s (median)")
    func stage(_ name: String, _ seconds: (StageTimes) -> Double, own: Int) {
        let rates = stageRounds.map { rate(file, seconds($0)) }
        print(name.padding(toLength: 44, withPad: " ", startingAt: 0)
              + rates.map { String(format: "%6.0f", $0) }.joined().padding(toLength: 22, withPad: " ", startingAt: 0)
              + String(format: "%8.0f   %10.0f", median(rates), rate(own, median(stageRounds.map(seconds)))))
    }
    stage("zstd compress (level \(level))", \.zstd, own: size)
    stage("XChaCha20-Poly1305 seal", \.seal, own: compressedBytes)
    stage("ISA-L encode (\(k)+\(m))", \.ec, own: compressedBytes)
    stage("BLAKE2b shard checksums (not in the anchor)", \.hash, own: shardBytes)
    stage("XChaCha20-Poly1305 open", \.open, own: compressedBytes)
    stage("zstd decompress", \.unzstd, own: compressedBytes)
    stage("ISA-L decode (\(lost.count) data shards lost)", \.ecDecode, own: compressedBytes)

    // Each round's pipeline figure against the same round's slowest stage, then the median ratio.
    func ratios(_ pipeline: (PipelineTimes) -> Double, _ slowest: (StageTimes) -> Double) -> (rates: [Double], slow: [Double], ratios: [Double]) {
        let rates = pipelineRounds.map { rate(file, pipeline($0)) }
        let slow = stageRounds.map { rate(file, slowest($0)) }
        return (rates, slow, zip(rates, slow).map { $0 / $1 })
    }
    let put = ratios(\.put) { max($0.zstd, $0.seal, $0.ec) }
    let get = ratios(\.get) { max($0.open, $0.unzstd) }
    let degraded = ratios(\.degraded) { max($0.open, $0.unzstd, $0.ecDecode) }
    print("")
    print("pipeline (\(k + m) local shard servers)   MB/s per round       median MB/s   slowest stage   ratio per round     median ratio   target")
    func line(_ name: String, _ r: (rates: [Double], slow: [Double], ratios: [Double]), target: Double?) {
        let verdict = target.map { median(r.ratios) >= $0 ? String(format: ">= %.2f met", $0) : String(format: ">= %.2f NOT met", $0) } ?? ""
        print(name.padding(toLength: 38, withPad: " ", startingAt: 0)
              + r.rates.map { String(format: "%6.0f", $0) }.joined().padding(toLength: 22, withPad: " ", startingAt: 0)
              + String(format: "%10.0f   %13.0f   ", median(r.rates), median(r.slow))
              + r.ratios.map { String(format: "%5.2f", $0) }.joined(separator: " ").padding(toLength: 20, withPad: " ", startingAt: 0)
              + String(format: "%11.2f   ", median(r.ratios)) + verdict)
    }
    line("put", put, target: 0.7)
    line("get (all nodes up)", get, target: 0.8)
    line("get (\(lost.count) nodes down, decoding)", degraded, target: nil)
    let same = pipelineRounds.allSatisfy(\.same)
    print("round trip identical: \(same ? "yes" : "NO")")
    if !same { exit(1) }
}

try await run(parseArguments())
