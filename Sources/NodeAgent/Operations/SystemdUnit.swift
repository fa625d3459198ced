/// The systemd unit `node-agent install` writes, the same text as systemd/node-agent.service in the
/// repository (a test keeps the two equal). Changes go in both.
enum SystemdUnit {
    static let name = "node-agent.service"

    static let text = """
        [Unit]
        Description=Farm node agent: fulfils the chain's contracts for this node
        After=network-online.target local-fs.target
        Wants=network-online.target

        [Service]
        # READY=1 once start-up reconciliation has restored the recorded deployments; STATUS= says what the
        # agent is doing (`systemctl status node-agent`); WATCHDOG=1 only while its main loop is healthy.
        Type=notify
        NotifyAccess=main
        ExecStart=/usr/local/bin/node-agent run --config /etc/node-agent/config.toml
        Restart=on-failure
        RestartSec=5
        # Registration waits for the chain and the farm as long as it takes (STATUS= says why); a restart
        # would not make the chain come back sooner.
        TimeoutStartSec=infinity
        WatchdogSec=60
        # SIGTERM: intake stops, in-flight work finishes (the agent gives itself 25 s), state is flushed.
        TimeoutStopSec=30
        # Containers live in cgroups the agent creates below its own (cgroup v2: the agent moves itself to
        # <unit>/agent and puts containers in <unit>/containers/<id>; on cgroup v1 hosts they stay in
        # /node-agent/<id>). When only the agent stops, its workloads keep running (KillMode=process: only
        # the agent gets the signal; systemd notes the processes left in the unit) and are re-adopted at
        # the next start.
        Delegate=yes
        KillMode=process
        # Container state (/run/node-agent/runtime) must outlive an agent restart.
        RuntimeDirectory=node-agent
        RuntimeDirectoryMode=0700
        RuntimeDirectoryPreserve=yes
        StateDirectory=node-agent
        StateDirectoryMode=0700
        # Many workloads, many shard clients: no unit-wide task cap, room for descriptors.
        TasksMax=infinity
        LimitNOFILE=1048576
        SyslogIdentifier=node-agent

        # Hardening that does not break the job. The agent needs root, mounts (volumes, container roots),
        # namespaces, cgroups and loop devices, and its containers inherit its process attributes, so:
        # - No ProtectSystem/ProtectHome/PrivateTmp/PrivateDevices/ReadWritePaths/ProtectKernelTunables/
        #   ProtectControlGroups/ProtectHostname: each gives the agent a private mount (or UTS) namespace;
        #   volume mounts would vanish with it on restart and cgroups or /dev/loop* become unreachable.
        # - No NoNewPrivileges/SystemCallFilter/SystemCallArchitectures/RestrictSUIDSGID/LockPersonality/
        #   MemoryDenyWriteExecute/RestrictNamespaces: they are inherited by every container workload.
        # - No DeviceAllow/ProtectClock (a device allow-list would shut out loop devices).
        # What remains: capabilities neither the agent nor its containers ever need leave the bounding set.
        CapabilityBoundingSet=~CAP_SYS_BOOT CAP_SYS_TIME CAP_WAKE_ALARM CAP_SYS_MODULE CAP_MAC_ADMIN CAP_MAC_OVERRIDE CAP_SYSLOG CAP_BLOCK_SUSPEND CAP_AUDIT_CONTROL CAP_SYS_PACCT CAP_SYS_TTY_CONFIG CAP_LINUX_IMMUTABLE

        [Install]
        WantedBy=multi-user.target

        """
}
