import CapacityReporter
import Foundation

// The cost of one capacity scan on this host (CPUs, memory, the data directories' block devices,
// PCI display devices, hardware ids) and of one reading of actual usage (the pressure conditions'
// input), printed as "name value" lines; bench/capacity-bench.sh prints them beside the scan
// interval they run in.
let arguments = Array(CommandLine.arguments.dropFirst())
let seconds = Double(ProcessInfo.processInfo.environment["SECONDS_EACH"] ?? "2") ?? 2
let directories = arguments.isEmpty ? [NSTemporaryDirectory(), "/var/lib"] : arguments
let scanner = CapacityScanner(dataDirectories: directories)

func measure(_ body: () -> Void) -> Double {
    for _ in 0..<20 { body() }
    let clock = ContinuousClock()
    let start = clock.now
    var count = 0
    while clock.now - start < .milliseconds(Int(seconds * 1000)) {
        body()
        count += 1
    }
    let elapsed = clock.now - start
    let micros = Double(elapsed.components.seconds) * 1e6 + Double(elapsed.components.attoseconds) / 1e12
    return micros / Double(max(count, 1))
}

var last = scanner.scan()
let scanMicros = measure { last = scanner.scan() }
let usageMicros = measure { _ = ActualUsage.read(files: scanner.files, disks: last.disks, probe: scanner.probe) }
print("data_dirs \(directories.count) disks \(last.disks.count) gpus \(last.gpus.count) cru \(last.total.cru)")
print(String(format: "capacity_scan_us %.1f", scanMicros))
print(String(format: "usage_read_us %.1f", usageMicros))
