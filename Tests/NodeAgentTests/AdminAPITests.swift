import ChainClient
import Foundation
import GridTypes
import Logging
@testable import NodeAgent
import Provisioner
import ServiceLifecycle
import Testing

/// The admin API served on its Unix socket and used through `AdminClient`, on a provisioner whose
/// store holds a container workload (with logs on disk) and a zdb one: status, workloads, logs (tail,
/// streams, follow), drain and undrain, errors, and the socket gone after a graceful shutdown.
@Suite struct AdminAPITests {
    struct Fixture {
        let dir: String
        let runtime: AgentRuntime
        let socket: String
        let logs: String
    }

    static func fixture() async throws -> Fixture {
        let dir = NSTemporaryDirectory() + "admin-api-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let ledger = try LocalLedger(path: dir + "/ledger.sqlite")
        let store = try DeploymentStore(path: dir + "/deployments.sqlite")
        let book = try ContractBook(path: dir + "/contracts.sqlite")
        let provisioner = Provisioner(configuration: .init(nodeID: 1, total: Resources(sru: 100 << 30, cru: 4, mru: 8 << 30),
                                                           allocatable: Resources(sru: 90 << 30, cru: 4, mru: 6 << 30)),
                                      store: store, book: book, chain: ledger, managers: [])
        let web = Workload(name: "web", data: .container(ContainerData(image: "file:///images/web.tar", imageDigest: String(repeating: "a", count: 64),
                                                                       entrypoint: "/bin/web", compute: .init(cpu: 1, memory: 256 << 20))))
        let deployment = Deployment(twinID: 3, contractID: 5, signatureRequirement: SignatureRequirement(requests: [], weightRequired: 0),
                                    workloads: [web, Workload(name: "ns", data: .zdb(ZdbData(size: 1 << 20)))])
        try await store.save(deployment, hash: "00")
        var config = AgentConfig()
        config.node.stateDir = dir
        config.admin.socket = dir + "/run/admin.sock"
        let identity = try NodeIdentity.create(at: dir + "/" + NodeIdentity.fileName)
        let runtime = AgentRuntime(config: config, identity: identity, shardServer: nil, notifier: nil, journal: EventJournal(stateDir: nil))
        await runtime.provisionerStarted(provisioner)
        let logs = dir + "/containers/wl-5-web/logs"
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        try "a\nb\nc\n".write(toFile: logs + "/stdout.log", atomically: false, encoding: .utf8)
        try "oops\n".write(toFile: logs + "/stderr.log", atomically: false, encoding: .utf8)
        return Fixture(dir: dir, runtime: runtime, socket: config.admin.socket, logs: logs)
    }

    static func lines(_ body: [UInt8]) throws -> [LogReader.Line] {
        try body.split(separator: UInt8(ascii: "\n")).map { try AdminJSON.decoder().decode(LogReader.Line.self, from: Data($0)) }
    }

    struct Stop: Error {}

    @Test func adminAPIOverTheSocket() async throws {
        let f = try await Self.fixture()
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        let group = ServiceGroup(configuration: .init(services: [AdminService(runtime: f.runtime, socketPath: f.socket, logger: Logger(label: "test"))],
                                                      logger: Logger(label: "test")))
        let serving = Task { try await group.run() }
        let client = AdminClient(socketPath: f.socket)
        let deadline = ContinuousClock.now + .seconds(20)
        while (try? await client.get("/v1/ping"))?.status != 200, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }

        var info = stat()
        #expect(stat(f.socket, &info) == 0 && info.st_mode & 0o777 == 0o600)
        #expect(stat(f.dir + "/run", &info) == 0 && info.st_mode & 0o777 == 0o700)

        let status = try client.decode(StatusReport.self, try await client.get("/v1/status"))
        #expect(status.ready && status.phase == "running")
        #expect(status.work.deployments == ["deploying": 1])
        #expect(status.work.workloads == ["init": 2])
        #expect(status.capacity?.used.cru == 1 && status.capacity?.used.mru == 256 << 20)
        #expect(status.capacity?.allocatable.mru == 6 << 30)

        let workloads = try client.decode([WorkloadEntry].self, try await client.get("/v1/workloads"))
        #expect(workloads.map(\.name) == ["ns", "web"])
        #expect(workloads.allSatisfy { $0.contractID == 5 && $0.twinID == 3 && $0.state == "init" })

        // Tails: stdout's then stderr's; one stream; none.
        #expect(try Self.lines(try await client.get("/v1/logs/5/web?tail=2").body)
                == [.init(stream: "stdout", line: "b"), .init(stream: "stdout", line: "c"), .init(stream: "stderr", line: "oops")])
        #expect(try Self.lines(try await client.get("/v1/logs/5/web?tail=10&stream=stderr").body).map(\.line) == ["oops"])
        #expect(try await client.get("/v1/logs/5/web?tail=0").body.isEmpty)
        #expect(try await client.get("/v1/logs/5/ns").status == 400)
        #expect(try await client.get("/v1/logs/5/nope").status == 404)
        #expect(try await client.get("/v1/logs/5/web?tail=-1").status == 400)
        #expect(try await client.get("/v1/logs/5/web?stream=both").status == 400)
        #expect(try await client.get("/v1/logs/x/web").status == 400)

        // Follow: the tail, then what is written after.
        let logs = f.logs
        var seen = [LogReader.Line]()
        var pending = [UInt8]()
        do {
            try await client.exchange(.GET, "/v1/logs/5/web?tail=1&stream=stdout&follow=1", deadline: .seconds(20)) { chunk in
                pending += chunk.readableBytesView
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = Array(pending[..<newline])
                    pending.removeSubrange(...newline)
                    guard !line.isEmpty else { continue }
                    seen.append(try AdminJSON.decoder().decode(LogReader.Line.self, from: Data(line)))
                    if seen.count == 1 {
                        let out = try #require(FileHandle(forWritingAtPath: logs + "/stdout.log"))
                        out.seekToEndOfFile()
                        out.write(Data("d\ne\n".utf8))
                        try out.close()
                    }
                    if seen.count == 3 { throw Stop() }
                }
            }
        } catch is Stop {}
        #expect(seen.map(\.line) == ["c", "d", "e"])

        // Drain and undrain, kept in the state directory.
        #expect(try client.decode([String: Bool].self, try await client.post("/v1/drain")) == ["draining": true])
        #expect(FileManager.default.fileExists(atPath: f.dir + "/draining"))
        #expect(try client.decode(StatusReport.self, try await client.get("/v1/status")).node.draining)
        #expect(try client.decode([String: Bool].self, try await client.post("/v1/undrain")) == ["draining": false])
        #expect(!FileManager.default.fileExists(atPath: f.dir + "/draining"))
        let events = try client.decode([AgentEvent].self, try await client.get("/v1/events?limit=10"))
        #expect(events.map(\.message).contains { $0.hasPrefix("draining (by the admin socket)") })
        #expect(events.contains { $0.source == .provisioner && $0.workload == "web" && $0.message.contains("accepted") })

        #expect(try await client.get("/v1/nothing").status == 404)

        await f.runtime.beginShutdown(reason: "test")
        await group.triggerGracefulShutdown()
        try await serving.value
        #expect(!FileManager.default.fileExists(atPath: f.socket))
        do {
            _ = try await client.get("/v1/ping")
            Issue.record("the socket still answers")
        } catch let error as NodeAgentError {
            #expect(error == .agentNotRunning(socket: f.socket, errno: ENOENT))
        }
    }
}
