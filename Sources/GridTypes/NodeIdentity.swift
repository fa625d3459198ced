import Foundation

/// The node's ed25519 identity, kept as a seed file readable by its owner only.
///
/// File format (text, so a farmer can back it up and inspect it):
///     # comment lines
///     seed=<64 hex>
///     public=<64 hex>
/// The public line lets a load detect a damaged seed: the key derived from the seed must match it.
public struct NodeIdentity: Sendable {
    public static let fileName = "identity.key"
    static let maxFileSize = 4096

    public let keyPair: Ed25519KeyPair
    public let path: String

    public var publicKey: Ed25519PublicKey { keyPair.publicKey }
    public var ss58Address: String { SS58.encode(publicKey: publicKey.bytes) }

    /// Creates a new identity at `path`, never replacing an existing file. The file appears whole
    /// or not at all: it is written to a temporary name, synced, then linked into place.
    public static func create(at path: String, keyPair: Ed25519KeyPair? = nil) throws(GridTypesError) -> NodeIdentity {
        let keys: Ed25519KeyPair
        if let keyPair { keys = keyPair } else { keys = try Ed25519KeyPair.generate() }
        let directory = (path as NSString).deletingLastPathComponent
        try makeDirectory(directory.isEmpty ? "." : directory)
        if access(path, F_OK) == 0 { throw .keyFileExists(path: path) }

        let text = """
            # node-agent identity: the node's ed25519 seed. Keep it secret (mode 0600) and backed up;
            # losing it means a new node identity on the chain.
            seed=\(Hex.encode(keys.seed))
            public=\(keys.publicKey.hex)

            """
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw .io(operation: "create", path: temporary, errno: errno) }
        defer { unlink(temporary) }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let writeErrno = errno
        let synced = fsync(fd)
        let syncErrno = errno
        close(fd)
        guard written == bytes.count else { throw .io(operation: "write", path: temporary, errno: writeErrno) }
        guard synced == 0 else { throw .io(operation: "fsync", path: temporary, errno: syncErrno) }
        // link(2) fails with EEXIST instead of replacing: no window where a second `init` wins.
        guard link(temporary, path) == 0 else {
            if errno == EEXIST { throw .keyFileExists(path: path) }
            throw .io(operation: "link", path: path, errno: errno)
        }
        syncDirectory(directory.isEmpty ? "." : directory)
        return NodeIdentity(keyPair: keys, path: path)
    }

    /// Loads the identity, refusing a file that others can read, that is not a regular file, or
    /// whose content does not verify.
    public static func load(from path: String) throws(GridTypesError) -> NodeIdentity {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
            if errno == ENOENT { throw .keyFileMissing(path: path) }
            if errno == ELOOP { throw .keyFileDamaged(path: path, reason: "it is a symbolic link; the key must be a regular file") }
            throw .io(operation: "open", path: path, errno: errno)
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .io(operation: "stat", path: path, errno: errno) }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw .keyFileDamaged(path: path, reason: "not a regular file")
        }
        let permissions = UInt16(info.st_mode & 0o7777)
        guard permissions & 0o077 == 0 else { throw .keyFileInsecure(path: path, mode: permissions) }
        guard info.st_size <= maxFileSize else {
            throw .keyFileDamaged(path: path, reason: "\(info.st_size) bytes is larger than a key file can be")
        }
        var buffer = [UInt8](repeating: 0, count: maxFileSize)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count >= 0 else { throw .io(operation: "read", path: path, errno: errno) }
        guard let text = String(validating: buffer[0..<count], as: UTF8.self) else {
            throw .keyFileDamaged(path: path, reason: "not UTF-8 text")
        }
        return try parse(text, path: path)
    }

    static func parse(_ text: String, path: String) throws(GridTypesError) -> NodeIdentity {
        var fields = [String: String]()
        for rawLine in text.split(whereSeparator: \.isNewline) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let equals = line.firstIndex(of: "=") else {
                throw .keyFileDamaged(path: path, reason: "unexpected line without '='")
            }
            fields[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        guard let seedHex = fields["seed"] else { throw .keyFileDamaged(path: path, reason: "no seed= line") }
        guard let publicHex = fields["public"] else { throw .keyFileDamaged(path: path, reason: "no public= line") }
        let seed: [UInt8]
        do { seed = try Hex.decode(seedHex, context: "seed") } catch {
            throw .keyFileDamaged(path: path, reason: "the seed is not hexadecimal")
        }
        guard seed.count == Ed25519KeyPair.seedLength else {
            throw .keyFileDamaged(path: path, reason: "the seed is \(seed.count) bytes, expected 32")
        }
        let keys = try Ed25519KeyPair(seed: seed)
        guard keys.publicKey.hex == publicHex.lowercased() else {
            throw .keyFileDamaged(path: path, reason: "the seed does not derive the recorded public key")
        }
        return NodeIdentity(keyPair: keys, path: path)
    }

    /// `mkdir -p` with mode 0700 for the parts it creates; existing parts keep their mode.
    public static func makeDirectory(_ path: String) throws(GridTypesError) {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, 0o700) != 0 && errno != EEXIST {
                throw .io(operation: "create directory", path: current, errno: errno)
            }
        }
        var info = stat()
        guard stat(path, &info) == 0 else { throw .io(operation: "stat", path: path, errno: errno) }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw .io(operation: "create directory", path: path, errno: ENOTDIR) }
    }

    static func syncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
    }
}
