import GridTypes

/// The reporter's view of the kernel counters: public bytes (in + out) per contract, billed as NRU
/// with add_nru_reports. The totals never go down (see `NodeNetwork.counted`), and a failed read
/// throws, so the reporter skips that report instead of losing track of some contracts.
extension NodeNetwork: NetworkCounterSource {
    public func publicTrafficBytes() async throws -> [UInt64: UInt64] {
        var bytes = [UInt64: UInt64]()
        for traffic in try readTraffic(maxAge: .zero) { bytes[traffic.contractID, default: 0] &+= traffic.publicBytes }
        return bytes
    }

    /// Forgets retired deployments whose final bytes the reporter has taken up: their totals are
    /// at most what it holds now, and their networks can no longer count anything.
    public func countersReported(_ counters: [UInt64: UInt64]) async {
        let billed = retired.entries.filter { contract, entry in
            records[contract] == nil && counters[contract].map { $0 >= entry.total.publicBytes } == true
        }
        guard !billed.isEmpty else { return }
        var kept = retired
        for contract in billed.keys { kept.entries[contract] = nil }
        // Kept when the file cannot be written: billed again as nothing new, and tried next time.
        guard (try? kept.save(directory: configuration.stateDirectory)) != nil else { return }
        retired = kept
        lastTraffic = nil
    }
}
