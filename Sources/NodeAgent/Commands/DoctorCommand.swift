import ArgumentParser
import Foundation

struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check that this host can run the agent.",
        discussion: "Prints one line per check (ok, warn, fail) and what to do. Exits non-zero when a check the agent needs fails."
    )

    @OptionGroup var global: GlobalOptions

    @Flag(name: .long, help: "Print the checks as JSON.")
    var json = false

    func run() throws {
        let (config, loaded) = try global.loadConfig(required: false)
        let host = HostProbe().describe(stateDir: config.node.stateDir)
        let checks = DoctorChecks.run(on: host)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let report = DoctorReport(passed: DoctorChecks.passed(checks), checks: checks, host: host)
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            if !loaded { print("(no configuration at \(global.config); checking with the defaults)") }
            print(DoctorChecks.render(checks))
        }
        if !DoctorChecks.passed(checks) { throw ExitCode(1) }
    }
}

struct DoctorReport: Codable {
    var passed: Bool
    var checks: [DoctorCheck]
    var host: HostDescription
}
