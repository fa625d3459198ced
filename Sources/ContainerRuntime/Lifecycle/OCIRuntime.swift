import CNodeShim
import Foundation

/// The container lifecycle of the OCI runtime spec: create, start, state, kill, delete, and wait.
/// Every container has a directory under `stateRoot` that outlives this process, so a restarted
/// agent (or another `node-agent runtime` invocation) finds its containers by pid and start time.
/// Calls block on syscalls; callers that must not block run them off their event loops.
public struct OCIRuntime: Sendable {
    public static let defaultStateRoot = "/run/node-agent/runtime"
    public static let ociVersion = "1.0.2"

    public let stateRoot: String
    public let cgroupRoot: String
    /// Containers without a cgroupsPath get `<cgroupParent>/<id>`.
    public let cgroupParent: String

    public init(stateRoot: String = OCIRuntime.defaultStateRoot, cgroupRoot: String = "/sys/fs/cgroup", cgroupParent: String = "node-agent") {
        self.stateRoot = stateRoot
        self.cgroupRoot = cgroupRoot
        self.cgroupParent = cgroupParent
    }

    /// Where the workload's stdout and stderr go.
    public enum Output: Sendable {
        /// The runtime's own stdio, passed through untouched (the OCI command line convention).
        case inherit
        /// `stdout.log` and `stderr.log` in this directory, rotated past `maxBytes`, `keep` old files.
        case files(directory: String, maxBytes: UInt64, keep: Int)
    }

    public struct CreateOptions: Sendable {
        public var output: Output
        public var pidFile: String?
        /// How long the init may take to set the container up before creation is abandoned.
        public var setupTimeout: Duration
        public init(output: Output = .inherit, pidFile: String? = nil, setupTimeout: Duration = .seconds(30)) {
            self.output = output
            self.pidFile = pidFile
            self.setupTimeout = setupTimeout
        }
    }

    func directory(_ id: String) -> String { stateRoot + "/" + id }

    /// A poll(2) timeout covering `remaining`, rounded up so a wait never ends early.
    static func pollMilliseconds(_ remaining: Duration) -> Int32 {
        Int32(clamping: remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000 + 1)
    }

