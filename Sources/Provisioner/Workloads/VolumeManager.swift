import Foundation
import GridTypes

/// volume and zmount workloads: a filesystem of exactly the requested size, an ext4 image file
/// loop-mounted under `root`, so a tenant can never use more disk than it reserved. The image's
/// root directory belongs to the containers' unprivileged uid range.
public struct VolumeManager: WorkloadManager {
    public let root: String
    /// Owner of the filesystem's root: container uid 0 in the secure defaults' user namespace.
    let rootOwner: UInt32

    public init(root: String, rootOwner: UInt32 = 100_000) {
        self.root = root
        self.rootOwner = rootOwner
    }

    public var types: [WorkloadType] { [.volume, .zmount] }

    func imagePath(_ id: WorkloadID) -> String { "\(root)/\(id.nodeName).img" }
    func mountPath(_ id: WorkloadID) -> String { "\(root)/\(id.nodeName)" }

    public func diskPath(_ id: WorkloadID) -> String? {
        Self.isMountPoint(mountPath(id)) ? mountPath(id) : nil
    }

    public func apply(_ workload: Workload, id: WorkloadID, context: DeploymentContext, paused: Bool) async throws(ProvisionerError) -> JSONValue? {
        let size: UInt64
        switch workload.data {
        case .volume(let d), .zmount(let d): size = d.size
        default: return nil
        }
        let name = id.description
        // Searchable by others: containers bind volumes as their unprivileged root (see ProvisionerSetup).
        try makeDirectory(root, mode: 0o711)
        let image = imagePath(id)
        var info = stat()
        if stat(image, &info) != 0 {
            // Built under a temporary name and renamed, so a crash never leaves a half-made image
            // that looks finished.
            let temporary = image + ".tmp"
            unlink(temporary)
            let fd = open(temporary, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw .system(operation: "create volume image", path: temporary, errno: errno) }
            let truncated = ftruncate(fd, off_t(size))
            let truncateErrno = errno
            close(fd)
            guard truncated == 0 else { throw .system(operation: "size volume image to \(size) bytes", path: temporary, errno: truncateErrno) }
            try SystemCommand.run("/usr/sbin/mkfs.ext4", ["-q", "-F", "-m", "0", "-E", "nodiscard,root_owner=\(rootOwner):\(rootOwner)", temporary],
                                  workload: name, operation: "make filesystem")
            guard rename(temporary, image) == 0 else { throw .system(operation: "rename volume image", path: temporary, errno: errno) }
            _ = stat(image, &info)
        }
        let mountpoint = mountPath(id)
        try makeDirectory(mountpoint, mode: 0o755)
        if !Self.isMountPoint(mountpoint) {
            try SystemCommand.run("/usr/bin/mount", ["-o", "loop,nosuid,nodev", image, mountpoint], workload: name, operation: "mount volume")
        }
        if UInt64(info.st_size) < size {
            // Growing is online and safe; the file grows first, then the filesystem.
            guard truncate(image, off_t(size)) == 0 else { throw .system(operation: "grow volume image", path: image, errno: errno) }
            let device = try loopDevice(mountedAt: mountpoint, workload: name)
            try SystemCommand.run("/usr/sbin/losetup", ["-c", device], workload: name, operation: "refresh loop size")
            try SystemCommand.run("/usr/sbin/resize2fs", [device], workload: name, operation: "grow filesystem")
        } else if UInt64(info.st_size) > size {
            throw .workload(name: name, operation: "resize", detail: "a volume cannot shrink (from \(info.st_size) to \(size) bytes); make a new one",
                            permanent: true)
        }
        return workload.type == WorkloadType.zmount.rawValue ? .object(["volume_id": .string(id.nodeName)]) : .object(["id": .string(id.nodeName)])
    }

    public func remove(_ id: WorkloadID, type: WorkloadType) async throws(ProvisionerError) {
        let mountpoint = mountPath(id)
        if Self.isMountPoint(mountpoint) {
            do {
                try SystemCommand.run("/usr/bin/umount", [mountpoint], workload: id.description, operation: "unmount volume")
            } catch {
                // Still busy (a process holds a file): detach now, the kernel frees it when released.
                try SystemCommand.run("/usr/bin/umount", ["-l", mountpoint], workload: id.description, operation: "detach volume")
            }
        }
        rmdir(mountpoint)
        for path in [imagePath(id), imagePath(id) + ".tmp"] where unlink(path) != 0 && errno != ENOENT {
            throw .system(operation: "delete volume image", path: path, errno: errno)
        }
    }

    public func existing() async throws(ProvisionerError) -> [WorkloadID] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: root) else { return [] }
        var found = Set<WorkloadID>()
        for name in names {
            var base = name
            for suffix in [".img.tmp", ".img"] where base.hasSuffix(suffix) { base = String(base.dropLast(suffix.count)) }
            if let id = WorkloadID(nodeName: base) { found.insert(id) }
        }
        return Array(found)
    }

    func loopDevice(mountedAt mountpoint: String, workload: String) throws(ProvisionerError) -> String {
        guard let mounts = KernelFile.read("/proc/self/mountinfo") else {
            throw .system(operation: "read", path: "/proc/self/mountinfo", errno: errno)
        }
        for line in mounts.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 4, Self.unescape(String(fields[4])) == mountpoint, let dash = fields.firstIndex(of: "-"),
                  fields.count > dash + 2 else { continue }
            return String(fields[dash + 2])
        }
        throw .workload(name: workload, operation: "find loop device", detail: "\(mountpoint) is not mounted", permanent: false)
    }

    /// Whether `path` is itself a mount point, from /proc/self/mountinfo (stat's st_dev comparison
    /// cannot tell a bind of the same filesystem).
    static func isMountPoint(_ path: String) -> Bool {
        guard let mounts = KernelFile.read("/proc/self/mountinfo") else { return false }
        return mounts.split(separator: "\n").contains { line in
            let fields = line.split(separator: " ")
            return fields.count > 4 && unescape(String(fields[4])) == path
        }
    }

    /// mountinfo escapes space, tab, newline and backslash as octal.
    static func unescape(_ field: String) -> String {
        field.replacingOccurrences(of: "\\040", with: " ").replacingOccurrences(of: "\\011", with: "\t")
            .replacingOccurrences(of: "\\012", with: "\n").replacingOccurrences(of: "\\134", with: "\\")
    }

    func makeDirectory(_ path: String, mode: mode_t) throws(ProvisionerError) {
        if mkdir(path, mode) != 0 && errno != EEXIST { throw .system(operation: "create directory", path: path, errno: errno) }
    }
}
