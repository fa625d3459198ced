import Foundation

/// An exclusive flock on `<state_dir>/agent.lock` for the life of the process: two agents on one
/// state directory would fight over the same containers and database.
final class StateDirectoryLock {
    let path: String
    private let fd: Int32

    init(stateDir: String) throws(NodeAgentError) {
        path = stateDir + "/agent.lock"
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io(operation: "open", path: path, errno: errno) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let error = errno
            close(fd)
            if error == EWOULDBLOCK { throw .alreadyRunning(stateDir: stateDir, lockFile: path) }
            throw .io(operation: "lock", path: path, errno: error)
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    deinit {
        flock(fd, LOCK_UN)
        close(fd)
    }
}
