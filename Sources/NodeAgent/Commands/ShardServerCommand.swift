import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import ShardServer

/// `node-agent shard-server`: the shard server alone, for tests and benchmarks.
struct ShardServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shard-server",
        abstract: "Run the 0-db compatible shard server alone, in the foreground.",
        discussion: "Prints 'shard-server listening on HOST:PORT' once it accepts connections. Stops gracefully on SIGTERM or SIGINT."
    )

    @Option(name: .long, help: "Address to listen on, HOST:PORT (port 0 picks a free one).")
    var listen: String = "127.0.0.1:9900"

    @Option(name: .long, help: "Data directory (absolute path; created if missing). Repeat for several (one per disk).")
    var data: [String]

    @Option(name: .long, help: "Admin password for AUTH (NSNEW, NSDEL, NSSET). Visible in ps: prefer --admin-password-file.")
    var adminPassword: String?

    @Option(name: .long, help: "File whose first line is the admin password.")
    var adminPasswordFile: String?

    @Option(name: .long, help: "fsync policy: always, interval, never.")
    var fsync: String = "interval"

    @Option(name: .long, help: "fsync interval in milliseconds (with --fsync interval).")
    var fsyncIntervalMs: Int = 1000

    @Option(name: .long, help: "Maximum simultaneous clients.")
    var maxClients: Int = 1024

    @Option(name: .long, help: "Close connections idle for this many seconds (0: never).")
    var idleTimeout: Int = 300

    @Option(name: .long, help: "Values larger than this many bytes are sent with sendfile; smaller ones are read, CRC-checked and sent from memory.")
    var sendfileThreshold: Int = 64 << 10

    @Option(name: .long, help: "Background scrub rate in MiB/s over all namespaces (0: off).")
    var scrubMibPerS: Int = 32

    @Option(name: .long, help: "Compact a sealed segment once this fraction of it is dead (0: never; else 0.1 to 1.0).")
    var compactionDeadRatio: Double = 0.5

    @Option(name: .long, help: "Memory in MiB for replies of small hot values, verified when read (0: no cache).")
    var valueCacheMib: Int = 64

    @Option(name: .long, help: "Event loop threads (0: one per core).")
    var threads: Int = 0

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func validate() throws {
        guard ["always", "interval", "never"].contains(fsync) else {
            throw ValidationError("--fsync \(fsync) is not a policy; use always, interval or never")
        }
        guard AgentConfig.LogLevel(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level \(logLevel) is not a level")
        }
        guard (0...ShardServerSetup.maxSendfileThreshold).contains(sendfileThreshold) else {
            throw ValidationError("--sendfile-threshold \(sendfileThreshold): expected 0 to \(ShardServerSetup.maxSendfileThreshold) bytes")
        }
        guard (0...86_400).contains(idleTimeout) else {
            throw ValidationError("--idle-timeout \(idleTimeout): expected 0 (never) to 86400 seconds")
        }
        guard (0...10_240).contains(scrubMibPerS) else {
            throw ValidationError("--scrub-mib-per-s \(scrubMibPerS): expected 0 (off) to 10240 MiB/s")
        }
        guard compactionDeadRatio == 0 || (ShardServerSetup.minimumCompactionRatio...1.0).contains(compactionDeadRatio) else {
            throw ValidationError("--compaction-dead-ratio \(compactionDeadRatio): expected 0 (never) or 0.1 to 1.0")
        }
        guard (0...65_536).contains(valueCacheMib) else {
            throw ValidationError("--value-cache-mib \(valueCacheMib): expected 0 (off) to 65536")
        }
        guard (1...65_536).contains(maxClients) else {
            throw ValidationError("--max-clients \(maxClients): expected 1 to 65536")
        }
        guard (0...256).contains(threads) else {
            throw ValidationError("--threads \(threads): expected 0 (one per core) to 256")
        }
        guard fsync != "interval" || (1...60_000).contains(fsyncIntervalMs) else {
            throw ValidationError("--fsync-interval-ms \(fsyncIntervalMs): expected 1 to 60000")
        }
        guard Self.parseListen(listen) != nil else {
            throw ValidationError("--listen \(listen): expected HOST:PORT with a port from 0 to 65535")
        }
        guard !data.isEmpty else { throw ValidationError("--data: at least one data directory is needed") }
        for dir in data where !dir.hasPrefix("/") { throw ValidationError("--data \(dir): must be an absolute path") }
    }

    /// "HOST:PORT" or "[V6]:PORT".
    static func parseListen(_ text: String) -> (host: String, port: Int)? {
        guard let colon = text.lastIndex(of: ":") else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        return (host, port)
    }

    /// The server's configuration from the flags (already checked by `validate`).
    func serverConfig(adminPassword password: String?) throws -> ShardServerConfig {
        guard let (host, port) = Self.parseListen(listen) else { throw ValidationError("--listen \(listen) is not HOST:PORT") }
        let policy: ShardServerConfig.FsyncPolicy
        switch fsync {
        case "always": policy = .always
        case "never": policy = .never
        default: policy = .interval(milliseconds: fsyncIntervalMs)
        }
        var config = ShardServerConfig(host: host, port: port, dataDirectory: data[0], adminPassword: password,
                                       fsync: policy, maxClients: maxClients,
                                       idleTimeoutSeconds: idleTimeout > 0 ? idleTimeout : nil,
                                       sendfileThreshold: sendfileThreshold, scrubBytesPerSecond: scrubMibPerS << 20,
                                       compactionDeadRatio: compactionDeadRatio, threads: threads,
                                       valueCacheBytes: valueCacheMib << 20)
        config.dataDirectories = data
        return config
    }

    func run() async throws {
        AgentLogHandler.bootstrap(format: .auto, level: AgentConfig.LogLevel(rawValue: logLevel)?.swiftLogLevel ?? .info)
        let logger = Logger(label: "shard-server")
        var password = adminPassword
        if let file = adminPasswordFile {
            let text = try String(contentsOfFile: file, encoding: .utf8)
            password = text.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init)
        }
        let config = try serverConfig(adminPassword: password)
        let host = config.host
        let service = ShardServerService(config: config, logger: logger) { boundPort in
            // Unbuffered: tests and scripts wait for this line to learn the port.
            FileHandle.standardOutput.write(Data("shard-server listening on \(host):\(boundPort)\n".utf8))
        }
        let group = ServiceGroup(configuration: .init(
            services: [service], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

/// The shard server as a swift-service-lifecycle service: starts it, waits for graceful shutdown,
/// stops it (connections closed, namespaces fsynced). The daemon can add it to its ServiceGroup.
struct ShardServerService: Service {
    let config: ShardServerConfig
    let logger: Logger
    /// The daemon shares the server with the provisioner, which manages namespaces through it.
    var server: ShardServer? = nil
    var onListening: @Sendable (Int) -> Void = { _ in }

    func run() async throws {
        let server = self.server ?? ShardServer(logger: logger)
        let port = try await server.start(config)
        onListening(port)
        try? await gracefulShutdown()
        try await server.stop()
    }
}
