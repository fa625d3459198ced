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
}
