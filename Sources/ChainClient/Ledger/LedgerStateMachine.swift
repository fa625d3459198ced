import Foundation
import GRDB
import GridTypes

/// Applies one block to the ledger inside the producer's write transaction: pending transactions
/// in order (each in a savepoint, so a refused call changes nothing), then billing and grace
/// expiry. Checks are the chain's: signature by the account's key, nonce, ownership, lengths.
struct LedgerStateMachine {
    let parameters: LedgerParameters
    let genesis: [UInt8]
    let block: UInt64
    let timestampMilliseconds: Int64
    var events: [(event: ChainEvent, tx: Int64?)] = []

    static let maxTransactionsPerBlock = 5000
    static let timestampHintToleranceSeconds: Int64 = 60

    init(parameters: LedgerParameters, genesis: [UInt8], block: UInt64, timestampMilliseconds: Int64) {
        self.parameters = parameters
        self.genesis = genesis
        self.block = block
        self.timestampMilliseconds = timestampMilliseconds
    }

    mutating func applyPending(_ db: Database) throws {
        let rows = try Row.fetchAll(db, sql: "SELECT * FROM transactions WHERE status = 'pending' ORDER BY id LIMIT ?",
                                    arguments: [Self.maxTransactionsPerBlock])
        for row in rows {
            let id: Int64 = row["id"]
            let eventCount = events.count
            do {
                try db.inSavepoint {
                    try self.apply(db, row: row, id: id)
                    return .commit
                }
                try db.cachedStatement(sql: "UPDATE transactions SET status = 'included', block = ? WHERE id = ?").execute(arguments: [Int64(block), id])
            } catch let rejection as LedgerRejection {
                events.removeSubrange(eventCount...)
                try db.cachedStatement(sql: """
                    UPDATE transactions SET status = 'failed', block = ?, error_module = ?, error_name = ?, error_detail = ? WHERE id = ?
                    """).execute(arguments: [Int64(block), rejection.module, rejection.name, rejection.detail, id])
            }
        }
    }

    private mutating func apply(_ db: Database, row: Row, id: Int64) throws {
        let payload = [UInt8](row["payload"] as Data)
        guard let signerData = row["signer"] as Data? else {
            guard let (twin, amount) = LedgerTransaction.parseFaucet(payload) else {
                throw LedgerRejection("System", "BadOrigin", "an unsigned transaction that is not a faucet transfer")
            }
            try faucet(db, twin: twin, amount: amount, tx: id)
            return
        }
        let signer = try Ed25519PublicKey(bytes: [UInt8](signerData))
        guard let signature = row["signature"] as Data?, signer.verify(signature: [UInt8](signature), message: payload) else {
            throw LedgerRejection("System", "BadSignature", "the signature does not verify with the signer's key")
        }
        guard let (nonce, call) = LedgerTransaction.parse(payload: payload, genesis: genesis) else {
            throw LedgerRejection("System", "BadProof", "the payload is not a call for this ledger")
        }
        let account = Data(signer.bytes)
        let expected = try Int64.fetchOne(db.cachedStatement(sql: "SELECT nonce FROM accounts WHERE account = ?"), arguments: [account]) ?? 0
        guard Int64(nonce) == expected else {
            throw LedgerRejection("System", nonce < expected ? "Stale" : "Future", "nonce \(nonce), expected \(expected)")
        }
        try db.execute(sql: "INSERT INTO accounts(account, nonce) VALUES (?, 1) ON CONFLICT(account) DO UPDATE SET nonce = nonce + 1",
                       arguments: [account])
        try dispatch(db, call: call, signer: signer, tx: id)
    }

    private mutating func emit(_ event: ChainEvent, tx: Int64?) {
        events.append((event, tx))
    }

    private func twinID(_ db: Database, of signer: Ed25519PublicKey) throws -> Int64 {
        guard let id = try Int64.fetchOne(db.cachedStatement(sql: "SELECT id FROM twins WHERE account = ?"), arguments: [Data(signer.bytes)]) else {
            throw LedgerRejection("TfgridModule", "TwinNotExists", "the signing account has no twin; create one first")
        }
        return id
    }

