import CNodeShim
import Foundation

/// Writes archive entries under one root directory, each relative to the root's descriptor, as
/// the image's bytes come from strangers:
/// - names with a `..` component, absolute names, over-long names and paths deeper than
///   `limits.maxDepth` are refused;
/// - parents are resolved with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV): an
///   entry whose path passes through a symlink is refused (a well-formed image never needs that:
///   tools list a tree's real paths), so nothing is written outside the root;
/// - the last component is replaced, never followed (unlink, then O_CREAT|O_EXCL|O_NOFOLLOW);
/// - a hardlink's target is resolved the same way and must be an earlier non-directory entry;
/// - device nodes are refused (the runtime gives containers their /dev); sockets are skipped;
/// - setuid/setgid bits are dropped from files, and extended attributes (file capabilities
///   included) are not written;
/// - uids/gids are shifted into the unprivileged range (`idBase` + id); ids past the range become
///   the range's `nobody` (65534), with a warning;
/// - total file bytes and the entry count are capped.
/// With `whiteouts`, OCI layer whiteouts apply: `.wh.NAME` removes NAME of a lower layer and
/// `.wh..wh..opq` empties its directory of lower layers' entries.
final class SafeExtractor {
    static let atEmptyPath: Int32 = 0x1000  // AT_EMPTY_PATH: link the file an O_PATH descriptor names
    let rootPath: String
    private let rootFD: Int32
    private let limits: ImageLimits
    private let idBase: UInt32
    private let idCount: UInt32
    private(set) var bytesWritten: UInt64 = 0
    private(set) var entryCount = 0
    /// Paths written by the layer being applied: an opaque whiteout keeps them.
    private var layerPaths = Set<String>()
    private var cachedParent: (path: String, fd: Int32)?
    private var strippedSetID = 0
    private var remappedIDs = 0
    private var skippedSockets = 0
    private var notes: [String] = []

    init(rootPath: String, limits: ImageLimits, idBase: UInt32, idCount: UInt32) throws(ContainerRuntimeError) {
        self.rootPath = rootPath
        self.limits = limits
        self.idBase = idBase
        self.idCount = max(1, idCount)
        rootFD = open(rootPath, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard rootFD >= 0 else { throw .io(operation: "open", path: rootPath, errno: errno) }
    }

    deinit {
        dropCache()
        close(rootFD)
    }

    /// What was changed or skipped, one line each, for the image record.
    var warnings: [String] {
        var out = notes
        if strippedSetID > 0 { out.append("setuid/setgid bits dropped from \(strippedSetID) file(s)") }
        if remappedIDs > 0 { out.append("\(remappedIDs) owner id(s) outside 0..<\(idCount) mapped to nobody (65534)") }
        if skippedSockets > 0 { out.append("\(skippedSockets) socket(s) skipped") }
        return out
    }

    /// Writes every entry of `reader` under the root. `progress` gets the archive bytes consumed.
    func apply(_ reader: ArchiveReader, whiteouts: Bool, progress: ((UInt64) -> Void)? = nil) throws(ContainerRuntimeError) {
        layerPaths.removeAll(keepingCapacity: true)
        defer { dropCache() }
        var reported: UInt64 = 0
        while let entry = try reader.next() {
            entryCount += 1
            guard entryCount <= limits.maxEntries else { throw .imageLimit(what: "the number of archive entries", limit: UInt64(limits.maxEntries)) }
            try write(entry, reader: reader, whiteouts: whiteouts)
            if let progress, reader.bytesRead &- reported >= 1 << 20 {
                reported = reader.bytesRead
                progress(reported)
            }
        }
        progress?(reader.size)
    }

    // MARK: names

    func components(_ path: String, entry: String) throws(ContainerRuntimeError) -> [Substring] {
        guard !path.hasPrefix("/") else { throw .imageEntryRefused(entry: entry, reason: "absolute path (names must be relative to the image root)") }
        guard path.utf8.count < 4096 else { throw .imageEntryRefused(entry: String(entry.prefix(200)) + "...", reason: "path longer than 4095 bytes") }
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) where part != "." {
            guard part != ".." else { throw .imageEntryRefused(entry: entry, reason: "a '..' component (it would climb out of the image root)") }
            guard part.utf8.count <= 255 else { throw .imageEntryRefused(entry: entry, reason: "a name longer than 255 bytes") }
            parts.append(part)
        }
        guard parts.count <= limits.maxDepth else { throw .imageLimit(what: "the path depth of '\(entry.prefix(200))'", limit: UInt64(limits.maxDepth)) }
        return parts
    }

    // MARK: entries