    /// mkdir -p for the runtime's own directories (state root, log directories).
    static func makeDirectories(_ path: String) throws(ContainerRuntimeError) {
        var current = ""
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, 0o755) != 0 && errno != EEXIST { throw .io(operation: "mkdir", path: current, errno: errno) }
        }
    }

    static func validate(id: String) throws(ContainerRuntimeError) {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
        guard (1...64).contains(id.count), id.allSatisfy({ allowed.contains($0) }), !id.hasPrefix("."), !id.hasPrefix("-") else {
            throw .invalidID(id)
        }
    }

    // MARK: create

    /// Creates the container from its bundle's config.json: the init is set up and waits for `start`.
    @discardableResult
    public func create(id: String, bundle: String, options: CreateOptions = CreateOptions()) throws(ContainerRuntimeError) -> ContainerState {
        let spec = try SpecParser.load(bundle: bundle)
        return try create(id: id, bundle: bundle, spec: spec, options: options)
    }

    /// Creates the container from a spec built in code (the provisioner's secure defaults).
    @discardableResult
    public func create(id: String, bundle: String, spec: ContainerSpec, options: CreateOptions) throws(ContainerRuntimeError) -> ContainerState {
        try Self.validate(id: id)
        guard spec.has(.mount) else {
            throw .invalidSpec(field: "linux.namespaces", message: "a mount namespace is required: the runtime never mounts in the host's")
        }
        try Self.makeDirectories(stateRoot)
        let dir = directory(id)
        guard mkdir(dir, 0o700) == 0 else {
            if errno == EEXIST { throw .containerExists(id: id) }
            throw .io(operation: "mkdir", path: dir, errno: errno)
        }
        let cgroupPath = spec.cgroupsPath ?? (cgroupParent + "/" + id)
        var record = ContainerRecord(id: id, bundle: bundle, rootfs: spec.rootPath, phase: .creating, pid: nil, pidStartTime: nil,
                                     createdAt: Date(), cgroupPath: cgroupPath, annotations: spec.annotations, logDirectory: nil, exit: nil)
        do {
            try record.save(dir)
            return try createRecorded(&record, spec: spec, options: options)
        } catch {
            // Leave nothing behind: a failed create is as if it never happened.
            cleanUp(record, force: true)
            throw error
        }
    }

    private func createRecorded(_ record: inout ContainerRecord, spec: ContainerSpec, options: CreateOptions) throws(ContainerRuntimeError) -> ContainerState {
        let dir = directory(record.id)
        let hostRoot = spec.uidMappings.first { $0.containerID == 0 }?.hostID ?? 0
        let hostRootGroup = spec.gidMappings.first { $0.containerID == 0 }?.hostID ?? 0

        // The exec FIFO: the init blocks opening it for writing until `start` reads it.
        let fifo = dir + "/exec.fifo"
        guard mkfifo(fifo, 0o600) == 0 else { throw .io(operation: "mkfifo", path: fifo, errno: errno) }
        guard chown(fifo, hostRoot, hostRootGroup) == 0 else { throw .io(operation: "chown", path: fifo, errno: errno) }
        let fifoFD = open(fifo, NSHIM_O_PATH | O_CLOEXEC)
        guard fifoFD >= 0 else { throw .io(operation: "open", path: fifo, errno: errno) }
        defer { close(fifoFD) }
        let exitFile = dir + "/exit-status"
        let exitFD = open(exitFile, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard exitFD >= 0 else { throw .io(operation: "create", path: exitFile, errno: errno) }
        defer { close(exitFD) }
        var logFD: Int32 = -1
        var logMax: UInt64 = 0
        var logKeep: Int32 = 0
        if case .files(let logDirectory, let maxBytes, let keep) = options.output {
            try Self.makeDirectories(logDirectory)
            // The init writes the logs as the container's root, which owns nothing on the host.
            guard chown(logDirectory, hostRoot, hostRootGroup) == 0 else { throw .io(operation: "chown", path: logDirectory, errno: errno) }
            logFD = open(logDirectory, NSHIM_O_PATH | O_DIRECTORY | O_CLOEXEC)
            guard logFD >= 0 else { throw .io(operation: "open", path: logDirectory, errno: errno) }
            logMax = maxBytes
            logKeep = Int32(clamping: max(0, min(keep, 20)))
            record.logDirectory = logDirectory
        }
        defer { if logFD >= 0 { close(logFD) } }

        let cgroup = try Cgroups.make(path: record.cgroupPath, root: cgroupRoot)
        try record.save(dir)  // the cgroup path is on disk before the cgroup exists
        try cgroup.create(resources: spec.resources)
        let filter = try spec.seccomp.map { s throws(ContainerRuntimeError) in try SeccompCompiler.compile(s) }

        let plan = try SpawnPlan(spec: spec, seccompFilter: filter, plumbing: .init(
            execFifoFD: fifoFD, exitStatusFD: exitFD, logDirectoryFD: logFD, logMaxBytes: logMax, logKeep: logKeep))
        let cgroupFD = cgroup.directoryFD() ?? -1
        let child: nshim_container_child
        do throws(ContainerRuntimeError) { child = try plan.spawn(cgroupFD: cgroupFD) } catch {
            if cgroupFD >= 0 { close(cgroupFD) }
            throw error.withID(record.id)
        }
        if cgroupFD >= 0 { close(cgroupFD) }
        defer { close(child.sync_fd); close(child.status_fd) }
        // Recorded before the init may run, so a crash from here on leaves a pid to kill.
        record.pid = child.pid
        record.pidStartTime = ProcessInfo.startTime(child.pid)
        try record.save(dir)

        if spec.has(.user) && !spec.namespaces.contains(where: { $0.kind == .user && $0.path != nil }) {
            try writeIDMap("/proc/\(child.pid)/uid_map", spec.uidMappings, id: record.id)
            try writeIDMap("/proc/\(child.pid)/gid_map", spec.gidMappings, id: record.id)
        }
        if cgroupFD < 0 { try cgroup.add(pid: child.pid) }
        if let adj = spec.process.oomScoreAdj {
            try CgroupFiles.put("/proc/\(child.pid)/oom_score_adj", String(adj))
        }
        var go: UInt8 = 1
        guard write(child.sync_fd, &go, 1) == 1 else { throw .setup(id: record.id, step: "signal the container init", errno: errno) }
        try awaitReady(child.status_fd, id: record.id, timeout: options.setupTimeout)

        record.phase = .created
        try record.save(dir)
        if let pidFile = options.pidFile { try writePidFile(pidFile, pid: child.pid) }
        return try state(id: record.id)
    }

    private func writeIDMap(_ path: String, _ mappings: [ContainerSpec.IDMapping], id: String) throws(ContainerRuntimeError) {
        let text = mappings.map { "\($0.containerID) \($0.hostID) \($0.size)\n" }.joined()
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .setup(id: id, step: "open \(path)", errno: errno) }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        guard bytes.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == bytes.count else {
            throw .setup(id: id, step: "write \(path) (\(text.replacingOccurrences(of: "\n", with: "; ")))", errno: errno)
        }
    }

    /// Reads the init's one status message: ready, or the step that failed and its errno.
    private func awaitReady(_ fd: Int32, id: String, timeout: Duration) throws(ContainerRuntimeError) {
        var status = nshim_container_status()
        let size = MemoryLayout<nshim_container_status>.size
        let deadline = ContinuousClock.now + timeout
        var received = 0
        while received < size {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { throw .setup(id: id, step: "wait for the container init (timed out after \(timeout))", errno: ETIMEDOUT) }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ms = Self.pollMilliseconds(remaining)
            let ready = poll(&pfd, 1, ms)
            if ready < 0 && errno == EINTR { continue }
            if ready <= 0 { continue }
            let n = withUnsafeMutableBytes(of: &status) { read(fd, $0.baseAddress! + received, size - received) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { throw .setup(id: id, step: "container init exited during setup", errno: n < 0 ? errno : ECHILD) }
            received += n
        }
        if status.kind == NSHIM_STATUS_READY { return }
        let step = withUnsafeBytes(of: status.step) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        throw .setup(id: id, step: step, errno: status.error)
    }

    private func writePidFile(_ path: String, pid: Int32) throws(ContainerRuntimeError) {
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: Data("\(pid)".utf8), attributes: [.posixPermissions: 0o644]),
              rename(temporary, path) == 0 else {
            throw .io(operation: "write pid file", path: path, errno: errno)
        }
    }

    // MARK: start

    /// Lets the created container's init exec the workload.
    public func start(id: String) throws(ContainerRuntimeError) {
        try Self.validate(id: id)
        let dir = directory(id)
        var record = try ContainerRecord.load(dir)
        let current = Self.status(of: record)
        guard current == .created else { throw .invalidState(id: id, state: current.rawValue, operation: "start") }
        let fifo = dir + "/exec.fifo"
        // Non-blocking open: it succeeds at once, and the init's pending open for writing completes.
        let fd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw .io(operation: "open", path: fifo, errno: errno) }
        defer { close(fd) }
        let deadline = ContinuousClock.now + .seconds(10)
        var byte: UInt8 = 0
        while true {
            let n = read(fd, &byte, 1)
            if n == 1 { break }
            if n < 0 && errno != EAGAIN && errno != EINTR { throw .io(operation: "read", path: fifo, errno: errno) }
            guard record.initIsAlive else { throw .invalidState(id: id, state: "stopped", operation: "start") }
            guard ContinuousClock.now < deadline else { throw .setup(id: id, step: "start (the init did not answer the exec FIFO)", errno: ETIMEDOUT) }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&pfd, 1, 50)
        }
        record.phase = .started
        try record.save(dir)
        unlink(fifo)
    }

    // MARK: state

    public func state(id: String) throws(ContainerRuntimeError) -> ContainerState {
        try Self.validate(id: id)
        let dir = directory(id)
        var record = try ContainerRecord.load(dir)
        let status = Self.status(of: record)
        if status == .stopped, record.exit == nil, record.phase == .started, let observed = observeExit(record, waitStatus: reap(record)) {
            record.exit = observed
            try? record.save(dir)
        }
        return ContainerState(ociVersion: Self.ociVersion, id: id, status: status, pid: status == .stopped ? nil : record.pid,
                              bundle: record.bundle, rootfs: record.rootfs, created: record.createdAt, annotations: record.annotations,
                              exit: status == .stopped ? record.exit : nil)
    }

    /// The OCI status a record stands for, given whether its init is still the process it started.
    static func status(of record: ContainerRecord) -> ContainerState.Status {
        switch (record.phase, record.initIsAlive) {
        case (.creating, true): return .creating
        case (.created, true): return .created
        case (.started, true): return .running
        default: return .stopped
        }
    }

    /// Every container with a state directory.
    public func list() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: stateRoot)) ?? []
        return names.filter { FileManager.default.fileExists(atPath: stateRoot + "/" + $0 + "/state.json") }.sorted()
    }

    /// Usage and limits from the container's cgroup.
    public func stats(id: String) throws(ContainerRuntimeError) -> CgroupStats {
        try Self.validate(id: id)
        let record = try ContainerRecord.load(directory(id))
        return try Cgroups.make(path: record.cgroupPath, root: cgroupRoot).stats()
    }

    /// Freezes (or thaws) every process of the container: the grace period's pause.
    public func pause(id: String, _ paused: Bool) throws(ContainerRuntimeError) {
        try Self.validate(id: id)
        let record = try ContainerRecord.load(directory(id))
        guard record.initIsAlive else { throw .invalidState(id: id, state: "stopped", operation: paused ? "pause" : "resume") }
        try Cgroups.make(path: record.cgroupPath, root: cgroupRoot).freeze(paused)
    }

    public func isPaused(id: String) throws(ContainerRuntimeError) -> Bool {
        try Self.validate(id: id)
        let record = try ContainerRecord.load(directory(id))
        return try Cgroups.make(path: record.cgroupPath, root: cgroupRoot).isFrozen()
    }

    /// Reaps the init when this process is its parent; returns its wait status then.
    private func reap(_ record: ContainerRecord) -> Int32? {
        guard let pid = record.pid else { return nil }
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        return result == pid ? status : nil
    }

    private func observeExit(_ record: ContainerRecord, waitStatus: Int32?) -> ContainerExit? {
        let oom = ((try? Cgroups.make(path: record.cgroupPath, root: cgroupRoot).stats().oomKills) ?? 0) > 0
        if let data = FileManager.default.contents(atPath: directory(record.id) + "/exit-status"),
           let parsed = ContainerExit.parse(String(decoding: data, as: UTF8.self), oomKilled: oom) {
            return parsed
        }
        if let waitStatus { return ContainerExit.fromWaitStatus(waitStatus, oomKilled: oom) }
        // The init died without writing its file: only SIGKILL (a forced delete, the OOM killer) does that.
        return ContainerExit(code: 137, signal: SIGKILL, oomKilled: oom)
    }

    // MARK: wait

    /// Blocks until the container's init has exited (or `timeout` passes: nil is returned) and
    /// returns how the workload ended.
    public func wait(id: String, timeout: Duration? = nil) throws(ContainerRuntimeError) -> ContainerExit? {
        try Self.validate(id: id)
        let dir = directory(id)
        let record = try ContainerRecord.load(dir)
        if let pid = record.pid, record.initIsAlive {
            let pidfd = nshim_pidfd_open(pid)
            if pidfd >= 0 {
                defer { close(pidfd) }
                let deadline = timeout.map { ContinuousClock.now + $0 }
                while true {
                    var pfd = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
                    var ms: Int32 = -1
                    if let deadline {
                        let remaining = deadline - ContinuousClock.now
                        if remaining <= .zero { return nil }
                        ms = Self.pollMilliseconds(remaining)
                    }
                    let n = poll(&pfd, 1, ms)
                    if n > 0 { break }
                    if n < 0 && errno != EINTR { throw .io(operation: "poll pidfd of", path: "pid \(pid)", errno: errno) }
                }
            }
        }
        return try state(id: id).exit
    }

    // MARK: kill

    /// Sends `signal` to the container's init, which forwards it to the workload; `all` signals
    /// every process in the container's cgroup instead.
    public func kill(id: String, signal: Int32, all: Bool = false) throws(ContainerRuntimeError) {
        let current = try state(id: id)
        guard current.status == .created || current.status == .running, let pid = current.pid else {
            throw .invalidState(id: id, state: current.status.rawValue, operation: "kill")
        }
        if all {
            let record = try ContainerRecord.load(directory(id))
            for member in try Cgroups.make(path: record.cgroupPath, root: cgroupRoot).processes() { _ = Glibc.kill(member, signal) }
            return
        }
        guard Glibc.kill(pid, signal) == 0 else { throw .setup(id: id, step: "kill(\(pid), \(signal))", errno: errno) }
    }

    // MARK: delete

    /// Removes a stopped (or created) container; `force` also kills a running one first.
    public func delete(id: String, force: Bool = false) throws(ContainerRuntimeError) {
        try Self.validate(id: id)
        let record = try ContainerRecord.load(directory(id))
        if record.phase == .started && record.initIsAlive && !force {
            throw .invalidState(id: id, state: "running", operation: "delete (stop it first, or use --force)")
        }
        try cleanUp(record, force: true, throwing: true)
    }

    /// Kills whatever is left, removes the cgroup and the state directory. Idempotent.
    @discardableResult
    private func cleanUp(_ record: ContainerRecord, force: Bool, throwing: Bool = false) throws(ContainerRuntimeError) -> Bool {
        let cgroup = try? Cgroups.make(path: record.cgroupPath, root: cgroupRoot)
        if force {
            if let cgroup, !cgroup.processes().isEmpty { try? cgroup.killAll() }
            if let pid = record.pid, record.initIsAlive {
                _ = Glibc.kill(pid, SIGKILL)
                let deadline = ContinuousClock.now + .seconds(10)
                while record.initIsAlive && ContinuousClock.now < deadline {
                    _ = reap(record)
                    usleep(2_000)
                }
            }
            _ = reap(record)
        }
        do {
            try cgroup?.destroy()
        } catch {
            if throwing { throw error }
        }
        let dir = directory(record.id)
        // The files the runtime made, then the directory; a tree walk only if something else is there.
        for name in ["state.json", "state.json.tmp", "exec.fifo", "exit-status"] { unlink(dir + "/" + name) }
        if rmdir(dir) == 0 || errno == ENOENT { return true }
        do { try FileManager.default.removeItem(atPath: dir) } catch {
            if throwing && FileManager.default.fileExists(atPath: dir) { throw .io(operation: "remove", path: dir, errno: EIO) }
        }
        return true
    }

    @discardableResult
    private func cleanUp(_ record: ContainerRecord, force: Bool) -> Bool {
        (try? cleanUp(record, force: force, throwing: false)) ?? false
    }
}

extension ContainerRuntimeError {
    /// Fills in the container id for errors raised before it was known.
    func withID(_ id: String) -> ContainerRuntimeError {
        if case .setup("-", let step, let errno) = self { return .setup(id: id, step: step, errno: errno) }
        return self
    }
}
