/// One signed statement in the node's report log: a report it sent (or tried to send) to the chain,
/// a capacity attestation, a delivery receipt, or the head of an export. Statements are numbered
/// from 1 and each names the BLAKE2b-256 hash of the previous one's bytes, so anyone holding the
/// node's public key can see a missing, reordered or rewritten statement (`SignedReportLog`).
public struct ReportStatement: Codable, Equatable, Sendable {
    public static let currentVersion = 1

    public enum Kind: String, Codable, Sendable, CaseIterable {
        /// report_uptime_v2.
        case uptime
        /// report_contract_resources.
        case contractResources = "contract_resources"
        /// add_nru_reports.
        case nru
        /// update_node: the node's registered capacity brought up to date with the measurement.
        case nodeResources = "node_resources"
        /// Measured totals and hardware identifiers (not sent to the chain).
        case capacity
        /// How a report ended: delivered in a block, rejected, superseded or rebuilt.
        case receipt
        /// The last line of an export: commits to the whole log, so a removed tail is visible.
        case exportHead = "export_head"

        /// Kinds that go to the chain and get a receipt.
        public var isReport: Bool { [.uptime, .contractResources, .nru, .nodeResources].contains(self) }
    }

    public var version: Int
    public var seq: UInt64
    /// Hex BLAKE2b-256 of the previous statement's bytes; 64 zeros for statement 1.
    public var prev: String
    public var kind: Kind
    public var nodeID: UInt32
    /// Wall-clock Unix seconds when the statement was made.
    public var time: UInt64
    /// /proc/sys/kernel/random/boot_id when the statement was made.
    public var bootID: String

    public var uptime: UptimeClaim?
    public var contractResources: [ContractResources]?
    public var nru: [NruConsumption]?
    public var nodeResources: Resources?
    public var capacity: CapacityAttestation?
    public var receipt: DeliveryReceipt?
    /// A report rebuilt fresh: the seq of the report it replaces.
    public var replaces: UInt64?
    /// Export head: how many statements the export holds before it.
    public var exportedCount: UInt64?

    enum CodingKeys: String, CodingKey {
        case version = "v", seq, prev, kind, nodeID = "node_id", time, bootID = "boot_id", uptime
        case contractResources = "contract_resources", nru, nodeResources = "node_resources", capacity, receipt, replaces
        case exportedCount = "exported_count"
    }

    public init(seq: UInt64, prev: String, kind: Kind, nodeID: UInt32, time: UInt64, bootID: String) {
        self.version = Self.currentVersion
        self.seq = seq
        self.prev = prev
        self.kind = kind
        self.nodeID = nodeID
        self.time = time
        self.bootID = bootID
    }

    public static let genesisPrev = String(repeating: "0", count: 64)
}

/// What an uptime report claims. `uptime` is what was sent; `bootUptime` is CLOCK_BOOTTIME at the
/// time, larger only when the report was capped so uptime never grows faster than the hints.
public struct UptimeClaim: Codable, Equatable, Sendable {
    public var uptime: UInt64
    public var timestampHint: UInt64
    public var bootUptime: UInt64

    enum CodingKeys: String, CodingKey {
        case uptime, timestampHint = "timestamp_hint", bootUptime = "boot_uptime"
    }

    public init(uptime: UInt64, timestampHint: UInt64, bootUptime: UInt64) {
        self.uptime = uptime
        self.timestampHint = timestampHint
        self.bootUptime = bootUptime
    }
}

/// The node's measured capacity and the hardware it was measured on.
public struct CapacityAttestation: Codable, Equatable, Sendable {
    public struct Disk: Codable, Equatable, Sendable {
        /// Kernel name of the filesystem's block device ("sda1", "md0", "dm-0"), or the mount source.
        public var device: String
        /// "ssd" or "hdd".
        public var kind: String
        public var bytes: UInt64

        public init(device: String, kind: String, bytes: UInt64) {
            self.device = device
            self.kind = kind
            self.bytes = bytes
        }
    }

    public struct GPU: Codable, Equatable, Sendable {
        public var slot: String
        public var vendor: String
        public var device: String
        public var pciClass: String

        enum CodingKeys: String, CodingKey { case slot, vendor, device, pciClass = "class" }

        public init(slot: String, vendor: String, device: String, pciClass: String) {
            self.slot = slot
            self.vendor = vendor
            self.device = device
            self.pciClass = pciClass
        }
    }

    public var total: Resources
    public var reserve: Resources
    public var disks: [Disk]
    public var gpus: [GPU]
    /// /etc/machine-id, when readable.
    public var machineID: String?
    /// /sys/class/dmi/id/product_uuid, when readable (root only on most systems).
    public var productUUID: String?

    enum CodingKeys: String, CodingKey {
        case total, reserve, disks, gpus, machineID = "machine_id", productUUID = "product_uuid"
    }

    public init(total: Resources, reserve: Resources, disks: [Disk], gpus: [GPU], machineID: String?, productUUID: String?) {
        self.total = total
        self.reserve = reserve
        self.disks = disks
        self.gpus = gpus
        self.machineID = machineID
        self.productUUID = productUUID
    }
}

/// How a report ended.
public struct DeliveryReceipt: Codable, Equatable, Sendable {
    public enum Outcome: String, Codable, Sendable {
        /// Included in `block` without ExtrinsicFailed.
        case delivered
        /// Refused by the chain for a reason resending cannot fix (`detail` says which).
        case rejected
        /// Not sent: a newer report of the same kind (`by`) carries everything it said.
        case superseded
        /// Could not be sent as it was (a stale timestamp hint, a contract gone); `by` is the fresh one.
        case rebuilt
    }

    public var of: UInt64
    public var outcome: Outcome
    public var block: UInt64?
    public var by: UInt64?
    public var detail: String?

    public init(of: UInt64, outcome: Outcome, block: UInt64? = nil, by: UInt64? = nil, detail: String? = nil) {
        self.of = of
        self.outcome = outcome
        self.block = block
        self.by = by
        self.detail = detail
    }
}