    private func write(_ entry: ArchiveEntry, reader: ArchiveReader, whiteouts: Bool) throws(ContainerRuntimeError) {
        let parts = try components(entry.path, entry: entry.path)
        guard let last = parts.last else {
            // "./": the root directory's own owner and mode.
            guard entry.kind == .directory else { throw .imageEntryRefused(entry: entry.path, reason: "the image root must be a directory") }
            try setMetadata(fd: rootFD, entry: entry, isDirectory: true)
            return
        }
        let name = String(last)
        if whiteouts && name.hasPrefix(".wh.") {
            try whiteout(parts, entry: entry.path)
            return
        }
        let path = whiteouts ? parts.joined(separator: "/") : entry.path
        switch entry.kind {
        case .characterDevice, .blockDevice:
            throw .imageEntryRefused(entry: entry.path, reason: "a device node; images may not carry devices (the runtime gives containers their /dev)")
        case .unknown(let type):
            throw .imageEntryRefused(entry: entry.path, reason: "unknown file type 0o\(String(type, radix: 8))")
        case .socket:
            skippedSockets += 1
            return
        default:
            break
        }
        let parentFD = try openParent(parts.dropLast(), entry: entry.path)
        switch entry.kind {
        case .directory:
            try makeDirectory(parentFD, name, entry: entry)
        case .file:
            try writeFile(parentFD, name, entry: entry, reader: reader)
        case .symlink(let target):
            guard target.utf8.count < 4096, !target.isEmpty else { throw .imageEntryRefused(entry: entry.path, reason: "symlink target empty or longer than 4095 bytes") }
            guard try replacing(parentFD, name, entry: entry.path, { symlinkat(target, parentFD, name) }) == 0 else {
                throw .io(operation: "symlink", path: path, errno: errno)
            }
            guard fchownat(parentFD, name, owner(entry.uid), owner(entry.gid), AT_SYMLINK_NOFOLLOW) == 0 else {
                throw .io(operation: "lchown", path: path, errno: errno)
            }
            if let mtime = entry.mtime {
                var times = [mtime, mtime]
                utimensat(parentFD, name, &times, AT_SYMLINK_NOFOLLOW)
            }
        case .hardlink(let target):
            try link(parentFD, name, target: target, entry: entry.path)
        case .fifo:
            guard try replacing(parentFD, name, entry: entry.path, { mkfifoat(parentFD, name, 0o600) }) == 0 else {
                throw .io(operation: "mkfifo", path: path, errno: errno)
            }
            // The FIFO was just made by this extractor, the only writer of the tree: no race to follow.
            guard fchownat(parentFD, name, owner(entry.uid), owner(entry.gid), AT_SYMLINK_NOFOLLOW) == 0,
                  fchmodat(parentFD, name, mode_t(permissions(entry.mode, directory: false)), 0) == 0 else {
                throw .io(operation: "chown/chmod", path: path, errno: errno)
            }
        case .characterDevice, .blockDevice, .socket, .unknown:
            break
        }
        if whiteouts { layerPaths.insert(path) }
    }

    /// Runs `make` (a create that fails with EEXIST when the name is taken); when the name is
    /// taken, clears it (a later entry replaces an earlier one, as tar does) and runs it again.
    private func replacing(_ parentFD: Int32, _ name: String, entry: String, _ make: () -> Int32) throws(ContainerRuntimeError) -> Int32 {
        let result = make()
        guard result < 0 && errno == EEXIST else { return result }
        try clear(parentFD, name, entry: entry)
        return make()
    }

    /// The parent directory of an entry, created (as the image root's owner) when the archive did not
    /// list it. Refused when it passes through a symlink or a non-directory.
    private func openParent(_ parts: ArraySlice<Substring>, entry: String) throws(ContainerRuntimeError) -> Int32 {
        if parts.isEmpty { return rootFD }
        let path = parts.joined(separator: "/")
        if let cached = cachedParent, cached.path == path { return cached.fd }
        var fd = FileTree.openBeneath(rootFD, path, NSHIM_O_PATH | O_DIRECTORY)
        if fd == -ENOENT {
            fd = try createParents(parts, entry: entry)
        }
        guard fd >= 0 else { throw refusal(-fd, entry: entry, what: "its parent directory") }
        dropCache()
        cachedParent = (path, fd)
        return fd
    }

