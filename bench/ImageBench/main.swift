import ContainerRuntime
import Foundation
import GridTypes

// Image unpack against GNU tar on the same archive, in one run.
// Usage: image-bench [SOURCE_DIR] [ITERATIONS] [WORK_DIR]
//        (root; defaults /usr/include, 7, $TMPDIR; a tmpfs WORK_DIR such as /dev/shm takes the disk out)
// Makes SOURCE_DIR.tar and .tar.gz (and .tar.zst when zstd is installed) with GNU tar, then, per
// archive and interleaved: `tar -xf` into an empty directory (the anchor), and ImageStore.pull from
// file:// (copy + BLAKE2b-256 + unpack with the safety checks + id shift; durable: false, as tar does
// not sync). Prints medians and the ratios pull / tar and unpack / tar, where "unpack" is the pull
// from its first unpack progress report on (after the copy and the digest check).
let arguments = CommandLine.arguments
let source = arguments.count > 1 ? arguments[1] : "/usr/include"
let iterations = arguments.count > 2 ? Int(arguments[2]) ?? 7 : 7
guard getuid() == 0 else {
    FileHandle.standardError.write(Data("image-bench: run as root (tar -x keeps owners, the store chowns)\n".utf8))
    exit(2)
}

@discardableResult
func shell(_ args: [String]) -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = args
    process.standardOutput = FileHandle.nullDevice
    do { try process.run() } catch { return 127 }
    process.waitUntilExit()
    return process.terminationStatus
}

/// When the pull's unpack phase began (its first unpack progress report).
final class UnpackStart: @unchecked Sendable {
    private let lock = NSLock()
    private var instant: ContinuousClock.Instant?
    func mark() { lock.withLock { if instant == nil { instant = .now } } }
    var value: ContinuousClock.Instant? { lock.withLock { instant } }
}

func milliseconds(_ d: Duration) -> Double { Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15 }
func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s.isEmpty ? 0 : s[s.count / 2] }

let work = (arguments.count > 3 ? arguments[3] + "/" : NSTemporaryDirectory()) + "image-bench-\(getpid())"
try? FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: work) }

var archives: [(name: String, path: String)] = [("tar", work + "/src.tar"), ("tar.gz", work + "/src.tar.gz")]
guard shell(["tar", "-C", source, "-cf", archives[0].path, "."]) == 0, shell(["tar", "-C", source, "-czf", archives[1].path, "."]) == 0 else {
    FileHandle.standardError.write(Data("image-bench: tar of \(source) failed\n".utf8))
    exit(1)
}
if shell(["sh", "-c", "command -v zstd"]) == 0, shell(["tar", "-C", source, "--zstd", "-cf", work + "/src.tar.zst", "."]) == 0 {
    archives.append(("tar.zst", work + "/src.tar.zst"))
}
let files = (FileManager.default.enumerator(atPath: source)?.allObjects.count) ?? 0
print("image-bench: \(source), \(files) entries, \(iterations) runs each, interleaved, in \(work); median ms")
print("archive   size MiB   tar -xf   pull    pull/tar   unpack  unpack/tar   pull durable")
let clock = ContinuousClock()
for archive in archives {
    let data = try Data(contentsOf: URL(fileURLWithPath: archive.path))  // also warms the page cache
    let digest = Hex.encode(Blake2b.hash256(Array(data)))
    var tarTimes: [Double] = [], pullTimes: [Double] = [], unpackTimes: [Double] = [], durableTimes: [Double] = []
    for i in 0..<iterations {
        let target = work + "/tar-\(i)"
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        tarTimes.append(milliseconds(clock.measure { shell(["tar", "-C", target, "-xf", archive.path]) }))
        try? FileManager.default.removeItem(atPath: target)

        for durable in [false, true] where durable == false || i < 3 {
            let store = try ImageStore(root: work + "/store-\(i)", options: .init(durable: durable))
            let unpackStart = UnpackStart()
            let start = clock.now
            _ = try await store.pull(url: "file://" + archive.path, digest: digest) { if $0.phase == .unpack { unpackStart.mark() } }
            let end = clock.now
            if durable {
                durableTimes.append(milliseconds(end - start))
            } else {
                pullTimes.append(milliseconds(end - start))
                unpackTimes.append(milliseconds(end - (unpackStart.value ?? start)))
            }
            try store.remove(digest: digest)
            try? FileManager.default.removeItem(atPath: work + "/store-\(i)")
        }
    }
    let tar = median(tarTimes), pull = median(pullTimes), unpack = median(unpackTimes)
    let name = archive.name.padding(toLength: 9, withPad: " ", startingAt: 0)
    print(name + String(format: " %8.1f %9.1f %7.1f %9.2fx %7.1f %9.2fx %12.1f", Double(data.count) / 1_048_576, tar, pull, pull / tar,
                        unpack, unpack / tar, median(durableTimes)))
}
