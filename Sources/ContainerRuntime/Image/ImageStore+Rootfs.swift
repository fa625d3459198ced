import CNodeShim
import Foundation

/// Per-container roots on top of a stored image. In the container's directory (the bundle):
///
///     rootfs/               the mount point given to the spec's root.path
///     image-rootfs.json     which image and container, overlay or copy (written before mounting)
///     image-layers/         0700: upper/ and work/ (overlay) or copy/ — unreachable for host users
///
/// Both calls are idempotent: prepare after a reboot mounts the same upper again (the container's
/// writes survive), release after a crash finishes what is left.
extension ImageStore {
    struct RootfsMarker: Codable {
        var digest: String
        var containerID: String
        var mode: ContainerRootfs.Mode
        var fallbackReason: String?
    }

    static let overlayMagic: Int64 = 0x794c_7630
    static let remount: UInt = 32  // MS_REMOUNT

    /// Mounts a writable root for `containerID` in `directory` over image `digest` and returns it.
    public func prepareRootfs(digest: String, containerID: String, at directory: String) throws(ContainerRuntimeError) -> ContainerRootfs {
        let digest = try ImageDigest.validate(digest)
        try OCIRuntime.validate(id: containerID)
        let directory = try Self.containerDirectory(directory)
        guard let record = image(digest: digest) else { throw .imageNotFound(digest: digest) }
        let rootfs = directory + "/rootfs"
        let layers = directory + "/image-layers"
        let markerPath = directory + "/image-rootfs.json"
        // The container's root is reached by the container's own (unprivileged) uid during setup.
        try FileTree.makeDirectories(directory, mode: 0o711)
        let existing = Self.loadMarker(markerPath)
        if let existing, existing.digest != digest || existing.containerID != containerID {
            throw .image("\(directory) already holds the rootfs of container \(existing.containerID) (image \(existing.digest)); release it first")
        }
        // Recorded in the store first: while it exists, the image cannot be removed from under the mount.
        try addUser(digest: digest, containerID: containerID)
        if mkdir(layers, 0o700) != 0 && errno != EEXIST { throw .io(operation: "mkdir", path: layers, errno: errno) }
        if mkdir(rootfs, 0o755) == 0 { chmod(rootfs, 0o755) } else if errno != EEXIST { throw .io(operation: "mkdir", path: rootfs, errno: errno) }

        var fallbackReason: String?
        let useOverlay = existing.map { $0.mode == .overlay } ?? (options.rootfs != .copy)
        if useOverlay {
            let marker = RootfsMarker(digest: digest, containerID: containerID, mode: .overlay, fallbackReason: nil)
            if existing == nil { try writeAtomically(Self.encode(marker), to: markerPath, durable: options.durable) }
            if Self.isOverlayMounted(rootfs, in: directory) { return ContainerRootfs(path: rootfs, mode: .overlay, fallbackReason: nil) }
            let reason = mountOverlay(lower: record.rootfs, layers: layers, at: rootfs)
            guard let reason else { return ContainerRootfs(path: rootfs, mode: .overlay, fallbackReason: nil) }
            // An upper that already holds the container's writes is not thrown away for a copy.
            guard options.rootfs == .automatic, existing == nil else {
                throw .image("overlayfs for \(rootfs) failed: \(reason)")
            }
            fallbackReason = "overlayfs failed (\(reason)); using a copy"
            for sub in ["upper", "work"] { try FileTree.remove(layers + "/" + sub) }
            unlink(markerPath)
        }
        let copy = layers + "/copy"
        var copyInfo = stat()
        if existing?.mode != .copy || lstat(copy, &copyInfo) != 0 {
            // A copy without a marker is one a crash interrupted: start it again.
            try FileTree.remove(copy)
            try Self.copyTree(from: record.rootfs, to: copy)
            if options.durable {
                let fd = open(copy, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                if fd >= 0 { _ = nshim_syncfs(fd); close(fd) }
            }
            let marker = RootfsMarker(digest: digest, containerID: containerID, mode: .copy, fallbackReason: fallbackReason)
            try writeAtomically(Self.encode(marker), to: markerPath, durable: options.durable)
        } else {
            fallbackReason = existing?.fallbackReason
        }
        if !Self.isBindOf(rootfs, copy) {
            var rc = nshim_mount_fs(copy, rootfs, nil, MountFlag.bind, nil)
            if rc == 0 { rc = nshim_mount_fs(nil, rootfs, nil, MountFlag.bind | Self.remount | MountFlag.nosuid | MountFlag.nodev, nil) }
            guard rc == 0 else {
                _ = nshim_umount2(rootfs, Int32(NSHIM_UMOUNT_NOFOLLOW))
                throw .io(operation: "bind-mount the copy onto", path: rootfs, errno: -rc)
            }
        }
        return ContainerRootfs(path: rootfs, mode: .copy, fallbackReason: fallbackReason)
    }

    /// Unmounts and removes the container's root (its writes included) and its claim on the image.
    /// The container must be stopped. Idempotent.
    public func releaseRootfs(containerID: String, at directory: String) throws(ContainerRuntimeError) {
        try OCIRuntime.validate(id: containerID)
        let directory = try Self.containerDirectory(directory)
        let rootfs = directory + "/rootfs"
        let markerPath = directory + "/image-rootfs.json"
        let marker = Self.loadMarker(markerPath)
        if let marker, marker.containerID != containerID {
            throw .image("\(directory) holds the rootfs of container \(marker.containerID), not \(containerID)")
        }
        // Stacked mounts (a prepare repeated by hand) come off one by one; EINVAL: nothing mounted.
        for _ in 0..<16 {
            var rc = nshim_umount2(rootfs, Int32(NSHIM_UMOUNT_NOFOLLOW))
            if rc == -EBUSY { rc = nshim_umount2(rootfs, Int32(NSHIM_UMOUNT_NOFOLLOW | NSHIM_MNT_DETACH)) }
            if rc == 0 { continue }
            if rc == -EINVAL || rc == -ENOENT { break }
            throw .io(operation: "unmount", path: rootfs, errno: -rc)
        }
        try FileTree.remove(directory + "/image-layers")
        try FileTree.remove(rootfs)
        if let marker {
            try removeUser(digest: marker.digest, containerID: containerID)
        } else {
            // A crash between claiming the image and writing the marker: the claim is found by name.
            for name in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] where ImageDigest.isDigest(name) {
                try removeUser(digest: name, containerID: containerID)
            }
        }
        if unlink(markerPath) != 0 && errno != ENOENT { throw .io(operation: "unlink", path: markerPath, errno: errno) }
    }

