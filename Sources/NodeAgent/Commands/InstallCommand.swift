import ArgumentParser
import Foundation

struct InstallCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "install",
        abstract: "Install the agent as a systemd service: binary, unit, configuration, state directory, identity.",
        discussion: """
            Idempotent: run it again after an upgrade; it prints what it changed. An existing \
            configuration and identity key are kept. With --root, everything goes under that directory \
            and systemctl is not called.
            """
    )

    @Option(name: .long, help: "Install under this directory instead of / (for images and tests).")
    var root: String?

    @Option(name: .long, help: "The binary to install (default: this one).")
    var binary: String?

    @Option(name: .long, help: "Farm id for a new configuration.")
    var farmId: UInt32 = AgentConfig.Node().farmID

    @Option(name: .long, help: "Embedded ledger file for a new configuration.")
    var ledger: String = AgentConfig.Chain().ledgerPath

    @Flag(name: .long, help: "Also start the service (restart it when the binary or unit changed).")
    var now = false

    func validate() throws {
        if let root, let problem = ConfigParser.checkAbsolutePath(root) { throw ValidationError("--root \(root): \(problem)") }
        if let problem = ConfigParser.checkAbsolutePath(ledger) { throw ValidationError("--ledger \(ledger): \(problem)") }
        if farmId == 0 { throw ValidationError("--farm-id must be 1 or more") }
    }

    func run() throws {
        guard root != nil || geteuid() == 0 else { throw NodeAgentError.notRoot(command: "install") }
        let source = binary ?? ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
        let installer = Installer(root: Self.normalized(root))
        try installer.install(.init(binary: source, farmID: farmId, ledgerPath: ledger, now: now))
    }

    static func normalized(_ root: String?) -> String {
        guard var root, root != "/" else { return "" }
        while root.hasSuffix("/") { root.removeLast() }
        return root
    }
}

struct UninstallCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "uninstall",
        abstract: "Stop and disable the service, remove the unit and the binary.",
        discussion: "Keeps the configuration and the state directory (identity key, deployments). Idempotent."
    )

    @Option(name: .long, help: "Uninstall from under this directory instead of /.")
    var root: String?

    func validate() throws {
        if let root, let problem = ConfigParser.checkAbsolutePath(root) { throw ValidationError("--root \(root): \(problem)") }
    }

    func run() throws {
        guard root != nil || geteuid() == 0 else { throw NodeAgentError.notRoot(command: "uninstall") }
        try Installer(root: InstallCommand.normalized(root)).uninstall()
    }
}
