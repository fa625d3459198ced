import CNodeShim
import Foundation

/// Images named by URL and BLAKE2b-256 digest, fetched once, verified, unpacked into a
/// content-addressed store and shared read-only between containers:
///
///     <root>/<digest>/rootfs       the unpacked image, files owned by idBase + their image uid
///     <root>/<digest>/image.json   the record, written last: without it the directory is garbage
///     <root>/<digest>/users/<id>   containers whose rootfs is built on the image (remove refuses)
///     <root>/.tmp/<digest>.*       downloads and unpacks in progress (or left by a crash)
///     <root>/.locks/<digest>       flock(2) per digest, shared by every process using the store
///
/// Calls that touch the disk block; `pull` runs its blocking work off the cooperative pool.
public final class ImageStore: Sendable {
    public static let defaultRoot = "/var/lib/node-agent/images"

    public enum RootfsPreference: String, Sendable {
        /// overlayfs, or a copy when the kernel refuses the overlay (with the reason reported).
        case automatic
        case overlay
        case copy
    }

    public struct Options: Sendable {
        public var limits: ImageLimits
        /// Host uid/gid that image uid/gid 0 becomes (SecureDefaults' user namespace mapping).
        public var idBase: UInt32
        public var idCount: UInt32
        public var rootfs: RootfsPreference
        /// syncfs before the record is written, so a power loss cannot leave a record over lost data.
        public var durable: Bool

        public init(limits: ImageLimits = ImageLimits(), idBase: UInt32 = 100_000, idCount: UInt32 = 65_536,
                    rootfs: RootfsPreference = .automatic, durable: Bool = true) {
            self.limits = limits
            self.idBase = idBase
            self.idCount = idCount
            self.rootfs = rootfs
            self.durable = durable
        }
    }

    public let root: String
    public let options: Options

    public init(root: String = ImageStore.defaultRoot, options: Options = Options()) throws(ContainerRuntimeError) {
        guard root.hasPrefix("/"), !root.split(separator: "/").contains("..") else {
            throw .image("store root '\(root)' must be an absolute path without '..'")
        }
        self.root = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
        self.options = options
        // The store holds other tenants' files: only root may walk it.
        try FileTree.makeDirectories(self.root, mode: 0o700)
        for sub in [tmpDirectory, locksDirectory] {
            if mkdir(sub, 0o700) != 0 && errno != EEXIST { throw .io(operation: "mkdir", path: sub, errno: errno) }
        }
    }

    var tmpDirectory: String { root + "/.tmp" }
    var locksDirectory: String { root + "/.locks" }
    func imageDirectory(_ digest: String) -> String { root + "/" + digest }
    func recordPath(_ digest: String) -> String { imageDirectory(digest) + "/image.json" }
    func usersDirectory(_ digest: String) -> String { imageDirectory(digest) + "/users" }

    // MARK: queries

    /// The complete image with this digest, or nil.
    public func image(digest: String) -> ImageRecord? {
        guard let digest = try? ImageDigest.validate(digest),
              let data = FileManager.default.contents(atPath: recordPath(digest)),
              let record = try? Self.decoder.decode(ImageRecord.self, from: data), record.digest == digest else { return nil }
        return record
    }

