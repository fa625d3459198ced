import ChainClient
import Foundation
import GridTypes
import Logging

/// The agent's own events (lifecycle, drain, contract changes the chain watcher saw), kept in
/// memory for `node-agent events` and appended to `<state_dir>/events.jsonl` (mode 0600) so they
/// outlive a restart. The file is rotated to `events.jsonl.1` past `maxFileBytes`. The provisioner's
/// workload history is not copied here: it is durable in its own store and merged when read.
actor EventJournal {
    static let fileName = "events.jsonl"
    static let maxFileBytes: Int64 = 1 << 20
    static let memoryLimit = 1000
    /// A message longer than this is cut: events come from chain data and errors, not from trusted text.
    static let maxMessageBytes = 2048

    let path: String?
    private var recent: [AgentEvent] = []
    private var fileBytes: Int64 = 0
    private let logger: Logger

    /// `stateDir` nil: memory only (tests, or a state directory that cannot be written).
    init(stateDir: String?, logger: Logger = Logger(label: "node-agent.events")) {
        self.logger = logger
        guard let stateDir else {
            path = nil
            return
        }
        let path = stateDir + "/" + Self.fileName
        self.path = path
        // Recent history from the previous runs, newest kept.
        var loaded = [AgentEvent]()
        for file in [path + ".1", path] {
            guard let data = FileManager.default.contents(atPath: file), data.count <= Self.maxFileBytes * 2 else { continue }
            for line in data.split(separator: UInt8(ascii: "\n")) {
                if let event = try? AdminJSON.decoder().decode(AgentEvent.self, from: Data(line)) { loaded.append(event) }
            }
        }
        recent = Array(loaded.suffix(Self.memoryLimit))
        var info = stat()
        fileBytes = stat(path, &info) == 0 ? Int64(info.st_size) : 0
    }

    func record(_ source: AgentEvent.Source, level: String = "info", contractID: UInt64? = nil, workload: String? = nil,
                _ message: String, time: Date = Date()) {
        var text = message
        if text.utf8.count > Self.maxMessageBytes {
            text = String(decoding: Array(text.utf8.prefix(Self.maxMessageBytes)), as: UTF8.self) + "..."
        }
        let event = AgentEvent(time: Int64(time.timeIntervalSince1970), source: source, level: level, contractID: contractID,
                               workload: workload, message: text)
        recent.append(event)
        if recent.count > Self.memoryLimit { recent.removeFirst(recent.count - Self.memoryLimit) }
        append(event)
    }

    func events(limit: Int) -> [AgentEvent] { Array(recent.suffix(max(0, limit))) }

    private func append(_ event: AgentEvent) {
        guard let path, var line = try? AdminJSON.encoder().encode(event) else { return }
        line.append(UInt8(ascii: "\n"))
        if fileBytes + Int64(line.count) > Self.maxFileBytes {
            rename(path, path + ".1")
            fileBytes = 0
        }
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            logger.warning("cannot write the event journal", metadata: ["file": .string(path), "errno": "\(errno)"])
            return
        }
        defer { close(fd) }
        let written = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if written > 0 { fileBytes += Int64(written) }
    }
}

/// The contract watcher's sink, recording each change in the event journal after the book stored
/// it: the book stays the durable desired state, the journal says what happened and when.
struct RecordingContractSink: ContractSink {
    let book: any ContractSink
    let journal: EventJournal

    func knownContracts() async throws -> [UInt64: KnownContract] { try await book.knownContracts() }
    func lastProcessedBlock() async throws -> UInt64? { try await book.lastProcessedBlock() }

    func apply(_ changes: [ContractChange], processedBlock: UInt64) async throws {
        try await book.apply(changes, processedBlock: processedBlock)
        for change in changes {
            let (level, message) = Self.describe(change, block: processedBlock)
            await journal.record(.chain, level: level, contractID: change.contractID, message)
        }
    }

    static func describe(_ change: ContractChange, block: UInt64) -> (level: String, message: String) {
        switch change {
        case .created(let c):
            return ("info", "contract created on chain by twin \(c.twinID) (block \(block)); waiting for its deployment")
        case .updated(let c):
            return ("info", "contract updated on chain to deployment hash \(c.node.deploymentHash) (block \(block))")
        case .gracePeriodStarted(let c):
            return ("warning", "contract in its grace period: twin \(c.twinID) cannot pay; workloads paused (block \(block))")
        case .gracePeriodEnded:
            return ("info", "contract grace period ended: paid again; workloads resume (block \(block))")
        case .canceled(_, let cause):
            return ("info", "contract ended on chain (\(cause?.name ?? "gone from the chain")); its workloads are removed (block \(block))")
        }
    }
}
