import CNodeShim
import Foundation

/// Descriptor-relative file operations for trees that strangers shaped (image contents, containers'
/// upper directories): nothing here follows a symlink or crosses a mount.
enum FileTree {
    /// openat2 beneath `dirFD`, refusing symlinks anywhere in `path` (magic links included) and mount
    /// crossings. Returns the fd or -errno.
    static func openBeneath(_ dirFD: Int32, _ path: String, _ flags: Int32, mode: UInt32 = 0) -> Int32 {
        nshim_openat2(dirFD, path, UInt64(UInt32(bitPattern: flags | O_CLOEXEC)), UInt64(mode),
                      UInt64(NSHIM_RESOLVE_BENEATH | NSHIM_RESOLVE_NO_SYMLINKS | NSHIM_RESOLVE_NO_MAGICLINKS | NSHIM_RESOLVE_NO_XDEV))
    }

    /// mkdir -p for directories the runtime owns (store, per-container directories). The ones it
    /// creates get exactly `mode`, whatever the process umask; existing ones are left as they are.
    static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws(ContainerRuntimeError) {
        var current = ""
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, mode) == 0 {
                chmod(current, mode)
            } else if errno != EEXIST {
                throw .io(operation: "mkdir", path: current, errno: errno)
            }
        }
    }

    /// Names in the directory `fd` (not consumed), as raw bytes: a container may create names that
    /// are not UTF-8, and they must still be removable.
    static func entries(_ fd: Int32) -> [[CChar]]? {
        let own = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard own >= 0, let dir = fdopendir(own) else { return nil }
        defer { closedir(dir) }
        var names: [[CChar]] = []
        while let entry = readdir(dir) {
            let name = name(of: entry)
            if isDotOrDotDot(name) { continue }
            names.append(name)
        }
        return names
    }

    static func name(of entry: UnsafeMutablePointer<dirent>) -> [CChar] {
        withUnsafeBytes(of: entry.pointee.d_name) { raw in
            var bytes = raw.bindMemory(to: CChar.self).prefix { $0 != 0 }.map { $0 }
            bytes.append(0)
            return bytes
        }
    }

    static func isDotOrDotDot(_ name: [CChar]) -> Bool {
        name == [46, 0] || name == [46, 46, 0]
    }

    static func display(_ name: [CChar]) -> String {
        String(decoding: name.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Removes `path` and everything under it, if it exists.
    static func remove(_ path: String) throws(ContainerRuntimeError) {
        let parent = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        let fd = open(parent.isEmpty ? "/" : parent, NSHIM_O_PATH | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return }
            throw .io(operation: "open", path: parent, errno: errno)
        }
        defer { close(fd) }
        try removeTree(fd, Array(name.utf8CString), display: path)
    }

    /// Removes `name` in `parentFD` and everything under it, without recursion (a container can make
    /// a tree deeper than any stack) and with a bounded number of open descriptors: past
    /// `maxOpen` levels, a subdirectory is moved up to the top directory and removed from there.
    /// Refuses to cross into another filesystem (a mount left in the tree).
    static func removeTree(_ parentFD: Int32, _ name: [CChar], display: String, maxOpen: Int = 64) throws(ContainerRuntimeError) {
        var info = stat()
        if fstatat(parentFD, name, &info, AT_SYMLINK_NOFOLLOW) != 0 {
            if errno == ENOENT { return }
            throw .io(operation: "stat", path: display, errno: errno)
        }
        if (info.st_mode & S_IFMT) != S_IFDIR {
            if unlinkat(parentFD, name, 0) != 0 && errno != ENOENT { throw .io(operation: "unlink", path: display, errno: errno) }
            return
        }
        let device = info.st_dev
        struct Level { let dir: OpaquePointer; let fd: Int32; let name: [CChar] }
        func openLevel(_ at: Int32, _ child: [CChar]) throws(ContainerRuntimeError) -> Level {
            let fd = openat(at, child, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { throw .io(operation: "open directory in", path: display, errno: errno) }
            var st = stat()
            guard fstat(fd, &st) == 0, st.st_dev == device else {
                close(fd)
                throw .io(operation: "remove (a mount point is inside; unmount it first)", path: display, errno: EBUSY)
            }
            guard let dir = fdopendir(fd) else {
                close(fd)
                throw .io(operation: "read directory in", path: display, errno: errno)
            }
            return Level(dir: dir, fd: fd, name: child)
        }
        var stack = [try openLevel(parentFD, name)]
        defer { for level in stack { closedir(level.dir) } }
        var moved = 0
        var removedSincePass = 0
        while let level = stack.last {
            errno = 0
            guard let entry = readdir(level.dir) else {
                if errno != 0 { throw .io(operation: "read directory in", path: display, errno: errno) }
                stack.removeLast()
                closedir(level.dir)
                let above = stack.last?.fd ?? parentFD
                if unlinkat(above, level.name, AT_REMOVEDIR) == 0 || errno == ENOENT {
                    removedSincePass += 1
                    continue
                }
                // Only the top can be non-empty here: subtrees moved into it after its listing began.
                guard stack.isEmpty, errno == ENOTEMPTY, removedSincePass > 0 else {
                    throw .io(operation: "remove directory in", path: display, errno: errno)
                }
                removedSincePass = 0
                stack.append(try openLevel(parentFD, name))
                continue
            }
            let child = Self.name(of: entry)
            if isDotOrDotDot(child) { continue }
            var isDirectory = entry.pointee.d_type == UInt8(DT_DIR)
            if entry.pointee.d_type == UInt8(DT_UNKNOWN) {
                var st = stat()
                if fstatat(level.fd, child, &st, AT_SYMLINK_NOFOLLOW) == 0 { isDirectory = (st.st_mode & S_IFMT) == S_IFDIR }
            }
            if !isDirectory {
                if unlinkat(level.fd, child, 0) != 0 && errno != ENOENT { throw .io(operation: "unlink in", path: display, errno: errno) }
                removedSincePass += 1
                continue
            }
            if stack.count < maxOpen {
                stack.append(try openLevel(level.fd, child))
                continue
            }
            // Too deep to hold open: move this subtree up to the top, where a later pass finds it.
            var done = false
            for attempt in 0..<1000 {
                moved += 1
                let target = Array(".removing-\(moved)-\(attempt)".utf8CString)
                if renameat(level.fd, child, stack[0].fd, target) == 0 { done = true; break }
                if errno != EEXIST && errno != ENOTEMPTY && errno != ENOTDIR { break }
            }
            guard done else { throw .io(operation: "flatten a deep directory in", path: display, errno: errno) }
            removedSincePass += 1
        }
    }
}