    /// Every complete image, oldest first.
    public func list() throws(ContainerRuntimeError) -> [ImageRecord] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: root) } catch {
            throw .io(operation: "list", path: root, errno: (error as NSError).code == NSFileReadNoSuchFileError ? ENOENT : EIO)
        }
        return names.filter(ImageDigest.isDigest).compactMap { image(digest: $0) }.sorted { $0.createdAt < $1.createdAt }
    }

    /// Containers whose rootfs is built on the image.
    public func users(digest: String) -> [String] {
        guard let digest = try? ImageDigest.validate(digest) else { return [] }
        return ((try? FileManager.default.contentsOfDirectory(atPath: usersDirectory(digest))) ?? []).sorted()
    }

    // MARK: pull

    /// Fetches the archive at `url`, checks its BLAKE2b-256 against `digest`, and unpacks it, unless
    /// the store has the image already. Concurrent pulls of one digest (in any process) wait for
    /// each other and unpack once. A crash leaves only a temporary directory that the next pull of
    /// that digest removes.
    public func pull(url: String, digest: String, progress: (@Sendable (ImagePullProgress) -> Void)? = nil) async throws(ContainerRuntimeError) -> ImageRecord {
        let digest = try ImageDigest.validate(digest)
        if let existing = image(digest: digest) { return existing }
        let lock = try await DigestLock.acquire(directory: locksDirectory, digest: digest)
        defer { lock.release() }
        if let existing = image(digest: digest) { return existing }
        try removeLeftovers(digest)

        let work = tmpDirectory + "/" + digest + "." + UUID().uuidString.prefix(8).lowercased()
        guard mkdir(work, 0o700) == 0 else { throw .io(operation: "mkdir", path: work, errno: errno) }
        do throws(ContainerRuntimeError) {
            let archive = work + "/archive"
            let fetched = try await ImageFetcher.fetch(url: url, to: archive, limit: options.limits.maxArchiveBytes, progress: progress)
            guard fetched.digest == digest else {
                throw .imageDigestMismatch(url: ImageURL.redacted(url), expected: digest, actual: fetched.digest)
            }
            let record = try await offload { [self] () throws(ContainerRuntimeError) in
                try unpack(archive: archive, bytes: fetched.bytes, work: work, digest: digest, url: ImageURL.redacted(url), progress: progress)
            }
            try? FileTree.remove(work)
            return record
        } catch {
            try? FileTree.remove(work)
            throw error
        }
    }

    /// Leftovers of an interrupted pull or remove of `digest` (the caller holds its lock).
    private func removeLeftovers(_ digest: String) throws(ContainerRuntimeError) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: tmpDirectory)) ?? [] where name.hasPrefix(digest + ".") {
            try FileTree.remove(tmpDirectory + "/" + name)
        }
        var info = stat()
        if lstat(imageDirectory(digest), &info) == 0 && image(digest: digest) == nil {
            guard users(digest: digest).isEmpty else {
                throw .image("image \(digest) has no record but containers \(users(digest: digest)) use it; release them before pulling it again")
            }
            try FileTree.remove(imageDirectory(digest))
        }
    }

    private func unpack(archive: String, bytes: UInt64, work: String, digest: String, url: String,
                        progress: (@Sendable (ImagePullProgress) -> Void)?) throws(ContainerRuntimeError) -> ImageRecord {
        let staging = work + "/rootfs"
        try makeImageRoot(staging)
        let reportArchive: (UInt64) -> Void = { done in progress?(ImagePullProgress(phase: .unpack, bytesDone: done, bytesTotal: bytes)) }
        var extractor = try SafeExtractor(rootPath: staging, limits: options.limits, idBase: options.idBase, idCount: options.idCount)
        try extractor.apply(try ArchiveReader(path: archive), whiteouts: false, progress: reportArchive)
        unlink(archive)
        var format = ImageRecord.Format.rootfsTar
        var config: ImageConfig?
        if OCILayout.detect(staging) {
            format = .ociLayout
            let layoutPath = work + "/layout"
            guard rename(staging, layoutPath) == 0 else { throw .io(operation: "rename", path: staging, errno: errno) }
            try makeImageRoot(staging)
            let layout = try OCILayout(path: layoutPath)
            defer { layout.close() }
            let resolved = try layout.resolve(limits: options.limits)
            config = resolved.config
            extractor = try SafeExtractor(rootPath: staging, limits: options.limits, idBase: options.idBase, idCount: options.idCount)
            let readers = try resolved.layers.map { (path) throws(ContainerRuntimeError) in try ArchiveReader(path: path) }
            let total = readers.reduce(UInt64(0)) { $0 + $1.size }
            var before: UInt64 = 0
            for reader in readers {
                let offset = before
                try extractor.apply(reader, whiteouts: true) { done in
                    progress?(ImagePullProgress(phase: .unpack, bytesDone: offset + done, bytesTotal: total))
                }
                before += reader.size
            }
            try FileTree.remove(layoutPath)
        }
        if options.durable {
            let fd = open(staging, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if fd >= 0 {
                let rc = nshim_syncfs(fd)
                close(fd)
                if rc < 0 { throw .io(operation: "syncfs", path: staging, errno: -rc) }
            }
        }
        let directory = imageDirectory(digest)
        guard mkdir(directory, 0o700) == 0 else { throw .io(operation: "mkdir", path: directory, errno: errno) }
        guard mkdir(usersDirectory(digest), 0o700) == 0 else { throw .io(operation: "mkdir", path: usersDirectory(digest), errno: errno) }
        let rootfs = directory + "/rootfs"
        guard rename(staging, rootfs) == 0 else { throw .io(operation: "rename", path: staging, errno: errno) }
        let record = ImageRecord(digest: digest, url: url, format: format, archiveBytes: bytes, unpackedBytes: extractor.bytesWritten,
                                 entries: extractor.entryCount, createdAt: Date(), config: config,
                                 warnings: Array(extractor.warnings.prefix(20)), rootfs: rootfs)
        try writeAtomically(Self.encode(record), to: recordPath(digest), durable: options.durable)
        return record
    }

    private func makeImageRoot(_ path: String) throws(ContainerRuntimeError) {
        guard mkdir(path, 0o755) == 0, chmod(path, 0o755) == 0 else { throw .io(operation: "mkdir", path: path, errno: errno) }
        guard chown(path, options.idBase, options.idBase) == 0 else { throw .io(operation: "chown", path: path, errno: errno) }
    }

    // MARK: remove

    /// Removes an image no container uses. Idempotent for an interrupted remove; an image that is
    /// not there at all is `imageNotFound`.
    public func remove(digest: String) throws(ContainerRuntimeError) {
        let digest = try ImageDigest.validate(digest)
        guard let lock = try DigestLock.tryAcquire(directory: locksDirectory, digest: digest, timeout: .seconds(5)) else {
            throw .image("image \(digest) is being pulled or prepared; try again when that is done")
        }
        defer { lock.release() }
        let directory = imageDirectory(digest)
        var info = stat()
        guard lstat(directory, &info) == 0 else { throw .imageNotFound(digest: digest) }
        let inUse = users(digest: digest)
        guard inUse.isEmpty else { throw .imageInUse(digest: digest, containers: inUse) }
        // The record goes first: from here on the directory is an incomplete image, never used.
        if unlink(recordPath(digest)) != 0 && errno != ENOENT { throw .io(operation: "unlink", path: recordPath(digest), errno: errno) }
        let doomed = tmpDirectory + "/" + digest + ".removing-" + UUID().uuidString.prefix(8).lowercased()
        guard rename(directory, doomed) == 0 else { throw .io(operation: "rename", path: directory, errno: errno) }
        try FileTree.remove(doomed)
    }

    // MARK: records

    /// Dates stay in Foundation's default form (seconds as a double) so a record reads back equal.
    static let decoder = JSONDecoder()

    static func encode<T: Encodable>(_ value: T) throws(ContainerRuntimeError) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do { return try encoder.encode(value) } catch { throw .image("encoding a record failed: \(error)") }
    }

    /// Temp file, fsync, rename, fsync of the directory: the old or the new file survives a crash.
    func writeAtomically(_ data: Data, to path: String, durable: Bool) throws(ContainerRuntimeError) {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io(operation: "create", path: temporary, errno: errno) }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = !durable || fsync(fd) == 0
        let err = errno
        close(fd)
        guard written == data.count, synced else { throw .io(operation: "write", path: temporary, errno: err) }
        guard rename(temporary, path) == 0 else { throw .io(operation: "rename", path: path, errno: errno) }
        if durable {
            let dir = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if dir >= 0 {
                fsync(dir)
                close(dir)
            }
        }
    }
}

