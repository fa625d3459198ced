import Foundation
import ShardServer

/// What `node-agent run` needs to start the shard server: its configuration from config.toml and
/// the admin password, generated on first start into a 0600 file in the state directory.
enum ShardServerSetup {
    static let passwordFileName = "shard-admin.password"
    /// 24 random bytes as hex: 192 bits, and printable for redis-cli's AUTH.
    static let passwordBytes = 24
    /// Compaction below this dead fraction rewrites nine live bytes or more per byte it frees.
    static let minimumCompactionRatio = 0.1
    /// The largest value the server stores is 64 MiB at most; a threshold above it means "never sendfile".
    static let maxSendfileThreshold = 64 << 20

    static func passwordPath(stateDir: String) -> String { stateDir + "/" + passwordFileName }

    static func serverConfig(from config: AgentConfig, adminPassword: String) throws(NodeAgentError) -> ShardServerConfig {
        let section = config.shardServer
        guard let (host, port) = ShardServerCommand.parseListen(section.listen) else {
            throw .config(file: "(config)", key: "shard_server.listen", message: "value \"\(section.listen)\" is not HOST:PORT")
        }
        let fsync: ShardServerConfig.FsyncPolicy
        switch section.fsync {
        case .always: fsync = .always
        case .never: fsync = .never
        case .interval: fsync = .interval(milliseconds: section.fsyncIntervalMilliseconds)
        }
        var server = ShardServerConfig(host: host, port: port, dataDirectory: section.dataDirs.first ?? "",
                                       adminPassword: adminPassword, fsync: fsync, maxClients: section.maxClients,
                                       idleTimeoutSeconds: section.idleTimeoutSeconds > 0 ? section.idleTimeoutSeconds : nil,
                                       sendfileThreshold: section.sendfileThresholdBytes,
                                       scrubBytesPerSecond: section.scrubMiBPerSecond << 20,
                                       compactionDeadRatio: section.compactionDeadRatio,
                                       valueCacheBytes: section.valueCacheMiB << 20)
        server.dataDirectories = section.dataDirs
        return server
    }

    /// The admin password: read from `<state_dir>/shard-admin.password`, or generated into it
    /// (mode 0600, created exclusively, fsynced) when it does not exist yet. A file that group or
    /// others may read is refused rather than used, as the identity key is. The password itself
    /// never goes into an error message or a log line.
    static func loadOrCreatePassword(stateDir: String) throws(NodeAgentError) -> (password: String, created: Bool) {
        let path = passwordPath(stateDir: stateDir)
        var info = stat()
        if lstat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFREG else {
                throw .secretFile(path: path, problem: "is not a regular file")
            }
            guard info.st_mode & 0o077 == 0 else {
                throw .secretFile(path: path, problem: String(format: "has mode %o: group or others may read it; chmod 600 it", info.st_mode & 0o7777))
            }
            guard info.st_size <= 4096 else { throw .secretFile(path: path, problem: "is \(info.st_size) bytes; a password file is at most 4096") }
            guard let data = FileManager.default.contents(atPath: path) else {
                throw .io(operation: "read", path: path, errno: errno)
            }
            let line = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).first ?? ""
            guard (1...128).contains(line.utf8.count) else {
                throw .secretFile(path: path, problem: "its first line must hold the password (1 to 128 bytes)")
            }
            return (String(line), false)
        }
        guard errno == ENOENT else { throw .io(operation: "stat", path: path, errno: errno) }

        var generator = SystemRandomNumberGenerator()  // getrandom(2) on Linux
        let password = (0..<passwordBytes).map { _ in
            let byte = UInt8.random(in: 0...255, using: &generator)
            return String(byte >> 4, radix: 16) + String(byte & 0x0F, radix: 16)
        }.joined()
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw .io(operation: "create", path: path, errno: errno) }
        defer { close(fd) }
        let bytes = Array((password + "\n").utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else {
            let err = errno
            unlink(path)
            throw .io(operation: "write", path: path, errno: err)
        }
        guard fsync(fd) == 0 else { throw .io(operation: "fsync", path: path, errno: errno) }
        return (password, true)
    }
}
