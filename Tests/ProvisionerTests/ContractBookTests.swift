import ChainClient
import Foundation
import GridTypes
import Testing
@testable import Provisioner

@Suite struct ContractBookTests {
    func temporaryPath() throws -> (dir: String, path: String) {
        let dir = NSTemporaryDirectory() + "book-test-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return (dir, dir + "/contracts.sqlite")
    }

    func contract(_ id: UInt64, hash: String = "00112233445566778899aabbccddeeff", state: ContractState = .created) -> Contract {
        Contract(id: id, state: state, twinID: 7, node: NodeContract(nodeID: 3, deploymentHash: hash))
    }

    @Test func changesAndTheBlockSurviveReopening() async throws {
        let (dir, path) = try temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            let book = try ContractBook(path: path)
            #expect(try await book.lastProcessedBlock() == nil)
            try await book.apply([.created(contract(1)), .created(contract(2))], processedBlock: 10)
            try await book.apply([.updated(contract(2, hash: "ffeeddccbbaa99887766554433221100")),
                                  .gracePeriodStarted(contract(1, state: .gracePeriod(since: 11)))], processedBlock: 11)
            try await book.apply([.canceled(contractID: 1, cause: .outOfFunds)], processedBlock: 12)
        }
        // A new process opens the same file: the desired state and the resume point are there.
        let reopened = try ContractBook(path: path)
        #expect(try await reopened.lastProcessedBlock() == 12)
        let known = try await reopened.knownContracts()
        #expect(Set(known.keys) == [2])
        #expect(known[2]?.deploymentHash == "ffeeddccbbaa99887766554433221100")
        let entries = try await reopened.entries()
        #expect(entries.map(\.seenAtBlock) == [10])
        #expect(entries.map(\.updatedAtBlock) == [11])
        #expect(try await reopened.history().map(\.change) == ["created", "created", "updated", "grace-started", "canceled"])
    }

    @Test func anEmptyBlockStillAdvancesTheResumePoint() async throws {
        let (dir, path) = try temporaryPath()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let book = try ContractBook(path: path)
        try await book.apply([], processedBlock: 99)
        #expect(try await book.lastProcessedBlock() == 99)
    }
}
