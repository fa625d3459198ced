import Foundation
import GridTypes

/// `node-agent install` / `uninstall`: the binary, the systemd unit, the configuration and the state
/// directory, under `root` ("" for this machine). Idempotent: every step looks first and says what
/// it changed ("created", "updated", "unchanged", "kept", "removed", "absent"). systemctl is called
/// only for this machine (no root prefix) and only where systemd runs.
struct Installer {
    static let binaryPath = "/usr/local/bin/node-agent"
    static let unitPath = "/etc/systemd/system/" + SystemdUnit.name
    static let configPath = AgentConfig.defaultPath

    /// "" or an absolute directory every path is placed under.
    let root: String
    var output: (String) -> Void = { print($0) }
    /// Runs `systemctl ARGS`; returns its exit status.
    var systemctl: ([String]) -> Int32 = Installer.runSystemctl

    /// Whether to call systemctl: only for this machine, and only where systemd runs.
    var usesSystemd: Bool

    init(root: String, usesSystemd: Bool? = nil) {
        self.root = root
        self.usesSystemd = usesSystemd ?? (root.isEmpty && Self.systemdIsRunning())
    }

    func path(_ absolute: String) -> String { root + absolute }

    // MARK: install

    struct InstallOptions {
        var binary: String
        var farmID: UInt32
        var ledgerPath: String
        /// Also start (or restart, when something changed) the service.
        var now: Bool
    }

    func install(_ options: InstallOptions) throws {
        let config = AgentConfig()
        try directory("/usr/local/bin", mode: 0o755)
        try directory("/etc/systemd/system", mode: 0o755)
        try directory((Self.configPath as NSString).deletingLastPathComponent, mode: 0o755)
        try directory(config.node.stateDir, mode: 0o700)
        if options.ledgerPath.hasPrefix("/") {
            try directory((options.ledgerPath as NSString).deletingLastPathComponent, mode: 0o755)
        }

        guard let binary = FileManager.default.contents(atPath: options.binary) else {
            throw NodeAgentError.io(operation: "read the binary to install", path: options.binary, errno: errno == 0 ? ENOENT : errno)
        }
        let binaryChanged = try file(Self.binaryPath, contents: binary, mode: 0o755)
        let unitChanged = try file(Self.unitPath, contents: Data(SystemdUnit.text.utf8), mode: 0o644)

        let configFile = path(Self.configPath)
        if FileManager.default.fileExists(atPath: configFile) {
            output("kept      \(configFile) (existing configuration)")
        } else {
            try InitCommand.writeDefaultConfig(path: configFile, text: DefaultConfigFile.text(
                stateDir: config.node.stateDir, ledgerPath: options.ledgerPath, farmID: options.farmID))
            output("created   \(configFile) (farm \(options.farmID); edit it before the first start)")
        }

        let keyFile = path(config.node.stateDir + "/" + NodeIdentity.fileName)
        if FileManager.default.fileExists(atPath: keyFile) {
            output("kept      \(keyFile) (existing node identity)")
        } else {
            let identity = try NodeIdentity.create(at: keyFile)
            output("created   \(keyFile) (mode 0600; back it up) address \(identity.ss58Address)")
        }

        guard usesSystemd else {
            output(root.isEmpty ? "systemd is not running here: start the agent with `node-agent run --config \(Self.configPath)`"
                                : "installed under \(root); on that system run `systemctl daemon-reload && systemctl enable --now node-agent`")
            return
        }
        if unitChanged { call(["daemon-reload"]) }
        call(["enable", SystemdUnit.name])
        if options.now {
            // A restart is graceful and leaves the workloads running.
            call([binaryChanged || unitChanged ? "restart" : "start", SystemdUnit.name])
        } else if binaryChanged || unitChanged {
            call(["try-restart", SystemdUnit.name])
        }
        if !options.now { output("start it with `systemctl start node-agent`, then check `node-agent status`") }
    }

    // MARK: uninstall

    func uninstall() throws {
        if usesSystemd {
            call(["disable", "--now", SystemdUnit.name])
            output("note: containers of running deployments keep running; they are adopted again if the agent is reinstalled")
        }
        try remove(Self.unitPath)
        try remove(Self.binaryPath)
        if usesSystemd { call(["daemon-reload"]) }
        let state = path(AgentConfig().node.stateDir)
        output("kept      \(path(Self.configPath)) and \(state) (configuration, identity key, deployments); "
               + "remove them by hand once the identity key is backed up")
    }

    // MARK: steps

    func directory(_ absolute: String, mode: mode_t) throws {
        let full = path(absolute)
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: full, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw NodeAgentError.io(operation: "use as a directory", path: full, errno: ENOTDIR) }
            return
        }
        try FileManager.default.createDirectory(atPath: full, withIntermediateDirectories: true)
        guard chmod(full, mode) == 0 else { throw NodeAgentError.io(operation: "chmod", path: full, errno: errno) }
        output("created   \(full)/")
    }

    /// Writes `contents` unless the file already holds exactly that (temporary file, fsync, rename).
    /// Returns whether it changed anything.
    @discardableResult
    func file(_ absolute: String, contents: Data, mode: mode_t) throws -> Bool {
        let full = path(absolute)
        var info = stat()
        let existed = lstat(full, &info) == 0
        if existed, FileManager.default.contents(atPath: full) == contents, info.st_mode & 0o7777 == mode {
            output("unchanged \(full)")
            return false
        }
        let temporary = full + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { throw NodeAgentError.io(operation: "create", path: temporary, errno: errno) }
        let written = contents.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0 && fchmod(fd, mode) == 0
        close(fd)
        guard written == contents.count, synced else {
            unlink(temporary)
            throw NodeAgentError.io(operation: "write", path: temporary, errno: errno)
        }
        guard rename(temporary, full) == 0 else {
            let error = errno
            unlink(temporary)
            throw NodeAgentError.io(operation: "rename into place", path: full, errno: error)
        }
        output((existed ? "updated   " : "created   ") + full)
        return true
    }

    func remove(_ absolute: String) throws {
        let full = path(absolute)
        if unlink(full) == 0 {
            output("removed   \(full)")
        } else if errno == ENOENT {
            output("absent    \(full)")
        } else {
            throw NodeAgentError.io(operation: "remove", path: full, errno: errno)
        }
    }

    func call(_ arguments: [String]) {
        let status = systemctl(arguments)
        output((status == 0 ? "ran       " : "FAILED    ") + "systemctl " + arguments.joined(separator: " ")
               + (status == 0 ? "" : " (exit \(status))"))
    }

    static func systemdIsRunning() -> Bool {
        FileManager.default.fileExists(atPath: "/run/systemd/system") && FileManager.default.isExecutableFile(atPath: "/usr/bin/systemctl")
    }

    static func runSystemctl(_ arguments: [String]) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/systemctl")
        process.arguments = arguments
        do { try process.run() } catch { return 127 }
        process.waitUntilExit()
        return process.terminationStatus
    }
}
