import ArgumentParser
import Foundation
import GridTypes
import StorageClient

#if canImport(Glibc)
import Glibc
#endif

/// `grid-twin shard`: files stored across nodes' 0-db namespaces (see StorageClient).
struct ShardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shard",
        abstract: "Store files across nodes: compressed, encrypted, erasure-coded; get, check and repair them.",
        subcommands: [Put.self, Get.self, Check.self, Repair.self, List.self, Remove.self])

    struct Put: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Store a file on k+m namespaces on distinct nodes; prints its file id.")
        @OptionGroup var options: ShardOptions
        @OptionGroup var placement: PlacementOptions
        @Argument(help: "The file to store.") var file: String
        @Option(name: .customShort("k"), help: "Data shards per block (any k of k+m rebuild it).") var k: Int = 2
        @Option(name: .customShort("m"), help: "Parity shards per block (how many nodes may be lost).") var m: Int = 1
        @Option(name: .long, help: "Block size: bytes, or with KiB/MiB (e.g. 4MiB).") var blockSize: String = "4MiB"
        @Option(name: .long, help: "zstd level (-7...19).") var zstdLevel: Int = 3
        @Flag(name: .long, help: "Store blocks without compression.") var noCompress = false
        @Option(name: .long, help: "Blocks in flight at once.") var parallel: Int = 4
        @Option(name: .long, help: "When a node fails: fail (keep nothing) or spare (use the placement's extra namespaces).")
        var onNodeFailure: NodeFailurePolicy = .fail
        @Option(name: .long, help: "Succeed with at least this many shard columns written (k...k+m; default all).") var minShards: Int?
        @Option(name: .long, help: "Name to record (default: the file's name).") var name: String?
        @Flag(name: .long, help: "If the put fails part way, keep what was written so --resume can finish it (default: remove it).")
        var keepPartial = false
        @Option(name: .long, help: ArgumentHelp("Finish an unfinished put of FILE (`shard ls` shows it incomplete; FILE unchanged): the same file id, nodes, k, m and block size; only the shards the nodes lack are sent. With --on-node-failure spare, --placement/--ns give spares.", valueName: "file-id"))
        var resume: String?

        func run() async throws {
            let client = try options.client()
            var storage = StorageOptions(k: k, m: m, blockSize: try SizeArgument.parse(blockSize, what: "--block-size"),
                                         zstdLevel: noCompress ? nil : zstdLevel, parallelBlocks: parallel, onNodeFailure: onNodeFailure,
                                         minimumShards: minShards, connection: options.connectionSettings)
            storage.keepPartial = keepPartial
            let bar = ProgressBar(enabled: !options.json)
            let report: PutReport
            if let resume {
                report = try await client.resume(fileID: resume, path: file, spares: try placement.endpoints(required: false), options: storage,
                                                 progress: bar.handler)
            } else {
                report = try await client.put(path: file, placement: try placement.endpoints(required: true), options: storage, name: name,
                                              progress: bar.handler)
            }
            bar.finish()
            try options.emit(report) {
                var lines = ["stored \(report.name) as \(report.fileID)",
                             "  \(ByteFormat.binary(report.size)) in \(report.blocks) block(s), k=\(report.k) m=\(report.m), "
                                 + "\(ByteFormat.binary(report.storedBytes)) on \(report.shardsWritten) node(s), "
                                 + String(format: "%.2f s (%@/s)", report.seconds, ByteFormat.binary(UInt64(Double(report.size) / max(report.seconds, 1e-6))))]
                lines.append(ShardCommand.columnTable(report.columns))
                if resume != nil { lines.append("resumed: \(report.shardsAlreadyStored) shard(s) were already on their nodes and not sent again") }
                lines += report.warnings.map { "warning: " + $0 }
                lines.append("get it back with: grid-twin shard get \(report.fileID) -o FILE")
                return lines.joined(separator: "\n")
            }
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Rebuild a file from any k of its shards.",
            discussion: "Uses the local metadata copy; without one, give any namespace of the file with --placement or --ns.")
        @OptionGroup var options: ShardOptions
        @OptionGroup var placement: PlacementOptions
        @Argument(help: "The file id put printed.") var id: String
        @Option(name: .shortAndLong, help: "Where to write the file (atomically).") var output: String
        @Flag(name: .long, help: "Replace the output if it exists.") var force = false
        @Option(name: .long, help: "Which shards to read first: 'fastest' (data shards of the fastest nodes) or 'data' (data shards always: least CPU, slow nodes wait).")
        var prefer: ReadPreference = .fastestNodes

        func run() async throws {
            let client = try options.client(readPreference: prefer)
            let bar = ProgressBar(enabled: !options.json)
            let report = try await client.get(fileID: id, to: output, endpoints: try placement.endpoints(required: false),
                                              overwrite: force, progress: bar.handler)
            bar.finish()
            try options.emit(report) {
                var lines = ["wrote \(report.output) (\(report.name), \(ByteFormat.binary(report.size)), "
                             + String(format: "%.2f s", report.seconds) + (report.decodedBlocks > 0 ? ", \(report.decodedBlocks) block(s) rebuilt from parity" : "") + ")"]
                lines += report.warnings.map { "warning: " + $0 }
                return lines.joined(separator: "\n")
            }
        }
    }

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Report per-shard health: present, intact (PROOF challenge or --deep checksum).",
            discussion: "Exit status: 0 healthy, 3 degraded but recoverable, 4 not recoverable.")
        @OptionGroup var options: ShardOptions
        @OptionGroup var placement: PlacementOptions
        @Argument(help: "The file id.") var id: String
        @Flag(name: .long, help: "Download every shard and verify its checksum instead of asking for proofs.") var deep = false

        func run() async throws {
            let client = try options.client()
            let report = try await client.check(fileID: id, endpoints: try placement.endpoints(required: false), deep: deep)
            try options.emit(report) { ShardCommand.describe(report) }
            if !report.recoverable { throw ExitCode(4) }
            if !report.healthy { throw ExitCode(3) }
        }
    }

    struct Repair: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Rebuild missing or corrupt shards; move shards of unreachable nodes to spare namespaces.")
        @OptionGroup var options: ShardOptions
        @OptionGroup var placement: PlacementOptions
        @Argument(help: "The file id.") var id: String
        @Option(name: .long, help: "A replacement namespace NODE@HOST:PORT/NAMESPACE (repeatable; password from --spare-password-file).")
        var spare: [String] = []
        @Option(name: .long, help: "JSON file of replacement namespaces (same format as --placement).") var spares: String?
        @Option(name: .long, help: "File holding the password of the --spare namespaces.") var sparePasswordFile: String?
        @Flag(name: .long, help: "Find damage by downloading every shard instead of PROOF challenges.") var deep = false

        func run() async throws {
            let client = try options.client()
            var replacements: [ShardEndpoint] = []
            if let spares { replacements += try PlacementFile.load(path: spares) }
            let password = try sparePasswordFile.map { try PlacementOptions.readPassword($0) }
            replacements += try spare.map { try ShardEndpoint.parse($0, password: password) }
            let report = try await client.repair(fileID: id, spares: replacements, endpoints: try placement.endpoints(required: false), deep: deep)
            try options.emit(report) {
                var lines = ["repaired \(report.fileID): \(report.rebuiltShards) shard(s) rebuilt, metadata revision \(report.revision)"]
                for (column, count) in report.repairedInPlace.enumerated() where count > 0 { lines.append("  shard \(column): \(count) block(s) rewritten in place") }
                for move in report.moved { lines.append("  shard \(move.index): moved from \(move.from) to \(move.to)") }
                lines.append(ShardCommand.describe(report.after))
                return lines.joined(separator: "\n")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List the files stored from this machine (local metadata copies).")
        @OptionGroup var options: ShardOptions

        func run() async throws {
            let records = try options.client().list()
            struct Row: Codable { var fileID, name: String; var size: UInt64; var k, m, revision: Int; var createdAt: Int64; var complete: Bool; var locations: [String] }
            let rows = records.map { Row(fileID: $0.fileID, name: $0.name, size: $0.size, k: $0.k, m: $0.m, revision: $0.revision,
                                         createdAt: $0.createdAt, complete: $0.complete, locations: $0.locations) }
            try options.emit(rows) {
                guard !rows.isEmpty else { return "no files" }
                var table = TextTable(["ID", "NAME", "SIZE", "K+M", "STORED", "STATE", "NODES"])
                for r in rows {
                    table.add([r.fileID, r.name, ByteFormat.binary(r.size), "\(r.k)+\(r.m)",
                               ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(r.createdAt))),
                               r.complete ? "complete" : "incomplete",
                               r.locations.map { String($0.prefix(while: { $0 != "@" })) }.joined(separator: ",")])
                }
                return table.render()
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Delete a file's shards and metadata from its nodes and the local copy.")
        @OptionGroup var options: ShardOptions
        @OptionGroup var placement: PlacementOptions
        @Argument(help: "The file id.") var id: String

        func run() async throws {
            let unreachable = try await options.client().remove(fileID: id, endpoints: try placement.endpoints(required: false))
            try options.emit(["file_id": id, "unreachable": unreachable.joined(separator: "; ")]) {
                unreachable.isEmpty ? "removed \(id)"
                    : "removed \(id) from the reachable nodes; still on: \(unreachable.joined(separator: "; ")) (local copy kept; run rm again)"
            }
            if !unreachable.isEmpty { throw ExitCode(3) }
        }
    }

    static func columnTable(_ columns: [ColumnStatus]) -> String {
        var table = TextTable(["  SHARD", "ROLE", "NODE", "NAMESPACE", "STATUS"])
        for c in columns { table.add(["  \(c.index)", c.role, c.node, "\(c.address)/\(c.namespace)", c.status]) }
        return table.render()
    }

    static func describe(_ report: CheckReport) -> String {
        let state = report.healthy ? "healthy" : report.recoverable
            ? "DEGRADED: recoverable (every block has at least \(report.minimumGoodShards) of \(report.k + report.m) shards; \(report.k) needed)"
            : "NOT RECOVERABLE: a block has only \(report.minimumGoodShards) good shard(s); \(report.k) are needed"
        var lines = ["\(report.name) (\(report.fileID)): \(state)",
                     "  \(ByteFormat.binary(report.size)), \(report.blocks) block(s), k=\(report.k) m=\(report.m), metadata revision \(report.revision), checked by \(report.method)"
                     + (report.method == "proof" ? " (\(report.downloadedShards) random shard(s) downloaded too)" : "")]
        var table = TextTable(["  SHARD", "ROLE", "NODE", "NAMESPACE", "GOOD", "MISSING", "CORRUPT", "UNKNOWN", "METADATA", "ERROR"])
        for c in report.columns {
            table.add(["  \(c.column.index)", c.column.role, c.column.node, "\(c.column.address)/\(c.column.namespace)", "\(c.good)", "\(c.missing)",
                       "\(c.corrupt)", "\(c.unknown)", c.metadataRevision.map { "rev \($0)" } ?? "missing", c.error ?? ""])
        }
        lines.append(table.render())
        if !report.healthy && report.recoverable { lines.append("run `grid-twin shard repair \(report.fileID)` (with --spare for unreachable nodes)") }
        return lines.joined(separator: "\n")
    }
}

