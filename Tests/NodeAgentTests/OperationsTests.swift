import Foundation
import GridTypes
@testable import NodeAgent
import Provisioner
import Testing

/// Farmer operations without a running agent: the status layout on a fixed state (golden), the
/// JSON the admin API speaks, sd_notify against a test datagram socket, the Prometheus exposition,
/// log tails and follows, the admin socket's file handling.
@Suite struct OperationsTests {
    static let now = Date(timeIntervalSince1970: 1_735_900_000)  // 2025-01-03 10:26:40 UTC

    static func fixedReport() -> StatusReport {
        let gib: UInt64 = 1 << 30
        return StatusReport(
            phase: "running", notReadyReasons: [], ready: true,
            node: .init(nodeID: 42, farmID: 7, twinID: 19, address: "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV",
                        version: "0.1.0", pid: 4242, startedAt: 1_735_888_000, uptimeSeconds: 12_000,
                        chain: .init(backend: "local", name: "local:9a1b2c3d4e5f60718293a4b5c6d7e8f9", finalizedBlock: 12_345,
                                     processedBlock: 12_344, lagBlocks: 1, finalizedAgeSeconds: 4),
                        conditions: [
                            .init(type: "Ready", status: "True", reason: "KubeletReady", message: "ok", bad: false),
                            .init(type: "MemoryPressure", status: "False", reason: "SufficientMemory", message: "60% free", bad: false),
                            .init(type: "DiskPressure", status: "False", reason: "SufficientDisk", message: "ok", bad: false),
                            .init(type: "PIDPressure", status: "False", reason: "SufficientPIDs", message: "ok", bad: false),
                            .init(type: "ChainReachable", status: "True", reason: "Finalizing", message: "ok", bad: false),
                            .init(type: "ReportsDelivering", status: "True", reason: "Delivered", message: "ok", bad: false),
                        ],
                        draining: false),
            capacity: .init(total: .init(hru: 4000 * gib, sru: 500 * gib, cru: 12, mru: 32 * gib),
                            allocatable: .init(hru: 4000 * gib, sru: 480 * gib, cru: 12, mru: 28 * gib),
                            used: .init(hru: 1000 * gib, sru: 48 * gib, cru: 3, mru: 14 * gib),
                            free: .init(hru: 3000 * gib, sru: 432 * gib, cru: 9, mru: 14 * gib)),
            work: .init(deployments: ["ok": 10, "deploying": 1, "error": 1], workloads: ["ok": 27, "init": 2, "error": 1],
                        shardNamespaces: 8, shardBytesStored: 1_288_490_189,
                        reports: .init(lastDeliveredAt: 1_735_899_820, lastDeliveredKind: "uptime", pending: 0, oldestPendingAt: nil),
                        recentErrors: [
                            .init(time: 1_735_896_400, subject: "12/db", message: "volume data of this deployment is not ready"),
                            .init(time: 1_735_899_700, subject: "15/web", message: "image digest mismatch: sha256:ab12 != sha256:cd34"),
                        ]))
    }

    static let goldenReady = """
        node-agent: Ready

        NODE
          node        42   farm 7   twin 19
          address     5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV
          version     0.1.0 (pid 4242), up 3h 20m since 2025-01-03 07:06 UTC
          chain       local:9a1b2c3d  finalized #12345 (4s ago)  processed #12344, lag 1 block
          conditions  Ready=True MemoryPressure=False DiskPressure=False PIDPressure=False ChainReachable=True
                      ReportsDelivering=True
          scheduling  accepting new deployments

        CAPACITY                               used / allocatable        total
          cpu     [█████░░░░░░░░░░░░░░░]  25%  3 cpu / 12 cpu            12 cpu
          memory  [██████████░░░░░░░░░░]  50%  14.0 GiB / 28.0 GiB       32.0 GiB
          ssd     [██░░░░░░░░░░░░░░░░░░]  10%  48.0 GiB / 480.0 GiB      500.0 GiB
          hdd     [█████░░░░░░░░░░░░░░░]  25%  1000.0 GiB / 3.9 TiB      3.9 TiB

        WORK
          deployments 12   10 ok, 1 deploying, 1 error
          workloads   30   27 ok, 2 init, 1 error
          shards      8 namespaces, 1.2 GiB stored
          reports     last delivered 3m ago (uptime), 0 pending
          errors      15/web 5m ago: image digest mismatch: sha256:ab12 != sha256:cd34
                      12/db 1h 0m ago: volume data of this deployment is not ready

        """