    private func nodeID(_ db: Database, ofTwin twin: Int64) throws -> Int64 {
        guard let id = try Int64.fetchOne(db.cachedStatement(sql: "SELECT id FROM nodes WHERE twin_id = ?"), arguments: [twin]) else {
            throw LedgerRejection("TfgridModule", "NodeNotExists", "twin \(twin) has no registered node")
        }
        return id
    }

    static func checkHash(_ hash: String) throws {
        guard hash.utf8.count == 32, hash.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
            throw LedgerRejection("SmartContractModule", "InvalidContractHash",
                                  "deployment_hash must be 32 lowercase hex characters (the MD5 challenge hash), got \(hash.utf8.count) characters")
        }
    }

    static func checkResources(_ r: Resources) throws {
        for value in [r.hru, r.sru, r.cru, r.mru] where value > UInt64(Int64.max) {
            throw LedgerRejection("TfgridModule", "InvalidResources", "a resource value exceeds \(Int64.max)")
        }
    }

    private mutating func dispatch(_ db: Database, call: ChainCall, signer: Ed25519PublicKey, tx: Int64) throws {
        switch call {
        case .createTwin:
            if try Int64.fetchOne(db.cachedStatement(sql: "SELECT id FROM twins WHERE account = ?"), arguments: [Data(signer.bytes)]) != nil {
                throw LedgerRejection("TfgridModule", "TwinWithSameAccountIdExists", "this account already has a twin")
            }
            try db.cachedStatement(sql: "INSERT INTO twins(account, created_block) VALUES (?, ?)").execute(arguments: [Data(signer.bytes), Int64(block)])
            emit(.twinStored(Twin(id: UInt32(db.lastInsertedRowID), publicKey: signer)), tx: tx)

        case .createFarm(let name):
            let twin = try twinID(db, of: signer)
            guard (1...40).contains(name.utf8.count),
                  name.utf8.allSatisfy({ $0 == 45 || $0 == 95 || (48...57).contains($0) || (65...90).contains($0) || (97...122).contains($0) }) else {
                throw LedgerRejection("TfgridModule", "InvalidFarmName", "farm names are 1-40 characters of a-z, A-Z, 0-9, _ and -")
            }
            if try Int64.fetchOne(db.cachedStatement(sql: "SELECT id FROM farms WHERE name = ?"), arguments: [name]) != nil {
                throw LedgerRejection("TfgridModule", "FarmExists", "a farm named \(name) exists")
            }
            try db.cachedStatement(sql: "INSERT INTO farms(name, twin_id) VALUES (?, ?)").execute(arguments: [name, twin])
            emit(.farmStored(id: UInt32(db.lastInsertedRowID), name: name, twinID: UInt32(twin)), tx: tx)

        case .createNode(let farmID, let resources):
            let twin = try twinID(db, of: signer)
            try Self.checkResources(resources)
            guard try Int64.fetchOne(db.cachedStatement(sql: "SELECT id FROM farms WHERE id = ?"), arguments: [Int64(farmID)]) != nil else {
                throw LedgerRejection("TfgridModule", "FarmNotExists", "farm \(farmID) does not exist")
            }
            if try Int64.fetchOne(db.cachedStatement(sql: "SELECT id FROM nodes WHERE twin_id = ?"), arguments: [twin]) != nil {
                throw LedgerRejection("TfgridModule", "NodeWithTwinIdExists", "twin \(twin) already registered a node")
            }
            try db.execute(sql: "INSERT INTO nodes(farm_id, twin_id, hru, sru, cru, mru, created_block) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           arguments: [Int64(farmID), twin, Int64(resources.hru), Int64(resources.sru), Int64(resources.cru),
                                       Int64(resources.mru), Int64(block)])
            emit(.nodeStored(Node(id: UInt32(db.lastInsertedRowID), farmID: farmID, twinID: UInt32(twin), resources: resources)), tx: tx)

        case .updateNode(let nodeID, let resources):
            let twin = try twinID(db, of: signer)
            try Self.checkResources(resources)
            guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM nodes WHERE id = ?"), arguments: [Int64(nodeID)]) else {
                throw LedgerRejection("TfgridModule", "NodeNotExists", "node \(nodeID) does not exist")
            }
            guard row["twin_id"] as Int64 == twin else {
                throw LedgerRejection("TfgridModule", "NodeUpdateNotAuthorized", "node \(nodeID) belongs to another twin")
            }
            try db.execute(sql: "UPDATE nodes SET hru = ?, sru = ?, cru = ?, mru = ? WHERE id = ?",
                           arguments: [Int64(resources.hru), Int64(resources.sru), Int64(resources.cru), Int64(resources.mru), Int64(nodeID)])
            var node = LedgerRows.node(row)
            node.resources = resources
            emit(.nodeStored(node), tx: tx)

        case .createNodeContract(let nodeID, let hash, let data, let publicIPs):
            let twin = try twinID(db, of: signer)
            try Self.checkHash(hash)
            guard data.count <= NodeContract.maxDeploymentData else {
                throw LedgerRejection("SmartContractModule", "DeploymentDataTooLong", "\(data.count) bytes, at most \(NodeContract.maxDeploymentData)")
            }
            guard try Int64.fetchOne(db.cachedStatement(sql: "SELECT id FROM nodes WHERE id = ?"), arguments: [Int64(nodeID)]) != nil else {
                throw LedgerRejection("SmartContractModule", "NodeNotExists", "node \(nodeID) does not exist")
            }
            if try Int64.fetchOne(db, sql: "SELECT id FROM contracts WHERE node_id = ? AND deployment_hash = ? AND state != 1",
                                  arguments: [Int64(nodeID), hash]) != nil {
                throw LedgerRejection("SmartContractModule", "ContractIsNotUnique", "an active contract with this hash exists on node \(nodeID)")
            }
            try db.cachedStatement(sql: """
                INSERT INTO contracts(version, twin_id, node_id, deployment_hash, deployment_data, public_ips, state, created_block, billed_until)
                VALUES (4, ?, ?, ?, ?, ?, 0, ?, ?)
                """).execute(arguments: [twin, Int64(nodeID), hash, Data(data), Int64(publicIPs), Int64(block), Int64(block)])
            if let contract = try LedgerRows.contract(db, id: UInt64(db.lastInsertedRowID)) {
                emit(.contractCreated(contract), tx: tx)
            }

        case .updateNodeContract(let contractID, let hash, let data):
            let twin = try twinID(db, of: signer)
            try Self.checkHash(hash)
            guard data.count <= NodeContract.maxDeploymentData else {
                throw LedgerRejection("SmartContractModule", "DeploymentDataTooLong", "\(data.count) bytes, at most \(NodeContract.maxDeploymentData)")
            }
            let contract = try ownedContract(db, id: contractID, twin: twin, action: "Update")
            guard case .created = contract.state else {
                throw LedgerRejection("SmartContractModule", "CannotUpdateContractInGraceState", "contract \(contractID) is \(contract.state)")
            }
            try db.execute(sql: "UPDATE contracts SET deployment_hash = ?, deployment_data = ? WHERE id = ?",
                           arguments: [hash, Data(data), Int64(contractID)])
            if let updated = try LedgerRows.contract(db, id: contractID) { emit(.contractUpdated(updated), tx: tx) }

        case .cancelContract(let contractID):
            let twin = try twinID(db, of: signer)
            let contract = try ownedContract(db, id: contractID, twin: twin, action: "Cancel")
            try billOutstanding(db, contractID: contractID, bestEffort: true, tx: tx)
            try db.cachedStatement(sql: "UPDATE contracts SET state = 1, cause = 0, grace_since = NULL WHERE id = ?").execute(arguments: [Int64(contractID)])
            emit(.nodeContractCanceled(contractID: contractID, nodeID: contract.node.nodeID, twinID: contract.twinID), tx: tx)

        case .reportUptime(let uptime, let hint):
            let node = try nodeID(db, ofTwin: twinID(db, of: signer))
            let blockSeconds = timestampMilliseconds / 1000
            guard hint <= UInt64(Int64.max), abs(Int64(hint) - blockSeconds) <= Self.timestampHintToleranceSeconds else {
                throw LedgerRejection("TfgridModule", "InvalidTimestampHint", "hint \(hint) is more than 60 s from block time \(blockSeconds)")
            }
            guard uptime <= UInt64(Int64.max) else { throw LedgerRejection("TfgridModule", "InvalidUptime", "uptime out of range") }
            try db.execute(sql: "INSERT INTO uptime_reports(node_id, block, timestamp, uptime) VALUES (?, ?, ?, ?)",
                           arguments: [node, Int64(block), Int64(hint), Int64(uptime)])
            try db.execute(sql: "UPDATE nodes SET uptime = ?, uptime_reported_ms = ? WHERE id = ?",
                           arguments: [Int64(uptime), timestampMilliseconds, node])
            emit(.nodeUptimeReported(nodeID: UInt32(node), timestamp: hint, uptime: uptime), tx: tx)

        case .reportContractResources(let reports):
            let node = try nodeID(db, ofTwin: twinID(db, of: signer))
            for report in reports {
                try Self.checkResources(report.used)
                let contract = try reportedContract(db, id: report.contractID, node: node)
                try db.execute(sql: "UPDATE contracts SET used_hru = ?, used_sru = ?, used_cru = ?, used_mru = ? WHERE id = ?",
                               arguments: [Int64(report.used.hru), Int64(report.used.sru), Int64(report.used.cru),
                                           Int64(report.used.mru), Int64(contract.id)])
                try db.execute(sql: "INSERT INTO resource_reports(contract_id, node_id, block, hru, sru, cru, mru) VALUES (?, ?, ?, ?, ?, ?, ?)",
                               arguments: [Int64(contract.id), node, Int64(block), Int64(report.used.hru), Int64(report.used.sru),
                                           Int64(report.used.cru), Int64(report.used.mru)])
                emit(.updatedUsedResources(report), tx: tx)
            }

        case .addNruReports(let reports):
            let node = try nodeID(db, ofTwin: twinID(db, of: signer))
            for report in reports {
                guard report.timestamp <= UInt64(Int64.max), report.window <= UInt64(Int64.max), report.nru <= UInt64(Int64.max) else {
                    throw LedgerRejection("SmartContractModule", "InvalidNruReport", "a value exceeds \(Int64.max)")
                }
                let contract = try reportedContract(db, id: report.contractID, node: node)
                try db.execute(sql: "INSERT INTO nru_reports(contract_id, node_id, block, timestamp, window, nru) VALUES (?, ?, ?, ?, ?, ?)",
                               arguments: [Int64(contract.id), node, Int64(block), Int64(report.timestamp), Int64(report.window), Int64(report.nru)])
                emit(.nruConsumptionReportReceived(report), tx: tx)
            }
        }
    }

    private func ownedContract(_ db: Database, id: UInt64, twin: Int64, action: String) throws -> Contract {
        guard let contract = try LedgerRows.contract(db, id: id) else {
            throw LedgerRejection("SmartContractModule", "ContractNotExists", "contract \(id) does not exist")
        }
        guard Int64(contract.twinID) == twin else {
            throw LedgerRejection("SmartContractModule", "TwinNotAuthorizedTo\(action)Contract", "contract \(id) belongs to twin \(contract.twinID)")
        }
        guard contract.state.isActive else {
            throw LedgerRejection("SmartContractModule", "ContractNotExists", "contract \(id) is \(contract.state)")
        }
        return contract
    }

    private func reportedContract(_ db: Database, id: UInt64, node: Int64) throws -> Contract {
        guard let contract = try LedgerRows.contract(db, id: id), contract.state.isActive else {
            throw LedgerRejection("SmartContractModule", "ContractNotExists", "contract \(id) does not exist or is deleted")
        }
        guard Int64(contract.node.nodeID) == node else {
            throw LedgerRejection("SmartContractModule", "NodeNotAuthorizedToComputeReport", "contract \(id) is on node \(contract.node.nodeID)")
        }
        return contract
    }

    private mutating func faucet(_ db: Database, twin: UInt32, amount: UInt64, tx: Int64) throws {
        guard let balance = try Int64.fetchOne(db.cachedStatement(sql: "SELECT balance FROM twins WHERE id = ?"), arguments: [Int64(twin)]) else {
            throw LedgerRejection("TfgridModule", "TwinNotExists", "twin \(twin) does not exist")
        }
        let (sum, overflow) = balance.addingReportingOverflow(Int64(clamping: amount))
        guard !overflow, amount <= UInt64(Int64.max) else {
            throw LedgerRejection("Balances", "Overflow", "balance \(balance) + \(amount) exceeds the largest balance \(Int64.max)")
        }
        try db.cachedStatement(sql: "UPDATE twins SET balance = ? WHERE id = ?").execute(arguments: [sum, Int64(twin)])
        emit(.transfer(to: twin, amount: amount), tx: tx)
    }

    // MARK: Billing

    /// Every billing period, each active contract pays for the blocks since it was last billed.
    /// Not enough balance: Created -> GracePeriod (unpaid time accumulates). Enough again: paid,
    /// and GracePeriod -> Created. Grace longer than the ledger's limit: Deleted(OutOfFunds).
    mutating func bill(_ db: Database) throws {
        if parameters.billingPeriodBlocks > 0, block % parameters.billingPeriodBlocks == 0 {
            let ids = try Int64.fetchAll(db, sql: "SELECT id FROM contracts WHERE state != 1 ORDER BY id")
            for id in ids { try billOutstanding(db, contractID: UInt64(id), bestEffort: false, tx: nil) }
        }
        let expired = try Row.fetchAll(db, sql: "SELECT * FROM contracts WHERE state = 2 AND grace_since <= ?",
                                       arguments: [Int64(block) - Int64(parameters.gracePeriodBlocks)])
        for row in expired {
            let contract = LedgerRows.contract(row)
            try db.cachedStatement(sql: "UPDATE contracts SET state = 1, cause = 1 WHERE id = ?").execute(arguments: [Int64(contract.id)])
            emit(.nodeContractCanceled(contractID: contract.id, nodeID: contract.node.nodeID, twinID: contract.twinID), tx: nil)
        }
    }

    /// `bestEffort` (on cancel): take what the twin has, never move to grace.
    private mutating func billOutstanding(_ db: Database, contractID: UInt64, bestEffort: Bool, tx: Int64?) throws {
        guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT * FROM contracts WHERE id = ?"), arguments: [Int64(contractID)]) else { return }
        let contract = LedgerRows.contract(row)
        let billedUntil = UInt64(row["billed_until"] as Int64)
        guard block > billedUntil else { return }
        let amount = parameters.cost(used: LedgerRows.used(row), publicIPs: contract.node.publicIPs, blocks: block - billedUntil)
        let balance = UInt64(try Int64.fetchOne(db.cachedStatement(sql: "SELECT balance FROM twins WHERE id = ?"), arguments: [Int64(contract.twinID)]) ?? 0)
        if balance >= amount || bestEffort {
            let charged = min(balance, amount)
            try db.cachedStatement(sql: "UPDATE twins SET balance = balance - ? WHERE id = ?").execute(arguments: [Int64(charged), Int64(contract.twinID)])
            try db.cachedStatement(sql: "UPDATE contracts SET billed_until = ? WHERE id = ?").execute(arguments: [Int64(block), Int64(contractID)])
            if charged > 0 {
                try db.execute(sql: "INSERT OR REPLACE INTO bills(contract_id, block, amount) VALUES (?, ?, ?)",
                               arguments: [Int64(contractID), Int64(block), Int64(charged)])
                emit(.contractBilled(contractID: contractID, amount: charged), tx: tx)
            }
            if case .gracePeriod = contract.state, !bestEffort {
                try db.cachedStatement(sql: "UPDATE contracts SET state = 0, grace_since = NULL WHERE id = ?").execute(arguments: [Int64(contractID)])
                emit(.contractGracePeriodEnded(contractID: contractID, nodeID: contract.node.nodeID, twinID: contract.twinID), tx: tx)
            }
        } else if case .created = contract.state {
            try db.cachedStatement(sql: "UPDATE contracts SET state = 2, grace_since = ? WHERE id = ?").execute(arguments: [Int64(block), Int64(contractID)])
            emit(.contractGracePeriodStarted(contractID: contractID, nodeID: contract.node.nodeID, twinID: contract.twinID,
                                             blockNumber: block), tx: tx)
        }
    }
}
