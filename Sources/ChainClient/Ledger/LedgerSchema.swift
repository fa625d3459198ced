import GRDB

/// The ledger's SQLite schema. `PRAGMA user_version` holds its version; a file from a newer
/// program is refused rather than misread.
enum LedgerSchema {
    static let version = 1

    static let statements = [
        """
        CREATE TABLE ledger_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)
        """,
        """
        CREATE TABLE accounts(account BLOB PRIMARY KEY, nonce INTEGER NOT NULL DEFAULT 0)
        """,
        """
        CREATE TABLE twins(id INTEGER PRIMARY KEY, account BLOB NOT NULL UNIQUE,
            balance INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0), created_block INTEGER NOT NULL)
        """,
        """
        CREATE TABLE farms(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, twin_id INTEGER NOT NULL REFERENCES twins(id))
        """,
        """
        CREATE TABLE nodes(id INTEGER PRIMARY KEY, farm_id INTEGER NOT NULL REFERENCES farms(id),
            twin_id INTEGER NOT NULL UNIQUE REFERENCES twins(id),
            hru INTEGER NOT NULL, sru INTEGER NOT NULL, cru INTEGER NOT NULL, mru INTEGER NOT NULL,
            created_block INTEGER NOT NULL, uptime INTEGER, uptime_reported_ms INTEGER)
        """,
        """
        CREATE TABLE contracts(id INTEGER PRIMARY KEY, version INTEGER NOT NULL,
            twin_id INTEGER NOT NULL REFERENCES twins(id), node_id INTEGER NOT NULL REFERENCES nodes(id),
            deployment_hash TEXT NOT NULL, deployment_data BLOB NOT NULL, public_ips INTEGER NOT NULL,
            state INTEGER NOT NULL, cause INTEGER, grace_since INTEGER,
            created_block INTEGER NOT NULL, billed_until INTEGER NOT NULL,
            used_hru INTEGER NOT NULL DEFAULT 0, used_sru INTEGER NOT NULL DEFAULT 0,
            used_cru INTEGER NOT NULL DEFAULT 0, used_mru INTEGER NOT NULL DEFAULT 0)
        """,
        "CREATE INDEX contracts_active_by_node ON contracts(node_id, id) WHERE state != 1",
        "CREATE INDEX contracts_by_twin ON contracts(twin_id)",
        "CREATE INDEX contracts_active_by_hash ON contracts(node_id, deployment_hash) WHERE state != 1",
        """
        CREATE TABLE blocks(number INTEGER PRIMARY KEY, hash BLOB NOT NULL, parent BLOB NOT NULL,
            timestamp_ms INTEGER NOT NULL, producer TEXT NOT NULL)
        """,
        """
        CREATE TABLE events(block INTEGER NOT NULL, idx INTEGER NOT NULL, name TEXT NOT NULL,
            contract_id INTEGER, node_id INTEGER, tx_id INTEGER, body TEXT NOT NULL, PRIMARY KEY(block, idx))
        """,
        "CREATE INDEX events_by_tx ON events(tx_id) WHERE tx_id IS NOT NULL",
        "CREATE INDEX events_by_contract ON events(contract_id) WHERE contract_id IS NOT NULL",
        """
        CREATE TABLE transactions(id INTEGER PRIMARY KEY AUTOINCREMENT, signer BLOB, nonce INTEGER,
            call_name TEXT NOT NULL, payload BLOB NOT NULL, signature BLOB, submitted_ms INTEGER NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending', block INTEGER,
            error_module TEXT, error_name TEXT, error_detail TEXT)
        """,
        "CREATE INDEX transactions_pending ON transactions(id) WHERE status = 'pending'",
        "CREATE INDEX transactions_pending_by_signer ON transactions(signer) WHERE status = 'pending'",
        """
        CREATE TABLE uptime_reports(node_id INTEGER NOT NULL, block INTEGER NOT NULL, timestamp INTEGER NOT NULL, uptime INTEGER NOT NULL)
        """,
        """
        CREATE TABLE resource_reports(contract_id INTEGER NOT NULL, node_id INTEGER NOT NULL, block INTEGER NOT NULL,
            hru INTEGER NOT NULL, sru INTEGER NOT NULL, cru INTEGER NOT NULL, mru INTEGER NOT NULL)
        """,
        """
        CREATE TABLE nru_reports(contract_id INTEGER NOT NULL, node_id INTEGER NOT NULL, block INTEGER NOT NULL,
            timestamp INTEGER NOT NULL, window INTEGER NOT NULL, nru INTEGER NOT NULL)
        """,
        """
        CREATE TABLE bills(contract_id INTEGER NOT NULL, block INTEGER NOT NULL, amount INTEGER NOT NULL,
            PRIMARY KEY(contract_id, block))
        """,
    ]

    static func create(_ db: Database) throws {
        for statement in statements { try db.execute(sql: statement) }
        try db.execute(sql: "PRAGMA user_version = \(version)")
    }
}
