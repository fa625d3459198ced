// storage-bench: put and get throughput of the storage client across local shard servers, beside
// the throughput of each pipeline stage alone (zstd, XChaCha20-Poly1305, ISA-L) measured in the
// same run on the same data, so the ratio shows what the pipeline (I/O, RESP, servers, checksums,
// scheduling) costs on top of its slowest stage.
//
//   swift build -c release --product storage-bench && .build/release/storage-bench [--size-mib 1024]
//       [-k 4] [-m 2] [--block-mib 4] [--level 3] [--parallel 4] [--data mixed|text|random] [--dir /tmp]
//
// Stages run with the same number of blocks in flight as the pipeline. Each stage is reported in
// bytes of the file per second (its time over the whole file), and in bytes of its own input.
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
    var sizeMiB = 1024, k = 4, m = 2, blockMiB = 4, level: Int32 = 3, parallel = 4, dataKind = "mixed", baseDir = NSTemporaryDirectory()
}

func parseArguments() -> Config {
    var c = Config()
    var args = CommandLine.arguments.dropFirst()
    while let flag = args.popFirst() {
        let value = args.popFirst() ?? ""
        switch flag {
        case "--size-mib": c.sizeMiB = Int(value) ?? c.sizeMiB
        case "-k": c.k = Int(value) ?? c.k
        case "-m": c.m = Int(value) ?? c.m
        case "--block-mib": c.blockMiB = Int(value) ?? c.blockMiB
        case "--level": c.level = Int32(value) ?? c.level
        case "--parallel": c.parallel = Int(value) ?? c.parallel
        case "--data": c.dataKind = value
        case "--dir": c.baseDir = value
        default:
            FileHandle.standardError.write(Data("unknown option \(flag)\n".utf8))
            exit(2)
        }
    }
    return c
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

    let zstdSeconds = timed { block in
        let source = store.plain[block]
        var out = [UInt8](repeating: 0, count: ZSTD_compressBound(source.count))
        let context = ZSTD_createCCtx()
        let n = ZSTD_compressCCtx(context, &out, out.count, source, source.count, level)
        ZSTD_freeCCtx(context)
        let result = n < source.count ? Array(out[0..<n]) : source
        store.lock.lock(); store.compressed[block] = result; store.lock.unlock()
    }
    let compressedBytes = store.compressed.reduce(0) { $0 + $1.count }

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
    let shardBytes = store.sealed.reduce(0) { $0 + ($1.count + k - 1) / k * (k + m) }

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
        let context = ZSTD_createDCtx()
        _ = ZSTD_decompressDCtx(context, &out, out.count, compressed, compressed.count)
        ZSTD_freeDCtx(context)
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
    store.plain = []
    store.compressed = []
    store.sealed = []

    // MARK: - Servers and the client

    var logger = Logger(label: "bench")
    logger.logLevel = .error
    var servers: [ShardServer] = []
    var endpoints: [ShardEndpoint] = []
    for i in 0..<(k + m) {
        var config = ShardServerConfig(host: "127.0.0.1", port: 0, dataDirectory: dir + "/node-\(i)", fsync: .never, threads: 1)
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
    let put = try await client.put(path: inputPath, placement: endpoints, options: options)
    let get = try await client.get(fileID: put.fileID, to: dir + "/output.bin")
    let same = FileManager.default.contentsEqual(atPath: inputPath, andPath: dir + "/output.bin")
    try? FileManager.default.removeItem(atPath: dir + "/output.bin")
    for i in lost { try await servers[i].stop() }
    let degraded = try await client.get(fileID: put.fileID, to: dir + "/output.bin")
    try? FileManager.default.removeItem(atPath: dir + "/output.bin")
    for (i, server) in servers.enumerated() where !lost.contains(i) { try await server.stop() }

    // MARK: - Report

    func rate(_ bytes: Int, _ seconds: Double) -> Double { Double(bytes) / seconds / 1e6 }
    let file = size
    print(String(format: "input compressed to %.1f%% by zstd; %.0f MB of shards", Double(compressedBytes) * 100 / Double(size), Double(shardBytes) / 1e6))
    print("")
    print("stage (alone, same data, \(parallel) in flight)    file MB/s   own-input MB/s")
    func stage(_ name: String, _ seconds: Double, own: Int) {
        print(name.padding(toLength: 44, withPad: " ", startingAt: 0) + String(format: "%9.0f   %14.0f", rate(file, seconds), rate(own, seconds)))
    }
    stage("zstd compress (level \(level))", zstdSeconds, own: size)
    stage("XChaCha20-Poly1305 seal", sealSeconds, own: compressedBytes)
    stage("ISA-L encode (\(k)+\(m))", ecSeconds, own: compressedBytes)
    stage("BLAKE2b shard checksums (not in the anchor)", hashSeconds, own: shardBytes)
    stage("XChaCha20-Poly1305 open", openSeconds, own: compressedBytes)
    stage("zstd decompress", unzstdSeconds, own: compressedBytes)
    stage("ISA-L decode (\(lost.count) data shards lost)", ecDecodeSeconds, own: compressedBytes)

    let putSlowest = min(rate(file, zstdSeconds), rate(file, sealSeconds), rate(file, ecSeconds))
    let getSlowest = min(rate(file, openSeconds), rate(file, unzstdSeconds))
    let degradedSlowest = min(getSlowest, rate(file, ecDecodeSeconds))
    let putRate = rate(file, put.seconds), getRate = rate(file, get.seconds), degradedRate = rate(file, degraded.seconds)
    print("")
    print("pipeline (\(k + m) local shard servers)          MB/s    slowest stage   ratio   target")
    print(String(format: "put                                        %6.0f   %13.0f   %5.2f   >= 0.70 %@", putRate, putSlowest, putRate / putSlowest,
                 putRate / putSlowest >= 0.7 ? "met" : "NOT met"))
    print(String(format: "get (all nodes up)                         %6.0f   %13.0f   %5.2f   >= 0.80 %@", getRate, getSlowest, getRate / getSlowest,
                 getRate / getSlowest >= 0.8 ? "met" : "NOT met"))
    print(String(format: "get (%d nodes down, decoding)               %6.0f   %13.0f   %5.2f", lost.count, degradedRate, degradedSlowest,
                 degradedRate / degradedSlowest))
    print("round trip identical: \(same ? "yes" : "NO")")
    if !same { exit(1) }
}

try await run(parseArguments())
