import Testing
@testable import NodeAgent

@Suite struct ConfigTests {
    let parser = ConfigParser(file: "test.toml")

    func expectError(_ text: String, key: String, containing fragment: String,
                     sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(sourceLocation: sourceLocation) { try parser.parse(text) } throws: { error in
            guard case NodeAgentError.config(let file, let errorKey, let message) = error else { return false }
            return file == "test.toml" && errorKey == key && message.contains(fragment)
        }
    }

    @Test func theCommentedDefaultFileIsExactlyTheDefaults() throws {
        #expect(try parser.parse(DefaultConfigFile.text()) == AgentConfig())
        var custom = AgentConfig()
        custom.node.stateDir = "/srv/agent"
        custom.chain.ledgerPath = "/srv/ledger.sqlite"
        custom.node.farmID = 9
        custom.shardServer.dataDirs = ["/srv/agent/shards"]
        #expect(try parser.parse(DefaultConfigFile.text(stateDir: "/srv/agent", ledgerPath: "/srv/ledger.sqlite", farmID: 9)) == custom)
    }

    @Test func anEmptyFileMeansDefaults() throws {
        #expect(try parser.parse("") == AgentConfig())
    }

    @Test func readsEverySectionItIsGiven() throws {
        let config = try parser.parse("""
            [node]
            farm_id = 7
            state_dir = "/data/agent"
            [chain]
            backend = "tfchain"
            urls = ["wss://a.example/ws", "ws://127.0.0.1:9944"]
            block_time_ms = 50
            [provisioner]
            overcommit_ratio = 2
            [shard_server]
            listen = "[::1]:9901"
            fsync = "always"
            data_dirs = ["/disk1/shards", "/disk2/shards"]
            idle_timeout_s = 0
            scrub_mib_per_s = 8
            compaction_dead_ratio = 0.25
            sendfile_threshold_bytes = 1048576
            value_cache_mib = 0
            [log]
            level = "debug"
            format = "logfmt"
            """)
        #expect(config.node.farmID == 7)
        #expect(config.node.stateDir == "/data/agent")
        #expect(config.chain.backend == .tfchain)
        #expect(config.chain.urls == ["wss://a.example/ws", "ws://127.0.0.1:9944"])
        #expect(config.chain.blockTimeMilliseconds == 50)
        #expect(config.provisioner.overcommitRatio == 2.0)
        #expect(config.shardServer.listen == "[::1]:9901")
        #expect(config.shardServer.fsync == .always)
        #expect(config.shardServer.dataDirs.count == 2)
        #expect(config.shardServer.idleTimeoutSeconds == 0)
        #expect(config.shardServer.scrubMiBPerSecond == 8)
        #expect(config.shardServer.compactionDeadRatio == 0.25)
        #expect(config.shardServer.sendfileThresholdBytes == 1 << 20)
        #expect(config.shardServer.valueCacheMiB == 0)
        #expect(config.log.level == .debug)
        #expect(config.log.format == .logfmt)
        #expect(config.reporter == AgentConfig.Reporter())
    }

    @Test func unknownKeysAndSectionsAreNamed() {
        expectError("[chain]\nblok_time_ms = 5\n", key: "chain.blok_time_ms", containing: "allowed in [chain]: backend, ledger_path, block_time_ms")
        expectError("[chians]\n", key: "chians", containing: "unknown section [chians]; allowed sections: node, chain")
        expectError("farm_id = 3\n", key: "farm_id", containing: "a key outside any section; keys belong under one of [node], [chain]")
    }

    @Test func badValuesNameTheValueAndWhatIsAllowed() {
        expectError("[chain]\nbackend = \"eth\"\n", key: "chain.backend", containing: "value \"eth\" is not allowed: expected one of: local, tfchain")
        expectError("[node]\nfarm_id = 0\n", key: "node.farm_id", containing: "value 0 is not allowed: expected an integer in 1...4294967295")
        expectError("[node]\nfarm_id = \"one\"\n", key: "node.farm_id", containing: "value \"one\"")
        expectError("[node]\nstate_dir = \"var/lib\"\n", key: "node.state_dir", containing: "absolute path")
        expectError("[node]\nstate_dir = \"/var/../etc\"\n", key: "node.state_dir", containing: "'..'")
        expectError("[chain]\nurls = [\"http://x\"]\n", key: "chain.urls", containing: "WebSocket URL")
        expectError("[chain]\nurls = []\n", key: "chain.urls", containing: "may not be empty")
        expectError("[chain]\nurls = \"wss://x/ws\"\n", key: "chain.urls", containing: "list of strings")
        expectError("[shard_server]\nlisten = \"0.0.0.0\"\n", key: "shard_server.listen", containing: "HOST:PORT")
        expectError("[shard_server]\nlisten = \"0.0.0.0:70000\"\n", key: "shard_server.listen", containing: "1...65535")
        expectError("[shard_server]\nlisten = \"::1:9900\"\n", key: "shard_server.listen", containing: "in brackets")
        expectError("[shard_server]\nenabled = 1\n", key: "shard_server.enabled", containing: "true or false")
        expectError("[shard_server]\ndata_dirs = [\"/d1\", \"/d2\", \"/d1\"]\n", key: "shard_server.data_dirs", containing: "value \"/d1\" is listed twice")
        expectError("[shard_server]\ndata_dirs = [\"shards\"]\n", key: "shard_server.data_dirs", containing: "absolute path")
        expectError("[shard_server]\nidle_timeout_s = -1\n", key: "shard_server.idle_timeout_s", containing: "0...86400")
        expectError("[shard_server]\nscrub_mib_per_s = 20000\n", key: "shard_server.scrub_mib_per_s", containing: "0...10240")
        expectError("[shard_server]\ncompaction_dead_ratio = 1.5\n", key: "shard_server.compaction_dead_ratio", containing: "0.0...1.0")
        expectError("[shard_server]\ncompaction_dead_ratio = 0.05\n", key: "shard_server.compaction_dead_ratio", containing: "0 (never compact) or a number in 0.1...1.0")
        expectError("[shard_server]\nsendfile_threshold_bytes = 1e6\n", key: "shard_server.sendfile_threshold_bytes", containing: "expected an integer")
        expectError("[shard_server]\nsendfile_threshold_bytes = 67108865\n", key: "shard_server.sendfile_threshold_bytes", containing: "0...67108864")
        expectError("[shard_server]\nvalue_cache_mib = -2\n", key: "shard_server.value_cache_mib", containing: "0...65536")
        expectError("[provisioner]\novercommit_ratio = 0.5\n", key: "provisioner.overcommit_ratio", containing: "1.0...10.0")
        expectError("[reporter]\nuptime_interval_s = 3600\n", key: "reporter.uptime_interval_s", containing: "60...2400")
        expectError("[log]\nlevel = \"verbose\"\n", key: "log.level", containing: "trace, debug, info")
    }

