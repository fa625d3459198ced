import Foundation

/// A block device number.
public struct DeviceNumber: Hashable, Sendable, Codable, CustomStringConvertible {
    public var major: UInt32
    public var minor: UInt32

    public init(major: UInt32, minor: UInt32) {
        self.major = major
        self.minor = minor
    }

    /// glibc's gnu_dev_major/gnu_dev_minor (macros Swift does not import).
    public init(_ dev: UInt64) {
        major = UInt32(truncatingIfNeeded: ((dev >> 8) & 0xfff) | ((dev >> 32) & ~UInt64(0xfff)))
        minor = UInt32(truncatingIfNeeded: (dev & 0xff) | ((dev >> 12) & ~UInt64(0xff)))
    }

    /// "8:1" as in /proc/self/mountinfo and /sys/dev/block.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ":")
        guard parts.count == 2, let major = UInt32(parts[0]), let minor = UInt32(parts[1]) else { return nil }
        self.init(major: major, minor: minor)
    }

    public var description: String { "\(major):\(minor)" }
}

/// The filesystem holding a data directory: its device, where it is mounted, and its size.
public struct FilesystemInfo: Equatable, Sendable {
    public var device: DeviceNumber
    public var mountPoint: String
    public var fsType: String
    /// The mount source ("/dev/sda1"), from mountinfo; empty when unknown.
    public var source: String
    public var totalBytes: UInt64
    public var availableBytes: UInt64
    public var files: UInt64
    public var filesAvailable: UInt64

    public init(device: DeviceNumber, mountPoint: String, fsType: String, source: String,
                totalBytes: UInt64, availableBytes: UInt64, files: UInt64, filesAvailable: UInt64) {
        self.device = device
        self.mountPoint = mountPoint
        self.fsType = fsType
        self.source = source
        self.totalBytes = totalBytes
        self.availableBytes = availableBytes
        self.files = files
        self.filesAvailable = filesAvailable
    }
}

/// Finds the filesystem holding a path. The live probe asks the kernel (stat, statvfs); the
/// recorded probe reads a recorded tree, where the syscalls' answers are kept in files.
public protocol FilesystemProbe: Sendable {
    /// The filesystem holding `path`, or its nearest existing ancestor when `path` does not exist yet.
    func filesystem(containing path: String) -> Result<FilesystemInfo, FilesystemProbeFailure>
}

public struct FilesystemProbeFailure: Error, Equatable, Sendable, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "\(path): \(reason)" }
}

/// One line of /proc/self/mountinfo.
public struct MountEntry: Equatable, Sendable {
    public var device: DeviceNumber
    public var mountPoint: String
    public var fsType: String
    public var source: String

    /// Parses mountinfo: "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue".
    /// Malformed lines are skipped; at most 10000 entries.
    public static func parse(_ text: String) -> [MountEntry] {
        var entries = [MountEntry]()
        for line in text.split(separator: "\n") where entries.count < 10_000 {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 10, let device = DeviceNumber(fields[2]),
                  let dash = fields.firstIndex(of: "-"), dash >= 6, dash + 2 < fields.count else { continue }
            entries.append(MountEntry(device: device, mountPoint: unescape(fields[4]), fsType: String(fields[dash + 1]),
                                      source: unescape(fields[dash + 2])))
        }
        return entries
    }

