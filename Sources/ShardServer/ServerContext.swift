import Logging
import NIOCore
import NIOPosix

/// What every connection shares: the store, the fsync worker, counters and settings.
final class ServerContext: Sendable {
    let config: ShardServerConfig
    let store: ShardStore
    let committer: GroupCommitter
    let threadPool: NIOThreadPool
    let counters: Counters
    let logger: Logger
    let bootTime: UInt64
    let valueCache: ValueCache

    init(config: ShardServerConfig, store: ShardStore, committer: GroupCommitter, threadPool: NIOThreadPool,
         counters: Counters, logger: Logger, bootTime: UInt64) {
        self.config = config
        self.store = store
        self.committer = committer
        self.threadPool = threadPool
        self.counters = counters
        self.logger = logger
        self.bootTime = bootTime
        self.valueCache = ValueCache(capacity: config.valueCacheBytes, maxValueLength: min(config.sendfileThreshold, ValueCache.maxCachedValue))
    }
}