extension NodeFailurePolicy: ExpressibleByArgument {}

/// The twin key, the local metadata directory and output format, shared by the shard commands.
struct ShardOptions: ParsableArguments {
    @Option(name: .long, help: "The twin's ed25519 key file (env GRID_TWIN_KEY).")
    var key: String = ProcessInfo.processInfo.environment["GRID_TWIN_KEY"] ?? (NSHomeDirectory() + "/.config/grid-twin/twin.key")

    @Option(name: .long, help: "Local metadata copies (env GRID_TWIN_FILES; default ~/.local/share/grid-twin/files).")
    var metadataDir: String = LocalFileStore.defaultDirectory

    @Option(name: .long, help: "Seconds without an answer before a node counts as failed.")
    var timeout: Double = 30

    @Flag(name: .long, help: "Print JSON instead of text.")
    var json = false

    var connectionSettings: ConnectionSettings {
        ConnectionSettings(connectTimeoutSeconds: min(5, max(0.1, timeout)), commandTimeoutSeconds: max(0.1, timeout))
    }

    func client(readPreference: ReadPreference = .fastestNodes) throws -> StorageClient {
        let identity: NodeIdentity
        do { identity = try NodeIdentity.load(from: key) } catch GridTypesError.keyFileMissing {
            throw GridTwinFailure("no twin key at \(key); create one with `grid-twin twin create` or pass --key")
        }
        return StorageClient(key: TwinStorageKey(keyPair: identity.keyPair), localStore: LocalFileStore(directory: metadataDir),
                             connection: connectionSettings, readPreference: readPreference)
    }

