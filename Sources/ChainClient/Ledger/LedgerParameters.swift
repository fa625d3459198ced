import GridTypes

/// Rules of one ledger file, fixed when the file is created and stored in it, so every process
/// sharing the file bills and expires contracts the same way.
public struct LedgerParameters: Codable, Equatable, Sendable {
    /// Target interval between blocks.
    public var blockTimeMilliseconds: Int
    /// Contracts are billed every this many blocks (TFChain: 600 blocks, one hour at 6 s).
    public var billingPeriodBlocks: UInt64
    /// Blocks a contract may stay in GracePeriod before it is Deleted(OutOfFunds) (TFChain: 14 days).
    public var gracePeriodBlocks: UInt64
    /// Prices in balance units (1e-7 TFT) per hour of one cost unit / public IP.
    public var cuPricePerHour: UInt64
    public var suPricePerHour: UInt64
    public var ipPricePerHour: UInt64

    /// Billing counts each block as this many seconds of use, whatever the real block time, so a
    /// fast test ledger bills exactly like a 6 s chain (600 blocks = 1 hour).
    public static let billedSecondsPerBlock: UInt64 = 6

    public init(blockTimeMilliseconds: Int = 6000, billingPeriodBlocks: UInt64 = 600, gracePeriodBlocks: UInt64 = 201_600,
                cuPricePerHour: UInt64 = 1_000_000, suPricePerHour: UInt64 = 500_000, ipPricePerHour: UInt64 = 250_000) {
        self.blockTimeMilliseconds = blockTimeMilliseconds
        self.billingPeriodBlocks = billingPeriodBlocks
        self.gracePeriodBlocks = gracePeriodBlocks
        self.cuPricePerHour = cuPricePerHour
        self.suPricePerHour = suPricePerHour
        self.ipPricePerHour = ipPricePerHour
    }

    /// What a contract using `used` with `publicIPs` costs for `blocks` blocks, in balance units,
    /// rounded down: (CU * cu_price + SU * su_price + ips * ip_price) * hours.
    public func cost(used: Resources, publicIPs: UInt32, blocks: UInt64) -> UInt64 {
        let hours = Double(blocks * Self.billedSecondsPerBlock) / 3600
        let perHour = CostUnits.cu(used) * Double(cuPricePerHour) + CostUnits.su(used) * Double(suPricePerHour)
            + Double(publicIPs) * Double(ipPricePerHour)
        let amount = (perHour * hours).rounded(.down)
        return amount >= Double(Int64.max) ? UInt64(Int64.max) : UInt64(amount)
    }
}

/// Balance units: 1 TFT = 10^7 units, as on TFChain.
public enum TFT {
    public static let unitsPerTFT: UInt64 = 10_000_000

    public static func format(_ units: UInt64) -> String {
        let whole = units / unitsPerTFT
        let fraction = units % unitsPerTFT
        let fractionText = String(fraction).leftPadded(to: 7)
        return "\(whole).\(fractionText) TFT"
    }

    /// "12.5" -> 125_000_000 units; nil for malformed or overflowing input.
    public static func parse(_ text: String) -> UInt64? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let whole = UInt64(parts[0]) else { return nil }
        var fraction: UInt64 = 0
        if parts.count == 2 {
            let digits = parts[1]
            guard !digits.isEmpty, digits.count <= 7, let value = UInt64(digits) else { return nil }
            fraction = value * UInt64(pow10(7 - digits.count))
        }
        let (scaled, overflow1) = whole.multipliedReportingOverflow(by: unitsPerTFT)
        let (total, overflow2) = scaled.addingReportingOverflow(fraction)
        return overflow1 || overflow2 || total > UInt64(Int64.max) ? nil : total
    }

    private static func pow10(_ n: Int) -> Int { (0..<n).reduce(1) { acc, _ in acc * 10 } }
}

extension String {
    func leftPadded(to width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}
