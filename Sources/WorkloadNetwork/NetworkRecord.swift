import Foundation
import GridTypes

/// One deployment's network as recorded on disk (`<state>/<contract>.json`, 0600), written before
/// the kernel objects it describes are made, so a crash leaves nothing the agent cannot find again.
struct NetworkRecord: Codable, Equatable, Sendable {
    struct Member: Codable, Equatable, Sendable {
        var address: String
        var network: ContainerNetwork
    }

    var contractID: UInt64
    var subnet: String
    /// By container workload name.
    var members: [String: Member]
    /// What earlier rules of this deployment counted before the kernel's counters restarted from
    /// zero (rules made again after a reboot or a flushed ruleset): the counters add to it.
    var countedBefore: ContractTraffic?
    /// The last cumulative reading kept (at each report and at a clean stop). A lower reading
    /// later means the counters restarted, and this becomes `countedBefore`: the totals the
    /// reporter bills from never go down, so nothing is billed twice.
    var lastCounted: ContractTraffic?
    /// Names this generation of the deployment's network (a network made again for the same
    /// contract gets a new one), so the retired counters can tell which record they came from.
    var id: String?
    /// The retired counters (by their record's id) this record took over: if the agent stopped
    /// before forgetting them in the retired file, they are forgotten at start, not counted twice.
    var absorbedRetired: String?

    init(contractID: UInt64, subnet: String, members: [String: Member]) {
        self.contractID = contractID
        self.subnet = subnet
        self.members = members
        self.id = Self.newID()
    }

    static func newID() -> String { String(UInt64.random(in: .min ... .max), radix: 16) }

    static func load(directory: String) throws(NetworkError) -> [UInt64: NetworkRecord] {
        var out = [UInt64: NetworkRecord]()
        let entries: [String]
        do { entries = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
            throw .io(operation: "list", path: directory, errno: ENOENT)
        }
        for entry in entries where entry.hasSuffix(".json") {
            let path = directory + "/" + entry
            guard let data = FileManager.default.contents(atPath: path), data.count < 1 << 20,
                  let record = try? JSONDecoder().decode(NetworkRecord.self, from: data) else {
                // A torn or foreign file: its kernel objects are swept as orphans.
                try? FileManager.default.removeItem(atPath: path)
                continue
            }
            out[record.contractID] = record
        }
        return out
    }

    func save(directory: String) throws(NetworkError) {
        let data: Data
        do { data = try JSONEncoder().encode(self) } catch { throw .invalid(what: "network record \(contractID)", reason: "\(error)") }
        try StateFile.write(data, to: "\(directory)/\(contractID).json")
    }

    static func remove(contractID: UInt64, directory: String) {
        unlink("\(directory)/\(contractID).json")
    }
}