    @Test func statusLayoutGolden() {
        let text = StatusRenderer(unicode: true, width: 110).render(Self.fixedReport(), now: Self.now)
        #expect(text == Self.goldenReady, "got:\n\(text)")
    }

    @Test func statusShowsTrafficWhenNetworkingCountsIt() {
        var report = Self.fixedReport()
        #expect(!StatusRenderer(unicode: true, width: 110).render(report, now: Self.now).contains("traffic"))
        report.work.traffic = StatusReport.Traffic(contracts: 2, publicBytes: 3 << 20, privateBytes: 512 << 10)
        let text = StatusRenderer(unicode: true, width: 110).render(report, now: Self.now)
        #expect(text.contains("  traffic     3.0 MiB public, 512.0 KiB private (2 networks)\n"), "got:\n\(text)")
    }

    @Test func statusShowsContractsWaitingForTheirDeployment() {
        var report = Self.fixedReport()
        report.work.awaitingDeployment = .init(contracts: 0)
        #expect(!StatusRenderer(unicode: true, width: 110).render(report, now: Self.now).contains("contracts"))
        report.work.awaitingDeployment = .init(contracts: 2, oldestContractID: 41, oldestWaitingBlocks: 250, oldestWaitingSeconds: 1500)
        let text = StatusRenderer(unicode: true, width: 110).render(report, now: Self.now)
        #expect(text.contains("  contracts   2 waiting for their deployment (oldest: contract 41, 25m)\n"), "got:\n\(text)")
    }

    static let goldenNotReady = """
        node-agent: NOT READY (registering)
          ! registering the node on the chain (farm 7); see `journalctl -u node-agent`
          ! DiskPressure=True: /var has 2% space free

        NODE
          node        not registered yet   farm 7   twin n/a
          address     5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV
          version     0.1.0 (pid 4242), up 45s since 2025-01-03 10:25 UTC
          chain       local:9a1b2c3d  finalized #7 (1s ago)  watcher not started
          conditions  Ready=False! DiskPressure=True!
                      ! Ready: the node is under disk pressure
                      ! DiskPressure: /var has 2% space free
          scheduling  draining: running deployments stay, new ones are refused (node-agent undrain)

        CAPACITY                               used / allocatable        total
          n/a (the provisioner is not running yet)

        WORK
          deployments 0
          workloads   0
          shards      n/a (shard server off)
          reports     n/a
          errors      none

        """

    @Test func notReadyLayoutGoldenShowsReasonsAndNA() {
        var report = Self.fixedReport()
        report.phase = "registering"
        report.ready = false
        report.notReadyReasons = ["registering the node on the chain (farm 7); see `journalctl -u node-agent`",
                                  "DiskPressure=True: /var has 2% space free"]
        report.node.nodeID = nil
        report.node.twinID = nil
        report.node.uptimeSeconds = 45
        report.node.startedAt = Int64(Self.now.timeIntervalSince1970) - 45
        report.node.chain = .init(backend: "local", name: "local:9a1b2c3d4e5f", finalizedBlock: 7, processedBlock: nil, lagBlocks: nil,
                                  finalizedAgeSeconds: 1)
        report.node.conditions = [.init(type: "Ready", status: "False", reason: "DiskPressure", message: "the node is under disk pressure", bad: true),
                                  .init(type: "DiskPressure", status: "True", reason: "LowDiskSpace", message: "/var has 2% space free", bad: true)]
        report.node.draining = true
        report.capacity = nil
        report.work = .init(deployments: [:], workloads: [:], shardNamespaces: nil, shardBytesStored: nil, reports: nil, recentErrors: [])
        let text = StatusRenderer(unicode: true, width: 110).render(report, now: Self.now)
        #expect(text == Self.goldenNotReady, "got:\n\(text)")
    }

