import CArchive
import Foundation

/// libarchive as a parser only: tar (ustar, pax, GNU) with no compression, gzip or zstd. Other
/// formats and filters are not enabled, so their parsers never see a stranger's bytes. Nothing is
/// written by libarchive: entries go to disk through `SafeExtractor`.
final class ArchiveReader {
    private let archive: OpaquePointer
    private let fd: Int32
    let path: String
    let size: UInt64

    init(path: String) throws(ContainerRuntimeError) {
        self.path = path
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw .io(operation: "open", path: path, errno: errno) }
        var info = stat()
        fstat(fd, &info)
        size = UInt64(max(0, info.st_size))
        guard let a = archive_read_new() else {
            close(fd)
            throw .io(operation: "archive_read_new for", path: path, errno: ENOMEM)
        }
        archive = a
        archive_read_support_filter_gzip(a)
        archive_read_support_filter_zstd(a)
        archive_read_support_format_tar(a)
        guard archive_read_open_fd(a, fd, 1 << 16) == ARCHIVE_OK else {
            // Every property is set: deinit frees the archive and closes the file.
            let message = Self.errorString(a)
            throw .imageFormat("\((path as NSString).lastPathComponent) is not a tar (plain, gzip or zstd): \(message)")
        }
    }

    deinit {
        archive_read_free(archive)
        close(fd)
    }

    static func errorString(_ a: OpaquePointer) -> String {
        archive_error_string(a).map { String(cString: $0) } ?? "unknown libarchive error"
    }

    /// Compressed bytes consumed so far: progress against `size`.
    var bytesRead: UInt64 { UInt64(max(0, archive_filter_bytes(archive, -1))) }

    /// The next entry's header, or nil at the end of the archive.
    func next() throws(ContainerRuntimeError) -> ArchiveEntry? {
        var entry: OpaquePointer?
        let rc = archive_read_next_header(archive, &entry)
        if rc == ARCHIVE_EOF { return nil }
        guard rc == ARCHIVE_OK || rc == ARCHIVE_WARN, let entry else {
            throw .imageFormat("\((path as NSString).lastPathComponent): \(Self.errorString(archive))")
        }
        return try ArchiveEntry(entry)
    }

    /// Calls `body` with each data block of the current entry and its offset in the file.
    func readData(_ body: (UnsafeRawBufferPointer, Int64) throws(ContainerRuntimeError) -> Void) throws(ContainerRuntimeError) {
        while true {
            var buffer: UnsafeRawPointer?
            var length = 0
            var offset: Int64 = 0
            let rc = archive_read_data_block(archive, &buffer, &length, &offset)
            if rc == ARCHIVE_EOF { return }
            guard rc == ARCHIVE_OK || rc == ARCHIVE_WARN else {
                throw .imageFormat("\((path as NSString).lastPathComponent): reading entry data: \(Self.errorString(archive))")
            }
            if length > 0, let buffer { try body(UnsafeRawBufferPointer(start: buffer, count: length), offset) }
        }
    }
}

/// One header, copied out of libarchive's entry (which the next read overwrites).
struct ArchiveEntry {
    enum Kind: Equatable {
        case file, directory, symlink(String), hardlink(String), fifo, characterDevice, blockDevice, socket, unknown(UInt32)
    }
    let path: String
    let kind: Kind
    let mode: UInt32
    let uid: Int64
    let gid: Int64
    let size: Int64
    let mtime: timespec?

    init(_ entry: OpaquePointer) throws(ContainerRuntimeError) {
        guard let raw = archive_entry_pathname_utf8(entry) ?? archive_entry_pathname(entry) else {
            throw .imageEntryRefused(entry: "?", reason: "its name is not valid UTF-8")
        }
        guard let path = String(validatingCString: raw) else {
            throw .imageEntryRefused(entry: String(cString: raw), reason: "its name is not valid UTF-8")
        }
        self.path = path
        mode = UInt32(archive_entry_perm(entry))
        uid = archive_entry_uid(entry)
        gid = archive_entry_gid(entry)
        size = archive_entry_size_is_set(entry) != 0 ? archive_entry_size(entry) : 0
        mtime = archive_entry_mtime_is_set(entry) != 0
            ? timespec(tv_sec: Int(archive_entry_mtime(entry)), tv_nsec: Int(archive_entry_mtime_nsec(entry))) : nil
        if let target = archive_entry_hardlink_utf8(entry) ?? archive_entry_hardlink(entry) {
            guard let text = String(validatingCString: target) else {
                throw .imageEntryRefused(entry: path, reason: "its hardlink target is not valid UTF-8")
            }
            kind = .hardlink(text)
            return
        }
        let type = UInt32(archive_entry_filetype(entry))
        switch type {
        case UInt32(Glibc.S_IFREG): kind = .file
        case UInt32(Glibc.S_IFDIR): kind = .directory
        case UInt32(Glibc.S_IFLNK):
            guard let target = archive_entry_symlink_utf8(entry) ?? archive_entry_symlink(entry),
                  let text = String(validatingCString: target) else {
                throw .imageEntryRefused(entry: path, reason: "its symlink target is missing or not valid UTF-8")
            }
            kind = .symlink(text)
        case UInt32(Glibc.S_IFIFO): kind = .fifo
        case UInt32(Glibc.S_IFCHR): kind = .characterDevice
        case UInt32(Glibc.S_IFBLK): kind = .blockDevice
        case UInt32(Glibc.S_IFSOCK): kind = .socket
        default: kind = .unknown(type)
        }
    }
}
