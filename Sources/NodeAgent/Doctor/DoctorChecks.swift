import Foundation
import GridTypes

/// One line of `node-agent doctor`.
struct DoctorCheck: Codable, Equatable, Sendable {
    enum Status: String, Codable, Sendable {
        case ok, warn, fail
    }

    var name: String
    var status: Status
    var detail: String
    /// What to do about a warn or fail; empty when ok.
    var remedy: String = ""
}

/// Judges a host description. Pure, so tests feed it fake hosts. A `fail` is something the agent
/// cannot run without; a `warn` works but is not what production should look like.
enum DoctorChecks {
    static let minimumKernel = (5, 6)      // openat2 with RESOLVE_IN_ROOT
    static let recommendedKernel = (5, 7)  // clone3 with CLONE_INTO_CGROUP
    static let minimumFreeBytes: UInt64 = 1 << 30
    static let recommendedFreeBytes: UInt64 = 10 << 30

    static func run(on host: HostDescription) -> [DoctorCheck] {
        var checks = [root(host), kernel(host)]
        checks += HostDescription.namespaceNames.map { namespace($0, host) }
        checks += [cgroupMode(host), cgroupControllers(host), seccomp(host), overlay(host), disk(host),
                   clock(host), libraries(host)]
        return checks
    }

    static func passed(_ checks: [DoctorCheck]) -> Bool { !checks.contains { $0.status == .fail } }

    static func root(_ host: HostDescription) -> DoctorCheck {
        host.effectiveUID == 0
            ? DoctorCheck(name: "root", status: .ok, detail: "running as uid 0")
            : DoctorCheck(name: "root", status: .fail, detail: "running as uid \(host.effectiveUID)",
                          remedy: "run as root (sudo node-agent doctor): the agent creates namespaces, cgroups and mounts")
    }

    /// "6.1.0-18-amd64" -> (6, 1); nil when unparseable.
    static func kernelVersion(_ release: String) -> (Int, Int)? {
        let numbers = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        guard numbers.count == 2 else { return nil }
        return (numbers[0], numbers[1])
    }

    static func kernel(_ host: HostDescription) -> DoctorCheck {
        guard let version = kernelVersion(host.kernelRelease) else {
            return DoctorCheck(name: "kernel", status: .fail, detail: "cannot read version from '\(host.kernelRelease)'",
                               remedy: "run a Linux kernel 5.7 or newer")
        }
        if version < minimumKernel {
            return DoctorCheck(name: "kernel", status: .fail, detail: "Linux \(host.kernelRelease) lacks openat2 (5.6+)",
                               remedy: "upgrade to Linux 5.7 or newer (Debian 12 ships 6.1)")
        }
        if version < recommendedKernel {
            return DoctorCheck(name: "kernel", status: .warn, detail: "Linux \(host.kernelRelease) lacks clone3 CLONE_INTO_CGROUP",
                               remedy: "upgrade to Linux 5.7 or newer so containers start inside their cgroup")
        }
        return DoctorCheck(name: "kernel", status: .ok, detail: "Linux \(host.kernelRelease)")
    }

    static func namespace(_ name: String, _ host: HostDescription) -> DoctorCheck {
        let checkName = "namespace \(name)"
        guard let errno = host.namespaces[name] else {
            return DoctorCheck(name: checkName, status: .fail, detail: "not probed", remedy: "run doctor as root")
        }
        if errno == 0 { return DoctorCheck(name: checkName, status: .ok, detail: "can be created") }
        var remedy = "enable CONFIG_\(name.uppercased())_NS in the kernel"
        if errno == EPERM || errno == EACCES {
            remedy = name == "user"
                ? "allow user namespaces: sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0, and check the seccomp/AppArmor policy of whatever runs the agent"
                : "run as root, outside a container that forbids unshare"
        } else if errno == ENOSPC {
            remedy = "raise the namespace limit: sysctl user.max_\(name == "mount" ? "mnt" : name)_namespaces"
        }
        return DoctorCheck(name: checkName, status: .fail,
                           detail: "unshare failed: \(String(cString: strerror(errno))) (errno \(errno))", remedy: remedy)
    }

    static func cgroupMode(_ host: HostDescription) -> DoctorCheck {
        let advice = "boot with systemd.unified_cgroup_hierarchy=1 for pure cgroup v2, what production nodes use"
        switch host.cgroupMode {
        case .unified:
            return DoctorCheck(name: "cgroup mode", status: .ok, detail: "v2 (unified)")
        case .hybrid:
            return DoctorCheck(name: "cgroup mode", status: .warn, detail: "hybrid: limits go through the v1 controllers",
                               remedy: advice)
        case .legacy:
            return DoctorCheck(name: "cgroup mode", status: .warn, detail: "v1 only", remedy: advice)
        case .none:
            return DoctorCheck(name: "cgroup mode", status: .fail, detail: "no cgroup filesystem mounted at /sys/fs/cgroup",
                               remedy: "mount cgroup2 on /sys/fs/cgroup (systemd does this at boot)")
        }
    }