    func emit<T: Encodable>(_ value: T, text: () -> String) throws {
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(value), as: UTF8.self))
        } else {
            print(text())
        }
    }
}

/// Where shards go (put) or where to look for a file's metadata (the others).
struct PlacementOptions: ParsableArguments {
    @Option(name: .long, help: "JSON list of {node, address, namespace, password} (mode 0600 when it holds passwords).")
    var placement: String?

    @Option(name: .customLong("ns"), help: "A namespace NODE@HOST:PORT/NAMESPACE (repeatable; password from --password-file).")
    var namespaces: [String] = []

    @Option(name: .long, help: "File holding the password of the --ns namespaces.")
    var passwordFile: String?

    func endpoints(required: Bool) throws -> [ShardEndpoint] {
        var endpoints: [ShardEndpoint] = []
        if let placement { endpoints += try PlacementFile.load(path: placement) }
        let password = try passwordFile.map { try Self.readPassword($0) }
        endpoints += try namespaces.map { try ShardEndpoint.parse($0, password: password) }
        if required && endpoints.isEmpty { throw ValidationError("give the namespaces to use with --placement FILE or --ns NODE@HOST:PORT/NAMESPACE") }
        return endpoints
    }

    /// The first line of a file that only its owner can read.
    static func readPassword(_ path: String) throws -> String {
        var info = stat()
        guard stat(path, &info) == 0 else { throw GridTwinFailure("cannot read password file \(path): \(String(cString: strerror(errno)))") }
        guard info.st_mode & 0o077 == 0 else { throw GridTwinFailure("password file \(path) is readable by others; run `chmod 600 \(path)`") }
        guard info.st_size <= 4096, let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw GridTwinFailure("password file \(path) is not a small text file")
        }
        let password = text.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        guard !password.isEmpty else { throw GridTwinFailure("password file \(path) is empty") }
        return password
    }
}

