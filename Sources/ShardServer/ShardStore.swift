#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization

/// The namespaces under one or more data directories. Each namespace is a sub-directory of one
/// of them (`DATA/NAME/settings.json`, `index.snapshot` and `seg-NNNNNNNN.dat` files); each
/// `DATA/.lock` keeps a second server off the directory, and `DATA/.trash` holds deleted
/// namespaces until their files are gone. A new namespace goes where `placement` says.
final class ShardStore: Sendable {
    static let defaultNamespace = "default"

    let roots: [String]
    let limits: StoreLimits
    private let logger: Logger
    private let namespaces: Mutex<[String: Namespace]>
    /// The flocks on each DATA/.lock; emptied once released.
    private let lockFDs: Mutex<[Int32]>

    private init(roots: [String], limits: StoreLimits, logger: Logger, namespaces: [String: Namespace], lockFDs: [Int32]) {
        self.roots = roots
        self.limits = limits
        self.logger = logger
        self.namespaces = Mutex(namespaces)
        self.lockFDs = Mutex(lockFDs)
    }

    deinit { close() }

    /// Releases the data directories for another server (stop, then start again in one process).
    func close() {
        lockFDs.withLock { fds in
            for fd in fds { Glibc.close(fd) }
            fds = []
        }
    }

    static func open(root: String, limits: StoreLimits, logger: Logger) throws -> ShardStore {
        try open(roots: [root], limits: limits, logger: logger)
    }

