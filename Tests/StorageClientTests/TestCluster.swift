import Foundation
import GridTypes
import Logging
import NIOCore
import ShardServer
import Testing
@testable import StorageClient

#if canImport(Glibc)
import Glibc
#endif

/// A temporary directory removed when the test is done with it.
final class TempDir: @unchecked Sendable {
    let path: String

    init(_ label: String = "storage") throws {
        path = NSTemporaryDirectory() + "storage-test-\(label)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Shard servers on 127.0.0.1 with ephemeral ports, one per pretend node, each with one
/// password-protected private namespace: what a twin's zdb deployments would give it.
final class TestCluster: @unchecked Sendable {
    struct Node {
        let server: ShardServer
        let config: ShardServerConfig
        var port: Int
        var running: Bool
        let endpoint: ShardEndpoint
    }

    let directory: TempDir
    private(set) var nodes: [Node] = []

    static let namespace = "twin-files"

    private init(directory: TempDir) { self.directory = directory }

    static func start(_ count: Int) async throws -> TestCluster {
        let cluster = TestCluster(directory: try TempDir("cluster"))
        for i in 0..<count { try await cluster.addNode(name: "node-\(i + 1)", password: "pw-\(i + 1)-\(UUID().uuidString.prefix(8))") }
        return cluster
    }

    func addNode(name: String, password: String) async throws {
        var config = ShardServerConfig(host: "127.0.0.1", port: 0, dataDirectory: directory.path + "/\(name)",
                                       adminPassword: "admin", fsync: .never, threads: 1)
        config.scrubBytesPerSecond = 0
        config.compactionDeadRatio = 0
        var logger = Logger(label: "shard-test")
        logger.logLevel = .critical
        let server = ShardServer(logger: logger)
        let port = try await server.start(config)
        try server.createNamespace(Self.namespace, settings: NamespaceSettings(password: password, isPublic: false))
        nodes.append(Node(server: server, config: config, port: port, running: true,
                          endpoint: ShardEndpoint(node: name, address: "127.0.0.1:\(port)", namespace: Self.namespace, password: password)))
    }

    var endpoints: [ShardEndpoint] { nodes.map(\.endpoint) }

    /// Stops a node's server: its port refuses connections from then on.
    func stop(_ index: Int) async throws {
        guard nodes[index].running else { return }
        try await nodes[index].server.stop()
        nodes[index].running = false
    }

    func stopAll() async {
        for i in nodes.indices { try? await stop(i) }
    }

    /// A raw connection to a node's namespace (with its password), for tampering with shards.
    func connection(_ index: Int) async throws -> ShardConnection {
        try await ShardConnection.open(nodes[index].endpoint, settings: ConnectionSettings())
    }

    /// The index of the node holding `endpoint`.
    func index(of endpoint: ShardEndpoint) -> Int? { nodes.firstIndex { $0.endpoint.address == endpoint.address } }
}

/// Runs `body` with a fresh cluster, stopped afterwards also when the body throws.
func withCluster(_ count: Int, _ body: (TestCluster) async throws -> Void) async throws {
    let cluster = try await TestCluster.start(count)
    do {
        try await body(cluster)
    } catch {
        await cluster.stopAll()
        throw error
    }
    await cluster.stopAll()
}

func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed &+ 0x9E37_79B9_7F4A_7C15
    var out = [UInt8](repeating: 0, count: count)
    var i = 0
    while i < count {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        var word = state ^ (state >> 29)
        for _ in 0..<8 where i < count {
            out[i] = UInt8(truncatingIfNeeded: word)
            word >>= 8
            i += 1
        }
    }
    return out
}

/// Text-like bytes that zstd compresses a few times over.
func compressibleBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    let words = ["shard", "node", "twin", "grid", "block", "parity", "zstd", "namespace", "farm", "contract", "\n"]
    var state = seed | 1
    var out: [UInt8] = []
    out.reserveCapacity(count + 16)
    while out.count < count {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        out += Array(words[Int((state >> 33) % UInt64(words.count))].utf8)
        out.append(0x20)
    }
    return Array(out.prefix(count))
}

struct Workspace {
    let dir: TempDir
    let store: LocalFileStore
    let key: TwinStorageKey
    let client: StorageClient

    init(label: String = "ws", seed: [UInt8]? = nil) throws {
        dir = try TempDir(label)
        store = LocalFileStore(directory: dir.path + "/files")
        let keyPair = try Ed25519KeyPair(seed: seed ?? SodiumCrypto.random(32))
        key = TwinStorageKey(keyPair: keyPair)
        client = StorageClient(key: key, localStore: store, connection: ConnectionSettings(connectTimeoutSeconds: 2, commandTimeoutSeconds: 10))
    }

    func write(_ bytes: [UInt8], name: String = "input.bin") throws -> String {
        let path = dir.path + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func read(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }
}

/// The StorageError a call threw, or nil (a test failure) when it threw something else or nothing.
func storageError(_ body: () async throws -> Void) async -> StorageError? {
    do {
        try await body()
        Issue.record("expected a StorageError, got success")
        return nil
    } catch let error as StorageError {
        return error
    } catch {
        Issue.record("expected a StorageError, got \(error)")
        return nil
    }
}
