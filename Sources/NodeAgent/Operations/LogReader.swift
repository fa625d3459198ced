import Foundation

/// Reads a container's `stdout.log` and `stderr.log` (the runtime rotates them to `.1`, `.2`, ...):
/// the last N lines, and new lines as they are written. Files are opened with O_NOFOLLOW and must be
/// regular files: the log directory belongs to the container's (mapped) root user, so a symlink
/// there must not make the agent read a host file.
struct LogReader: Sendable {
    enum Selection: String, Sendable {
        case stdout, stderr, all
        var names: [String] {
            switch self {
            case .stdout: return ["stdout"]
            case .stderr: return ["stderr"]
            case .all: return ["stdout", "stderr"]
            }
        }
    }

    struct Line: Codable, Equatable, Sendable {
        var stream: String
        var line: String
    }

    static let maxTailLines = 100_000
    /// At most this much is read from the end of one file for a tail.
    static let maxTailBytes = 8 << 20
    /// Longer lines are split (a log line is not a trusted size).
    static let maxLineBytes = 16 << 10

    let directory: String
    let selection: Selection

    /// The last `count` lines of each selected stream, stdout's first (the two files carry no
    /// timestamps to interleave them by).
    func tail(_ count: Int) -> [Line] {
        guard count > 0 else { return [] }
        var out = [Line]()
        for stream in selection.names {
            var lines = [String]()
            // The current file, then rotated ones, until enough lines are found.
            for suffix in ["", ".1", ".2"] where lines.count < count {
                guard let bytes = Self.readEnd(directory + "/\(stream).log" + suffix, maxBytes: Self.maxTailBytes) else { break }
                lines = Self.splitLines(bytes, dropPartialFirst: bytes.count >= Self.maxTailBytes) + lines
            }
            out += lines.suffix(count).map { Line(stream: stream, line: $0) }
        }
        return out
    }

    /// Sends lines written from now on, polling every 200 ms, until `stop` says so or `emit` throws
    /// (the client went away). A rotated file is finished, then the new one followed from its start.
    func follow(until stop: @Sendable () async -> Bool, emit: ([Line]) async throws -> Void,
                heartbeat: () async throws -> Void) async throws {
        var cursors = selection.names.map { Cursor(path: directory + "/\($0).log", stream: $0) }
        for i in cursors.indices { cursors[i].openAtEnd() }
        defer { for cursor in cursors { cursor.close() } }
        var idle = Duration.zero
        while !Task.isCancelled, await !stop() {
            var batch = [Line]()
            for i in cursors.indices { batch += cursors[i].poll() }
            if batch.isEmpty {
                try await Task.sleep(for: .milliseconds(200))
                idle += .milliseconds(200)
                if idle >= .seconds(5) {
                    try await heartbeat()
                    idle = .zero
                }
            } else {
                try await emit(batch)
                idle = .zero
            }
        }
    }

    struct Cursor {
        let path: String
        let stream: String
        var fd: Int32 = -1
        var inode: ino_t = 0
        var partial: [UInt8] = []

        init(path: String, stream: String) {
            self.path = path
            self.stream = stream
        }

        mutating func openAtEnd() {
            guard let (fd, inode) = LogReader.openRegular(path) else { return }
            self.fd = fd
            self.inode = inode
            lseek(fd, 0, SEEK_END)
        }

        func close() { if fd >= 0 { Glibc.close(fd) } }

        /// New complete lines; reopens the path when the file was rotated (another inode) or appeared.
        mutating func poll() -> [Line] {
            var lines = readAvailable()
            var info = stat()
            let rotated = stat(path, &info) == 0 && (fd < 0 || info.st_ino != inode)
            if rotated, let (newFD, newInode) = LogReader.openRegular(path) {
                lines += readAvailable()
                if !partial.isEmpty { lines.append(Line(stream: stream, line: String(decoding: partial, as: UTF8.self))) }
                partial = []
                close()
                fd = newFD
                inode = newInode
                lines += readAvailable()
            }
            return lines
        }

        mutating func readAvailable() -> [Line] {
            guard fd >= 0 else { return [] }
            var out = [Line]()
            var buffer = [UInt8](repeating: 0, count: 64 << 10)
            // Bounded per poll so one chatty container cannot hold the stream.
            for _ in 0..<64 {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { break }
                partial += buffer[0..<n]
                while let newline = partial.firstIndex(of: UInt8(ascii: "\n")) {
                    out.append(Line(stream: stream, line: String(decoding: partial[..<newline], as: UTF8.self)))
                    partial.removeSubrange(...newline)
                }
                while partial.count >= LogReader.maxLineBytes {
                    out.append(Line(stream: stream, line: String(decoding: partial.prefix(LogReader.maxLineBytes), as: UTF8.self)))
                    partial.removeFirst(LogReader.maxLineBytes)
                }
            }
            return out
        }
    }

    static func openRegular(_ path: String) -> (Int32, ino_t)? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            Glibc.close(fd)
            return nil
        }
        return (fd, info.st_ino)
    }

    /// The last `maxBytes` of a regular file (all of it when smaller).
    static func readEnd(_ path: String, maxBytes: Int) -> [UInt8]? {
        guard let (fd, _) = openRegular(path) else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return nil }
        let size = Int(info.st_size)
        let start = max(0, size - maxBytes)
        var bytes = [UInt8](repeating: 0, count: size - start)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + offset, $0.count - offset, off_t(start + offset)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            offset += n
        }
        return Array(bytes[0..<offset])
    }

    static func splitLines(_ bytes: [UInt8], dropPartialFirst: Bool) -> [String] {
        var lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { slice -> [UInt8] in Array(slice) }
        if lines.last?.isEmpty == true { lines.removeLast() }
        if dropPartialFirst, !lines.isEmpty { lines.removeFirst() }
        return lines.flatMap { line -> [String] in
            stride(from: 0, to: max(line.count, 1), by: maxLineBytes).map { start in
                String(decoding: line[start..<min(line.count, start + maxLineBytes)], as: UTF8.self)
            }
        }
    }
}