    /// mountinfo escapes space, tab, newline and backslash as \ooo.
    static func unescape(_ field: Substring) -> String {
        guard field.contains("\\") else { return String(field) }
        var bytes = [UInt8]()
        let utf8 = Array(field.utf8)
        var i = 0
        while i < utf8.count {
            if utf8[i] == UInt8(ascii: "\\"), i + 3 < utf8.count,
               let value = UInt8(String(decoding: utf8[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                bytes.append(value)
                i += 4
            } else {
                bytes.append(utf8[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The mount whose mount point is the longest component-wise prefix of `path`; among stacked
    /// mounts on one point, the last (the visible one).
    public static func containing(_ path: String, in entries: [MountEntry], device: DeviceNumber? = nil) -> MountEntry? {
        var best: MountEntry?
        var bestLength = -1
        for entry in entries where device == nil || entry.device == device {
            let point = entry.mountPoint == "/" ? "" : entry.mountPoint
            guard path == entry.mountPoint || path.hasPrefix(point + "/") else { continue }
            if point.count >= bestLength {
                best = entry
                bestLength = point.count
            }
        }
        return best
    }
}

/// The kernel's answers: stat(2) for the device, statvfs(3) for the size, mountinfo for the type.
public struct LiveFilesystemProbe: FilesystemProbe {
    public init() {}

    public func filesystem(containing path: String) -> Result<FilesystemInfo, FilesystemProbeFailure> {
        var existing = path
        var info = stat()
        while stat(existing, &info) != 0 {
            guard errno == ENOENT, existing != "/" else {
                return .failure(FilesystemProbeFailure(path: path, reason: "stat \(existing): \(String(cString: strerror(errno)))"))
            }
            existing = (existing as NSString).deletingLastPathComponent
            if existing.isEmpty { existing = "/" }
        }
        var fs = statvfs()
        guard statvfs(existing, &fs) == 0 else {
            return .failure(FilesystemProbeFailure(path: path, reason: "statvfs \(existing): \(String(cString: strerror(errno)))"))
        }
        let device = DeviceNumber(UInt64(info.st_dev))
        let mounts: [MountEntry]
        if case .success(let text) = RootedFiles().read("/proc/self/mountinfo", limit: 4 << 20) {
            mounts = MountEntry.parse(text)
        } else {
            mounts = []
        }
        let mount = MountEntry.containing(existing, in: mounts, device: device)
        let fragment = UInt64(fs.f_frsize)
        return .success(FilesystemInfo(device: device, mountPoint: mount?.mountPoint ?? existing, fsType: mount?.fsType ?? "",
                                       source: mount?.source ?? "", totalBytes: UInt64(fs.f_blocks) * fragment,
                                       availableBytes: UInt64(fs.f_bavail) * fragment, files: UInt64(fs.f_files),
                                       filesAvailable: UInt64(fs.f_favail)))
    }
}

/// A recorded machine: the device from `<root>/proc/self/mountinfo` (longest mount point), the size
/// from `<root>/recorded/statvfs`, whose lines are "<mount point> <total bytes> <available bytes>
/// <files> <free files>" (statvfs is a syscall, so a recorded tree keeps its answers in a file).
public struct RecordedFilesystemProbe: FilesystemProbe {
    public let files: RootedFiles

    public init(root: String) {
        files = RootedFiles(root: root)
    }

    public func filesystem(containing path: String) -> Result<FilesystemInfo, FilesystemProbeFailure> {
        guard case .success(let text) = files.read("/proc/self/mountinfo", limit: 4 << 20) else {
            return .failure(FilesystemProbeFailure(path: path, reason: "no recorded mountinfo"))
        }
        guard let mount = MountEntry.containing(path, in: MountEntry.parse(text)) else {
            return .failure(FilesystemProbeFailure(path: path, reason: "no mount holds it"))
        }
        guard case .success(let recorded) = files.read("/recorded/statvfs") else {
            return .failure(FilesystemProbeFailure(path: path, reason: "no recorded statvfs"))
        }
        for line in recorded.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count == 5, String(fields[0]) == mount.mountPoint else { continue }
            guard let total = UInt64(fields[1]), let available = UInt64(fields[2]),
                  let count = UInt64(fields[3]), let free = UInt64(fields[4]) else { break }
            return .success(FilesystemInfo(device: mount.device, mountPoint: mount.mountPoint, fsType: mount.fsType,
                                           source: mount.source, totalBytes: total, availableBytes: available,
                                           files: count, filesAvailable: free))
        }
        return .failure(FilesystemProbeFailure(path: path, reason: "statvfs \(mount.mountPoint): \(String(cString: strerror(EIO)))"))
    }
}
