import ArgumentParser
import ChainClient
import Foundation
import GridTypes

struct TwinCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "twin", abstract: "Create or show your twin.",
                                                    subcommands: [Create.self, Show.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a key (if none exists) and register it as a twin.")
        @OptionGroup var chain: ChainOptions

        func run() async throws {
            let ledger = try chain.openLedger()
            let identity: NodeIdentity
            var createdKey = false
            if FileManager.default.fileExists(atPath: chain.key) {
                identity = try NodeIdentity.load(from: chain.key)
            } else {
                identity = try NodeIdentity.create(at: chain.key)
                createdKey = true
            }
            var twinID = try await ledger.twinID(account: identity.publicKey)
            let existed = twinID != nil
            if twinID == nil {
                _ = try await ledger.submit(.createTwin, signer: identity.keyPair)
                twinID = try await ledger.twinID(account: identity.publicKey)
            }
            let id = twinID ?? 0
            try chain.emit(["twin_id": "\(id)", "address": identity.ss58Address, "public_key": identity.publicKey.hex, "key_file": chain.key]) {
                var lines = [String]()
                if createdKey { lines.append("created key \(chain.key) (mode 0600; back it up)") }
                lines.append(existed ? "twin \(id) already exists for this key" : "created twin \(id)")
                lines.append("address \(identity.ss58Address)")
                return lines.joined(separator: "\n")
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show your twin's id, address and balance.")
        @OptionGroup var chain: ChainOptions

        func run() async throws {
            let ledger = try chain.openLedger()
            let identity = try chain.loadKey()
            let id = try await chain.twinID(ledger, identity)
            let balance = try ledger.balance(twin: id) ?? 0
            try chain.emit(TwinView(twinID: id, address: identity.ss58Address, balanceUnits: balance)) {
                "twin \(id)  \(identity.ss58Address)  balance \(TFT.format(balance))"
            }
        }
    }
}

struct TwinView: Codable {
    var twinID: UInt32
    var address: String
    var balanceUnits: UInt64
}

struct FundCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "fund",
                                                    abstract: "Credit a twin from the embedded ledger's faucet (local ledger only).")
    @OptionGroup var chain: ChainOptions

    @Option(name: .long, help: "Twin to credit (default: your own).")
    var twin: UInt32?

    @Argument(help: "Amount in TFT, e.g. 25 or 0.5.")
    var amount: String

    func run() async throws {
        guard let units = TFT.parse(amount), units > 0 else {
            throw ValidationError("amount '\(amount)' is not a positive TFT amount with at most 7 decimals")
        }
        let ledger = try chain.openLedger()
        let target: UInt32
        if let twin { target = twin } else { target = try await chain.twinID(ledger, try chain.loadKey()) }
        let inclusion = try await ledger.fund(twin: target, amount: units)
        let balance = try ledger.balance(twin: target) ?? 0
        try chain.emit(["twin_id": "\(target)", "block": "\(inclusion.blockNumber)", "balance_units": "\(balance)"]) {
            "credited \(TFT.format(units)) to twin \(target) in block \(inclusion.blockNumber); balance \(TFT.format(balance))"
        }
    }
}

struct FarmCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "farm", abstract: "Create a farm for your nodes.",
                                                    subcommands: [Create.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a farm owned by your twin.")
        @OptionGroup var chain: ChainOptions
        @Option(name: .long, help: "Farm name: 1-40 of a-z A-Z 0-9 _ -.")
        var name: String

        func run() async throws {
            let ledger = try chain.openLedger()
            let identity = try chain.loadKey()
            let inclusion = try await ledger.submit(.createFarm(name: name), signer: identity.keyPair)
            guard case .farmStored(let id, _, _)? = inclusion.events.first else {
                throw GridTwinFailure("the ledger included create_farm but reported no FarmStored event")
            }
            try chain.emit(["farm_id": "\(id)", "name": name]) { "created farm \(id) (\(name)); set node.farm_id = \(id) in your nodes' config" }
        }
    }
}
