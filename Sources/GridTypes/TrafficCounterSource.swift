/// Bytes a contract's workloads moved, cumulative since its network was made. Public: to and from
/// outside the deployment's private network (billed as NRU); private: between its own containers.
public struct ContractTraffic: Equatable, Sendable, Codable {
    public var contractID: UInt64
    public var publicIn: UInt64
    public var publicOut: UInt64
    public var privateBytes: UInt64

    public init(contractID: UInt64, publicIn: UInt64, publicOut: UInt64, privateBytes: UInt64) {
        self.contractID = contractID
        self.publicIn = publicIn
        self.publicOut = publicOut
        self.privateBytes = privateBytes
    }

    public var publicBytes: UInt64 { publicIn &+ publicOut }
}

/// Where the reporter (add_nru_reports), status and metrics read traffic: kernel counters.
public protocol TrafficCounterSource: Sendable {
    func contractTraffic() async -> [ContractTraffic]
}
