import CNodeShim
import Foundation
import Testing

/// The shim runs real syscalls; these tests need root (CI runs as root).
@Suite struct NodeShimTests {
    func temporaryRoot() throws -> String {
        let path = NSTemporaryDirectory() + "shim-test-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path + "/etc", withIntermediateDirectories: true)
        return path
    }

    func readAll(_ fd: Int32) -> String {
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n <= 0 { break }
            data += buffer[0..<n]
        }
        return String(decoding: data, as: UTF8.self)
    }

    @Test func openat2InRootKeepsSymlinksInsideTheRoot() throws {
        let root = try temporaryRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try "inside".write(toFile: root + "/etc/hostname", atomically: false, encoding: .utf8)
        symlink("/etc/hostname", root + "/absolute")        // absolute target
        symlink("../../../../../../etc/hostname", root + "/dotdot")  // climbs above the root
        symlink("/etc/passwd", root + "/missing")           // exists on the host, not in the root

        let rootFD = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        #expect(rootFD >= 0)
        defer { close(rootFD) }
        for link in ["absolute", "dotdot"] {
            let fd = nshim_openat2(rootFD, link, UInt64(O_RDONLY | O_CLOEXEC), 0, UInt64(NSHIM_RESOLVE_IN_ROOT))
            #expect(fd >= 0, "openat2 \(link) failed with \(-fd)")
            if fd >= 0 {
                #expect(readAll(fd) == "inside")
                close(fd)
            }
        }
        let missing = nshim_openat2(rootFD, "missing", UInt64(O_RDONLY), 0, UInt64(NSHIM_RESOLVE_IN_ROOT))
        #expect(missing == -ENOENT)
        // Without RESOLVE_IN_ROOT the same absolute symlink escapes to the host: the flag is what protects.
        let escaped = nshim_openat2(rootFD, "missing", UInt64(O_RDONLY | O_CLOEXEC), 0, 0)
        #expect(escaped >= 0)
        if escaped >= 0 { close(escaped) }
    }

    @Test func spawnStartsAChildInNewPidAndUtsNamespaces() throws {
        var pipeFDs: [Int32] = [0, 0]
        #expect(pipe(&pipeFDs) == 0)
        let args = ["/bin/sh", "-c", "echo $$; hostname"]
        var cArgs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        let pid = "shim-test-host".withCString { hostname in
            "/bin/sh".withCString { path in
                cArgs.withUnsafeMutableBufferPointer { argv in
                    var config = nshim_spawn_config(
                        path: path, argv: argv.baseAddress, envp: nil,
                        clone_flags: UInt64(NSHIM_CLONE_NEWPID | NSHIM_CLONE_NEWUTS), cgroup_fd: -1,
                        stdin_fd: -1, stdout_fd: pipeFDs[1], stderr_fd: -1, sync_fd: -1,
                        hostname: hostname, cwd: nil, die_with_parent: 1)
                    return nshim_spawn(&config)
                }
            }
        }
        close(pipeFDs[1])
        #expect(pid > 0, "spawn failed with errno \(-pid)")
        let output = readAll(pipeFDs[0])
        close(pipeFDs[0])
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        #expect(output == "1\nshim-test-host\n")
        var name = [CChar](repeating: 0, count: 256)
        gethostname(&name, name.count)
        #expect(String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) != "shim-test-host", "the host's own hostname must be untouched")
    }

    @Test func spawnReportsExecFailureAsErrno() {
        var cArgs: [UnsafeMutablePointer<CChar>?] = [strdup("/nonexistent/binary"), nil]
        defer { cArgs.forEach { free($0) } }
        let result = "/nonexistent/binary".withCString { path in
            cArgs.withUnsafeMutableBufferPointer { argv in
                var config = nshim_spawn_config(
                    path: path, argv: argv.baseAddress, envp: nil, clone_flags: 0, cgroup_fd: -1,
                    stdin_fd: -1, stdout_fd: -1, stderr_fd: -1, sync_fd: -1, hostname: nil, cwd: nil, die_with_parent: 0)
                return nshim_spawn(&config)
            }
        }
        #expect(result == -ENOENT)
    }

    @Test func probesSeeNamespacesAndSeccompAsRoot() {
        #expect(geteuid() == 0, "these tests need root")
        for flag in [NSHIM_CLONE_NEWUSER, NSHIM_CLONE_NEWNS, NSHIM_CLONE_NEWPID, NSHIM_CLONE_NEWNET, NSHIM_CLONE_NEWUTS,
                     NSHIM_CLONE_NEWIPC, NSHIM_CLONE_NEWCGROUP] {
            #expect(nshim_probe_unshare(flag) == 0, "unshare(\(flag)) failed")
        }
        #expect(nshim_probe_unshare(-1) == EINVAL)
        #expect(nshim_seccomp_filter_available() == 0)
        #expect(nshim_probe_seccomp() == 0)
        // The probes ran in children: this process has no filter.
        #expect(nshim_prctl(NSHIM_PR_GET_SECCOMP, 0, 0, 0, 0) == 0)
    }

    @Test func rlimitsRoundTrip() {
        var soft: UInt64 = 0
        var hard: UInt64 = 0
        #expect(nshim_getrlimit(7 /* RLIMIT_NOFILE */, &soft, &hard) == 0)
        let lowered = min(soft, 512)
        #expect(nshim_setrlimit(7, lowered, hard) == 0)
        var check: UInt64 = 0
        #expect(nshim_getrlimit(7, &check, &hard) == 0)
        #expect(check == lowered)
        #expect(nshim_setrlimit(7, soft, hard) == 0)
        #expect(nshim_setrlimit(7, hard + 1, hard) == -EINVAL)
    }

    @Test func filesystemTypeAndClock() {
        #expect(nshim_filesystem_type("/proc") == 0x9fa0)  // PROC_SUPER_MAGIC
        #expect(nshim_filesystem_type("/does/not/exist") == -Int64(ENOENT))
        #expect([0, 1].contains(nshim_clock_synchronized()))
    }
}
