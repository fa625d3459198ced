import GridTypes

public enum StorageKind: String, Codable, Sendable {
    case ssd
    case hdd
}

/// One filesystem holding data directories, counted once however many directories it holds.
public struct DataDisk: Codable, Equatable, Sendable {
    /// The configured directories on this filesystem.
    public var paths: [String]
    public var mountPoint: String
    /// The filesystem's block device: "sda1", "md0", "dm-0", or the mount source when there is none.
    public var device: String
    public var deviceNumber: String
    public var kind: StorageKind
    /// How the kind was decided, e.g. "md0 <- sda2 (rotational=0), sdb2 (rotational=0)".
    public var basis: String
    public var totalBytes: UInt64
    public var availableBytes: UInt64
    public var files: UInt64
    public var filesAvailable: UInt64
}

/// A PCI display controller (class 0x03xxxx). Informational: reported, not yet offered to tenants.
public struct GPUDevice: Codable, Equatable, Sendable {
    public var slot: String
    public var vendorID: String
    public var deviceID: String
    public var pciClass: String
    /// NVIDIA, AMD or Intel: a GPU a tenant could use. Emulated and BMC display controllers
    /// (QEMU, ASPEED, Matrox, ...) are listed but not usable.
    public var isComputeCapable: Bool

    static let computeVendors: Set<String> = ["0x10de", "0x1002", "0x8086"]
}

/// Identifiers of the machine, for the capacity attestation; each nil when unreadable.
public struct HardwareIdentity: Codable, Equatable, Sendable {
    public var machineID: String?
    public var productUUID: String?
    public var bootID: String?
}

/// What one capacity scan found.
public struct CapacityMeasurement: Codable, Equatable, Sendable {
    /// CRU: logical CPUs online; MRU: MemTotal; SRU/HRU: the data filesystems by kind.
    public var total: Resources
    public var disks: [DataDisk]
    public var gpus: [GPUDevice]
    /// Configured data directories whose filesystem could not be read (a disk gone, an I/O error).
    public var unreadableDirectories: [String]
    public var hardware: HardwareIdentity
    /// Everything read that was not as expected, in words a farmer can act on.
    public var warnings: [String]

    /// The kind of the disk holding the first data directory (the state directory): where the
    /// system's disk reserve is taken from.
    public var systemDiskKind: StorageKind { disks.first(where: { !$0.paths.isEmpty })?.kind ?? .ssd }

    public func attestation(reserve: Resources) -> CapacityAttestation {
        CapacityAttestation(
            total: total, reserve: reserve,
            disks: disks.map { CapacityAttestation.Disk(device: $0.device, kind: $0.kind.rawValue, bytes: $0.totalBytes) },
            gpus: gpus.map { CapacityAttestation.GPU(slot: $0.slot, vendor: $0.vendorID, device: $0.deviceID, pciClass: $0.pciClass) },
            machineID: hardware.machineID, productUUID: hardware.productUUID)
    }
}
