import NIOCore
import NIOPosix
import Synchronization

/// fsync=always without one fsync per write: writers queue a promise, one worker thread runs
/// fdatasync for everything queued so far and completes those promises, and whatever arrived
/// meanwhile rides the next fdatasync. Replies wait on the promise, so a client only hears "stored"
/// once its bytes are on disk.
final class GroupCommitter: Sendable {
    private struct Waiter {
        let segment: Segment
        let promise: EventLoopPromise<Void>
    }

    private struct Queue {
        var waiters: [Waiter] = []
        var running = false
    }

    private let queue = Mutex(Queue())
    private let threadPool: NIOThreadPool

    init(threadPool: NIOThreadPool) {
        self.threadPool = threadPool
    }

    func sync(_ point: DurabilityPoint, on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        let start = queue.withLock { queue -> Bool in
            queue.waiters.append(Waiter(segment: point.segment, promise: promise))
            if queue.running { return false }
            queue.running = true
            return true
        }
        if start {
            threadPool.submit { [self] state in
                guard case .active = state else {
                    self.failAll(ShardServerError.notRunning)
                    return
                }
                self.drain()
            }
        }
        return promise.futureResult
    }

    private func drain() {
        while true {
            let batch = queue.withLock { queue -> [Waiter] in
                if queue.waiters.isEmpty {
                    queue.running = false
                    return []
                }
                defer { queue.waiters.removeAll(keepingCapacity: true) }
                return queue.waiters
            }
            if batch.isEmpty { return }
            var results: [ObjectIdentifier: Result<Void, any Error>] = [:]
            for waiter in batch {
                let id = ObjectIdentifier(waiter.segment)
                let result = results[id] ?? Result { try FileIO.fdatasync(fd: waiter.segment.fd, path: waiter.segment.path) }
                results[id] = result
                waiter.promise.completeWith(result)
            }
        }
    }

    private func failAll(_ error: any Error) {
        let batch = queue.withLock { queue -> [Waiter] in
            defer { queue.waiters = []; queue.running = false }
            return queue.waiters
        }
        for waiter in batch { waiter.promise.fail(error) }
    }
}
