import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// The admin API: HTTP/1.1 with JSON bodies on a Unix domain socket (`admin.socket`, mode 0600,
/// root's only). Every farmer command goes through it, so it shows the numbers the agent enforces;
/// `curl --unix-socket /run/node-agent/admin.sock http://agent/v1/status` works too.
///
///     GET  /v1/status                       StatusReport
///     GET  /v1/workloads                    [WorkloadEntry]
///     GET  /v1/events?limit=N               [AgentEvent], oldest first
///     GET  /v1/logs/:contract/:workload?tail=N&follow=1&stream=stdout|stderr|all
///                                           NDJSON lines {"stream": ..., "line": ...}, streamed while following
///     POST /v1/drain, /v1/undrain           {"draining": Bool}
///     GET  /v1/ping                         {"ok": true}
struct AdminServer {
    static let prefix = "/v1"
    let runtime: AgentRuntime
    let logger: Logger

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        let runtime = self.runtime
        router.get("\(Self.prefix)/ping") { _, _ in Self.json(["ok": true]) }
        router.get("\(Self.prefix)/status") { _, _ in Self.json(await runtime.status()) }
        router.get("\(Self.prefix)/workloads") { _, _ in
            do { return Self.json(try await runtime.workloads()) } catch { return Self.failure(error) }
        }
        router.get("\(Self.prefix)/events") { request, _ in
            let limit = request.uri.queryParameters["limit"].flatMap { Int($0) } ?? 100
            return Self.json(await runtime.events(limit: limit))
        }
        router.post("\(Self.prefix)/drain") { _, _ in
            do { return Self.json(["draining": try await runtime.setDraining(true, by: "the admin socket")]) } catch { return Self.failure(error) }
        }
        router.post("\(Self.prefix)/undrain") { _, _ in
            do { return Self.json(["draining": try await runtime.setDraining(false, by: "the admin socket")]) } catch { return Self.failure(error) }
        }
        router.get("\(Self.prefix)/logs/:contract/:workload") { request, context in
            do {
                guard let contract = context.parameters.get("contract", as: UInt64.self) else {
                    throw NodeAgentError.adminAPI(status: 400, message: "the contract in the path must be a number")
                }
                guard let workload = context.parameters.get("workload"), (1...64).contains(workload.utf8.count) else {
                    throw NodeAgentError.adminAPI(status: 400, message: "the workload name must be 1 to 64 bytes")
                }
                let query = request.uri.queryParameters
                let tail = query["tail"].map { Int($0) ?? -1 } ?? 100
                guard (0...LogReader.maxTailLines).contains(tail) else {
                    throw NodeAgentError.adminAPI(status: 400, message: "tail must be 0 to \(LogReader.maxTailLines) lines")
                }
                let follow = ["1", "true", "yes"].contains(query["follow"].map(String.init) ?? "")
                guard let streams = LogReader.Selection(rawValue: query["stream"].map(String.init) ?? "all") else {
                    throw NodeAgentError.adminAPI(status: 400, message: "stream must be stdout, stderr or all")
                }
                let directory = try await runtime.logDirectory(contractID: contract, workload: workload)
                let reader = LogReader(directory: directory, selection: streams)
                return Response(status: .ok, headers: [.contentType: "application/x-ndjson"], body: ResponseBody { writer in
                    for line in reader.tail(tail) { try await writer.write(Self.logLine(line)) }
                    if follow {
                        try await reader.follow(until: { await runtime.isStopping }) { lines in
                            for line in lines { try await writer.write(Self.logLine(line)) }
                        } heartbeat: {
                            // An empty line: lets a closed connection show up as a failed write.
                            try await writer.write(ByteBuffer(string: "\n"))
                        }
                    }
                    try await writer.finish(nil)
                })
            } catch {
                return Self.failure(error)
            }
        }
        return router
    }

    static func logLine(_ line: LogReader.Line) -> ByteBuffer {
        var data = (try? AdminJSON.encoder().encode(line)) ?? Data("{}".utf8)
        data.append(UInt8(ascii: "\n"))
        return ByteBuffer(bytes: data)
    }

    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? AdminJSON.encoder().encode(value)) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func failure(_ error: any Error) -> Response {
        if case NodeAgentError.adminAPI(let status, let message)? = error as? NodeAgentError {
            return json(["error": message], status: HTTPResponse.Status(code: status))
        }
        return json(["error": "\(error)"], status: .internalServerError)
    }
}

