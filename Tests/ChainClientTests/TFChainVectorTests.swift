import Foundation
import GridTypes
import Testing
@testable import ChainClient

/// The real TFChain metadata fixture, read once.
enum Fixture {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()

    static let metadataHex: String = {
        let url = directory.appendingPathComponent("Fixtures/chainMeta.json")
        guard let data = try? Data(contentsOf: url),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let hex = object["result"] as? String else { return "" }
        return hex
    }()

    static let metadataBytes: [UInt8] = (try? Hex.decode(metadataHex.dropFirst(2))) ?? []

    static let metadata: RuntimeMetadata? = try? RuntimeMetadata(bytes: metadataBytes)

    static func bytes(_ hex: String) -> [UInt8] {
        (try? Hex.decode(hex.hasPrefix("0x") ? String(hex.dropFirst(2)) : hex)) ?? []
    }
}

/// Byte-level vectors from the fixture metadata. Every expected value below was produced by
/// independent libraries (scalecodec, xxhash, hashlib, PyNaCl): tfchain_double/make_vectors.py.
@Suite struct TFChainVectorTests {
    func metadata() throws -> RuntimeMetadata { try #require(Fixture.metadata) }

    @Test func fixtureMetadataDecodesFully() throws {
        #expect(Fixture.metadataBytes.count > 80_000)
        let md = try RuntimeMetadata(bytes: Fixture.metadataBytes)   // expectEnd inside: every byte consumed
        #expect(md.registry.types.count > 300)
        #expect(try md.pallet("System").index == 0)
        #expect(try md.pallet("Balances").index == 20)
        #expect(try md.pallet("TfgridModule").index == 25)
        #expect(try md.pallet("SmartContractModule").index == 26)
        #expect(md.extrinsicVersion == 4)
        #expect(md.signedExtensions.map(\.identifier) == [
            "CheckNonZeroSender", "CheckSpecVersion", "CheckTxVersion", "CheckGenesis", "CheckMortality",
            "CheckNonce", "CheckWeight", "ChargeTransactionPayment", "ContractIdProvides",
        ])
        #expect(try md.call("TfgridModule", "report_uptime_v2").call.index == 38)
        #expect(try md.call("SmartContractModule", "add_nru_reports").call.index == 5)
        #expect(try md.call("SmartContractModule", "report_contract_resources").call.index == 6)
        #expect(try md.call("SmartContractModule", "create_node_contract").call.index == 0)
        #expect(try md.call("SmartContractModule", "update_node_contract").call.index == 1)
        #expect(try md.call("SmartContractModule", "cancel_contract").call.index == 2)
        #expect(md.moduleError(palletIndex: 25, errorIndex: 114) == ("TfgridModule", "InvalidTimestampHint"))
        // Every Default-kind storage item's default value decodes with its own type (Optional
        // items carry the encoding of None instead).
        for pallet in md.pallets {
            for entry in pallet.storage.values where !entry.isOptional {
                _ = try md.registry.decode(entry.valueType, from: entry.defaultValue)
            }
        }
    }

    @Test func storageKeys() throws {
        let md = try metadata()
        #expect(Hex.encode(TwoX.twox128(Array("System".utf8))) == "26aa394eea5630e07c48ae0c9558cef7")
        #expect(Hex.encode(try md.storageKey("System", "Events")) == "26aa394eea5630e07c48ae0c9558cef780d41e5e16056765bc8461851072c9d7")
        #expect(Hex.encode(try md.storageKey("System", "Account", keys: [[UInt8](repeating: 0, count: 32)]).prefix(32))
                == "26aa394eea5630e07c48ae0c9558cef7b99d880ec681799c0cf30e8886371da9")
        #expect(Hex.encode(try md.storageKey("SmartContractModule", "Contracts", keys: [TFChainClient.u64(7)]))
                == "44cb2e51a1811cda53a74b4395e03d574342193e496fab7ec59d615ed0dc5530a5e47192376d46472707aad6430c235b0700000000000000")
        #expect(Hex.encode(try md.storageKey("SmartContractModule", "ActiveNodeContracts", keys: [TFChainClient.u32(1)]))
                == "44cb2e51a1811cda53a74b4395e03d57cb18d6eb87c8dd12c5bccb70223c480ad82c12285b5d4551f88e8f6e7eb52b8101000000")
        #expect(Hex.encode(try md.storageKey("TfgridModule", "Twins", keys: [TFChainClient.u32(2)]))
                == "19a2526838feefd7695a3b5715b415b1311378229266fc86f673a3f4cf398e69754faa9acf0378f8c3543d9f132d85bc02000000")
        #expect(throws: ChainError.self) { try md.storageKey("TfgridModule", "Twins") }
        #expect(throws: ChainError.self) { try md.storageKey("NoSuchPallet", "Twins") }
    }

    static let contractHex = "04000000026300000000000000070000000000000003000000000100000061616161616161616161616161616161616161616161616161616161616161611468656c6c6f010000000000"

    @Test func contractValueFromScalecodec() throws {
        let md = try metadata()
        let (_, entry) = try md.storageEntry("SmartContractModule", "Contracts")
        let bytes = Fixture.bytes(Self.contractHex)
        let value = try md.registry.decode(entry.valueType, from: bytes)
        let contract = try #require(try TFChainMapping.contract(value))
        #expect(contract == Contract(id: 7, version: 4, state: .gracePeriod(since: 99), twinID: 3,
                                     node: NodeContract(nodeID: 1, deploymentHash: String(repeating: "a", count: 32),
                                                        deploymentData: Array("hello".utf8), publicIPs: 1)))
        // And our encoder gives scalecodec's bytes back.
        #expect(try md.registry.encode(value, as: entry.valueType) == bytes)
    }

    static let eventsHex = "18021c002a0000000000010000001a0004000000026300000000000000070000000000000003000000000100000061616161616161616161616161616161616161616161616161616161616161611468656c6c6f0100000000000000010000001a020700000000000000010000000300000000000200000019060100000000f1536500000000100e00000000000000000200000000010319720000000408000004333333333333333333333333333333333333333333333333333333333333333301140722222222222222222222222222222222222222222222222222222222222222220500000000000000000000000000000000"

    @Test func everyEventOfABlock() throws {
        let md = try metadata()
        let events = try md.decodeEvents(Fixture.bytes(Self.eventsHex))
        #expect(events.map(\.qualifiedName) == [
            "TFTPriceModule.PriceStored", "SmartContractModule.ContractCreated", "SmartContractModule.NodeContractCanceled",
            "TfgridModule.NodeUptimeReported", "System.ExtrinsicFailed", "Balances.Deposit",
        ])
        #expect(events.map(\.extrinsicIndex) == [nil, 1, 1, 2, 2, nil])
        let mapped = events.map(TFChainMapping.chainEvent)
        #expect(mapped[0] == .other(pallet: "TFTPriceModule", name: "PriceStored"))
        if case .contractCreated(let c) = mapped[1] { #expect(c.id == 7 && c.node.nodeID == 1) } else { Issue.record("not ContractCreated: \(mapped[1])") }
        #expect(mapped[2] == .nodeContractCanceled(contractID: 7, nodeID: 1, twinID: 3))
        #expect(mapped[3] == .nodeUptimeReported(nodeID: 1, timestamp: 1_700_000_000, uptime: 3600))
        let failure = TFChainClient.dispatchError(events[4].fields, metadata: md)
        #expect(failure.module == "TfgridModule" && failure.error == "InvalidTimestampHint")
        // Re-encoding the decoded events reproduces scalecodec's bytes exactly.
        let value = try md.registry.decode(md.eventRecordsType, from: Fixture.bytes(Self.eventsHex))
        #expect(Hex.encode(try md.registry.encode(value, as: md.eventRecordsType)) == Self.eventsHex)
    }

    @Test func callBytesAndSignedExtrinsicMatchScalecodecAndPyNaCl() throws {
        let md = try metadata()
        let builder = ExtrinsicBuilder(metadata: md)
        let (pallet, name, args) = try TFChainMapping.call(.reportUptime(uptime: 3600, timestampHint: 1_700_000_000))
        let call = try builder.call(pallet, name, args)
        #expect(Hex.encode(call) == "1926100e00000000000000f1536500000000")
        let signer = try Ed25519KeyPair(seed: Array(1...32))
        #expect(signer.publicKey.hex == "79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664")
        let xt = try builder.signed(call: call, signer: signer, nonce: 5,
                                    context: SigningContext(specVersion: 146, transactionVersion: 2, genesisHash: [UInt8](repeating: 0xAA, count: 32)))
        #expect(Hex.encode(xt) == "e101840079b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad04966400e26e73d56f6bcf355010f2b35ad38e02b2d0ad077ac5a852cb55320929a22138daa0a373678a52e573ffe1fe05ff663856b1d3b1417f1b5d6f96b1db56341e090014001926100e00000000000000f1536500000000")
    }

    @Test func registrationCallsAreRefusedOnTFChain() {
        #expect(throws: ChainError.self) { try TFChainMapping.call(.createTwin) }
        #expect(throws: ChainError.self) { try TFChainMapping.call(.createNode(farmID: 1, resources: .zero)) }
        #expect(throws: ChainError.self) {
            try TFChainMapping.call(.createNodeContract(nodeID: 1, deploymentHash: "short", deploymentData: [], publicIPs: 0))
        }
    }
}
