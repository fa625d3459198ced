import ContainerRuntime
import Foundation
import Testing

@Suite(.serialized, .enabled(if: TestRootfs.available, "needs root and /bin/busybox (busybox-static)"))
struct LifecycleTests {
    @Test func statesFollowTheOCILifecycleAndSurviveARestartedRuntime() throws {
        let fs = try TestRootfs()
        defer { fs.remove() }
        let pidFile = fs.base + "/pid"
        let created = try fs.runtime.create(id: "web", bundle: fs.bundle, spec: fs.secureSpec(["sleep", "60"]),
                                            options: .init(output: .files(directory: fs.logs + "/web", maxBytes: 4096, keep: 1), pidFile: pidFile))
        #expect(created.status == .created)
        let pid = try #require(created.pid)
        #expect(fs.read(pidFile) == "\(pid)")
        #expect(throws: ContainerRuntimeError.containerExists(id: "web")) {
            try fs.runtime.create(id: "web", bundle: fs.bundle, spec: fs.secureSpec(["true"]), options: .init())
        }
        try fs.runtime.start(id: "web")
        #expect(try fs.runtime.state(id: "web").status == .running)
        #expect(throws: ContainerRuntimeError.self) { try fs.runtime.start(id: "web") }

        // A new runtime over the same state root (the agent restarted) finds it by pid and start time.
        let restarted = OCIRuntime(stateRoot: fs.stateRoot, cgroupParent: fs.runtime.cgroupParent)
        let found = try restarted.state(id: "web")
        #expect(found.status == .running && found.pid == pid)
        #expect(restarted.list() == ["web"])
        #expect(throws: ContainerRuntimeError.invalidState(id: "web", state: "running", operation: "delete (stop it first, or use --force)")) {
            try restarted.delete(id: "web")
        }

        try restarted.pause(id: "web", true)
        #expect(try restarted.isPaused(id: "web"))
        try restarted.pause(id: "web", false)
        #expect(try !restarted.isPaused(id: "web"))

        try restarted.kill(id: "web", signal: SIGKILL)
        let exit = try restarted.wait(id: "web", timeout: .seconds(10))
        #expect(exit?.signal == SIGKILL)
        let stopped = try restarted.state(id: "web")
        #expect(stopped.status == .stopped && stopped.pid == nil)
        #expect(throws: ContainerRuntimeError.self) { try restarted.kill(id: "web", signal: SIGTERM) }
        try restarted.delete(id: "web")
        #expect(restarted.list().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: "/sys/fs/cgroup/pids/\(fs.runtime.cgroupParent)/web"))
        #expect(throws: ContainerRuntimeError.containerNotFound(id: "web")) { try restarted.state(id: "web") }
    }

    @Test func forceDeleteKillsEverythingAndFreesTheCgroup() throws {
        let fs = try TestRootfs()
        defer { fs.remove() }
        try fs.runtime.create(id: "busy", bundle: fs.bundle, spec: fs.secureSpec(["sh", "-c", "sleep 60 & sleep 60 & wait"]), options: .init(output: .files(directory: fs.logs + "/busy", maxBytes: 4096, keep: 1)))
        try fs.runtime.start(id: "busy")
        let pid = try #require(try fs.runtime.state(id: "busy").pid)
        try fs.runtime.delete(id: "busy", force: true)
        #expect(kill(pid, 0) != 0)
        #expect(fs.runtime.list().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: "/sys/fs/cgroup/memory/\(fs.runtime.cgroupParent)/busy"))
    }

    @Test func deletingACreatedContainerNeverRunsItsWorkload() throws {
        let fs = try TestRootfs()
        defer { fs.remove() }
        try fs.runtime.create(id: "never", bundle: fs.bundle, spec: fs.secureSpec(["touch", "/tmp/ran"]), options: .init())
        try fs.runtime.delete(id: "never")
        #expect(!FileManager.default.fileExists(atPath: fs.rootfs + "/tmp/ran"))
        #expect(fs.runtime.list().isEmpty)
    }

    @Test func aFailingSetupIsReportedWithItsStepAndLeavesNothing() throws {
        let fs = try TestRootfs()
        defer { fs.remove() }
        var spec = fs.secureSpec(["true"])
        spec.hostname = nil
        spec.sysctl = ["kernel.no_such_knob": "1"]
        do {
            try fs.runtime.create(id: "bad", bundle: fs.bundle, spec: spec, options: .init())
            Issue.record("create should have failed")
        } catch {
            #expect("\(error)".contains("sysctl kernel/no_such_knob"), "\(error)")
        }
        #expect(fs.runtime.list().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: "/sys/fs/cgroup/memory/\(fs.runtime.cgroupParent)/bad"))
        let missing = fs.secureSpec(["/bin/no-such-program"])
        let result = try fs.run("missing", missing)
        #expect(result.exit?.code == 127)
        #expect(result.stderr.contains("exec failed for /bin/no-such-program"), "\(result.stderr)")
    }

    @Test func invalidIDsAreRefused() throws {
        let runtime = OCIRuntime(stateRoot: NSTemporaryDirectory() + "never-created")
        for id in ["", "../x", "a/b", ".hidden", "-flag", String(repeating: "a", count: 65), "spa ce"] {
            #expect(throws: ContainerRuntimeError.invalidID(id)) { try runtime.state(id: id) }
        }
    }

    @Test func logsAreCappedAndRotated() throws {
        let fs = try TestRootfs()
        defer { fs.remove() }
        let logDir = fs.logs + "/chatty"
        // 40 lines of 100 bytes, with a cap of 1000 bytes and two old files kept.
        let script = "i=0; while [ $i -lt 40 ]; do printf '%099d\\n' $i; i=$((i+1)); done"
        try fs.runtime.create(id: "chatty", bundle: fs.bundle, spec: fs.secureSpec(["sh", "-c", script]),
                              options: .init(output: .files(directory: logDir, maxBytes: 1000, keep: 2)))
        defer { try? fs.runtime.delete(id: "chatty", force: true) }
        try fs.runtime.start(id: "chatty")
        #expect(try fs.runtime.wait(id: "chatty", timeout: .seconds(20))?.code == 0)
        let files = try FileManager.default.contentsOfDirectory(atPath: logDir).sorted()
        #expect(files == ["stderr.log", "stdout.log", "stdout.log.1", "stdout.log.2"], "\(files)")
        for name in files {
            let size = (try FileManager.default.attributesOfItem(atPath: logDir + "/" + name)[.size] as? Int) ?? -1
            #expect(size <= 1000, "\(name) is \(size) bytes")
        }
        // The newest lines are in the current file, in order.
        #expect(fs.read(logDir + "/stdout.log").hasSuffix(String(format: "%099d\n", 39)))
    }
}
