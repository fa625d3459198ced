#if canImport(Glibc)
import Glibc
#endif

/// Thin wrappers over the file system calls the store needs, each turning -1 into a
/// `ShardServerError.io` that names the call and the path, and retrying EINTR.
enum FileIO {
    static func open(_ path: String, flags: Int32, mode: mode_t = 0o600) throws -> Int32 {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno != EINTR { throw ShardServerError.io(operation: "open", path: path, errno: errno) }
        }
    }

    /// Reads exactly `count` bytes at `offset` into `buffer`, or throws; a short file is EIO-like
    /// (reported as ENODATA) because the index promised those bytes.
    static func preadFully(fd: Int32, into buffer: UnsafeMutableRawBufferPointer, count: Int, offset: UInt64,
                           path: String) throws {
        guard let base = buffer.baseAddress else { return }
        var done = 0
        while done < count {
            let n = Glibc.pread(fd, base + done, count - done, off_t(offset) + off_t(done))
            if n > 0 { done += n; continue }
            if n == 0 { throw ShardServerError.io(operation: "pread (file shorter than its index says)", path: path, errno: ENODATA) }
            if errno == EINTR { continue }
            throw ShardServerError.io(operation: "pread", path: path, errno: errno)
        }
    }

    /// Reads up to `count` bytes at `offset`; returns how many were read (short only at EOF).
    static func pread(fd: Int32, into buffer: UnsafeMutableRawBufferPointer, count: Int, offset: UInt64,
                      path: String) throws -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        var done = 0
        while done < count {
            let n = Glibc.pread(fd, base + done, count - done, off_t(offset) + off_t(done))
            if n > 0 { done += n; continue }
            if n == 0 { break }
            if errno == EINTR { continue }
            throw ShardServerError.io(operation: "pread", path: path, errno: errno)
        }
        return done
    }

    /// Writes all of the iovecs at `offset`, looping over short writes.
    static func pwritevFully(fd: Int32, _ parts: [UnsafeRawBufferPointer], offset: UInt64,
                             path: String) throws {
        var written: UInt64 = 0
        let total = parts.reduce(0) { $0 + $1.count }
        while Int(written) < total {
            // Build the iovecs of what is still unwritten.
            var skip = Int(written)
            var vecs: [iovec] = []
            for part in parts {
                guard let base = part.baseAddress, part.count > 0 else { continue }
                if skip >= part.count { skip -= part.count; continue }
                vecs.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: base + skip), iov_len: part.count - skip))
                skip = 0
            }
            let n = vecs.withUnsafeBufferPointer { v in
                Glibc.pwritev(fd, v.baseAddress, Int32(v.count), off_t(offset + written))
            }
            if n > 0 { written += UInt64(n); continue }
            if n < 0 && errno == EINTR { continue }
            throw ShardServerError.io(operation: "pwrite", path: path, errno: n == 0 ? EIO : errno)
        }
    }

    static func fdatasync(fd: Int32, path: String) throws {
        while Glibc.fdatasync(fd) != 0 {
            if errno != EINTR { throw ShardServerError.io(operation: "fdatasync", path: path, errno: errno) }
        }
    }

    static func fsync(fd: Int32, path: String) throws {
        while Glibc.fsync(fd) != 0 {
            if errno != EINTR { throw ShardServerError.io(operation: "fsync", path: path, errno: errno) }
        }
    }

    static func ftruncate(fd: Int32, length: UInt64, path: String) throws {
        while Glibc.ftruncate(fd, off_t(length)) != 0 {
            if errno != EINTR { throw ShardServerError.io(operation: "ftruncate", path: path, errno: errno) }
        }
    }

    static func fileSize(fd: Int32, path: String) throws -> UInt64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ShardServerError.io(operation: "fstat", path: path, errno: errno) }
        return UInt64(st.st_size)
    }

    /// Makes a directory entry (a new segment, a rename) durable: fsync of the directory.
    static func syncDirectory(_ path: String) throws {
        let fd = try open(path, flags: O_RDONLY | O_DIRECTORY)
        defer { Glibc.close(fd) }
        try fsync(fd: fd, path: path)
    }

    static func makeDirectory(_ path: String) throws {
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw ShardServerError.io(operation: "mkdir", path: path, errno: errno)
        }
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    static func listDirectory(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw ShardServerError.io(operation: "opendir", path: path, errno: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync of the directory.
    static func writeAtomically(_ bytes: [UInt8], to path: String, directory: String) throws {
        try writeAtomically(to: path, directory: directory) { write in try write(bytes) }
    }

    /// Writes what `produce` hands to its `write` callback, in order, to `path` atomically: temp
    /// file, fsync, rename, fsync of the directory. For contents too large to build in memory.
    static func writeAtomically(to path: String, directory: String,
                                _ produce: (_ write: ([UInt8]) throws -> Void) throws -> Void) throws {
        let temp = path + ".tmp"
        let fd = try open(temp, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        do {
            var offset: UInt64 = 0
            try produce { bytes in
                try bytes.withUnsafeBytes { (raw) in
                    try pwritevFully(fd: fd, [raw], offset: offset, path: temp)
                }
                offset += UInt64(bytes.count)
            }
            try fsync(fd: fd, path: temp)
        } catch {
            Glibc.close(fd)
            unlink(temp)
            throw error
        }
        Glibc.close(fd)
        guard rename(temp, path) == 0 else { throw ShardServerError.io(operation: "rename", path: temp, errno: errno) }
        try syncDirectory(directory)
    }

    static func readWholeFile(_ path: String, limit: Int) throws -> [UInt8] {
        let fd = try open(path, flags: O_RDONLY)
        defer { Glibc.close(fd) }
        let size = Int(try fileSize(fd: fd, path: path))
        guard size <= limit else { throw ShardServerError.corrupt(path: path, offset: 0, reason: "file of \(size) bytes is larger than \(limit)") }
        var bytes = [UInt8](repeating: 0, count: size)
        let n = try bytes.withUnsafeMutableBytes { (raw) in
            try pread(fd: fd, into: raw, count: size, offset: 0, path: path)
        }
        return Array(bytes[0..<n])
    }

    /// Removes a directory tree (a deleted namespace). Best effort per file, errors reported.
    static func removeTree(_ path: String) throws {
        if isDirectory(path) {
            for name in try listDirectory(path) { try removeTree(path + "/" + name) }
            guard rmdir(path) == 0 else { throw ShardServerError.io(operation: "rmdir", path: path, errno: errno) }
        } else if unlink(path) != 0 && errno != ENOENT {
            throw ShardServerError.io(operation: "unlink", path: path, errno: errno)
        }
    }
}
