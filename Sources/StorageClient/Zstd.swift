import CZstd
import Synchronization

/// One zstd compression context; contexts are expensive to create (they allocate the match
/// tables), so blocks borrow them from a pool.
final class ZstdCompressor: @unchecked Sendable {
    // @unchecked: the context is used by one borrower at a time (the pool hands it out exclusively).
    private let context: OpaquePointer

    init() throws {
        guard let context = ZSTD_createCCtx() else { throw StorageError.compression(reason: "ZSTD_createCCtx failed (out of memory?)") }
        self.context = context
    }

    deinit { ZSTD_freeCCtx(context) }

    static func bound(_ length: Int) -> Int { ZSTD_compressBound(length) }

    /// The library's version: another version may compress the same block to other bytes.
    static var libraryVersion: UInt32 { ZSTD_versionNumber() }

    /// Compresses `source` into `destination`; returns the compressed length.
    func compress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer, level: Int32) throws -> Int {
        let n = ZSTD_compressCCtx(context, destination.baseAddress, destination.count, source.baseAddress, source.count, level)
        if ZSTD_isError(n) != 0 { throw StorageError.compression(reason: String(cString: ZSTD_getErrorName(n))) }
        return n
    }
}

final class ZstdDecompressor: @unchecked Sendable {
    private let context: OpaquePointer

    init() throws {
        guard let context = ZSTD_createDCtx() else { throw StorageError.compression(reason: "ZSTD_createDCtx failed (out of memory?)") }
        self.context = context
    }

    deinit { ZSTD_freeDCtx(context) }

    /// Decompresses one frame that must be exactly `destination.count` bytes long.
    func decompress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) throws {
        let n = ZSTD_decompressDCtx(context, destination.baseAddress, destination.count, source.baseAddress, source.count)
        if ZSTD_isError(n) != 0 { throw StorageError.compression(reason: String(cString: ZSTD_getErrorName(n))) }
        guard n == destination.count else {
            throw StorageError.compression(reason: "a block decompressed to \(n) bytes, expected \(destination.count)")
        }
    }
}

/// A few reusable objects handed out one borrower at a time.
final class Pool<Item: Sendable>: Sendable {
    private let items = Mutex<[Item]>([])
    private let make: @Sendable () throws -> Item
    private let keep: Int

    init(keep: Int = 8, make: @escaping @Sendable () throws -> Item) {
        self.make = make
        self.keep = keep
    }

    func with<R>(_ body: (Item) throws -> R) throws -> R {
        let item = try take()
        defer { give(item) }
        return try body(item)
    }

    /// An item for the caller alone until it is given back (for use across suspension points).
    func take() throws -> Item { try items.withLock { $0.popLast() } ?? make() }

    /// Returns an item taken with `take`; beyond `keep` items it is dropped.
    func give(_ item: Item) { items.withLock { if $0.count < keep { $0.append(item) } } }
}
