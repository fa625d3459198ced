import CArchive
@testable import ContainerRuntime
import Foundation
import GridTypes

/// Tar archives written entry by entry with libarchive, so tests can make the hostile ones no
/// tar tool would (`../evil`, absolute names, links out of the tree, device nodes).
struct TarEntry {
    enum Kind {
        case file(Data)
        case directory
        case symlink(String)
        case hardlink(String)
        case characterDevice(major: UInt32, minor: UInt32)
        case blockDevice(major: UInt32, minor: UInt32)
        case fifo
    }
    var path: String
    var kind: Kind
    var mode: UInt32
    var uid: Int64 = 0
    var gid: Int64 = 0

    static func file(_ path: String, _ text: String, mode: UInt32 = 0o644, uid: Int64 = 0) -> TarEntry {
        TarEntry(path: path, kind: .file(Data(text.utf8)), mode: mode, uid: uid, gid: uid)
    }
    static func dir(_ path: String, mode: UInt32 = 0o755) -> TarEntry { TarEntry(path: path, kind: .directory, mode: mode) }
    static func symlink(_ path: String, to target: String) -> TarEntry { TarEntry(path: path, kind: .symlink(target), mode: 0o777) }
    static func hardlink(_ path: String, to target: String) -> TarEntry { TarEntry(path: path, kind: .hardlink(target), mode: 0o644) }
}

enum TestArchive {
    enum Compression: String, CaseIterable { case none, gzip, zstd }

    struct Failure: Error, CustomStringConvertible { let description: String }

    static func write(_ entries: [TarEntry], to path: String, compression: Compression = .none) throws {
        guard let a = archive_write_new() else { throw Failure(description: "archive_write_new") }
        defer { archive_write_free(a) }
        archive_write_set_format_pax_restricted(a)
        switch compression {
        case .none: break
        case .gzip: archive_write_add_filter_gzip(a)
        case .zstd: archive_write_add_filter_zstd(a)
        }
        guard archive_write_open_filename(a, path) == ARCHIVE_OK else { throw Failure(description: "open \(path): \(error(a))") }
        for e in entries {
            guard let entry = archive_entry_new() else { throw Failure(description: "archive_entry_new") }
            defer { archive_entry_free(entry) }
            archive_entry_set_pathname(entry, e.path)
            archive_entry_set_perm(entry, mode_t(e.mode))
            archive_entry_set_uid(entry, e.uid)
            archive_entry_set_gid(entry, e.gid)
            archive_entry_set_mtime(entry, 1_700_000_000, 0)
            var data = Data()
            switch e.kind {
            case .file(let bytes):
                archive_entry_set_filetype(entry, UInt32(Glibc.S_IFREG))
                archive_entry_set_size(entry, Int64(bytes.count))
                data = bytes
            case .directory:
                archive_entry_set_filetype(entry, UInt32(Glibc.S_IFDIR))
            case .symlink(let target):
                archive_entry_set_filetype(entry, UInt32(Glibc.S_IFLNK))
                archive_entry_set_symlink(entry, target)
            case .hardlink(let target):
                archive_entry_set_filetype(entry, UInt32(Glibc.S_IFREG))
                archive_entry_set_hardlink(entry, target)
                archive_entry_set_size(entry, 0)
            case .characterDevice(let major, let minor):
                archive_entry_set_filetype(entry, UInt32(Glibc.S_IFCHR))
                archive_entry_set_rdevmajor(entry, dev_t(major))
                archive_entry_set_rdevminor(entry, dev_t(minor))
            case .blockDevice(let major, let minor):
                archive_entry_set_filetype(entry, UInt32(Glibc.S_IFBLK))
                archive_entry_set_rdevmajor(entry, dev_t(major))
                archive_entry_set_rdevminor(entry, dev_t(minor))
            case .fifo:
                archive_entry_set_filetype(entry, UInt32(Glibc.S_IFIFO))
            }
            guard archive_write_header(a, entry) == ARCHIVE_OK else { throw Failure(description: "header \(e.path): \(error(a))") }
            if !data.isEmpty {
                let n = data.withUnsafeBytes { archive_write_data(a, $0.baseAddress, $0.count) }
                guard n == data.count else { throw Failure(description: "data \(e.path): \(error(a))") }
            }
        }
        guard archive_write_close(a) == ARCHIVE_OK else { throw Failure(description: "close: \(error(a))") }
    }

    private static func error(_ a: OpaquePointer) -> String { archive_error_string(a).map { String(cString: $0) } ?? "?" }

    /// A busybox-static root filesystem as archive entries.
    static func busyboxRootfs(extra: [TarEntry] = []) throws -> [TarEntry] {
        let busybox = try Data(contentsOf: URL(fileURLWithPath: "/bin/busybox"))
        var entries: [TarEntry] = [.dir("./")]
        for dir in ["bin", "proc", "dev", "sys", "etc", "root"] { entries.append(.dir(dir)) }
        entries.append(.dir("tmp", mode: 0o1777))
        entries.append(TarEntry(path: "bin/busybox", kind: .file(busybox), mode: 0o755))
        for applet in TestRootfs.applets { entries.append(.symlink("bin/" + applet, to: "busybox")) }
        entries.append(.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"))
        return entries + extra
    }

    /// BLAKE2b-256 of a file, hex: the digest an image is named by.
    static func digest(_ path: String) throws -> String {
        Hex.encode(Blake2b.hash256(Array(try Data(contentsOf: URL(fileURLWithPath: path)))))
    }

    static func sha256(_ data: Data) -> String {
        let hasher = SHA256Stream()
        data.withUnsafeBytes { hasher.update($0) }
        return hasher.finish()
    }
}
