import Foundation

/// Runs one of the system's own tools (mkfs.ext4, mount, resize2fs) and turns a failure into an
/// error that carries the command and what it printed.
enum SystemCommand {
    static func run(_ executable: String, _ arguments: [String], workload: String, operation: String) throws(ProvisionerError) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch {
            throw .workload(name: workload, operation: operation,
                            detail: "cannot run \(executable): \(error); install it (scripts/setup.sh lists the packages)", permanent: false)
        }
        let text = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let printed = String(decoding: text.prefix(2000), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw .workload(name: workload, operation: operation,
                            detail: "\(executable) \(arguments.joined(separator: " ")) exited with \(process.terminationStatus): \(printed)",
                            permanent: false)
        }
    }
}
