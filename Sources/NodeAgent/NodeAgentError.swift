import Foundation

/// Errors of the daemon and its command line. Each says what failed, on what, and what to do.
enum NodeAgentError: Error, CustomStringConvertible, Equatable {
    /// A configuration problem: `key` is "section.name" (or the file for syntax errors).
    case config(file: String, key: String, message: String)
    case configMissing(file: String)
    case io(operation: String, path: String, errno: Int32)
    case alreadyRunning(stateDir: String, lockFile: String)
    case notRoot(command: String)
    case farmMissing(farmID: UInt32)
    case nodeIDMismatch(configured: UInt32, detail: String)
    case backendNotAvailable(String)
    case notRegistered(stateDir: String)
    /// A file holding a secret that cannot be used as it is (`problem` never contains the secret).
    case secretFile(path: String, problem: String)
    /// The admin API refused or failed a request: `status` is its HTTP status.
    case adminAPI(status: Int, message: String)
    /// No agent answers on the admin socket (`errno` from connect: ENOENT, ECONNREFUSED).
    case agentNotRunning(socket: String, errno: Int32)
    /// The admin socket is root's only.
    case adminPermission(socket: String)

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
        case .farmMissing(let farmID):
            return "farm \(farmID) (node.farm_id) does not exist on the chain; create it (grid-twin farm create --name NAME) and set node.farm_id to its id"
        case .nodeIDMismatch(let configured, let detail):
            return "node.node_id = \(configured) in the config, but \(detail); remove node_id to register this node anew"
        case .backendNotAvailable(let detail):
            return detail
        case .secretFile(let path, let problem):
            return "secret file \(path) \(problem)"
        case .adminAPI(let status, let message):
            return "the agent answered \(status): \(message)"
        case .agentNotRunning(let socket, let errno):
            return "the node agent is not running (no agent answers on \(socket): \(String(cString: strerror(errno)))); "
                + "start it with `systemctl start node-agent`, or in the foreground with `node-agent run`"
        case .adminPermission(let socket):
            return "permission denied on the admin socket \(socket): it is root's only; run the command as root (sudo node-agent ...)"
        case .notRegistered(let stateDir):
            return "this node is not registered yet (no \(stateDir)/node.json); start the agent once with `node-agent run`"
        }
    }
}