    @Test func asciiBarsWithoutUTF8() {
        let text = StatusRenderer(unicode: false, width: 110).render(Self.fixedReport(), now: Self.now)
        #expect(text.contains("  cpu     [#####...............]  25%"))
        #expect(!text.contains("█"))
        #expect(StatusRenderer.forTerminal(environment: ["LANG": "C"]).unicode == false)
        #expect(StatusRenderer.forTerminal(environment: ["LANG": "en_US.UTF-8"]).unicode == true)
    }

    @Test func longLinesAreCutToTheWidth() {
        var report = Self.fixedReport()
        report.work.recentErrors = [.init(time: 1_735_899_000, subject: "1/x", message: String(repeating: "e", count: 500))]
        let text = StatusRenderer(unicode: true, width: 80).render(report, now: Self.now)
        for line in text.split(separator: "\n") { #expect(line.count <= 80) }
        #expect(text.contains("eee..."))
    }

    @Test func statusJSONIsSnakeCaseAndRoundTrips() throws {
        let report = Self.fixedReport()
        let data = try AdminJSON.encoder().encode(report)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["not_ready_reasons"] != nil)
        let node = try #require(object["node"] as? [String: Any])
        #expect(node["node_id"] as? Int == 42)
        #expect(node["uptime_seconds"] as? Int == 12_000)
        #expect((node["chain"] as? [String: Any])?["lag_blocks"] as? Int == 1)
        #expect(try AdminJSON.decoder().decode(StatusReport.self, from: data) == report)
        let workload = WorkloadEntry(contractID: 3, twinID: 4, name: "disk", type: "volume", version: 1, state: "ok", message: "", created: 5,
                                     reservation: Resources(sru: 1 << 20), removing: false,
                                     usage: ContainerUsage(id: "wl-3-disk", cpuSeconds: 1.5, memoryBytes: 10, memoryLimitBytes: nil, pids: 2))
        #expect(try AdminJSON.decoder().decode(WorkloadEntry.self, from: try AdminJSON.encoder().encode(workload)) == workload)
    }

