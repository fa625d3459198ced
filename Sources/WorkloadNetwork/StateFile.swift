import Foundation

/// Network state on disk: written whole or not at all (a temporary file, fsync, rename, fsync of
/// the directory), readable by root only.
enum StateFile {
    static func write(_ data: Data, to path: String) throws(NetworkError) {
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: 0o600]) else {
            throw .io(operation: "write", path: temporary, errno: errno)
        }
        let fd = open(temporary, O_RDONLY)
        guard fd >= 0 else { throw .io(operation: "open", path: temporary, errno: errno) }
        let synced = fsync(fd) == 0
        let syncErrno = errno
        close(fd)
        guard synced else { throw .io(operation: "fsync", path: temporary, errno: syncErrno) }
        guard rename(temporary, path) == 0 else { throw .io(operation: "rename", path: temporary, errno: errno) }
        syncDirectory(of: path)
    }

    /// Makes a rename or unlink in `path`'s directory durable.
    static func syncDirectory(of path: String) {
        let directory = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY)
        if directory >= 0 { fsync(directory); close(directory) }
    }
}
