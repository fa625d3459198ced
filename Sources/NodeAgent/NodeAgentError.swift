import Foundation

/// Errors of the daemon and its command line. Each says what failed, on what, and what to do.
enum NodeAgentError: Error, CustomStringConvertible, Equatable {
    /// A configuration problem: `key` is "section.name" (or the file for syntax errors).
    case config(file: String, key: String, message: String)
    case configMissing(file: String)
    case io(operation: String, path: String, errno: Int32)
    case alreadyRunning(stateDir: String, lockFile: String)
    case notRoot(command: String)

    var description: String {
        switch self {
        case .config(let file, let key, let message):
            return "\(file): \(key): \(message)"
        case .configMissing(let file):
            return "configuration file \(file) does not exist; run `node-agent init` to write a commented default, or pass --config"
        case .io(let operation, let path, let errno):
            return "\(operation) \(path) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case .alreadyRunning(let stateDir, let lockFile):
            return "another node-agent is already running on state directory \(stateDir) (it holds \(lockFile)); stop it first (systemctl stop node-agent)"
        case .notRoot(let command):
            return "`node-agent \(command)` must run as root: it creates namespaces, cgroups and mounts"
        }
    }
}
