import ArgumentParser
import Foundation

@main
struct NodeAgentCommand: AsyncParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "node-agent",
        abstract: "The farm node agent: fulfils the chain's contracts for this node, automatically.",
        version: version,
        subcommands: [InitCommand.self, RunCommand.self, DoctorCommand.self, LedgerCommand.self, ShardServerCommand.self, RuntimeCommand.self, ReportCommand.self,
                      StatusCommand.self, WorkloadsCommand.self, LogsCommand.self, EventsCommand.self, DrainCommand.self, UndrainCommand.self,
                      InstallCommand.self, UninstallCommand.self]
    )
}

/// Options every subcommand shares.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "Configuration file.")
    var config: String = AgentConfig.defaultPath

    @Option(name: .long, help: "State directory (overrides node.state_dir).")
    var stateDir: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical (overrides log.level).")
    var logLevel: String?

    func validate() throws {
        if let level = logLevel, AgentConfig.LogLevel(rawValue: level) == nil {
            throw ValidationError("--log-level \(level) is not a level; use one of: \(AgentConfig.LogLevel.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let dir = stateDir, let problem = ConfigParser.checkAbsolutePath(dir) {
            throw ValidationError("--state-dir \(dir): \(problem)")
        }
    }

    /// The config file with command-line overrides applied. `required: false` falls back to the
    /// defaults when the file does not exist (init and doctor work before a config is written).
    func loadConfig(required: Bool) throws -> (AgentConfig, loadedFromFile: Bool) {
        let loaded = required || FileManager.default.fileExists(atPath: self.config)
        var config = loaded ? try ConfigParser.load(path: self.config) : AgentConfig()
        if let dir = stateDir { config.node.stateDir = dir }
        if let level = logLevel, let parsed = AgentConfig.LogLevel(rawValue: level) { config.log.level = parsed }
        return (config, loaded)
    }
}