    private func createParents(_ parts: ArraySlice<Substring>, entry: String) throws(ContainerRuntimeError) -> Int32 {
        var current = dup(rootFD)
        guard current >= 0 else { throw .io(operation: "dup", path: rootPath, errno: errno) }
        var sofar: [Substring] = []
        for part in parts {
            let name = String(part)
            sofar.append(part)
            var next = openat(current, name, NSHIM_O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if next < 0 && errno == ENOENT {
                if mkdirat(current, name, 0o755) != 0 && errno != EEXIST {
                    let err = errno
                    close(current)
                    throw .io(operation: "mkdir", path: rootPath + "/" + sofar.joined(separator: "/"), errno: err)
                }
                fchownat(current, name, idBase, idBase, AT_SYMLINK_NOFOLLOW)
                fchmodat(current, name, 0o755, 0)  // whatever the umask; just made, so nothing to follow
                layerPaths.insert(sofar.joined(separator: "/"))
                next = openat(current, name, NSHIM_O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            }
            let err = errno
            close(current)
            guard next >= 0 else { throw refusal(err, entry: entry, what: "its parent directory") }
            current = next
        }
        return current
    }

    private func refusal(_ err: Int32, entry: String, what: String) -> ContainerRuntimeError {
        switch err {
        case ELOOP: return .imageEntryRefused(entry: entry, reason: "\(what) passes through a symlink (writes may not follow links)")
        case ENOTDIR: return .imageEntryRefused(entry: entry, reason: "\(what) passes through something that is not a directory")
        case EXDEV: return .imageEntryRefused(entry: entry, reason: "\(what) leaves the image root")
        default: return .io(operation: "resolve \(what) of", path: entry, errno: err)
        }
    }

    private func dropCache() {
        if let cached = cachedParent { close(cached.fd) }
        cachedParent = nil
    }

    /// Removes whatever is at `name` (a later entry replaces an earlier one, as tar does).
    private func clear(_ parentFD: Int32, _ name: String, entry: String) throws(ContainerRuntimeError) {
        var info = stat()
        guard fstatat(parentFD, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
            if errno == ENOENT { return }
            throw .io(operation: "stat", path: entry, errno: errno)
        }
        if (info.st_mode & S_IFMT) == S_IFDIR {
            dropCache()
            try FileTree.removeTree(parentFD, Array(name.utf8CString), display: rootPath + "/" + entry)
        } else if unlinkat(parentFD, name, 0) != 0 && errno != ENOENT {
            throw .io(operation: "unlink", path: entry, errno: errno)
        }
    }

    private func makeDirectory(_ parentFD: Int32, _ name: String, entry: ArchiveEntry) throws(ContainerRuntimeError) {
        var info = stat()
        if fstatat(parentFD, name, &info, AT_SYMLINK_NOFOLLOW) == 0, (info.st_mode & S_IFMT) != S_IFDIR {
            try clear(parentFD, name, entry: entry.path)
        }
        if mkdirat(parentFD, name, 0o700) != 0 && errno != EEXIST { throw .io(operation: "mkdir", path: entry.path, errno: errno) }
        let fd = openat(parentFD, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw .io(operation: "open directory", path: entry.path, errno: errno) }
        defer { close(fd) }
        try setMetadata(fd: fd, entry: entry, isDirectory: true)
    }

    private func writeFile(_ parentFD: Int32, _ name: String, entry: ArchiveEntry, reader: ArchiveReader) throws(ContainerRuntimeError) {
        let declared = UInt64(max(0, entry.size))
        try charge(declared)
        let fd = try replacing(parentFD, name, entry: entry.path) { openat(parentFD, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600) }
        guard fd >= 0 else { throw .io(operation: "create", path: entry.path, errno: errno) }
        defer { close(fd) }
        var end: UInt64 = 0
        try reader.readData { (block, offset) throws(ContainerRuntimeError) in
            guard offset >= 0 else { throw .imageFormat("entry \(entry.path): negative data offset") }
            let blockEnd = UInt64(offset) + UInt64(block.count)
            if blockEnd > max(end, declared) { try charge(blockEnd - max(end, declared)) }
            var done = 0
            while done < block.count {
                let n = pwrite(fd, block.baseAddress! + done, block.count - done, off_t(offset) + off_t(done))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw .io(operation: "write", path: rootPath + "/" + entry.path, errno: n < 0 ? errno : EIO) }
                done += n
            }
            end = max(end, blockEnd)
        }
        // Sparse files end in a hole that no data block covers.
        let size = max(end, declared)
        if size > end, ftruncate(fd, off_t(size)) != 0 { throw .io(operation: "truncate", path: entry.path, errno: errno) }
        try setMetadata(fd: fd, entry: entry, isDirectory: false)
    }

    private func link(_ parentFD: Int32, _ name: String, target: String, entry: String) throws(ContainerRuntimeError) {
        let targetParts = try components(target, entry: entry)
        guard !targetParts.isEmpty else { throw .imageEntryRefused(entry: entry, reason: "a hardlink to the image root") }
        let targetPath = targetParts.joined(separator: "/")
        let ownPath = try components(entry, entry: entry).joined(separator: "/")
        if targetPath == ownPath { return }
        let fd = FileTree.openBeneath(rootFD, targetPath, NSHIM_O_PATH | O_NOFOLLOW)
        guard fd >= 0 else {
            if fd == -ENOENT { throw .imageEntryRefused(entry: entry, reason: "hardlink target '\(target)' is not an earlier entry of the image") }
            throw refusal(-fd, entry: entry, what: "its hardlink target '\(target)'")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .io(operation: "stat", path: targetPath, errno: errno) }
        guard (info.st_mode & S_IFMT) != S_IFDIR else { throw .imageEntryRefused(entry: entry, reason: "a hardlink to a directory") }
        guard try replacing(parentFD, name, entry: entry, { linkat(fd, "", parentFD, name, Self.atEmptyPath) }) == 0 else {
            throw .io(operation: "link", path: entry, errno: errno)
        }
    }

    private func whiteout(_ parts: [Substring], entry: String) throws(ContainerRuntimeError) {
        let name = String(parts[parts.count - 1])
        let parentParts = parts.dropLast()
        let parentPath = parentParts.joined(separator: "/")
        if name == ".wh..wh..opq" {
            try opaque(parentPath, entry: entry)
            return
        }
        if name.hasPrefix(".wh..wh.") { return }  // aufs bookkeeping (.wh..wh.plnk, ...): not content
        let target = String(name.dropFirst(4))
        guard !target.isEmpty, target != ".", target != ".." else { throw .imageEntryRefused(entry: entry, reason: "a whiteout of nothing") }
        let fd: Int32
        if parentParts.isEmpty {
            fd = openat(rootFD, ".", NSHIM_O_PATH | O_DIRECTORY | O_CLOEXEC)
            guard fd >= 0 else { throw .io(operation: "open", path: rootPath, errno: errno) }
        } else {
            fd = FileTree.openBeneath(rootFD, parentPath, NSHIM_O_PATH | O_DIRECTORY)
            if fd == -ENOENT { return }  // nothing below to hide
            guard fd >= 0 else { throw refusal(-fd, entry: entry, what: "its directory") }
        }
        defer { close(fd) }
        dropCache()
        try FileTree.removeTree(fd, Array(target.utf8CString), display: rootPath + "/" + (parentParts + [Substring(target)]).joined(separator: "/"))
    }

    /// Removes what lower layers put in `directory`; this layer's own entries stay.
    private func opaque(_ directory: String, entry: String) throws(ContainerRuntimeError) {
        let fd: Int32
        if directory.isEmpty {
            fd = openat(rootFD, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard fd >= 0 else { throw .io(operation: "open", path: rootPath, errno: errno) }
        } else {
            fd = FileTree.openBeneath(rootFD, directory, O_RDONLY | O_DIRECTORY)
            if fd == -ENOENT { return }
            guard fd >= 0 else { throw refusal(-fd, entry: entry, what: "its directory") }
        }
        defer { close(fd) }
        dropCache()
        for child in FileTree.entries(fd) ?? [] {
            let childName = FileTree.display(child)
            let childPath = directory.isEmpty ? childName : directory + "/" + childName
            if layerPaths.contains(childPath) { continue }
            try FileTree.removeTree(fd, child, display: rootPath + "/" + childPath)
        }
    }

    // MARK: metadata

    private func charge(_ bytes: UInt64) throws(ContainerRuntimeError) {
        bytesWritten += bytes
        guard bytesWritten <= limits.maxUnpackedBytes else { throw .imageLimit(what: "the unpacked size (bytes)", limit: limits.maxUnpackedBytes) }
    }

    private func owner(_ id: Int64) -> UInt32 {
        if id >= 0 && id < Int64(idCount) { return idBase + UInt32(id) }
        remappedIDs += 1
        return idBase + min(65_534, idCount - 1)
    }

    private func permissions(_ mode: UInt32, directory: Bool) -> UInt32 {
        var bits = mode & 0o7777
        if directory {
            bits &= ~UInt32(S_ISUID)
        } else if bits & UInt32(S_ISUID | S_ISGID) != 0 {
            strippedSetID += 1
            bits &= ~UInt32(S_ISUID | S_ISGID)
        }
        return bits
    }

    private func setMetadata(fd: Int32, entry: ArchiveEntry, isDirectory: Bool) throws(ContainerRuntimeError) {
        guard fchown(fd, owner(entry.uid), owner(entry.gid)) == 0 else { throw .io(operation: "chown", path: entry.path, errno: errno) }
        guard fchmod(fd, mode_t(permissions(entry.mode, directory: isDirectory))) == 0 else { throw .io(operation: "chmod", path: entry.path, errno: errno) }
        if let mtime = entry.mtime {
            var times = [mtime, mtime]
            futimens(fd, &times)
        }
    }
}