/// flock(2) on `<store>/.locks/<digest>`: one pull, prepare or remove of a digest at a time, across
/// processes. The kernel drops it if the holder dies.
final class DigestLock: Sendable {
    private let fd: Int32

    private init(fd: Int32) { self.fd = fd }

    private static func open(_ directory: String, _ digest: String) throws(ContainerRuntimeError) -> Int32 {
        let path = directory + "/" + digest
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io(operation: "open lock", path: path, errno: errno) }
        return fd
    }

    /// Waits (polling, cancellable) until the lock is free.
    static func acquire(directory: String, digest: String) async throws(ContainerRuntimeError) -> DigestLock {
        let fd = try open(directory, digest)
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR else {
                let err = errno
                close(fd)
                throw .io(operation: "flock", path: directory + "/" + digest, errno: err)
            }
            do { try await Task.sleep(for: .milliseconds(50)) } catch {
                close(fd)
                throw .image("pull of \(digest) cancelled while waiting for another pull of it")
            }
        }
        return DigestLock(fd: fd)
    }

    /// The lock within `timeout`, or nil.
    static func tryAcquire(directory: String, digest: String, timeout: Duration) throws(ContainerRuntimeError) -> DigestLock? {
        let fd = try open(directory, digest)
        let deadline = ContinuousClock.now + timeout
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR, ContinuousClock.now < deadline else {
                close(fd)
                return nil
            }
            usleep(20_000)
        }
        return DigestLock(fd: fd)
    }

    func release() { close(fd) }
}
