import GridTypes

/// The reporter's view of the kernel counters: public bytes (in + out) per contract, billed as NRU
/// with add_nru_reports. The counters restart from zero when a deployment's rules are made again
/// (after a reboot); the reporter counts a lower value as a restart, so nothing is billed twice.
extension NodeNetwork: NetworkCounterSource {
    public func publicTrafficBytes() async throws -> [UInt64: UInt64] {
        var bytes = [UInt64: UInt64]()
        for traffic in await contractTraffic() { bytes[traffic.contractID, default: 0] &+= traffic.publicBytes }
        return bytes
    }
}
