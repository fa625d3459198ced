import Foundation
import GridTypes

/// Measures the node's total capacity from /proc and /sys below `files.root`:
/// - CRU: CPUs in /sys/devices/system/cpu/online (fallback: "processor" lines of /proc/cpuinfo);
/// - MRU: MemTotal of /proc/meminfo;
/// - SRU/HRU: each filesystem holding a data directory, once, typed by its block device's
///   queue/rotational; partitions are typed by their disk, device-mapper and md devices by their
///   slaves (any rotational slave makes it HDD), loop devices by their backing file's device;
///   a device whose type cannot be read counts as SSD, with a warning;
/// - GPUs: PCI devices of class 0x03xxxx (informational).
/// Nothing here fails: what cannot be read is left out and named in `warnings`.
public struct CapacityScanner: Sendable {
    public let files: RootedFiles
    public let probe: any FilesystemProbe
    public let dataDirectories: [String]

    static let maxDeviceDepth = 8

    public init(root: String = "/", dataDirectories: [String], probe: (any FilesystemProbe)? = nil) {
        files = RootedFiles(root: root)
        self.probe = probe ?? (root == "/" ? LiveFilesystemProbe() : RecordedFilesystemProbe(root: root))
        self.dataDirectories = dataDirectories
    }

    public func scan() -> CapacityMeasurement {
        var warnings = [String]()
        let cru = countCPUs(&warnings)
        let mru = memoryTotal(&warnings)
        let (disks, unreadable) = scanDisks(&warnings)
        var total = Resources(cru: cru, mru: mru)
        for disk in disks {
            switch disk.kind {
            case .ssd: total.sru = total.sru.addingReportingOverflow(disk.totalBytes).overflow ? .max : total.sru + disk.totalBytes
            case .hdd: total.hru = total.hru.addingReportingOverflow(disk.totalBytes).overflow ? .max : total.hru + disk.totalBytes
            }
        }
        return CapacityMeasurement(total: total, disks: disks, gpus: scanGPUs(&warnings), unreadableDirectories: unreadable,
                                   hardware: hardwareIdentity(), warnings: warnings)
    }

    // MARK: CPU and memory

    func countCPUs(_ warnings: inout [String]) -> UInt64 {
        let online = "/sys/devices/system/cpu/online"
        switch files.read(online, limit: 4096) {
        case .success(let text):
            if let count = Self.countCPUList(text), count > 0 { return count }
            warnings.append("\(online) holds \"\(text.trimmingCharacters(in: .whitespacesAndNewlines).prefix(40))\", not a CPU list; counting /proc/cpuinfo instead")
        case .failure(let failure):
            warnings.append("cannot read \(online) (\(failure)); counting /proc/cpuinfo instead")
        }
        switch files.read("/proc/cpuinfo", limit: 16 << 20) {
        case .success(let text):
            let count = text.split(separator: "\n").filter { line in
                line.hasPrefix("processor") && line.dropFirst("processor".count).trimmingCharacters(in: .whitespaces).hasPrefix(":")
            }.count
            if count > 0 { return UInt64(count) }
            warnings.append("/proc/cpuinfo lists no processor; CRU is 0 until the next scan")
        case .failure(let failure):
            warnings.append("cannot read /proc/cpuinfo (\(failure)); CRU is 0 until the next scan")
        }
        return 0
    }

