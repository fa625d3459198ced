import NIOCore

/// What a command answers: bytes now, bytes plus file ranges sent with sendfile, or an answer
/// that comes later (after fsync, or from the thread pool).
enum Reply: Sendable {
    case bytes(ByteBuffer)
    /// Buffers and file ranges, written in order. Each file part owns a duplicated descriptor that
    /// the connection closes once the write completes (or fails).
    case parts([ReplyPart])
    case later(EventLoopFuture<Reply>)
    /// Answer, then close the connection (framing lost, namespace removed under the session).
    case close(ByteBuffer)
}

enum ReplyPart: Sendable {
    case bytes(ByteBuffer)
    case file(NIOFileHandle, offset: Int, length: Int)
}
