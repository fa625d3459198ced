import Foundation
import GridTypes

/// The local copy of a file's metadata: the encrypted envelope (the same bytes the nodes hold),
/// plus a plain summary for `ls` (no passwords: those are only inside the envelope).
public struct LocalFileRecord: Codable, Sendable, Equatable {
    public var fileID: String
    public var name: String
    public var size: UInt64
    public var k: Int
    public var m: Int
    public var revision: Int
    public var createdAt: Int64
    /// false while a put is under way (or was interrupted): the shards may be partial.
    public var complete: Bool
    /// NODE@HOST:PORT/NAMESPACE per shard column.
    public var locations: [String]
    public var keyFingerprint: String
    /// The `MetadataEnvelope`, base64.
    public var envelope: String
    /// An unfinished put: what its resume must find unchanged (the source file's identity and the
    /// zstd library), since a block coded again is encrypted under the same key and nonce and
    /// must therefore be the very same bytes.
    public var resumeFingerprint: String? = nil
}

/// `<directory>/<file id>.json`, mode 0600 in a 0700 directory, each written whole or not at all.
public struct LocalFileStore: Sendable {
    public static let maxRecordSize = 96 << 20
    public let directory: String

    public init(directory: String) { self.directory = directory }

    /// $GRID_TWIN_FILES, else $XDG_DATA_HOME/grid-twin/files, else ~/.local/share/grid-twin/files.
    public static var defaultDirectory: String {
        let env = ProcessInfo.processInfo.environment
        if let explicit = env["GRID_TWIN_FILES"], !explicit.isEmpty { return explicit }
        let base = env["XDG_DATA_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? (NSHomeDirectory() + "/.local/share")
        return base + "/grid-twin/files"
    }

    static func isFileID(_ text: String) -> Bool {
        text.utf8.count == 32 && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    func path(_ fileID: String) -> String { directory + "/" + fileID + ".json" }

    public func save(_ record: LocalFileRecord) throws {
        guard Self.isFileID(record.fileID) else { throw StorageError.invalidInput(what: "file id", reason: "'\(record.fileID)' is not 32 hex digits") }
        do { try NodeIdentity.makeDirectory(directory) } catch {
            throw StorageError.invalidInput(what: "metadata directory", reason: "\(error)")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(Array(try encoder.encode(record)), to: path(record.fileID), mode: 0o600)
    }

    /// nil when there is no local copy.
    public func load(_ fileID: String) throws -> LocalFileRecord? {
        guard Self.isFileID(fileID) else { throw StorageError.invalidInput(what: "file id", reason: "'\(fileID)' is not 32 lowercase hex digits") }
        guard let bytes = try AtomicFile.read(path(fileID), limit: Self.maxRecordSize) else { return nil }
        do { return try JSONDecoder().decode(LocalFileRecord.self, from: Data(bytes)) } catch {
            throw StorageError.metadataInvalid(fileID: fileID, reason: "local copy \(path(fileID)) does not decode (\(error)); "
                                               + "move it away to read the metadata from the nodes")
        }
    }

    public func list() throws -> [LocalFileRecord] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        return try names.sorted().compactMap { name -> LocalFileRecord? in
            guard name.hasSuffix(".json") else { return nil }
            let id = String(name.dropLast(5))
            guard Self.isFileID(id) else { return nil }
            return try load(id)
        }.sorted { ($0.createdAt, $0.fileID) < ($1.createdAt, $1.fileID) }
    }

    public func remove(_ fileID: String) throws {
        guard Self.isFileID(fileID) else { return }
        if unlink(path(fileID)) != 0 && errno != ENOENT { throw StorageError.io(operation: "remove", path: path(fileID), errno: errno) }
    }
}

/// Whole-file writes that never leave a half-written file: temporary file, fsync, rename, fsync
/// of the directory.
enum AtomicFile {
    static func write(_ bytes: [UInt8], to path: String, mode: mode_t) throws {
        let temporary = path + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { throw StorageError.io(operation: "create", path: temporary, errno: errno) }
        var ok = false
        defer {
            if !ok { unlink(temporary) }
        }
        do {
            try writeAll(fd, bytes, path: temporary)
            guard fsync(fd) == 0 else { throw StorageError.io(operation: "fsync", path: temporary, errno: errno) }
        } catch {
            close(fd)
            throw error
        }
        close(fd)
        guard rename(temporary, path) == 0 else { throw StorageError.io(operation: "rename to", path: path, errno: errno) }
        ok = true
        syncDirectory(of: path)
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw StorageError.io(operation: "write", path: path, errno: n < 0 ? errno : EIO) }
            written += n
        }
    }

    static func syncDirectory(of path: String) {
        let directory = (path as NSString).deletingLastPathComponent
        let fd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
    }

    /// The file's bytes; nil when it does not exist.
    static func read(_ path: String, limit: Int) throws -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw StorageError.io(operation: "open", path: path, errno: errno)
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw StorageError.io(operation: "stat", path: path, errno: errno) }
        guard info.st_mode & S_IFMT == S_IFREG, Int(info.st_size) <= limit else {
            throw StorageError.invalidInput(what: path, reason: "not a regular file of at most \(limit) bytes")
        }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var filled = 0
        while filled < bytes.count {
            let n = bytes[filled...].withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                if n == 0 { break }
                throw StorageError.io(operation: "read", path: path, errno: errno)
            }
            filled += n
        }
        return Array(bytes[0..<filled])
    }
}
