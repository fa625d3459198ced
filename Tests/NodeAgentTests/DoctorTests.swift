import Foundation
import GridTypes
import Testing
@testable import NodeAgent

@Suite struct DoctorTests {
    static let healthy = HostDescription(
        effectiveUID: 0, kernelRelease: "6.1.0-18-amd64",
        namespaces: Dictionary(uniqueKeysWithValues: HostDescription.namespaceNames.map { ($0, 0) }),
        cgroupMode: .unified,
        cgroupControllers: ["memory": true, "cpu": true, "pids": true, "freezer": true, "cpuset": true, "io": true],
        seccompProbe: 0, overlayfs: true, stateDir: "/var/lib/node-agent", stateDirFreeBytes: 500 << 30,
        stateDirExists: true, clock: .synchronized,
        libraries: ["libsodium": "1.0.18", "libseccomp": "2.5.4", "libcap": "linked", "libzstd": "1.5.4"])

    func status(_ host: HostDescription, _ name: String) -> DoctorCheck.Status? {
        DoctorChecks.run(on: host).first { $0.name == name }?.status
    }

    @Test func aHealthyV2HostPassesWithNoWarnings() {
        let checks = DoctorChecks.run(on: Self.healthy)
        #expect(checks.allSatisfy { $0.status == .ok })
        #expect(DoctorChecks.passed(checks))
        #expect(checks.count == 2 + 7 + 7)
    }

    @Test func nonRootFails() {
        var host = Self.healthy
        host.effectiveUID = 1000
        let check = DoctorChecks.run(on: host).first { $0.name == "root" }
        #expect(check?.status == .fail)
        #expect(check?.remedy.contains("root") == true)
        #expect(!DoctorChecks.passed(DoctorChecks.run(on: host)))
    }

    @Test func kernelVersionsAreJudged() {
        var host = Self.healthy
        for (release, expected) in [("5.4.0-150-generic", DoctorCheck.Status.fail), ("5.6.19", .warn), ("5.7.0", .ok),
                                    ("6.18.44-fc-v657", .ok), ("garbage", .fail)] {
            host.kernelRelease = release
            #expect(status(host, "kernel") == expected, "kernel \(release)")
        }
    }

    @Test func aMissingNamespaceFailsWithARemedy() {
        var host = Self.healthy
        host.namespaces["user"] = EPERM
        host.namespaces["net"] = ENOSPC
        let checks = DoctorChecks.run(on: host)
        let user = checks.first { $0.name == "namespace user" }
        #expect(user?.status == .fail)
        #expect(user?.remedy.contains("user namespaces") == true)
        #expect(checks.first { $0.name == "namespace net" }?.remedy.contains("max_net_namespaces") == true)
        #expect(status(host, "namespace pid") == .ok)
        host.namespaces["cgroup"] = nil
        #expect(status(host, "namespace cgroup") == .fail)
    }

    @Test func cgroupModesAndControllers() {
        var host = Self.healthy
        host.cgroupMode = .hybrid
        #expect(status(host, "cgroup mode") == .warn)
        host.cgroupMode = .legacy
        #expect(status(host, "cgroup mode") == .warn)
        host.cgroupMode = .none
        #expect(status(host, "cgroup mode") == .fail)
        host.cgroupMode = .unified
        host.cgroupControllers["memory"] = false
        let check = DoctorChecks.run(on: host).first { $0.name == "cgroup controllers" }
        #expect(check?.status == .fail)
        #expect(check?.detail.contains("missing: memory") == true)
        host.cgroupControllers["memory"] = true
        host.cgroupControllers["freezer"] = false
        #expect(status(host, "cgroup controllers") == .warn)
    }

    @Test func seccompOverlayDiskClockAndLibraries() {
        var host = Self.healthy
        host.seccompProbe = EINVAL
        #expect(status(host, "seccomp") == .fail)
        host.seccompProbe = -1
        #expect(status(host, "seccomp") == .fail)
        host = Self.healthy
        host.overlayfs = false
        #expect(status(host, "overlayfs") == .fail)
        host = Self.healthy
        host.stateDirFreeBytes = 512 << 20
        #expect(status(host, "disk") == .fail)
        host.stateDirFreeBytes = 5 << 30
        #expect(status(host, "disk") == .warn)
        host.stateDirFreeBytes = nil
        #expect(status(host, "disk") == .fail)
        host = Self.healthy
        host.clock = .unsynchronized
        #expect(status(host, "clock") == .warn)
        #expect(DoctorChecks.passed(DoctorChecks.run(on: host)), "a warning does not fail doctor")
        host.libraries["libseccomp"] = nil
        #expect(status(host, "libraries") == .fail)
    }

    @Test func renderShowsOneLinePerCheckAndRemediesUnderProblems() {
        var host = Self.healthy
        host.clock = .unsynchronized
        host.overlayfs = false
        let text = DoctorChecks.render(DoctorChecks.run(on: host))
        let lines = text.split(separator: "\n")
        #expect(lines.filter { $0.hasPrefix("[") }.count == 16)
        #expect(lines.contains { $0.hasPrefix("[FAIL] overlayfs") })
        #expect(lines.contains { $0.hasPrefix("[warn] clock") })
        #expect(lines.filter { $0.contains("-> ") }.count == 2)
        #expect(lines.last?.contains("1 check failed") == true)
    }

    /// The real probe on this host, cross-checked against /proc/self/mountinfo, an independent source.
    @Test func realHostProbeAgreesWithMountinfo() throws {
        let host = HostProbe().describe(stateDir: NSTemporaryDirectory())
        #expect(host.effectiveUID == geteuid())
        #expect(DoctorChecks.kernelVersion(host.kernelRelease) != nil)
        let mountinfo = try #require(KernelFile.read("/proc/self/mountinfo"))
        var cgroup2At = Set<String>()
        var cgroup1Count = 0
        for line in mountinfo.split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard let dash = parts.firstIndex(of: "-"), dash + 1 < parts.count else { continue }
            if parts[dash + 1] == "cgroup2" { cgroup2At.insert(String(parts[4])) }
            if parts[dash + 1] == "cgroup" { cgroup1Count += 1 }
        }
        let expected: HostDescription.CgroupMode = cgroup2At.contains("/sys/fs/cgroup") ? .unified
            : cgroup1Count > 0 ? (cgroup2At.contains("/sys/fs/cgroup/unified") ? .hybrid : .legacy) : .none
        #expect(host.cgroupMode == expected)
        #expect(host.stateDirFreeBytes != nil)
        #expect(host.libraries["libsodium"]?.isEmpty == false)
        if geteuid() == 0 {
            #expect(host.namespaces.values.allSatisfy { $0 == 0 }, "namespaces: \(host.namespaces)")
            #expect(host.seccompProbe == 0)
            for controller in HostDescription.requiredControllers {
                #expect(host.cgroupControllers[controller] == true, "controller \(controller)")
            }
        }
    }
}
