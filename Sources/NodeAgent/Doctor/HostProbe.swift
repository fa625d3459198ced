import CCap
import CNodeShim
import CSeccomp
import CSodium
import CZstd
import Foundation
import GridTypes

/// Gathers a `HostDescription` from this machine. Namespace and seccomp probes run in forked
/// children (C code), so the agent's own process is never changed by a check.
struct HostProbe {
    var cgroupRoot = "/sys/fs/cgroup"
    var procRoot = "/proc"

    static let cgroup2Magic: Int = 0x6367_7270
    static let cgroup1Magic: Int = 0x0027_e0eb
    static let tmpfsMagic: Int = 0x0102_1994

    func describe(stateDir: String) -> HostDescription {
        let (mode, controllers) = cgroups()
        let (free, exists) = freeSpace(stateDir)
        return HostDescription(
            effectiveUID: geteuid(),
            kernelRelease: kernelRelease(),
            namespaces: namespaces(),
            cgroupMode: mode,
            cgroupControllers: controllers,
            seccompProbe: nshim_probe_seccomp(),
            overlayfs: overlayfs(),
            stateDir: stateDir,
            stateDirFreeBytes: free,
            stateDirExists: exists,
            clock: clock(),
            libraries: Self.libraryVersions()
        )
    }

    func kernelRelease() -> String {
        var name = utsname()
        uname(&name)
        return withUnsafeBytes(of: &name.release) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }

    func namespaces() -> [String: Int32] {
        let flags: [String: Int32] = [
            "user": NSHIM_CLONE_NEWUSER, "pid": NSHIM_CLONE_NEWPID, "mount": NSHIM_CLONE_NEWNS,
            "net": NSHIM_CLONE_NEWNET, "uts": NSHIM_CLONE_NEWUTS, "ipc": NSHIM_CLONE_NEWIPC,
            "cgroup": NSHIM_CLONE_NEWCGROUP,
        ]
        return flags.mapValues { nshim_probe_unshare($0) }
    }

    static func filesystemType(_ path: String) -> Int? {
        let type = nshim_filesystem_type(path)
        return type < 0 ? nil : Int(type)
    }

    func cgroups() -> (HostDescription.CgroupMode, [String: Bool]) {
        let names = HostDescription.requiredControllers + HostDescription.optionalControllers
        switch Self.filesystemType(cgroupRoot) {
        case Self.cgroup2Magic:
            let available = (try? String(contentsOfFile: cgroupRoot + "/cgroup.controllers", encoding: .utf8))?
                .split(whereSeparator: \.isWhitespace).map(String.init) ?? []
            let writable = access(cgroupRoot + "/cgroup.subtree_control", W_OK) == 0
            var result = [String: Bool]()
            for name in names where name != "freezer" {
                result[name] = writable && available.contains(name)
            }
            // cgroup v2 has the freezer built in (cgroup.freeze), with no controller to enable.
            result["freezer"] = writable
            return (.unified, result)
        case Self.tmpfsMagic:
            let hybrid = Self.filesystemType(cgroupRoot + "/unified") == Self.cgroup2Magic
            var result = [String: Bool]()
            for name in names {
                let v1Name = name == "io" ? "blkio" : name
                let path = cgroupRoot + "/" + v1Name
                result[name] = Self.filesystemType(path) == Self.cgroup1Magic && access(path, W_OK) == 0
            }
            return (hybrid ? .hybrid : .legacy, result)
        default:
            return (.none, [:])
        }
    }

    func overlayfs() -> Bool {
        let filesystems = (try? String(contentsOfFile: procRoot + "/filesystems", encoding: .utf8)) ?? ""
        return filesystems.split(separator: "\n").contains { $0.split(whereSeparator: \.isWhitespace).last == "overlay" }
    }

    /// Free space where the state directory is or will be (its nearest existing parent).
    func freeSpace(_ path: String) -> (UInt64?, Bool) {
        let exists = FileManager.default.fileExists(atPath: path)
        var candidate = path
        while !FileManager.default.fileExists(atPath: candidate), candidate != "/" {
            candidate = (candidate as NSString).deletingLastPathComponent
            if candidate.isEmpty { candidate = "/" }
        }
        var info = statvfs()
        guard statvfs(candidate, &info) == 0 else { return (nil, exists) }
        return (UInt64(info.f_bavail) * UInt64(info.f_frsize), exists)
    }

    func clock() -> HostDescription.ClockState {
        switch nshim_clock_synchronized() {
        case 1: return .synchronized
        case 0: return .unsynchronized
        default: return .unknown
        }
    }

    static func libraryVersions() -> [String: String] {
        var versions = ["libsodium": SodiumInfo.version]
        if let v = seccomp_version() {
            versions["libseccomp"] = "\(v.pointee.major).\(v.pointee.minor).\(v.pointee.micro)"
        }
        if let zstd = ZSTD_versionString() { versions["libzstd"] = String(cString: zstd) }
        versions["libcap"] = "linked, kernel knows \(cap_max_bits()) capabilities"
        return versions
    }
}