    /// The [shard_server] keys reach the server's configuration (0 meaning "off" where it does).
    @Test func shardServerKeysReachTheServerConfig() throws {
        let defaults = try ShardServerSetup.serverConfig(from: AgentConfig(), adminPassword: "pw")
        #expect(defaults.idleTimeoutSeconds == 300)
        #expect(defaults.scrubBytesPerSecond == 32 << 20)
        #expect(defaults.compactionDeadRatio == 0.5)
        #expect(defaults.sendfileThreshold == 64 << 10)
        #expect(defaults.valueCacheBytes == 64 << 20)

        let config = try parser.parse("""
            [shard_server]
            listen = "127.0.0.1:9911"
            fsync = "never"
            idle_timeout_s = 0
            scrub_mib_per_s = 0
            compaction_dead_ratio = 0
            sendfile_threshold_bytes = 0
            value_cache_mib = 0
            """)
        let server = try ShardServerSetup.serverConfig(from: config, adminPassword: "pw")
        #expect(server.host == "127.0.0.1" && server.port == 9911 && server.fsync == .never)
        #expect(server.idleTimeoutSeconds == nil)
        #expect(server.scrubBytesPerSecond == 0)
        #expect(server.compactionDeadRatio == 0)
        #expect(server.sendfileThreshold == 0)
        #expect(server.valueCacheBytes == 0)

        let tuned = try parser.parse("[shard_server]\nidle_timeout_s = 30\nscrub_mib_per_s = 5\ncompaction_dead_ratio = 1\n")
        let tunedServer = try ShardServerSetup.serverConfig(from: tuned, adminPassword: "pw")
        #expect(tunedServer.idleTimeoutSeconds == 30)
        #expect(tunedServer.scrubBytesPerSecond == 5 << 20)
        #expect(tunedServer.compactionDeadRatio == 1.0)
    }

    /// `node-agent shard-server` takes the same settings as flags, with the same bounds.
    @Test func shardServerFlagsAreValidatedAndReachTheServerConfig() throws {
        let command = try ShardServerCommand.parse([
            "--listen", "127.0.0.1:0", "--data", "/srv/a", "--data", "/srv/b", "--idle-timeout", "0",
            "--scrub-mib-per-s", "4", "--compaction-dead-ratio", "0.75", "--sendfile-threshold", "4096", "--threads", "1",
            "--value-cache-mib", "16"])
        let server = try command.serverConfig(adminPassword: nil)
        #expect(server.dataDirectories == ["/srv/a", "/srv/b"])
        #expect(server.idleTimeoutSeconds == nil)
        #expect(server.scrubBytesPerSecond == 4 << 20)
        #expect(server.compactionDeadRatio == 0.75)
        #expect(server.sendfileThreshold == 4096)
        #expect(server.threads == 1)
        #expect(server.valueCacheBytes == 16 << 20)

        let defaults = try ShardServerCommand.parse(["--data", "/srv/a"]).serverConfig(adminPassword: nil)
        #expect(defaults.idleTimeoutSeconds == 300 && defaults.scrubBytesPerSecond == 32 << 20 && defaults.compactionDeadRatio == 0.5)

        for bad in [["--compaction-dead-ratio", "0.05"], ["--compaction-dead-ratio", "2"], ["--scrub-mib-per-s=-1"],
                    ["--idle-timeout=-5"], ["--sendfile-threshold", "100000000"], ["--threads=-1"], ["--max-clients", "0"],
                    ["--value-cache-mib", "70000"]] {
            #expect(throws: (any Error).self, "\(bad) should be refused") {
                _ = try ShardServerCommand.parse(["--data", "/srv/a"] + bad)
            }
        }
    }

    @Test func syntaxErrorsSayWhere() {
        expectError("[chain\nbackend = 1", key: "(syntax)", containing: "line 1")
    }
}
