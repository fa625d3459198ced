/// The commented configuration `node-agent init` writes. Every key is listed with its default;
/// a test parses this text and checks it equals `AgentConfig()`.
enum DefaultConfigFile {
    static func text(stateDir: String = AgentConfig.Node().stateDir, ledgerPath: String = AgentConfig.Chain().ledgerPath,
                     farmID: UInt32 = AgentConfig.Node().farmID) -> String {
        """
        # node-agent configuration. Every key is shown with its default; delete a line to use the default.
        # An unknown key or a bad value stops the agent with a message naming the key.

        [node]
        # The farm this node belongs to (TFChain farm id).
        farm_id = \(farmID)
        # Set once the node is registered; 0 means "register on first run" (the id is then kept in state_dir).
        node_id = 0
        # Durable state: identity key (mode 0600), databases, container state.
        state_dir = "\(stateDir)"

        [chain]
        # "local": the embedded ledger, shared by every agent on this machine that uses the same file.
        # "tfchain": ThreeFold's TFChain over WebSocket JSON-RPC (urls below).
        backend = "local"
        ledger_path = "\(ledgerPath)"
        # Block interval of the embedded ledger, in milliseconds.
        block_time_ms = 6000
        # TFChain nodes, tried in order with fail-over.
        urls = ["wss://tfchain.grid.tf/ws"]
        # A connection with no new finalized head for this long is treated as broken.
        stall_timeout_s = 60
        # Embedded ledger: may this agent produce blocks? One process at a time does; the others stand by.
        produce_blocks = true
        # Rules written into a new ledger file (an existing file keeps its own): contracts are billed
        # every billing_period_blocks (600 = 1 hour of 6 s blocks) and deleted after grace_period_blocks
        # without funds (201600 = 14 days).
        billing_period_blocks = 600
        grace_period_blocks = 201600

        [provisioner]
        # Twin-facing deployment API.
        api_listen = "127.0.0.1:2021"
        # CPUs a node may promise, as a multiple of its allocatable CPUs (1.0 = no overcommit). Memory and
        # disk are never overcommitted: they cannot be taken back without killing workloads.
        overcommit_ratio = 1.0
        # A contract with no deployment after this long is flagged in status.
        deployment_wait_s = 600

        [shard_server]
        # Start the 0-db compatible shard server with the agent. Its admin password (AUTH, for NSNEW,
        # NSSET, NSDEL) is generated on first start into <state_dir>/shard-admin.password (mode 0600).
        enabled = true
        # RESP endpoint for users' shards, HOST:PORT.
        listen = "0.0.0.0:9900"
        # Directories for namespaces (one per disk, typically); a new namespace goes to the one with
        # the most free space per namespace it holds. Listing a directory twice is refused.
        data_dirs = ["\(stateDir)/shards"]
        # "always": fsync before acknowledging a write; "interval": every fsync_interval_ms; "never": leave it to the kernel.
        fsync = "interval"
        fsync_interval_ms = 1000
        # Connections beyond this many are answered with an error and closed.
        max_clients = 1024
        # Connections silent both ways for this long are closed (0: never); 0-db clients reconnect.
        idle_timeout_s = 300
        # Background scrub: re-reads every stored entry against its checksum at this rate (0: off).
        scrub_mib_per_s = 32
        # A full segment at least this fraction overwritten or deleted is compacted (0: never; else 0.1 to 1.0).
        compaction_dead_ratio = 0.5
        # GET values larger than this go out with sendfile; smaller ones are read, checked and copied.
        sendfile_threshold_bytes = 65536
        # Memory (MiB) for replies of small hot values, so repeated GETs skip the disk read (0: off).
        value_cache_mib = 64

        [network]
        # Private networks, published ports and egress policy for container workloads (iproute2, nftables).
        enabled = true
        # Deployments without their own ip_range get a /24 from this pool.
        pool = "10.201.0.0/16"
        # Public ports below this are refused; set 1 to let tenants publish privileged ports.
        min_public_port = 1024
        # Containers with a network per deployment.
        max_interfaces = 16
        nameservers = ["1.1.1.1", "9.9.9.9"]
        # Names of the agent's interfaces, namespaces (prefix) and nft tables (table).
        prefix = "na"
        table = "node_agent"

        [reporter]
        # Uptime report period (TFChain expects one at least every 40 minutes).
        uptime_interval_s = 2400
        # Capacity re-measured and the node conditions (memory, disk, PID pressure) re-checked.
        capacity_scan_interval_s = 300
        # Public network usage per contract reported (when networking provides counters).
        network_report_interval_s = 3600
        # Disk kept for the system on the state directory's disk; memory keeps max(10%, 2 GiB).
        reserve_disk_gib = 20
        # Reports waiting for the chain before new uptime and network reports are held back (nothing
        # is lost: uptime is cumulative and network counters keep counting).
        max_pending_reports = 10000

        [admin]
        # Unix socket for `node-agent status` and other farmer commands (mode 0600, root only).
        socket = "/run/node-agent/admin.sock"
        # Prometheus metrics endpoint.
        metrics_listen = "127.0.0.1:9101"

        [log]
        # trace, debug, info, notice, warning, error, critical
        level = "info"
        # "auto": human lines on a terminal, key=value lines otherwise (journald); or "human" / "logfmt".
        format = "auto"

        """
    }
}