    /// "0-3,8,10-11\n" -> 7; nil when malformed. Ranges beyond 1 << 20 CPUs are refused.
    static func countCPUList(_ text: String) -> UInt64? {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { return nil }
        var count: UInt64 = 0
        for part in trimmed.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(bounds.count), let low = UInt64(bounds[0]), let high = UInt64(bounds[bounds.count - 1]),
                  low <= high, high < 1 << 20 else { return nil }
            count += high - low + 1
        }
        return count
    }

    func memoryTotal(_ warnings: inout [String]) -> UInt64 {
        switch files.read("/proc/meminfo") {
        case .success(let text):
            if let kib = Self.meminfoField("MemTotal", in: text) {
                let (bytes, overflow) = kib.multipliedReportingOverflow(by: 1024)
                return overflow ? .max : bytes
            }
            warnings.append("/proc/meminfo has no readable MemTotal line; MRU is 0 until the next scan")
        case .failure(let failure):
            warnings.append("cannot read /proc/meminfo (\(failure)); MRU is 0 until the next scan")
        }
        return 0
    }

    /// A "Name:   1234 kB" line of /proc/meminfo, in KiB.
    static func meminfoField(_ name: String, in text: String) -> UInt64? {
        for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
            let fields = line.dropFirst(name.count + 1).split(separator: " ")
            guard let value = fields.first.flatMap({ UInt64($0) }) else { return nil }
            guard fields.count == 1 || fields[1] == "kB" else { return nil }
            return value
        }
        return nil
    }

    // MARK: disks

    func scanDisks(_ warnings: inout [String]) -> ([DataDisk], [String]) {
        var disks = [DataDisk]()
        var byDevice = [DeviceNumber: Int]()
        var unreadable = [String]()
        for path in dataDirectories {
            let info: FilesystemInfo
            switch probe.filesystem(containing: path) {
            case .success(let found): info = found
            case .failure(let failure):
                warnings.append("data directory \(failure); its disk is not counted (is it unmounted or failing?)")
                unreadable.append(path)
                continue
            }
            if let index = byDevice[info.device] {
                disks[index].paths.append(path)
                continue
            }
            let (name, kind, basis) = classify(info, &warnings)
            byDevice[info.device] = disks.count
            disks.append(DataDisk(paths: [path], mountPoint: info.mountPoint, device: name, deviceNumber: info.device.description,
                                  kind: kind, basis: basis, totalBytes: info.totalBytes, availableBytes: info.availableBytes,
                                  files: info.files, filesAvailable: info.filesAvailable))
        }
        return (disks, unreadable)
    }

    /// The device's name, kind and the reasoning, from /sys.
    func classify(_ info: FilesystemInfo, _ warnings: inout [String]) -> (String, StorageKind, String) {
        var directory: String?
        if info.device.major != 0 {
            directory = deviceDirectory(link: "/sys/dev/block/\(info.device)")
        }
        if directory == nil, let name = blockDeviceName(source: info.source) {
            // Filesystems with anonymous device numbers (btrfs, ZFS) name their device in mountinfo.
            directory = deviceDirectory(name: name)
        }
        guard let directory else {
            let label = info.source.isEmpty ? info.device.description : info.source
            warnings.append("\(info.mountPoint) (\(info.fsType.isEmpty ? "unknown type" : info.fsType) on \(label)) has no block device in /sys; counted as SSD")
            return (label, .ssd, "no block device; assumed SSD")
        }
        let name = Self.lastComponent(directory)
        let (kind, basis) = kindOf(directory: directory, depth: 0)
        guard let kind else {
            warnings.append("cannot tell whether \(name) (\(info.mountPoint)) is rotational: \(basis); counted as SSD")
            return (name, .ssd, basis + "; assumed SSD")
        }
        return (name, kind, basis)
    }

    /// "/dev/sdb1" -> "sdb1"; "/dev/mapper/vg-data" -> the dm-N whose dm/name is "vg-data".
    func blockDeviceName(source: String) -> String? {
        guard source.hasPrefix("/dev/") else { return nil }
        if source.hasPrefix("/dev/mapper/") {
            let mapped = String(source.dropFirst("/dev/mapper/".count))
            return files.list("/sys/block")?.first { name in
                name.hasPrefix("dm-") && files.line("/sys/block/\(name)/dm/name") == mapped
            }
        }
        let name = Self.lastComponent(source)
        return name.isEmpty ? nil : name
    }

    /// The resolved sysfs directory a device link points to.
    func deviceDirectory(link: String) -> String? {
        guard files.exists(link), let resolved = files.resolve(link) else { return nil }
        return resolved
    }

    func deviceDirectory(name: String) -> String? {
        guard !name.contains("/"), !name.isEmpty else { return nil }
        return deviceDirectory(link: "/sys/class/block/\(name)") ?? deviceDirectory(link: "/sys/block/\(name)")
    }

    /// SSD or HDD for the device at `directory` (a sysfs device directory), with the reasoning;
    /// nil kind when it cannot be read.
    func kindOf(directory: String, depth: Int) -> (StorageKind?, String) {
        let name = Self.lastComponent(directory)
        guard depth < Self.maxDeviceDepth else { return (nil, "\(name): devices nested more than \(Self.maxDeviceDepth) deep") }
        if files.exists(directory + "/partition") {
            let disk = (directory as NSString).deletingLastPathComponent
            let (kind, basis) = kindOf(directory: disk, depth: depth + 1)
            return (kind, "\(name) on " + basis)
        }
        if let slaves = files.list(directory + "/slaves"), !slaves.isEmpty {
            var kinds = [StorageKind?]()
            var parts = [String]()
            for slave in slaves {
                guard let slaveDirectory = deviceDirectory(link: directory + "/slaves/" + slave) ?? deviceDirectory(name: slave) else {
                    kinds.append(nil)
                    parts.append("\(slave) (not found)")
                    continue
                }
                let (kind, basis) = kindOf(directory: slaveDirectory, depth: depth + 1)
                kinds.append(kind)
                parts.append(basis)
            }
            let basis = "\(name) <- " + parts.joined(separator: ", ")
            // The slowest member sets the pace of the whole device.
            if kinds.contains(.hdd) { return (.hdd, basis) }
            if kinds.allSatisfy({ $0 == .ssd }) { return (.ssd, basis) }
            return (nil, basis)
        }
        if name.hasPrefix("loop"), let backing = files.line(directory + "/loop/backing_file") {
            let file = backing.hasSuffix(" (deleted)") ? String(backing.dropLast(" (deleted)".count)) : backing
            guard case .success(let info) = probe.filesystem(containing: file), info.device.major != 0,
                  let backingDirectory = deviceDirectory(link: "/sys/dev/block/\(info.device)") else {
                return (nil, "\(name) -> \(file) (its device is unknown)")
            }
            let (kind, basis) = kindOf(directory: backingDirectory, depth: depth + 1)
            return (kind, "\(name) -> \(file) on " + basis)
        }
        switch files.read(directory + "/queue/rotational", limit: 64) {
        case .success(let text):
            let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
            switch value {
            case "0": return (.ssd, "\(name) (rotational=0)")
            case "1": return (.hdd, "\(name) (rotational=1)")
            default: return (nil, "\(name): queue/rotational holds \"\(value.prefix(20))\"")
            }
        case .failure(let failure):
            return (nil, "\(name): queue/rotational unreadable (\(failure))")
        }
    }

    static func lastComponent(_ path: String) -> String {
        String(path.split(separator: "/").last ?? "")
    }

    // MARK: GPUs and identity

    func scanGPUs(_ warnings: inout [String]) -> [GPUDevice] {
        let base = "/sys/bus/pci/devices"
        guard let slots = files.list(base) else {
            warnings.append("cannot list \(base); GPUs unknown")
            return []
        }
        var gpus = [GPUDevice]()
        for slot in slots {
            guard let pciClass = files.line("\(base)/\(slot)/class")?.lowercased() else {
                warnings.append("PCI device \(slot) has no readable class; skipped")
                continue
            }
            guard pciClass.hasPrefix("0x03"), pciClass.count == 8 else { continue }
            let vendor = files.line("\(base)/\(slot)/vendor")?.lowercased() ?? "unknown"
            let device = files.line("\(base)/\(slot)/device")?.lowercased() ?? "unknown"
            gpus.append(GPUDevice(slot: slot, vendorID: vendor, deviceID: device, pciClass: pciClass,
                                  isComputeCapable: GPUDevice.computeVendors.contains(vendor)))
        }
        return gpus
    }

    func hardwareIdentity() -> HardwareIdentity {
        func identifier(_ path: String, hexDigits: Int?) -> String? {
            guard let text = files.line(path)?.lowercased(), text.count <= 64,
                  text.allSatisfy({ $0.isHexDigit || $0 == "-" }) else { return nil }
            if let hexDigits, text.filter(\.isHexDigit).count != hexDigits { return nil }
            return text
        }
        return HardwareIdentity(machineID: identifier("/etc/machine-id", hexDigits: 32),
                                productUUID: identifier("/sys/class/dmi/id/product_uuid", hexDigits: 32),
                                bootID: identifier("/proc/sys/kernel/random/boot_id", hexDigits: 32))
    }
}
