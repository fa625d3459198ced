import Synchronization

/// Runs `operation` and returns its result, or nil once `limit` passed, whether or not the
/// operation honours cancellation: a status query must answer even when the chain hangs, and the
/// watchdog must notice a hung actor instead of hanging with it. The abandoned operation is cancelled
/// and left to finish on its own.
func withDeadline<T: Sendable>(_ limit: Duration, _ operation: @escaping @Sendable () async -> T?) async -> T? {
    let once = Once()
    return await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
        let work = Task {
            let value = await operation()
            if once.claim() { continuation.resume(returning: value) }
        }
        Task {
            try? await Task.sleep(for: limit)
            if once.claim() {
                work.cancel()
                continuation.resume(returning: nil)
            }
        }
    }
}

/// True for the first caller of `claim()` only.
final class Once: Sendable {
    private let claimed = Atomic<Bool>(false)

    func claim() -> Bool {
        claimed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
    }
}
