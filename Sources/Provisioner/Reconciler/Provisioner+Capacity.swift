import GridTypes

extension Provisioner {
    /// Capacity as admission sees it, without counting deployments (cheap enough for every status
    /// query): `statistics()` minus its counts.
    public func capacitySummary() async throws(ProvisionerError) -> (total: Resources, allocatable: Resources, used: Resources, free: Resources) {
        let used = try await store.reserved()
        let limit = capacityLimit()
        func minus(_ a: UInt64, _ b: UInt64) -> UInt64 { a > b ? a - b : 0 }
        return (configuration.total, limit, used, Resources(hru: minus(limit.hru, used.hru), sru: minus(limit.sru, used.sru),
                                                             cru: minus(limit.cru, used.cru), mru: minus(limit.mru, used.mru)))
    }
}
