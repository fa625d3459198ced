import Foundation

/// What the runtime keeps about a container in `<root>/<id>/state.json`. Written before the step
/// it describes, so a crash leaves a record that `delete --force` can clean up.
struct ContainerRecord: Codable, Equatable {
    enum Phase: String, Codable {
        case creating, created, started
    }

    var id: String
    var bundle: String
    var rootfs: String
    var phase: Phase
    var pid: Int32?
    /// /proc/PID/stat start time: a pid is only "ours" while this matches (pids are reused).
    var pidStartTime: UInt64?
    var createdAt: Date
    var cgroupPath: String
    var annotations: [String: String]
    var logDirectory: String?
    /// Recorded once the container is seen stopped, so the answer survives the cgroup's removal.
    var exit: ContainerExit?

    static func load(_ directory: String) throws(ContainerRuntimeError) -> ContainerRecord {
        guard let data = FileManager.default.contents(atPath: directory + "/state.json") else {
            throw .containerNotFound(id: (directory as NSString).lastPathComponent)
        }
        do { return try JSONDecoder().decode(ContainerRecord.self, from: data) } catch {
            throw .io(operation: "decode", path: directory + "/state.json", errno: EINVAL)
        }
    }

    /// Atomic replace (temp file, rename) so a crash of the agent leaves the old or the new record.
    /// No fsync: the state root lives on tmpfs (/run) like the containers it describes, which do not
    /// survive a power loss either; a sync here would only cost milliseconds per container step.
    func save(_ directory: String) throws(ContainerRuntimeError) {
        let path = directory + "/state.json"
        let data: Data
        do { data = try JSONEncoder().encode(self) } catch { throw .io(operation: "encode", path: path, errno: EINVAL) }
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io(operation: "create", path: temporary, errno: errno) }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard written == data.count else { throw .io(operation: "write", path: temporary, errno: errno) }
        guard rename(temporary, path) == 0 else { throw .io(operation: "rename", path: path, errno: errno) }
    }

    /// The init is alive and is the process this record started (not a reused pid).
    var initIsAlive: Bool {
        guard let pid, let pidStartTime else { return false }
        return ProcessInfo.startTime(pid) == pidStartTime
    }
}

/// Facts about a live process from /proc.
enum ProcessInfo {
    /// Field 22 of /proc/PID/stat (start time in clock ticks since boot), nil if the process is gone.
    static func startTime(_ pid: Int32) -> UInt64? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/stat") else { return nil }
        let text = String(decoding: data, as: UTF8.self)
        // The command name may contain spaces and parentheses: fields start after the last ')'.
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state); start time is field 22.
        guard fields.count > 19, let value = UInt64(fields[19]) else { return nil }
        if fields[0] == "Z" || fields[0] == "X" { return nil }  // exited, not yet reaped
        return value
    }
}
