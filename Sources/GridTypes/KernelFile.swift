#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Reads files of procfs and sysfs whole. They report a size of 0 and hand out about a page per
/// read(2), so a reader that trusts the size or reads once (Foundation's String(contentsOfFile:)
/// does) sees only the first ~4 KiB: on a host with many mounts, /proc/self/mountinfo is longer,
/// and a mount point past that page looks unmounted.
public enum KernelFile {
    /// The file's text, read until end of file; nil when it cannot be opened or read, or is longer than `limit`.
    public static func read(_ path: String, limit: Int = 16 << 20) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
            if bytes.count > limit { return nil }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
