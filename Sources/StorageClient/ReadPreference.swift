/// Which k shards of a block get asks for first (the others are asked only when these fail).
public enum ReadPreference: String, Sendable, CaseIterable {
    /// Data shards from nodes that answered about as fast as the fastest, then the rest by speed:
    /// a slow or far node is read only when needed.
    case fastestNodes = "fastest"
    /// Data shards first whatever their node's speed: no Reed-Solomon decode while they are all
    /// good (less CPU), and every data shard is read, so a missing or bad one is always reported.
    case dataColumns = "data"
}
