import Foundation

/// sd_notify(3) without libsystemd: one datagram of newline-separated `KEY=VALUE` assignments to the
/// AF_UNIX socket in `$NOTIFY_SOCKET` (a path, or an abstract name written with a leading '@').
/// systemd reads READY=1, STATUS=..., WATCHDOG=1, STOPPING=1 and MAINPID from it.
struct SystemdNotifier: Sendable {
    /// The socket address as systemd passed it.
    let socket: String
    /// From `$WATCHDOG_USEC`, when the watchdog is on for this process (`$WATCHDOG_PID` unset or ours).
    let watchdogInterval: Duration?

    /// nil when not started by systemd with notify access (no NOTIFY_SOCKET), or when the variable is
    /// something this implementation cannot reach (vsock addresses, a path longer than sun_path).
    init?(environment: [String: String] = ProcessInfo.processInfo.environment, pid: Int32 = getpid()) {
        guard let socket = environment["NOTIFY_SOCKET"], Self.address(socket) != nil else { return nil }
        self.socket = socket
        watchdogInterval = Self.watchdogInterval(environment: environment, pid: pid)
    }

    /// WATCHDOG_USEC applies to us unless WATCHDOG_PID names another process.
    static func watchdogInterval(environment: [String: String], pid: Int32) -> Duration? {
        guard let text = environment["WATCHDOG_USEC"], let usec = UInt64(text), usec > 0 else { return nil }
        if let owner = environment["WATCHDOG_PID"], let ownerPID = Int32(owner), ownerPID != pid { return nil }
        return .microseconds(Int64(clamping: usec))
    }

    /// The sockaddr_un bytes and length for a NOTIFY_SOCKET value: a filesystem path (absolute), or
    /// '@name' for the abstract namespace (the '@' becomes a leading NUL, no trailing NUL).
    static func address(_ socket: String) -> (sockaddr_un, socklen_t)? {
        var bytes = Array(socket.utf8)
        guard bytes.count >= 2, !bytes.contains(0) else { return nil }
        let abstract = bytes[0] == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 } else if bytes[0] != UInt8(ascii: "/") { return nil }
        var address = sockaddr_un()
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        // A path needs room for its NUL; an abstract name does not have one.
        guard bytes.count < capacity || (abstract && bytes.count <= capacity) else { return nil }
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
        }
        let offset = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path) ?? 2
        return (address, socklen_t(offset + bytes.count + (abstract ? 0 : 1)))
    }

    /// Sends `assignments` (e.g. ["READY=1", "STATUS=running"]) as one datagram. Returns false when it
    /// could not be sent; systemd then simply does not hear it (the agent runs the same).
    @discardableResult
    func notify(_ assignments: [String]) -> Bool {
        guard case (var address, let length)? = Self.address(socket) else { return false }
        // A newline inside a value would start a new assignment: STATUS text comes from errors.
        let message = assignments.map { $0.replacingOccurrences(of: "\n", with: " ") }.joined(separator: "\n")
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let bytes = Array(message.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), socketAddress, length) }
            }
        }
        return sent == bytes.count
    }

    func ready(status: String) { notify(["READY=1", "STATUS=" + status, "MAINPID=\(getpid())"]) }
    func status(_ text: String) { notify(["STATUS=" + text]) }
    func watchdog() { notify(["WATCHDOG=1"]) }
    func stopping(status: String) { notify(["STOPPING=1", "STATUS=" + status]) }
}
