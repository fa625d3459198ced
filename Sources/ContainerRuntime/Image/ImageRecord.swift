import Foundation

/// What the store keeps about one unpacked image, in `<store>/<digest>/image.json`. Written last
/// (temp file, fsync, rename): an image directory without it is an interrupted pull.
public struct ImageRecord: Codable, Sendable, Equatable {
    public enum Format: String, Codable, Sendable {
        /// A tar (plain, gzip or zstd) of a root filesystem.
        case rootfsTar = "rootfs-tar"
        /// An OCI image layout in a tar: index.json -> manifest -> layers.
        case ociLayout = "oci-layout"
    }

    /// BLAKE2b-256 of the archive, hex.
    public var digest: String
    /// Where it came from, without credentials or query string.
    public var url: String
    public var format: Format
    public var archiveBytes: UInt64
    /// Bytes of regular-file data in the rootfs.
    public var unpackedBytes: UInt64
    public var entries: Int
    public var createdAt: Date
    /// The OCI image config's runtime defaults, when the image is an OCI layout that has them.
    public var config: ImageConfig?
    /// Entries skipped or changed while unpacking (ids out of range, sockets, ...), capped.
    public var warnings: [String]
    /// Absolute path of the read-only unpacked rootfs.
    public var rootfs: String
}

/// The parts of an OCI image config (`config` object) a container needs to start the image.
public struct ImageConfig: Codable, Sendable, Equatable {
    public var entrypoint: [String]?
    public var cmd: [String]?
    public var env: [String]?
    public var workingDir: String?
    public var user: String?

    public init(entrypoint: [String]? = nil, cmd: [String]? = nil, env: [String]? = nil, workingDir: String? = nil, user: String? = nil) {
        self.entrypoint = entrypoint
        self.cmd = cmd
        self.env = env
        self.workingDir = workingDir
        self.user = user
    }
}

/// Progress of a pull, reported as bytes of the archive: fetched, then unpacked.
public struct ImagePullProgress: Sendable, Equatable {
    public enum Phase: String, Sendable {
        case download, unpack
    }
    public var phase: Phase
    public var bytesDone: UInt64
    /// Nil while the size is unknown (an HTTP reply without Content-Length).
    public var bytesTotal: UInt64?
}

/// Bounds on what a pull accepts. Images come from strangers: every size is capped.
public struct ImageLimits: Sendable, Equatable {
    /// Size of the archive as fetched.
    public var maxArchiveBytes: UInt64
    /// Regular-file bytes written when unpacking (each pass: the layout, then the layers).
    public var maxUnpackedBytes: UInt64
    /// Archive entries, all layers together.
    public var maxEntries: Int
    /// Directory depth of an entry's path.
    public var maxDepth: Int
    /// Layers of an OCI manifest.
    public var maxLayers: Int

    public init(maxArchiveBytes: UInt64 = 8 << 30, maxUnpackedBytes: UInt64 = 32 << 30, maxEntries: Int = 2_000_000,
                maxDepth: Int = 256, maxLayers: Int = 128) {
        self.maxArchiveBytes = maxArchiveBytes
        self.maxUnpackedBytes = maxUnpackedBytes
        self.maxEntries = maxEntries
        self.maxDepth = maxDepth
        self.maxLayers = maxLayers
    }
}

/// A container's root filesystem made from an image.
public struct ContainerRootfs: Sendable, Equatable {
    public enum Mode: String, Codable, Sendable {
        /// overlayfs: the image read-only below, the container's writes in its own upper directory.
        case overlay
        /// A private copy (reflinked where the filesystem can), bind-mounted nosuid,nodev.
        case copy
    }
    /// Absolute path of the mounted rootfs (give it to the container spec's root.path).
    public var path: String
    public var mode: Mode
    /// Why overlayfs was not used, when it was not.
    public var fallbackReason: String?
}

/// URLs in records and messages: no user:password@, no query (presigned URLs carry tokens there).
enum ImageURL {
    static func redacted(_ text: String) -> String {
        guard var components = URLComponents(string: text) else { return String(text.prefix(200)) }
        components.user = nil
        components.password = nil
        if components.query != nil { components.query = "..." }
        components.fragment = nil
        return components.string ?? String(text.prefix(200))
    }
}
