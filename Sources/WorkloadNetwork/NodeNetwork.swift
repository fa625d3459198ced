import Foundation
import GridTypes

/// Private networks for container workloads, with only the kernel's tools (iproute2, nftables):
/// per deployment a Linux bridge with a private range; per container a named network namespace
/// with a veth into that bridge; published ports, egress policy, masquerade and traffic counters in
/// the agent's own nft tables. Every call converges from what exists, so repeating one after a
/// crash is safe, and `start()` removes whatever carries the agent's prefix but is not on record.
public actor NodeNetwork: TrafficCounterSource {
    public struct Configuration: Sendable {
        /// 1 to 4 of [a-z0-9]: starts every interface, namespace and chain the agent owns.
        public var prefix: String
        /// The nft tables (inet and bridge) holding all of the agent's rules.
        public var table: String
        public var pool: IPv4Network
        /// Where deployment network records live (0700).
        public var stateDirectory: String
        /// Run everything in this named namespace instead of the agent's own (tests).
        public var hostNamespace: String?
        /// Written to the containers' /etc/resolv.conf.
        public var nameservers: [String]

        public init(prefix: String = "na", table: String = "node_agent", pool: IPv4Network = NetworkPolicy.defaultPool,
                    stateDirectory: String, hostNamespace: String? = nil, nameservers: [String] = ["1.1.1.1", "9.9.9.9"]) {
            self.prefix = prefix
            self.table = table
            self.pool = pool
            self.stateDirectory = stateDirectory
            self.hostNamespace = hostNamespace
            self.nameservers = nameservers
        }
    }

    /// What a container needs to join its network.
    public struct Attachment: Equatable, Sendable {
        public var namespacePath: String
        public var address: String
        public var gateway: String
        public var prefixLength: Int
        public var resolvConf: String
    }

    public static let namespaceDirectory = "/run/netns"
    let configuration: Configuration
    let commands: NetworkCommands
    var records: [UInt64: NetworkRecord]
    var baseReady = false
    /// Final counters of torn-down deployments, on disk until the reporter has billed them.
    var retired: RetiredTraffic
    /// Problems found while loading the state, for the agent's log.
    public private(set) var startupWarnings: [String] = []
    /// The last counters read, for readers that accept a few seconds' age.
    var lastTraffic: (at: ContinuousClock.Instant, readings: [ContractTraffic])?

    public init(configuration: Configuration) throws(NetworkError) {
        let prefixOK = (1...4).contains(configuration.prefix.count)
            && configuration.prefix.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) }
        guard prefixOK else { throw .invalid(what: "network prefix '\(configuration.prefix.prefix(16))'", reason: "use 1 to 4 of [a-z0-9]") }
        guard !configuration.table.isEmpty, configuration.table.count <= 32,
              configuration.table.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5f }) else {
            throw .invalid(what: "nft table '\(configuration.table.prefix(40))'", reason: "use 1 to 32 of [a-z0-9_]")
        }
        guard configuration.pool.prefixLength <= 24 else {
            throw .invalid(what: "network pool \(configuration.pool)", reason: "must be a /24 or larger")
        }
        for server in configuration.nameservers where IPv4Network.parseAddress(server) == nil {
            throw .invalid(what: "nameserver '\(server.prefix(40))'", reason: "not an IPv4 address")
        }
        if mkdir(configuration.stateDirectory, 0o700) != 0 && errno != EEXIST {
            throw .io(operation: "create", path: configuration.stateDirectory, errno: errno)
        }
        self.configuration = configuration
        self.commands = NetworkCommands(hostNamespace: configuration.hostNamespace)
        var records = try NetworkRecord.load(directory: configuration.stateDirectory)
        var retired: RetiredTraffic
        do { retired = try RetiredTraffic.load(directory: configuration.stateDirectory) } catch {
            // Not a reason to leave every deployment unreconciled: kept aside for a person to read.
            let path = RetiredTraffic.path(directory: configuration.stateDirectory)
            let aside = path + ".bad-\(Int(Date().timeIntervalSince1970))"
            rename(path, aside)
            startupWarnings.append("retired network counters unreadable (\(error)); moved to \(aside), their bytes are not reported")
            retired = RetiredTraffic()
        }
        var retiredChanged = false
        for (contract, entry) in retired.entries {
            guard let record = records[contract], let recordID = entry.recordID else { continue }
            if record.absorbedRetired == recordID {
                // Taken over by a network made again; the agent stopped before forgetting them here.
                retired.entries[contract] = nil
                retiredChanged = true
            } else if record.id == recordID {
                // Retired, but the agent stopped before removing the record: finish that (its
                // kernel objects are swept as orphans).
                NetworkRecord.remove(contractID: contract, directory: configuration.stateDirectory)
                records[contract] = nil
            }
        }
        for (contract, var record) in records where record.id == nil {
            // Written by an agent before record ids.
            record.id = NetworkRecord.newID()
            try record.save(directory: configuration.stateDirectory)
            records[contract] = record
        }
        if retiredChanged { try retired.save(directory: configuration.stateDirectory) }
        self.records = records
        self.retired = retired
    }

    // MARK: Names (interface names are at most 15 bytes: prefix + kind + 10 hex)

    static func shortHash(_ text: String) -> String { Hex.encode(Array(Blake2b.hash(Array(text.utf8), outputLength: 16).prefix(5))) }
    func bridgeName(_ contract: UInt64) -> String { configuration.prefix + "b" + Self.shortHash("\(contract)") }
    func vethName(_ contract: UInt64, _ name: String) -> String { configuration.prefix + "v" + Self.shortHash("\(contract)/\(name)") }
    public func namespaceName(_ contract: UInt64, _ name: String) -> String { "\(configuration.prefix)-\(contract)-\(name)" }
    func namespacePath(_ contract: UInt64, _ name: String) -> String { "\(Self.namespaceDirectory)/\(namespaceName(contract, name))" }
    var bridgeWildcard: String { "\"\(configuration.prefix)b*\"" }
    var table: String { configuration.table }

    // MARK: Start-up

    /// Forwarding on, the base tables in place, and everything with the agent's prefix that no
    /// record names removed (a crash between an action and its record, or a removed deployment).
    public func start() throws(NetworkError) {
        try ensureBase()
        try sweep()
    }

    func ensureBase() throws(NetworkError) {
        if baseReady { return }
        try commands.setSysctl("net.ipv4.ip_forward", "1")
        let t = table
        var s = [String]()
        s.append("add table inet \(t)")
        s.append("add map inet \(t) from { type ifname : verdict; }")
        s.append("add map inet \(t) to { type ifname : verdict; }")
        s.append("add map inet \(t) ports { type inet_proto . inet_service : verdict; }")
        s.append("add set inet \(t) subnets { type ipv4_addr; flags interval; }")
        let bases = [("prerouting", "type nat hook prerouting priority dstnat; policy accept;"),
                     ("output_nat", "type nat hook output priority -100; policy accept;"),
                     ("postrouting", "type nat hook postrouting priority srcnat; policy accept;"),
                     ("forward", "type filter hook forward priority filter; policy accept;"),
                     ("input", "type filter hook input priority filter; policy accept;")]
        for (name, hook) in bases {
            s.append("add chain inet \(t) \(name) { \(hook) }")
            s.append("flush chain inet \(t) \(name)")
        }
        // Published ports: DNAT for connections to any of the node's own addresses.
        s.append("add rule inet \(t) prerouting fib daddr type local meta l4proto . th dport vmap @ports")
        s.append("add rule inet \(t) output_nat fib daddr type local meta l4proto . th dport vmap @ports")
        s.append("add rule inet \(t) postrouting ip saddr @subnets oifname != \(bridgeWildcard) masquerade")
        s.append("add rule inet \(t) forward iifname vmap @from")
        s.append("add rule inet \(t) forward oifname vmap @to")
        // Containers do not reach the node's own services (twin API, shard server).
        s.append("add rule inet \(t) input iifname \(bridgeWildcard) ct state established,related accept")
        s.append("add rule inet \(t) input iifname \(bridgeWildcard) drop")
        // Traffic between containers of one deployment never leaves its bridge: counted there.
        s.append("add table bridge \(t)")
        s.append("add map bridge \(t) private { type ifname : verdict; }")
        // Before br_netfilter (priority 0), which re-injects bridged IPv4 past hooks of its own priority.
        s.append("add chain bridge \(t) forward { type filter hook forward priority -200; policy accept; }")
        s.append("flush chain bridge \(t) forward")
        s.append("add rule bridge \(t) forward iifname vmap @private")
        try commands.nft(script: s.joined(separator: "\n") + "\n")
        baseReady = true
    }

    func nftState() throws(NetworkError) -> (inet: NftState, bridge: NftState) {
        try ensureBase()
        return (NftState(json: try commands.nft(["-j", "list", "table", "inet", table])),
                NftState(json: try commands.nft(["-j", "list", "table", "bridge", table])))
    }

    func sweep() throws(NetworkError) {
        var expectedNamespaces = Set<String>()
        var expectedLinks = Set<String>()
        for record in records.values {
            expectedLinks.insert(bridgeName(record.contractID))
            for name in record.members.keys {
                expectedNamespaces.insert(namespaceName(record.contractID, name))
                expectedLinks.insert(vethName(record.contractID, name))
            }
        }
        let mine = configuration.prefix + "-"
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: Self.namespaceDirectory)) ?? []
        where entry.hasPrefix(mine) && !expectedNamespaces.contains(entry) {
            _ = try? NetworkCommands.execute(NetworkCommands.ipTool, ["netns", "delete", entry])
        }
        for link in try commands.ipJSON(["link", "show"]) {
            guard let name = (link["ifname"] as? String), isOwnLink(name), !expectedLinks.contains(name) else { continue }
            _ = commands.tryIP(["link", "delete", name])
        }
        let state = try nftState()
        var contracts = Set<UInt64>()
        for chain in state.inet.chains.union(state.bridge.chains) {
            if chain.hasPrefix("c"), let underscore = chain.firstIndex(of: "_"),
               let contract = UInt64(chain[chain.index(after: chain.startIndex)..<underscore]), records[contract] == nil {
                contracts.insert(contract)
            }
        }
        var script = [String]()
        for contract in contracts { script += teardownRules(contract, state: state) }
        let subnets = Set(records.values.compactMap { IPv4Network($0.subnet)?.description })
        for element in state.inet.setElements["subnets"] ?? [] where !subnets.contains(element) {
            script.append("delete element inet \(table) subnets { \(element) }")
        }
        if !script.isEmpty { try commands.nft(script: script.joined(separator: "\n") + "\n") }
    }

    func isOwnLink(_ name: String) -> Bool {
        let p = configuration.prefix
        guard name.count == p.count + 11, name.hasPrefix(p + "b") || name.hasPrefix(p + "v") else { return false }
        return name.suffix(10).allSatisfy { $0.isHexDigit && !$0.isUppercase }
    }

    // MARK: Attach and detach

    /// Converges one container's network: the deployment's bridge and rules, the container's
    /// namespace, veth, address and routes. Answers where the container joins.
    public func attach(contractID: UInt64, name: String, network: ContainerNetwork) throws(NetworkError) -> Attachment {
        try ensureBase()
        var record: NetworkRecord
        if let existing = records[contractID], network.ipRange == nil || network.ipRange == existing.subnet {
            record = existing
        } else if let existing = records[contractID] {
            guard existing.members.keys.allSatisfy({ $0 == name }) else {
                throw .invalid(what: "ip_range of contract \(contractID)", reason: "cannot change from \(existing.subnet) while other containers use it")
            }
            try teardownDeployment(contractID)
            record = NetworkRecord(contractID: contractID, subnet: try allocateSubnet(network.ipRange), members: [:])
        } else {
            record = NetworkRecord(contractID: contractID, subnet: try allocateSubnet(network.ipRange), members: [:])
        }
        let absorbed = retired.entries[contractID]
        if let absorbed {
            // A network made again for the same contract counts on from its earlier bytes, on the
            // record (written below, before the retired file forgets them). Billed or not: the
            // reporter may still hold the old total for this contract.
            record.countedBefore = Self.sum(record.countedBefore, absorbed.total)
            record.lastCounted = record.countedBefore
            record.absorbedRetired = absorbed.recordID
            // A new generation: the record a failed teardown left must not match what it retired.
            record.id = NetworkRecord.newID()
        }
        guard let subnet = IPv4Network(record.subnet) else { throw .invalid(what: "recorded subnet of \(contractID)", reason: record.subnet) }
        let gateway = subnet.address + 1
        let address: String
        if let member = record.members[name] {
            address = member.address
        } else {
            let used = Set(record.members.values.map(\.address))
            var candidate = subnet.address + 2
            while candidate < subnet.last, used.contains(IPv4Network.format(candidate)) { candidate += 1 }
            guard candidate < subnet.last else { throw .rangeExhausted(range: record.subnet, contract: contractID) }
            address = IPv4Network.format(candidate)
        }
        record.members[name] = .init(address: address, network: network)
        // On record before any kernel object exists, so a crash leaves nothing unknown.
        try record.save(directory: configuration.stateDirectory)
        records[contractID] = record
        if absorbed != nil {
            retired.entries[contractID] = nil
            // Failing here is harmless: at start, the record's absorbedRetired drops the entry.
            try? retired.save(directory: configuration.stateDirectory)
        }

        let bridge = bridgeName(contractID)
        if !commands.tryIP(["link", "show", "dev", bridge]) {
            try commands.ip(["link", "add", bridge, "type", "bridge"])
        }
        try commands.ip(["addr", "replace", "\(IPv4Network.format(gateway))/\(subnet.prefixLength)", "dev", bridge])
        try commands.ip(["link", "set", bridge, "up"])

        let namespace = namespaceName(contractID, name)
        if !FileManager.default.fileExists(atPath: namespacePath(contractID, name)) {
            try commands.checked(NetworkCommands.ipTool, ["netns", "add", namespace])
        }
        let veth = vethName(contractID, name)
        let hostSide = commands.tryIP(["link", "show", "dev", veth])
        let containerSide = (try? NetworkCommands.execute(NetworkCommands.ipTool, ["-n", namespace, "link", "show", "dev", "eth0"]).status) == 0
        if !(hostSide && containerSide) {
            if hostSide { _ = commands.tryIP(["link", "delete", veth]) }
            if containerSide { _ = try? NetworkCommands.execute(NetworkCommands.ipTool, ["-n", namespace, "link", "delete", "eth0"]) }
            try commands.ip(["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace])
        }
        try commands.ip(["link", "set", veth, "master", bridge, "up"])
        try commands.ip(in: namespace, ["addr", "replace", "\(address)/\(subnet.prefixLength)", "dev", "eth0"])
        try commands.ip(in: namespace, ["link", "set", "lo", "up"])
        try commands.ip(in: namespace, ["link", "set", "eth0", "up"])
        try commands.ip(in: namespace, ["route", "replace", "default", "via", IPv4Network.format(gateway)])
        try applyRules(record)
        let resolv = configuration.nameservers.map { "nameserver \($0)\n" }.joined()
        return Attachment(namespacePath: namespacePath(contractID, name), address: address, gateway: IPv4Network.format(gateway),
                          prefixLength: subnet.prefixLength, resolvConf: resolv)
    }

    /// Removes one container's namespace and veth; the deployment's bridge and rules go with its
    /// last container. Succeeds when already gone.
    public func detach(contractID: UInt64, name: String) throws(NetworkError) {
        let hasNamespace = FileManager.default.fileExists(atPath: namespacePath(contractID, name))
        // Nothing on record and no namespace: nothing to do (kernel leftovers are swept at start).
        guard hasNamespace || records[contractID]?.members[name] != nil else { return }
        if hasNamespace {
            try commands.checked(NetworkCommands.ipTool, ["netns", "delete", namespaceName(contractID, name)])
        }
        // Deleting the namespace took the pair with it; a host side left by a crash goes here.
        _ = commands.tryIP(["link", "delete", vethName(contractID, name)])
        guard var record = records[contractID] else { return }
        record.members[name] = nil
        if record.members.isEmpty {
            try teardownDeployment(contractID)
        } else {
            try record.save(directory: configuration.stateDirectory)
            records[contractID] = record
            try applyRules(record)
        }
    }

    /// Container workloads with a network on record, for orphan removal.
    public func attached() -> [(contractID: UInt64, name: String)] {
        records.values.flatMap { record in record.members.keys.map { (record.contractID, $0) } }
    }

    func allocateSubnet(_ requested: String?) throws(NetworkError) -> String {
        if let requested {
            guard let network = IPv4Network(requested) else { throw .invalid(what: "ip_range '\(requested.prefix(40))'", reason: "not an IPv4 CIDR") }
            return network.description
        }
        let taken = records.values.compactMap { IPv4Network($0.subnet) }
        let pool = configuration.pool
        var candidate = pool.address
        while pool.contains(candidate) {
            let network = IPv4Network(address: candidate, prefixLength: 24)
            if !taken.contains(where: { $0.overlaps(network) }) { return network.description }
            guard candidate <= UInt32.max - 256 else { break }
            candidate += 256
        }
        throw .poolExhausted(pool: pool.description)
    }

    // MARK: Rules

    /// Replaces the deployment's chains (one transaction): isolation from other deployments,
    /// counters, egress per container, DNAT for published ports; and the map elements that lead
    /// there, removing those no longer wanted.
    func applyRules(_ record: NetworkRecord) throws(NetworkError) {
        let c = record.contractID
        let t = table
        let bridge = bridgeName(c)
        let state = try nftState()
        var s = [String]()
        for chain in ["from", "to", "dnat"] {
            s.append("add chain inet \(t) c\(c)_\(chain)")
            s.append("flush chain inet \(t) c\(c)_\(chain)")
        }
        s.append("add counter inet \(t) c\(c)_in")
        s.append("add counter inet \(t) c\(c)_out")
        s.append("add rule inet \(t) c\(c)_from oifname \"\(bridge)\" accept")
        s.append("add rule inet \(t) c\(c)_from oifname \(bridgeWildcard) drop")
        s.append("add rule inet \(t) c\(c)_from counter name \"c\(c)_out\"")
        s.append("add rule inet \(t) c\(c)_from ct state established,related accept")
        var ports = [String]()
        for name in record.members.keys.sorted() {
            guard let member = record.members[name] else { continue }
            let source = "ip saddr \(member.address)"
            switch member.network.egress.mode {
            case .all: s.append("add rule inet \(t) c\(c)_from \(source) accept")
            case .none: break
            case .allow:
                for entry in member.network.egress.allow {
                    guard let (network, port) = NetworkRules.parseAllow(entry) else { continue }
                    let portMatch = port.map { " meta l4proto { tcp, udp } th dport \($0)" } ?? ""
                    s.append("add rule inet \(t) c\(c)_from \(source) ip daddr \(network)\(portMatch) accept")
                }
            }
            for p in member.network.ports {
                s.append("add rule inet \(t) c\(c)_dnat meta l4proto \(p.protocol.rawValue) th dport \(p.publicPort) dnat ip to \(member.address):\(p.port)")
                ports.append("\(p.protocol.rawValue) . \(p.publicPort)")
            }
        }
        // Denied egress, and any source address that is not one of its containers'.
        s.append("add rule inet \(t) c\(c)_from drop")
        s.append("add rule inet \(t) c\(c)_to iifname \(bridgeWildcard) drop")
        s.append("add rule inet \(t) c\(c)_to counter name \"c\(c)_in\"")
        s.append("add rule inet \(t) c\(c)_to ct state established,related accept")
        s.append("add rule inet \(t) c\(c)_to ct status dnat accept")
        s.append("add rule inet \(t) c\(c)_to drop")
        s.append("add element inet \(t) from { \"\(bridge)\" : jump c\(c)_from }")
        s.append("add element inet \(t) to { \"\(bridge)\" : jump c\(c)_to }")
        s.append("add element inet \(t) subnets { \(record.subnet) }")
        for element in state.inet.mapElements["ports"] ?? [] where element.target == "c\(c)_dnat" && !ports.contains(element.key) {
            s.append("delete element inet \(t) ports { \(element.key) }")
        }
        for port in ports { s.append("add element inet \(t) ports { \(port) : jump c\(c)_dnat }") }
        s.append("add chain bridge \(t) c\(c)_private")
        s.append("flush chain bridge \(t) c\(c)_private")
        s.append("add counter bridge \(t) c\(c)_private")
        s.append("add rule bridge \(t) c\(c)_private counter name \"c\(c)_private\"")
        let veths = record.members.keys.map { "\"\(vethName(c, $0))\"" }
        for element in state.bridge.mapElements["private"] ?? [] where element.target == "c\(c)_private" && !veths.contains(element.key) {
            s.append("delete element bridge \(t) private { \(element.key) }")
        }
        for veth in veths { s.append("add element bridge \(t) private { \(veth) : jump c\(c)_private }") }
        try commands.nft(script: s.joined(separator: "\n") + "\n")
    }

    /// Deletes of whatever of the contract's rules exist, to run as one transaction.
    func teardownRules(_ c: UInt64, state: (inet: NftState, bridge: NftState)) -> [String] {
        let t = table
        var s = [String]()
        for map in ["from", "to", "ports"] {
            for element in state.inet.mapElements[map] ?? [] where element.target.hasPrefix("c\(c)_") {
                s.append("delete element inet \(t) \(map) { \(element.key) }")
            }
        }
        for element in state.bridge.mapElements["private"] ?? [] where element.target == "c\(c)_private" {
            s.append("delete element bridge \(t) private { \(element.key) }")
        }
        for chain in ["from", "to", "dnat"] where state.inet.chains.contains("c\(c)_\(chain)") {
            s.append("delete chain inet \(t) c\(c)_\(chain)")
        }
        for counter in ["in", "out"] where state.inet.counters["c\(c)_\(counter)"] != nil {
            s.append("delete counter inet \(t) c\(c)_\(counter)")
        }
        if state.bridge.chains.contains("c\(c)_private") { s.append("delete chain bridge \(t) c\(c)_private") }
        if state.bridge.counters["c\(c)_private"] != nil { s.append("delete counter bridge \(t) c\(c)_private") }
        return s
    }

    func teardownDeployment(_ c: UInt64) throws(NetworkError) {
        let state = try nftState()
        let final = counted(c, state)
        var s = teardownRules(c, state: state)
        if let record = records[c], let subnet = IPv4Network(record.subnet),
           (state.inet.setElements["subnets"] ?? []).contains(subnet.description) {
            s.append("delete element inet \(table) subnets { \(subnet) }")
        }
        // The final reading on the record before the counters go with the rules: a stop right after
        // the delete finds it there, and the next teardown retires it.
        if let record = records[c] { try record.save(directory: configuration.stateDirectory) }
        if !s.isEmpty { try commands.nft(script: s.joined(separator: "\n") + "\n") }
        // The bytes move to `retired` once, on disk before the record goes. Memory changes only
        // after the file is written: a retry after a failure finds the same final reading, and a
        // retry after a later failure finds nothing left to add.
        if let final {
            var next = retired
            next.entries[c] = .init(total: Self.sum(retired.entries[c]?.total, final), recordID: records[c]?.id)
            try next.save(directory: configuration.stateDirectory)
            retired = next
            records[c]?.countedBefore = nil
            records[c]?.lastCounted = nil
        }
        let bridge = bridgeName(c)
        if commands.tryIP(["link", "show", "dev", bridge]) { try commands.ip(["link", "delete", bridge]) }
        NetworkRecord.remove(contractID: c, directory: configuration.stateDirectory)
        records[c] = nil
    }

    // MARK: Traffic

    static func traffic(_ c: UInt64, _ state: (inet: NftState, bridge: NftState)) -> ContractTraffic? {
        guard let bytesIn = state.inet.counters["c\(c)_in"], let bytesOut = state.inet.counters["c\(c)_out"] else { return nil }
        return ContractTraffic(contractID: c, publicIn: bytesIn, publicOut: bytesOut, privateBytes: state.bridge.counters["c\(c)_private"] ?? 0)
    }

    /// A deployment's cumulative counters: the kernel's on top of `countedBefore`, never lower
    /// than the last reading. When they are lower, the kernel's restarted from zero (a reboot, a
    /// flushed ruleset): the last reading becomes the base, kept on the record at once.
    func counted(_ c: UInt64, _ state: (inet: NftState, bridge: NftState)) -> ContractTraffic? {
        guard var record = records[c] else { return nil }
        let live = Self.traffic(c, state)
        var total = live.map { Self.sum(record.countedBefore, $0) } ?? record.countedBefore
        if let last = record.lastCounted, total.map({ Self.isBelow($0, last) }) ?? true {
            record.countedBefore = last
            total = live.map { Self.sum(last, $0) } ?? last
            try? record.save(directory: configuration.stateDirectory)
        }
        record.lastCounted = total
        records[c] = record
        return total
    }

    static func isBelow(_ a: ContractTraffic, _ b: ContractTraffic) -> Bool {
        a.publicIn < b.publicIn || a.publicOut < b.publicOut || a.privateBytes < b.privateBytes
    }

    static func sum(_ a: ContractTraffic?, _ b: ContractTraffic) -> ContractTraffic {
        guard let a else { return b }
        return ContractTraffic(contractID: b.contractID, publicIn: a.publicIn &+ b.publicIn, publicOut: a.publicOut &+ b.publicOut,
                               privateBytes: a.privateBytes &+ b.privateBytes)
    }

    /// Per contract, cumulative: live kernel counters plus those of networks already torn down.
    /// A fresh reading (the reporter's, `maxAge` zero) is kept on the records, so a reboot or a
    /// power loss later restarts the counting from it. Reading runs `nft` twice; status pages and
    /// metrics scrapes pass a `maxAge` to share a recent reading. With no network on record, no
    /// `nft` runs. When the counters cannot be read, the last reading stands.
    public func contractTraffic() -> [ContractTraffic] { contractTraffic(maxAge: .zero) }

    public func contractTraffic(maxAge: Duration) -> [ContractTraffic] {
        (try? readTraffic(maxAge: maxAge)) ?? lastTraffic?.readings ?? retired.unbilled.values.sorted { $0.contractID < $1.contractID }
    }

    /// As `contractTraffic`, but throws when the kernel's counters cannot be read: a reading
    /// without some deployments would make the reporter count their whole totals again later.
    func readTraffic(maxAge: Duration) throws(NetworkError) -> [ContractTraffic] {
        let now = ContinuousClock.now
        if maxAge > .zero, let last = lastTraffic, now - last.at < maxAge { return last.readings }
        var out = retired.unbilled
        if !records.isEmpty {
            let state = try nftState()
            for c in records.keys {
                if let counted = counted(c, state) { out[c] = Self.sum(out[c], counted) }
            }
            if maxAge == .zero {
                for record in records.values { try? record.save(directory: configuration.stateDirectory) }
            }
        }
        let readings = out.values.sorted { $0.contractID < $1.contractID }
        lastTraffic = (now, readings)
        return readings
    }

    /// On a clean stop: the counters as they are, kept on the records for a reboot to come.
    public func saveCountersForStop() {
        _ = try? readTraffic(maxAge: .zero)
    }

    /// Deletes the agent's tables when no deployment has a network, on a graceful stop: an agent
    /// that leaves nothing running leaves no hooks on every packet of the host either. With
    /// networks on record the tables stay, because the containers outlive the agent.
    @discardableResult
    public func releaseIfUnused() -> Bool {
        guard records.isEmpty else { return false }
        _ = try? commands.nft(["delete", "table", "inet", table])
        _ = try? commands.nft(["delete", "table", "bridge", table])
        baseReady = false
        return true
    }

    /// Deletes the agent's tables and every interface and namespace with its prefix (tests, and
    /// `node-agent` when networking is turned off).
    public func removeEverything() throws(NetworkError) {
        records.removeAll()
        retired = RetiredTraffic()
        for file in (try? FileManager.default.contentsOfDirectory(atPath: configuration.stateDirectory)) ?? []
        where file.hasSuffix(".json") || file == RetiredTraffic.fileName {
            unlink(configuration.stateDirectory + "/" + file)
        }
        try sweep()
        _ = try? commands.nft(["delete", "table", "inet", table])
        _ = try? commands.nft(["delete", "table", "bridge", table])
        baseReady = false
    }
}