    // MARK: helpers

    private static func containerDirectory(_ path: String) throws(ContainerRuntimeError) -> String {
        guard path.hasPrefix("/"), !path.split(separator: "/").contains(".."), path.split(separator: "/").count > 0 else {
            throw .image("container directory '\(path)' must be an absolute path without '..' (and not /)")
        }
        return path.hasSuffix("/") ? String(path.dropLast()) : path
    }

    private static func loadMarker(_ path: String) -> RootfsMarker? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try? JSONDecoder().decode(RootfsMarker.self, from: data)
    }

    private func addUser(digest: String, containerID: String) throws(ContainerRuntimeError) {
        guard let lock = try DigestLock.tryAcquire(directory: locksDirectory, digest: digest, timeout: .seconds(30)) else {
            throw .image("image \(digest) is busy (being pulled or removed); try again")
        }
        defer { lock.release() }
        guard image(digest: digest) != nil else { throw .imageNotFound(digest: digest) }
        let path = usersDirectory(digest) + "/" + containerID
        let fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io(operation: "create", path: path, errno: errno) }
        if options.durable { fsync(fd) }
        close(fd)
    }

    private func removeUser(digest: String, containerID: String) throws(ContainerRuntimeError) {
        guard let digest = try? ImageDigest.validate(digest) else { return }
        let path = usersDirectory(digest) + "/" + containerID
        if unlink(path) != 0 && errno != ENOENT { throw .io(operation: "unlink", path: path, errno: errno) }
    }

    /// nil when mounted, else why not. Paths with `,` `:` or `\` cannot be written in overlay options.
    private func mountOverlay(lower: String, layers: String, at rootfs: String) -> String? {
        let upper = layers + "/upper", work = layers + "/work"
        for path in [lower, upper, work] where path.contains(where: { $0 == "," || $0 == ":" || $0 == "\\" }) {
            return "the path \(path) has a character overlay options cannot carry (, : \\)"
        }
        if mkdir(upper, 0o755) == 0 {
            // The merged root takes the upper directory's owner and mode: make them the image root's.
            var info = stat()
            if stat(lower, &info) == 0 {
                chown(upper, info.st_uid, info.st_gid)
                chmod(upper, info.st_mode & 0o7777)
            }
        } else if errno != EEXIST {
            return "mkdir \(upper): \(String(cString: strerror(errno)))"
        }
        if mkdir(work, 0o700) != 0 && errno != EEXIST { return "mkdir \(work): \(String(cString: strerror(errno)))" }
        let data = "lowerdir=\(lower),upperdir=\(upper),workdir=\(work)"
        let rc = nshim_mount_fs("overlay", rootfs, "overlay", MountFlag.nosuid | MountFlag.nodev, data)
        return rc == 0 ? nil : "mount -t overlay: \(String(cString: strerror(-rc))) (errno \(-rc))"
    }

    static func isOverlayMounted(_ rootfs: String, in directory: String) -> Bool {
        var mounted = stat(), parent = stat()
        guard lstat(rootfs, &mounted) == 0, lstat(directory, &parent) == 0 else { return false }
        return mounted.st_dev != parent.st_dev && nshim_filesystem_type(rootfs) == overlayMagic
    }

    /// Is `mountPoint` a bind mount of `source` (same inode, and a mount: its parent is elsewhere)?
    static func isBindOf(_ mountPoint: String, _ source: String) -> Bool {
        var a = stat(), b = stat()
        guard lstat(mountPoint, &a) == 0, stat(source, &b) == 0 else { return false }
        return a.st_dev == b.st_dev && a.st_ino == b.st_ino
    }

    // MARK: copy fallback

    /// Copies the image tree (reflinks where the filesystem can), keeping owners, modes, times,
    /// symlinks and hardlinks. The source is the store's own unpacked image.
    static func copyTree(from source: String, to destination: String) throws(ContainerRuntimeError) {
        guard mkdir(destination, 0o700) == 0 else { throw .io(operation: "mkdir", path: destination, errno: errno) }
        let src = open(source, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard src >= 0 else { throw .io(operation: "open", path: source, errno: errno) }
        defer { close(src) }
        let dst = open(destination, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard dst >= 0 else { throw .io(operation: "open", path: destination, errno: errno) }
        defer { close(dst) }
        var copier = TreeCopier(destinationRoot: dst, display: destination)
        try copier.copyDirectory(src, dst, relative: "")
        try copier.copyMetadata(src, to: dst, relative: ".")
    }
}

/// Depth-first copy with one open descriptor pair per level (image depth is capped when unpacking).
private struct TreeCopier {
    let destinationRoot: Int32
    let display: String
    /// First copy of each multiply-linked inode, by source inode: later names become hardlinks.
    var links: [UInt64: String] = [:]

    mutating func copyDirectory(_ src: Int32, _ dst: Int32, relative: String) throws(ContainerRuntimeError) {
        guard let names = FileTree.entries(src) else { throw .io(operation: "read directory", path: display + "/" + relative, errno: errno) }
        for name in names {
            let childRelative = relative.isEmpty ? FileTree.display(name) : relative + "/" + FileTree.display(name)
            var info = stat()
            guard fstatat(src, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { throw .io(operation: "stat", path: childRelative, errno: errno) }
            switch info.st_mode & S_IFMT {
            case S_IFDIR:
                guard mkdirat(dst, name, 0o700) == 0 else { throw .io(operation: "mkdir", path: display + "/" + childRelative, errno: errno) }
                let childSrc = openat(src, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard childSrc >= 0 else { throw .io(operation: "open", path: childRelative, errno: errno) }
                defer { close(childSrc) }
                let childDst = openat(dst, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard childDst >= 0 else { throw .io(operation: "open", path: display + "/" + childRelative, errno: errno) }
                defer { close(childDst) }
                try copyDirectory(childSrc, childDst, relative: childRelative)
                try copyMetadata(childSrc, to: childDst, relative: childRelative)
            case S_IFREG:
                if info.st_nlink > 1, let first = links[UInt64(info.st_ino)] {
                    guard linkat(destinationRoot, first, dst, name, 0) == 0 else { throw .io(operation: "link", path: display + "/" + childRelative, errno: errno) }
                    continue
                }
                try copyFile(src, dst, name, relative: childRelative)
                if info.st_nlink > 1 { links[UInt64(info.st_ino)] = childRelative }
            case S_IFLNK:
                var buffer = [CChar](repeating: 0, count: 4097)
                let n = readlinkat(src, name, &buffer, 4096)
                guard n >= 0 else { throw .io(operation: "readlink", path: childRelative, errno: errno) }
                buffer[n] = 0
                guard symlinkat(buffer, dst, name) == 0 else { throw .io(operation: "symlink", path: display + "/" + childRelative, errno: errno) }
                fchownat(dst, name, info.st_uid, info.st_gid, AT_SYMLINK_NOFOLLOW)
                var times = [info.st_atim, info.st_mtim]
                utimensat(dst, name, &times, AT_SYMLINK_NOFOLLOW)
            case S_IFIFO:
                guard mkfifoat(dst, name, 0o600) == 0 else { throw .io(operation: "mkfifo", path: display + "/" + childRelative, errno: errno) }
                fchownat(dst, name, info.st_uid, info.st_gid, AT_SYMLINK_NOFOLLOW)
                fchmodat(dst, name, info.st_mode & 0o7777, 0)
            default:
                continue  // the extractor writes nothing else
            }
        }
    }

    func copyFile(_ src: Int32, _ dst: Int32, _ name: [CChar], relative: String) throws(ContainerRuntimeError) {
        let from = openat(src, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard from >= 0 else { throw .io(operation: "open", path: relative, errno: errno) }
        defer { close(from) }
        let to = openat(dst, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard to >= 0 else { throw .io(operation: "create", path: display + "/" + relative, errno: errno) }
        defer { close(to) }
        if nshim_ficlone(to, from) != 0 {
            while true {
                let n = nshim_copy_file_range(from, to, 1 << 30)
                if n == -Int(EINTR) { continue }
                guard n >= 0 else { throw .io(operation: "copy", path: display + "/" + relative, errno: Int32(-n)) }
                if n == 0 { break }
            }
        }
        try copyMetadata(from, to: to, relative: relative)
    }

    func copyMetadata(_ from: Int32, to: Int32, relative: String) throws(ContainerRuntimeError) {
        var info = stat()
        guard fstat(from, &info) == 0 else { throw .io(operation: "stat", path: relative, errno: errno) }
        guard fchown(to, info.st_uid, info.st_gid) == 0, fchmod(to, info.st_mode & 0o7777) == 0 else {
            throw .io(operation: "chown/chmod", path: display + "/" + relative, errno: errno)
        }
        var times = [info.st_atim, info.st_mtim]
        futimens(to, &times)
    }
}