    /// Locks every data directory, then opens every namespace found in them. A namespace name
    /// present in two directories is refused: which copy is current cannot be told.
    static func open(roots: [String], limits: StoreLimits, logger: Logger) throws -> ShardStore {
        var fds: [Int32] = []
        do {
            for root in roots {
                try FileIO.makeDirectory(root)
                let lockPath = root + "/.lock"
                let fd = try FileIO.open(lockPath, flags: O_RDWR | O_CREAT)
                guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                    let err = errno
                    Glibc.close(fd)
                    throw ShardServerError.io(operation: "lock (is another shard server using this data directory?)",
                                              path: lockPath, errno: err)
                }
                fds.append(fd)
                let trash = root + "/.trash"
                if FileIO.exists(trash) { try FileIO.removeTree(trash) }
            }
            var loaded: [String: Namespace] = [:]
            for root in roots {
                for name in try FileIO.listDirectory(root).sorted() where validateName(name) == nil {
                    let dir = root + "/" + name
                    guard FileIO.isDirectory(dir), FileIO.exists(dir + "/" + Namespace.settingsFile) else { continue }
                    if let other = loaded[name] {
                        throw ShardServerError.namespaceConflict(name, directories: [other.directory, dir])
                    }
                    loaded[name] = try Namespace.open(name: name, directory: dir, limits: limits, logger: logger)
                }
            }
            if loaded[defaultNamespace] == nil {
                let root = roots[placement(usage(roots: roots, namespaces: loaded))]
                loaded[defaultNamespace] = try Namespace.create(
                    name: defaultNamespace, directory: root + "/" + defaultNamespace, limits: limits,
                    settings: NamespaceSettings(), logger: logger)
                try FileIO.syncDirectory(root)
            }
            return ShardStore(roots: roots, limits: limits, logger: logger, namespaces: loaded, lockFDs: fds)
        } catch {
            for fd in fds { Glibc.close(fd) }
            throw error
        }
    }

    /// A data directory's free space and how many namespaces it already holds.
    struct RootUsage: Equatable {
        var freeBytes: UInt64
        var namespaces: Int
    }

    /// Which directory a new namespace goes to: the most free space per namespace already there
    /// (free / (namespaces + 1)), so a disk with twice the room takes about twice the namespaces,
    /// and directories on one file system take turns. Ties go to the first listed.
    static func placement(_ usage: [RootUsage]) -> Int {
        var best = 0
        var bestScore = -1.0
        for (i, root) in usage.enumerated() {
            let score = Double(root.freeBytes) / Double(root.namespaces + 1)
            if score > bestScore {
                best = i
                bestScore = score
            }
        }
        return best
    }

    private static func usage(roots: [String], namespaces: [String: Namespace]) -> [RootUsage] {
        roots.map { root in
            var fs = statvfs()
            let free = statvfs(root, &fs) == 0 ? UInt64(fs.f_frsize) * UInt64(fs.f_bavail) : 0
            let count = namespaces.values.filter { $0.directory == root + "/" + $0.name }.count
            return RootUsage(freeBytes: free, namespaces: count)
        }
    }

    /// nil when `name` may name a namespace, else why not. Names become directory names.
    static func validateName(_ name: String) -> String? {
        let bytes = Array(name.utf8)
        if bytes.isEmpty { return "empty" }
        if bytes.count > 128 { return "longer than 128 bytes" }
        if bytes.first == UInt8(ascii: ".") { return "starts with a dot" }
        for b in bytes {
            let ok = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                || b == UInt8(ascii: "-") || b == UInt8(ascii: "_") || b == UInt8(ascii: ".")
            if !ok { return "only letters, digits, '-', '_' and '.' are allowed" }
        }
        return nil
    }

    func namespace(_ name: String) -> Namespace? { namespaces.withLock { $0[name] } }

    func names() -> [String] { namespaces.withLock { $0.keys.sorted() } }

    func all() -> [Namespace] { namespaces.withLock { Array($0.values) } }

    func create(name: String, settings: NamespaceSettings) throws -> Namespace {
        if let problem = Self.validateName(name) { throw ShardServerError.invalidNamespaceName(name, reason: problem) }
        // Creation does disk I/O under the registry lock; it is rare and keeps two NSNEWs of one
        // name from racing.
        return try namespaces.withLock { table in
            if table[name] != nil { throw ShardServerError.namespaceExists(name) }
            let root = roots[Self.placement(Self.usage(roots: roots, namespaces: table))]
            let dir = root + "/" + name
            if FileIO.exists(dir) { try FileIO.removeTree(dir) }  // leftovers of a crashed creation
            let namespace = try Namespace.create(name: name, directory: dir, limits: limits, settings: settings,
                                                 logger: logger)
            try FileIO.syncDirectory(root)
            table[name] = namespace
            return namespace
        }
    }

    /// Removes a namespace: it disappears at once for new lookups, sessions still on it get an
    /// error on their next command, and its files go to the trash and are removed. Readers still
    /// holding a segment keep their descriptors until they finish.
    func delete(name: String) throws {
        if name == Self.defaultNamespace { throw ShardServerError.refused("Cannot remove default namespace") }
        let namespace: Namespace = try namespaces.withLock { table in
            guard let ns = table.removeValue(forKey: name) else { throw ShardServerError.namespaceMissing(name) }
            return ns
        }
        namespace.markRemoved()
        // The trash of the namespace's own directory: rename cannot cross file systems.
        let root = String(namespace.directory.dropLast(name.utf8.count + 1))
        let trash = root + "/.trash"
        try FileIO.makeDirectory(trash)
        var target = trash + "/" + name
        var n = 0
        while FileIO.exists(target) && n < 1000 { n += 1; target = trash + "/" + name + "." + String(n) }
        guard rename(namespace.directory, target) == 0 else {
            throw ShardServerError.io(operation: "rename to trash", path: namespace.directory, errno: errno)
        }
        try FileIO.syncDirectory(root)
        do { try FileIO.removeTree(target) } catch {
            // The namespace is gone either way; the trash is emptied again at the next start.
            logger.warning("could not empty the trash", metadata: ["path": "\(target)", "error": "\(error)"])
        }
    }

    /// Rewrites the index snapshot of every namespace that wants one (all with `force`: at stop).
    func writeSnapshots(force: Bool) {
        for namespace in all() where force || namespace.wantsSnapshot {
            do { try namespace.writeSnapshot(force: force) } catch {
                logger.error("index snapshot failed", metadata: ["namespace": "\(namespace.name)", "error": "\(error)"])
            }
        }
    }

    /// fsync of every namespace written since its last sync.
    func syncAll() {
        for namespace in all() {
            do { try namespace.syncIfNeeded() } catch {
                logger.error("fsync failed", metadata: ["namespace": "\(namespace.name)", "error": "\(error)"])
            }
        }
    }
}
