/// A namespace's properties, as NSSET and the local admin API change them. Persisted in the
/// namespace's directory (mode 0600: it holds the password, which 0-db's SECURE digests need in
/// clear).
public struct NamespaceSettings: Codable, Sendable, Equatable {
    public enum Mode: String, Codable, Sendable, CaseIterable {
        /// Keys chosen by the client.
        case user
        /// `SET "" value` appends and answers the new key: an 8-byte little-endian sequence id.
        case seq
    }

    /// Largest total of live payload bytes; 0 means no limit.
    public var maxSize: UInt64
    /// nil: no password. With a password, SELECT needs it for writes (and for reads unless public).
    public var password: String?
    /// Readable without the password (writes always need it).
    public var isPublic: Bool
    public var mode: Mode
    /// Write once, read many: existing keys can be neither overwritten nor deleted.
    public var worm: Bool
    /// Read-only for everyone until unlocked.
    public var locked: Bool
    /// Neither readable nor writable until unfrozen.
    public var frozen: Bool

    public init(maxSize: UInt64 = 0, password: String? = nil, isPublic: Bool = true, mode: Mode = .user,
                worm: Bool = false, locked: Bool = false, frozen: Bool = false) {
        self.maxSize = maxSize
        self.password = password
        self.isPublic = isPublic
        self.mode = mode
        self.worm = worm
        self.locked = locked
        self.frozen = frozen
    }
}

/// What NSINFO and the admin API report about a namespace.
public struct NamespaceInfo: Sendable, Equatable {
    public var name: String
    public var settings: NamespaceSettings
    public var entries: Int
    /// Live payload bytes (what maxsize limits).
    public var dataSize: UInt64
    /// Bytes in segment files, live or not (what compaction reclaims from).
    public var diskSize: UInt64
    public var segments: Int
    public var corruptEntries: Int
}