/// The admin socket's file: its directory made or checked, a stale socket replaced, a live one
/// (another agent) refused. The socket is bound inside a private 0700 directory, made 0600, then
/// renamed into place, so no one but root can ever connect, not even between bind and chmod.
enum AdminSocket {
    static func prepare(path: String) throws(NodeAgentError) -> (staging: String, directory: String) {
        guard path.hasPrefix("/"), path.utf8.count < 100 else {
            throw .config(file: "(config)", key: "admin.socket", message: "\"\(path)\" must be an absolute path shorter than 100 bytes")
        }
        let parent = (path as NSString).deletingLastPathComponent
        var info = stat()
        if lstat(parent, &info) != 0 {
            guard errno == ENOENT else { throw .io(operation: "stat", path: parent, errno: errno) }
            try makeDirectories(parent)
        } else {
            guard info.st_mode & S_IFMT == S_IFDIR else { throw .io(operation: "use as the admin socket's directory", path: parent, errno: ENOTDIR) }
            // Anyone who may write here could swap the socket for their own.
            guard info.st_uid == geteuid(), info.st_mode & 0o022 == 0 else {
                throw .config(file: "(config)", key: "admin.socket", message:
                    "the directory \(parent) is owned by uid \(info.st_uid) with mode \(String(info.st_mode & 0o7777, radix: 8)); "
                    + "it must belong to the agent's user and not be writable by others")
            }
        }
        if lstat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFSOCK else {
                throw .config(file: "(config)", key: "admin.socket", message: "\(path) exists and is not a socket; remove it or choose another path")
            }
            if isServed(path) {
                throw .config(file: "(config)", key: "admin.socket", message: "another agent serves \(path); stop it first (systemctl stop node-agent)")
            }
            guard unlink(path) == 0 || errno == ENOENT else { throw .io(operation: "remove the stale socket", path: path, errno: errno) }
        }
        let staging = parent + "/.admin-\(getpid())"
        _ = try? FileManager.default.removeItem(atPath: staging)
        guard mkdir(staging, 0o700) == 0 else { throw .io(operation: "mkdir", path: staging, errno: errno) }
        return (staging + "/admin.sock", staging)
    }

    /// After the bind: 0600, then into place. Returns the socket's inode (see `removeIfOurs`).
    static func publish(staged: String, directory: String, path: String) throws(NodeAgentError) -> ino_t {
        defer { rmdir(directory) }
        guard chmod(staged, 0o600) == 0 else { throw .io(operation: "chmod 600", path: staged, errno: errno) }
        var info = stat()
        guard lstat(staged, &info) == 0 else { throw .io(operation: "stat", path: staged, errno: errno) }
        guard rename(staged, path) == 0 else { throw .io(operation: "rename into place", path: path, errno: errno) }
        return info.st_ino
    }

    /// Removes the socket file unless another agent has put its own there since.
    static func removeIfOurs(_ path: String, inode: ino_t?) {
        var info = stat()
        guard let inode, lstat(path, &info) == 0, info.st_ino == inode else { return }
        unlink(path)
    }

    /// mkdir -p: the last directory 0700 (root's only), those above 0755.
    static func makeDirectories(_ path: String) throws(NodeAgentError) {
        var current = ""
        let components = path.split(separator: "/")
        for (index, component) in components.enumerated() {
            current += "/" + component
            let mode: mode_t = index == components.count - 1 ? 0o700 : 0o755
            if mkdir(current, mode) != 0 && errno != EEXIST { throw .io(operation: "mkdir", path: current, errno: errno) }
        }
    }

    /// Whether a process accepts connections on the socket at `path`.
    static func isServed(_ path: String) -> Bool {
        guard let (address, length) = SystemdNotifier.address(path) else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var copy = address
        let result = withUnsafePointer(to: &copy) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) } }
        return result == 0
    }
}

/// Serves the admin API for the life of the agent. A socket that cannot be bound is logged and
/// retried: the workloads matter more than the farmer's view of them.
struct AdminService: Service {
    let runtime: AgentRuntime
    let socketPath: String
    let logger: Logger

    func run() async throws {
        var delay = Duration.seconds(1)
        var lastError = ""
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                let (staged, directory) = try AdminSocket.prepare(path: socketPath)
                let path = socketPath
                let logger = self.logger
                let published = Published()
                let app = Application(
                    router: AdminServer(runtime: runtime, logger: logger).router(),
                    configuration: .init(address: .unixDomainSocket(path: staged), serverName: "node-agent-admin"),
                    onServerRunning: { _ in
                        do {
                            published.set(try AdminSocket.publish(staged: staged, directory: directory, path: path))
                            logger.info("admin socket listening", metadata: ["socket": .string(path)])
                        } catch {
                            logger.critical("cannot publish the admin socket", metadata: ["socket": .string(path), "error": "\(error)"])
                        }
                    },
                    logger: Logger(label: "node-agent.admin.http"))
                defer {
                    AdminSocket.removeIfOurs(path, inode: published.inode)
                    unlink(staged)
                    rmdir(directory)
                }
                try await app.run()
                return
            } catch {
                let message = "\(error)"
                if message != lastError {
                    logger.error("the admin socket cannot serve; retrying", metadata: ["socket": .string(socketPath), "error": .string(message)])
                    lastError = message
                }
                try? await gracefulShutdownOrSleep(delay)
                delay = min(delay * 2, .seconds(30))
            }
        }
    }
}

/// The published socket's inode, set from the server's start-up callback.
final class Published: Sendable {
    private let value = Mutex<ino_t?>(nil)
    func set(_ inode: ino_t) { value.withLock { $0 = inode } }
    var inode: ino_t? { value.withLock { $0 } }
}

/// Sleeps `duration`, returning early when a graceful shutdown starts.
func gracefulShutdownOrSleep(_ duration: Duration) async throws {
    await withTaskGroup(of: Void.self) { group in
        group.addTask { try? await Task.sleep(for: duration) }
        group.addTask { try? await gracefulShutdown() }
        await group.next()
        group.cancelAll()
    }
}
