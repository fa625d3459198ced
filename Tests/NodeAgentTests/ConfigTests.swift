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
        expectError("[provisioner]\novercommit_ratio = 0.5\n", key: "provisioner.overcommit_ratio", containing: "1.0...10.0")
        expectError("[reporter]\nuptime_interval_s = 3600\n", key: "reporter.uptime_interval_s", containing: "60...2400")
        expectError("[log]\nlevel = \"verbose\"\n", key: "log.level", containing: "trace, debug, info")
    }

    @Test func syntaxErrorsSayWhere() {
        expectError("[chain\nbackend = 1", key: "(syntax)", containing: "line 1")
    }
}