    @Test func workloadTableAndEvents() {
        let renderer = StatusRenderer(unicode: true, width: 120)
        let table = renderer.renderWorkloads([
            WorkloadEntry(contractID: 12, twinID: 3, name: "disk", type: "volume", version: 0, state: "ok", message: "", created: 1_735_899_820,
                          reservation: Resources(sru: 32 << 20), removing: false, usage: nil),
            WorkloadEntry(contractID: 12, twinID: 3, name: "web", type: "container", version: 2, state: "error", message: "pull failed",
                          created: 1_735_890_000, reservation: Resources(cru: 2, mru: 1 << 30), removing: false,
                          usage: ContainerUsage(id: "wl-12-web", cpuSeconds: 12.25, memoryBytes: 300 << 20, memoryLimitBytes: 1 << 30, pids: 3)),
        ], now: Self.now)
        #expect(table == """
            CONTRACT  WORKLOAD  TYPE       STATE  AGE     RESERVED           CPU    MEMORY     MESSAGE
            12        disk      volume     ok     3m      32.0 MiB ssd       -      -
            12        web       container  error  2h 46m  2 cpu 1.0 GiB mem  12.2s  300.0 MiB  pull failed

            """)
        let events = renderer.renderEvents([
            AgentEvent(time: 1_735_899_000, source: .agent, level: "info", contractID: nil, workload: nil, message: "agent started"),
            AgentEvent(time: 1_735_899_100, source: .provisioner, level: "error", contractID: 12, workload: "web", message: "container web: error: pull failed"),
        ])
        #expect(events == """
            2025-01-03 10:10:00 UTC  agent       -          agent started
            2025-01-03 10:11:40 UTC  provisioner 12/web     ERROR container web: error: pull failed

            """)
    }

    // MARK: sd_notify

    /// A datagram socket bound like systemd's notify socket; `name` starting with "@" is abstract.
    final class NotifySocket {
        let fd: Int32
        let name: String

        init(_ name: String) throws {
            self.name = name
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0, case (var address, let length)? = SystemdNotifier.address(name) else { throw POSIXError(.EINVAL) }
            let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
            guard bound == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }

        /// The next datagram, or nil after the 5 s receive timeout.
        func receive() -> String? {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            return n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : nil
        }

        deinit {
            close(fd)
            if !name.hasPrefix("@") { unlink(name) }
        }
    }

    @Test func notifySendsToAPathSocket() throws {
        let path = NSTemporaryDirectory() + "notify-\(UUID().uuidString.prefix(8)).sock"
        let receiver = try NotifySocket(path)
        let notifier = try #require(SystemdNotifier(environment: ["NOTIFY_SOCKET": path], pid: 77))
        notifier.ready(status: "running: 3 deployments\nsecond line")
        let message = try #require(receiver.receive())
        #expect(message == "READY=1\nSTATUS=running: 3 deployments second line\nMAINPID=\(getpid())")
        notifier.watchdog()
        #expect(receiver.receive() == "WATCHDOG=1")
        notifier.stopping(status: "stopping")
        #expect(receiver.receive() == "STOPPING=1\nSTATUS=stopping")
    }

    @Test func notifySendsToAnAbstractSocket() throws {
        let name = "@node-agent-test-\(UUID().uuidString.prefix(8))"
        let receiver = try NotifySocket(name)
        let notifier = try #require(SystemdNotifier(environment: ["NOTIFY_SOCKET": name]))
        notifier.status("registering")
        #expect(receiver.receive() == "STATUS=registering")
    }

    @Test func notifyEnvironmentRules() {
        #expect(SystemdNotifier(environment: [:]) == nil)
        #expect(SystemdNotifier(environment: ["NOTIFY_SOCKET": "relative/path"]) == nil)
        #expect(SystemdNotifier(environment: ["NOTIFY_SOCKET": "/" + String(repeating: "x", count: 200)]) == nil)
        #expect(SystemdNotifier(environment: ["NOTIFY_SOCKET": "/run/systemd/notify"])?.watchdogInterval == nil)
        #expect(SystemdNotifier(environment: ["NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "60000000"], pid: 9)?
            .watchdogInterval == .seconds(60))
        #expect(SystemdNotifier(environment: ["NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "9"], pid: 9)?
            .watchdogInterval == .seconds(60))
        // The watchdog is another process's.
        #expect(SystemdNotifier(environment: ["NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "10"], pid: 9)?
            .watchdogInterval == nil)
    }

    @Test func notifyToAMissingSocketFailsQuietly() throws {
        let notifier = try #require(SystemdNotifier(environment: ["NOTIFY_SOCKET": NSTemporaryDirectory() + "absent-\(UUID().uuidString).sock"]))
        #expect(notifier.notify(["READY=1"]) == false)
    }

    // MARK: metrics

    /// Parses the text exposition: series (name plus sorted labels) -> value; fails on a malformed line.
    static func parseExposition(_ text: String) throws -> [String: Double] {
        var out = [String: Double]()
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                throw POSIXError(.EBADMSG)
            }
            out[String(line[..<space])] = value
        }
        return out
    }

    @Test func metricsExpositionCarriesEveryFamily() throws {
        let stats = ShardFigures(connectionsCurrent: 2, connectionsTotal: 10, connectionsRefused: 1, commands: 500, commandsFailed: 3, gets: 200,
                                 sets: 250, bytesWritten: 4096, bytesRead: 8192, corruptFound: 0, namespaces: 1, storedBytes: 1000, diskBytes: 1500,
                                 valueCacheBytes: 3000, valueCacheHits: 40, valueCacheMisses: 7)
        let snapshot = MetricsSnapshot(status: Self.fixedReport(), workloadsByTypeAndState: ["zdb": ["ok": 8], "volume": ["ok": 19, "error": 1]],
                                       shard: stats,
                                       containers: [ContainerUsage(id: "wl-12-web", cpuSeconds: 12.5, memoryBytes: 300 << 20, memoryLimitBytes: 1 << 30, pids: 3)],
                                       traffic: [ContractTraffic(contractID: 12, publicIn: 1000, publicOut: 2500, privateBytes: 700)])
        let text = String(decoding: MetricsExporter.exposition(snapshot), as: UTF8.self)
        let series = try Self.parseExposition(text)
        let gib = Double(1 << 30)
        #expect(series["node_agent_ready"] == 1)
        #expect(series["node_agent_draining"] == 0)
        #expect(series["node_agent_capacity_cpus{kind=\"total\"}"] == 12)
        #expect(series["node_agent_capacity_memory_bytes{kind=\"used\"}"] == 14 * gib)
        #expect(series["node_agent_capacity_disk_bytes{disk=\"ssd\",kind=\"free\"}"] == 432 * gib)
        #expect(series["node_agent_capacity_disk_bytes{disk=\"hdd\",kind=\"allocatable\"}"] == 4000 * gib)
        #expect(series["node_agent_chain_finalized_block"] == 12_345)
        #expect(series["node_agent_chain_lag_blocks"] == 1)
        #expect(series["node_agent_deployments{state=\"ok\"}"] == 10)
        #expect(series["node_agent_deployments{state=\"paused\"}"] == 0)
        #expect(series["node_agent_workloads{type=\"volume\",state=\"error\"}"] == 1)
        #expect(series["node_agent_condition{condition=\"Ready\",status=\"True\"}"] == 1)
        #expect(series["node_agent_reports_pending"] == 0)
        #expect(series["node_agent_shard_commands_total"] == 500)
        #expect(series["node_agent_shard_written_bytes_total"] == 4096)
        #expect(series["node_agent_shard_stored_bytes"] == 1000)
        #expect(series["node_agent_shard_connections"] == 2)
        #expect(series["node_agent_shard_value_cache_hits_total"] == 40 && series["node_agent_shard_value_cache_bytes"] == 3000)
        #expect(series["node_agent_container_cpu_seconds_total{container=\"wl-12-web\"}"] == 12.5)
        #expect(series["node_agent_container_memory_bytes{container=\"wl-12-web\"}"] == Double(300 << 20))
        #expect(series["node_agent_contract_traffic_bytes_total{contract=\"12\",kind=\"public_out\"}"] == 2500)
        #expect(series["node_agent_contract_traffic_bytes_total{contract=\"12\",kind=\"private\"}"] == 700)
        #expect(text.contains("# TYPE node_agent_shard_commands_total counter"))
        #expect(text.contains("# TYPE node_agent_ready gauge"))
    }

    @Test func metricsLeaveOutWhatIsNotKnown() throws {
        var report = Self.fixedReport()
        report.capacity = nil
        report.node.conditions = nil
        report.work.reports = nil
        let text = String(decoding: MetricsExporter.exposition(MetricsSnapshot(status: report, workloadsByTypeAndState: [:], shard: nil, containers: [])),
                          as: UTF8.self)
        #expect(!text.contains("node_agent_capacity"))
        #expect(!text.contains("node_agent_condition"))
        #expect(!text.contains("node_agent_reports"))
        #expect(!text.contains("node_agent_shard"))
        #expect(try Self.parseExposition(text)["node_agent_uptime_seconds"] == 12_000)
    }

    // MARK: logs

    @Test func logTailSpansRotationAndFollowSeesAppendsAndRotation() async throws {
        let dir = NSTemporaryDirectory() + "logs-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "old1\nold2\n".write(toFile: dir + "/stdout.log.1", atomically: false, encoding: .utf8)
        try "new1\nnew2\n".write(toFile: dir + "/stdout.log", atomically: false, encoding: .utf8)
        try "err1\n".write(toFile: dir + "/stderr.log", atomically: false, encoding: .utf8)
        let reader = LogReader(directory: dir, selection: .all)
        #expect(reader.tail(3).map(\.line) == ["old2", "new1", "new2", "err1"])
        #expect(reader.tail(3).map(\.stream) == ["stdout", "stdout", "stdout", "stderr"])
        #expect(LogReader(directory: dir, selection: .stderr).tail(10).map(\.line) == ["err1"])
        #expect(reader.tail(0).isEmpty)

        let collected = Collected()
        let follower = Task {
            try await reader.follow(until: { await collected.count >= 4 }) { lines in await collected.add(lines) } heartbeat: {}
        }
        try await Task.sleep(for: .milliseconds(300))
        let out = try #require(FileHandle(forWritingAtPath: dir + "/stdout.log"))
        out.seekToEndOfFile()
        out.write(Data("live1\npart".utf8))
        try await Task.sleep(for: .milliseconds(400))
        out.write(Data("ial\n".utf8))
        try out.close()
        try await Task.sleep(for: .milliseconds(400))
        // Rotation: the file is renamed away and a new one started.
        #expect(rename(dir + "/stdout.log", dir + "/stdout.log.1") == 0)
        try "rotated1\n".write(toFile: dir + "/stdout.log", atomically: false, encoding: .utf8)
        try "errlive\n".write(toFile: dir + "/stderr.log.new", atomically: false, encoding: .utf8)
        #expect(rename(dir + "/stderr.log.new", dir + "/stderr.log") == 0)
        let deadline = ContinuousClock.now + .seconds(10)
        while await collected.count < 4, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        follower.cancel()
        let lines = await collected.lines
        #expect(lines.filter { $0.stream == "stdout" }.map(\.line) == ["live1", "partial", "rotated1"])
        #expect(lines.filter { $0.stream == "stderr" }.map(\.line) == ["errlive"])
    }

    actor Collected {
        var lines = [LogReader.Line]()
        var count: Int { lines.count }
        func add(_ more: [LogReader.Line]) { lines += more }
    }

    @Test func logReaderRefusesSymlinks() throws {
        let dir = NSTemporaryDirectory() + "logs-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "secret\n".write(toFile: dir + "/host-file", atomically: false, encoding: .utf8)
        #expect(symlink(dir + "/host-file", dir + "/stdout.log") == 0)
        #expect(LogReader(directory: dir, selection: .stdout).tail(10).isEmpty)
    }

    @Test func longLinesAreSplit() {
        let long = [UInt8](repeating: UInt8(ascii: "a"), count: LogReader.maxLineBytes + 10) + Array("\nb\n".utf8)
        let lines = LogReader.splitLines(long, dropPartialFirst: false)
        #expect(lines.map(\.count) == [LogReader.maxLineBytes, 10, 1])
    }

    // MARK: admin socket file

    @Test func adminSocketReplacesAStaleSocketAndRefusesOthers() throws {
        let dir = NSTemporaryDirectory() + "admin-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/admin.sock"

        // A regular file in the way is not removed.
        try "x".write(toFile: path, atomically: false, encoding: .utf8)
        #expect(throws: NodeAgentError.self) { try AdminSocket.prepare(path: path) }
        #expect(FileManager.default.fileExists(atPath: path))
        unlink(path)

        // A socket nobody serves (a crashed agent's) is replaced.
        let stale = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var (address, length) = try #require(SystemdNotifier.address(path))
        #expect(withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(stale, $0, length) } } == 0)
        close(stale)
        let (staged, staging) = try AdminSocket.prepare(path: path)
        #expect(!FileManager.default.fileExists(atPath: path))
        var info = stat()
        #expect(stat(staging, &info) == 0 && info.st_mode & 0o777 == 0o700)
        #expect(staged.hasPrefix(staging + "/"))
        rmdir(staging)

        // A socket someone serves is refused.
        let live = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(live) }
        #expect(withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(live, $0, length) } } == 0)
        #expect(listen(live, 1) == 0)
        #expect(throws: NodeAgentError.self) { try AdminSocket.prepare(path: path) }

        // A missing parent is made root's only.
        let nested = dir + "/run/node-agent/admin.sock"
        let (_, nestedStaging) = try AdminSocket.prepare(path: nested)
        #expect(stat(dir + "/run/node-agent", &info) == 0 && info.st_mode & 0o777 == 0o700)
        rmdir(nestedStaging)

        // A parent others may write is refused.
        let open = dir + "/open"
        #expect(mkdir(open, 0o777) == 0 && chmod(open, 0o777) == 0)
        #expect(throws: NodeAgentError.self) { try AdminSocket.prepare(path: open + "/admin.sock") }
    }

    @Test func camelCaseInvertsSnakeCase() {
        #expect(AdminJSON.camelCase("contract_id") == "contractID")
        #expect(AdminJSON.camelCase("not_ready_reasons") == "notReadyReasons")
        #expect(AdminJSON.camelCase("pid") == "pid")
        #expect(AdminJSON.camelCase("id") == "id")
    }

    @Test func deploymentStateFromWorkloads() {
        func row(_ state: String, desired: Bool = true) -> DeploymentStore.WorkloadSummary {
            .init(contractID: 1, name: "w", type: "zdb", desired: desired, state: state, message: "", removing: false)
        }
        #expect(AgentRuntime.deploymentState(removing: true, workloads: [row("ok")]) == "removing")
        #expect(AgentRuntime.deploymentState(removing: false, workloads: []) == "ok")
        #expect(AgentRuntime.deploymentState(removing: false, workloads: [row("ok"), row("init")]) == "deploying")
        #expect(AgentRuntime.deploymentState(removing: false, workloads: [row("paused"), row("init")]) == "paused")
        #expect(AgentRuntime.deploymentState(removing: false, workloads: [row("paused"), row("error")]) == "error")
        // A workload on its way out does not make the deployment fail.
        #expect(AgentRuntime.deploymentState(removing: false, workloads: [row("ok"), row("error", desired: false)]) == "ok")
    }

    // MARK: install with systemd

    @Test func installCallsSystemctlOnlyForWhatChanged() throws {
        let root = NSTemporaryDirectory() + "install-systemctl-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let binary = root + "-binary"
        try Data("#!/bin/sh\n".utf8).write(to: URL(fileURLWithPath: binary))
        defer { unlink(binary) }
        final class Calls: @unchecked Sendable { var list = [[String]](); var lines = [String]() }
        let calls = Calls()
        var installer = Installer(root: root, usesSystemd: true)
        installer.systemctl = { calls.list.append($0); return 0 }
        installer.output = { calls.lines.append($0) }
        let options = Installer.InstallOptions(binary: binary, farmID: 2, ledgerPath: "/var/lib/grid-ledger/ledger.sqlite", now: false)

        try installer.install(options)
        #expect(calls.list == [["daemon-reload"], ["enable", "node-agent.service"], ["try-restart", "node-agent.service"]])
        calls.list = []
        try installer.install(options)
        #expect(calls.list == [["enable", "node-agent.service"]])
        calls.list = []
        var now = options
        now.now = true
        try installer.install(now)
        #expect(calls.list == [["enable", "node-agent.service"], ["start", "node-agent.service"]])
        calls.list = []
        try Data("#!/bin/sh\nexit 0\n".utf8).write(to: URL(fileURLWithPath: binary))
        try installer.install(now)
        #expect(calls.list == [["enable", "node-agent.service"], ["restart", "node-agent.service"]])
        #expect(calls.lines.contains("updated   \(root)/usr/local/bin/node-agent"))
        calls.list = []
        try installer.uninstall()
        #expect(calls.list == [["disable", "--now", "node-agent.service"], ["daemon-reload"]])
        #expect(calls.lines.contains { $0.contains("containers of running deployments keep running") })
    }
}
