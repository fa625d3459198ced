import Foundation

/// Reads /proc, /sys and /etc below a root directory: "/" on a live host, a recorded tree in tests.
/// Symbolic links are resolved inside the root (an absolute target is taken relative to it, ".."
/// stops at it), so a recorded tree is read exactly like the live one and never escapes; on the
/// live root the kernel resolves them. Reads are bounded; a failure is a value, with the reason kept
/// for the scan's warnings.
public struct RootedFiles: Sendable {
    public let root: String
    static let maxSymlinks = 40
    public static let defaultReadLimit = 64 * 1024
    static let maxDirectoryEntries = 4096

    public init(root: String = "/") {
        var trimmed = root
        while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed.removeLast() }
        self.root = trimmed
    }

    public var isLiveRoot: Bool { root == "/" }

    /// The absolute path of a root-relative path, without resolving anything.
    public func absolute(_ path: String) -> String {
        let relative = path.drop(while: { $0 == "/" })
        return root == "/" ? "/" + relative : root + "/" + relative
    }

    /// `path` (relative to the root, or absolute meaning "inside the root") with every symbolic
    /// link resolved inside the root; nil when a link loop or an unreadable link is met. Missing
    /// components are kept as they are.
    public func resolve(_ path: String) -> String? {
        if isLiveRoot, let real = realpath(path, nil) {
            // On the live root the kernel resolves links itself, in one call.
            defer { free(real) }
            return String(cString: real)
        }
        var resolved: [Substring] = []
        var pending = ArraySlice(path.split(separator: "/"))
        var links = 0
        while let component = pending.first {
            pending = pending.dropFirst()
            if component == "." { continue }
            if component == ".." {
                if !resolved.isEmpty { resolved.removeLast() }
                continue
            }
            let candidate = resolved + [component]
            let full = absolute(candidate.joined(separator: "/"))
            if let target = Self.readLink(full) {
                links += 1
                guard links <= Self.maxSymlinks else { return nil }
                if target.hasPrefix("/") { resolved = [] }
                pending = ArraySlice(target.split(separator: "/")) + pending
            } else {
                resolved = candidate
            }
        }
        return "/" + resolved.joined(separator: "/")
    }

    static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public enum ReadFailure: Error, Equatable, Sendable {
        case errno(Int32)
        case tooLarge(limit: Int)
        case notText
    }

    /// Reads at most `limit` bytes of a file (resolving links inside the root).
    public func read(_ path: String, limit: Int = RootedFiles.defaultReadLimit) -> Result<String, ReadFailure> {
        let fd: Int32
        if isLiveRoot {
            fd = open(absolute(path), O_RDONLY | O_CLOEXEC)
        } else {
            guard let resolved = resolve(path) else { return .failure(.errno(ELOOP)) }
            fd = open(absolute(resolved), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        }
        guard fd >= 0 else { return .failure(.errno(errno)) }
        defer { close(fd) }
        // Grown as needed: most files here are a few bytes, a few (mountinfo, cpuinfo) kilobytes.
        var bytes = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: min(limit + 1, 16 * 1024))
        while bytes.count <= limit {
            let wanted = min(chunk.count, limit + 1 - bytes.count)
            let n = chunk.withUnsafeMutableBytes { buffer -> Int in
                guard let base = buffer.baseAddress else { return 0 }
                return Glibc.read(fd, base, wanted)
            }
            if n < 0 {
                if errno == EINTR { continue }
                return .failure(.errno(errno))
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        let total = bytes.count
        guard total <= limit else { return .failure(.tooLarge(limit: limit)) }
        guard let text = String(validating: bytes[0..<total], as: UTF8.self) else { return .failure(.notText) }
        return .success(text)
    }

    /// The file's first line, trimmed; nil when unreadable or empty.
    public func line(_ path: String) -> String? {
        guard case .success(let text) = read(path, limit: 4096) else { return nil }
        let first = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let trimmed = first.trimmingCharacters(in: .whitespaces)
        return trimmed.isEmpty ? nil : trimmed
    }

    public func exists(_ path: String) -> Bool {
        if isLiveRoot { return access(absolute(path), F_OK) == 0 }
        guard let resolved = resolve(path) else { return false }
        return access(absolute(resolved), F_OK) == 0
    }

    /// Entry names of a directory, sorted; nil when it cannot be listed. At most 4096 entries.
    public func list(_ path: String) -> [String]? {
        guard let resolved = isLiveRoot ? absolute(path) : resolve(path), let dir = opendir(absolute(resolved)) else { return nil }
        defer { closedir(dir) }
        var names = [String]()
        while names.count < Self.maxDirectoryEntries, let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }
}

extension RootedFiles.ReadFailure: CustomStringConvertible {
    public var description: String {
        switch self {
        case .errno(let code): return "\(String(cString: strerror(code))) (errno \(code))"
        case .tooLarge(let limit): return "larger than \(limit) bytes"
        case .notText: return "not UTF-8 text"
        }
    }
}