    static func cgroupControllers(_ host: HostDescription) -> DoctorCheck {
        let writable = host.cgroupControllers.filter(\.value).keys.sorted()
        let missingRequired = HostDescription.requiredControllers.filter { host.cgroupControllers[$0] != true }
        let missingOptional = HostDescription.optionalControllers.filter { host.cgroupControllers[$0] != true }
        let list = writable.isEmpty ? "none" : writable.joined(separator: ", ")
        if !missingRequired.isEmpty {
            return DoctorCheck(name: "cgroup controllers", status: .fail,
                               detail: "writable: \(list); missing: \(missingRequired.joined(separator: ", "))",
                               remedy: "enable the controllers (v2: echo +memory +cpu +pids > /sys/fs/cgroup/cgroup.subtree_control) and run as root; under systemd use Delegate=yes")
        }
        if missingOptional.contains("freezer") {
            return DoctorCheck(name: "cgroup controllers", status: .warn,
                               detail: "writable: \(list); no freezer", remedy: "mount the freezer controller so contracts in grace period can be paused")
        }
        return DoctorCheck(name: "cgroup controllers", status: .ok, detail: "writable: \(list)")
    }

    static func seccomp(_ host: HostDescription) -> DoctorCheck {
        switch host.seccompProbe {
        case 0:
            return DoctorCheck(name: "seccomp", status: .ok, detail: "filters load and deny with EPERM")
        case -1:
            return DoctorCheck(name: "seccomp", status: .fail, detail: "a filter loaded but did not deny the syscall",
                               remedy: "check the kernel's CONFIG_SECCOMP_FILTER and any tracer or sandbox around the agent")
        default:
            return DoctorCheck(name: "seccomp", status: .fail,
                               detail: "loading a filter failed: \(String(cString: strerror(host.seccompProbe)))",
                               remedy: "use a kernel with CONFIG_SECCOMP_FILTER=y")
        }
    }

    static func overlay(_ host: HostDescription) -> DoctorCheck {
        host.overlayfs
            ? DoctorCheck(name: "overlayfs", status: .ok, detail: "available")
            : DoctorCheck(name: "overlayfs", status: .fail, detail: "overlay is not in /proc/filesystems",
                          remedy: "modprobe overlay (and add it to /etc/modules-load.d/)")
    }

    static func disk(_ host: HostDescription) -> DoctorCheck {
        let name = "disk"
        guard let free = host.stateDirFreeBytes else {
            return DoctorCheck(name: name, status: .fail, detail: "cannot read free space for \(host.stateDir)",
                               remedy: "check that \(host.stateDir) or its parent is on a mounted filesystem")
        }
        let where_ = host.stateDirExists ? host.stateDir : "\(host.stateDir) (not created yet)"
        let detail = "\(ByteFormat.binary(free)) free for \(where_)"
        if free < minimumFreeBytes {
            return DoctorCheck(name: name, status: .fail, detail: detail, remedy: "free space: the agent needs at least 1 GiB for its state")
        }
        if free < recommendedFreeBytes {
            return DoctorCheck(name: name, status: .warn, detail: detail, remedy: "keep 10 GiB or more free for images and container layers")
        }
        return DoctorCheck(name: name, status: .ok, detail: detail)
    }

    static func clock(_ host: HostDescription) -> DoctorCheck {
        switch host.clock {
        case .synchronized:
            return DoctorCheck(name: "clock", status: .ok, detail: "synchronized")
        case .unsynchronized:
            return DoctorCheck(name: "clock", status: .warn, detail: "not synchronized",
                               remedy: "enable NTP (systemd-timesyncd or chrony): the chain rejects uptime reports whose time is off by more than 60 s")
        case .unknown:
            return DoctorCheck(name: "clock", status: .warn, detail: "synchronization state unknown",
                               remedy: "check `timedatectl`; the chain rejects uptime reports whose time is off by more than 60 s")
        }
    }

    static func libraries(_ host: HostDescription) -> DoctorCheck {
        let needed = ["libsodium", "libseccomp", "libcap", "libzstd"]
        let missing = needed.filter { host.libraries[$0] == nil }
        let detail = host.libraries.keys.sorted().map { "\($0) \(host.libraries[$0] ?? "")" }.joined(separator: "; ")
        if !missing.isEmpty {
            return DoctorCheck(name: "libraries", status: .fail, detail: "missing: \(missing.joined(separator: ", "))",
                               remedy: "apt-get install libsodium23 libseccomp2 libcap2 libzstd1")
        }
        return DoctorCheck(name: "libraries", status: .ok, detail: detail)
    }

    /// Human output: one line per check, the remedy indented under warn and fail lines.
    static func render(_ checks: [DoctorCheck]) -> String {
        let width = (checks.map(\.name.count).max() ?? 0) + 2
        var lines = [String]()
        for check in checks {
            let tag: String
            switch check.status {
            case .ok: tag = "[ ok ]"
            case .warn: tag = "[warn]"
            case .fail: tag = "[FAIL]"
            }
            lines.append("\(tag) \(check.name.padding(toLength: width, withPad: " ", startingAt: 0))\(check.detail)")
            if !check.remedy.isEmpty {
                lines.append("       \(String(repeating: " ", count: width))-> \(check.remedy)")
            }
        }
        let failures = checks.filter { $0.status == .fail }.count
        let warnings = checks.filter { $0.status == .warn }.count
        lines.append(failures == 0
            ? "doctor: the host can run the agent (\(warnings) warning\(warnings == 1 ? "" : "s"))"
            : "doctor: \(failures) check\(failures == 1 ? "" : "s") failed; the agent cannot run here until fixed")
        return lines.joined(separator: "\n")
    }
}

private func < (lhs: (Int, Int), rhs: (Int, Int)) -> Bool {
    lhs.0 != rhs.0 ? lhs.0 < rhs.0 : lhs.1 < rhs.1
}