enum SizeArgument {
    /// "4194304", "4MiB", "4M", "512KiB", "1GiB".
    static func parse(_ text: String, what: String) throws -> Int {
        let units: [(String, Int)] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10), ("B", 1)]
        var number = text.trimmingCharacters(in: .whitespaces)
        var multiplier = 1
        for (suffix, value) in units where number.hasSuffix(suffix) {
            number.removeLast(suffix.count)
            multiplier = value
            break
        }
        guard let n = Int(number.trimmingCharacters(in: .whitespaces)), n > 0, n <= Int.max / multiplier else {
            throw ValidationError("\(what) '\(text)' is not a size such as 4MiB or 65536")
        }
        return n * multiplier
    }
}

/// A one-line progress bar on stderr, only when stderr is a terminal.
final class ProgressBar: @unchecked Sendable {
    private let enabled: Bool
    private let lock = NSLock()
    private var drawn = false

    init(enabled: Bool) { self.enabled = enabled && isatty(2) == 1 }

    var handler: ProgressHandler? {
        guard enabled else { return nil }
        return { [self] progress in draw(progress) }
    }

    private func draw(_ p: TransferProgress) {
        let fraction = p.bytesTotal == 0 ? 1 : Double(p.bytesDone) / Double(p.bytesTotal)
        let width = 30
        let filled = Int(fraction * Double(width))
        let rate = p.elapsedSeconds > 0 ? ByteFormat.binary(UInt64(Double(p.bytesDone) / p.elapsedSeconds)) + "/s" : ""
        let line = "\r\(p.operation) [" + String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled) + "] "
            + String(format: "%3d%% ", Int(fraction * 100)) + "\(ByteFormat.binary(p.bytesDone))/\(ByteFormat.binary(p.bytesTotal)) \(rate)   "
        lock.lock()
        defer { lock.unlock() }
        drawn = true
        FileHandle.standardError.write(Data(line.utf8))
    }

    func finish() {
        lock.lock()
        defer { lock.unlock() }
        if drawn { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

extension ReadPreference: ExpressibleByArgument {}
