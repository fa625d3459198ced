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

    /// Retired deployments the reporter has taken up: a total it now holds is marked billed (and
    /// left out of readings), and a billed one it no longer holds is forgotten.
    public func countersReported(_ counters: [UInt64: UInt64]) async {
        var next = retired
        for (contract, entry) in retired.entries where records[contract] == nil {
            if !entry.billed, let held = counters[contract], held >= entry.total.publicBytes {
                next.entries[contract]?.billed = true
            } else if entry.billed, counters[contract] == nil {
                next.entries[contract] = nil
            }
        }
        guard next != retired else { return }
        // Kept as they were when the file cannot be written: reported again as nothing new.
        guard (try? next.save(directory: configuration.stateDirectory)) != nil else { return }
        retired = next
        lastTraffic = nil
    }
}
