import Foundation
import GridTypes

/// Final counters of deployments whose network is gone, kept in `<state>/retired.counters` (0600)
/// until the reporter has billed them: written before the deployment's record is removed, so an
/// agent restart between a teardown and the next report loses none of those bytes.
struct RetiredTraffic: Codable, Equatable, Sendable {
    struct Entry: Codable, Equatable, Sendable {
        var total: ContractTraffic
        /// The id of the network record the bytes came from (see `NetworkRecord.id`).
        var recordID: String?
        /// A report has taken the total. Left out of readings from then on, and forgotten once a
        /// report has been made without it (the reporter then no longer holds the old total, and
        /// a network made again for the contract may count from zero).
        var billed = false
    }

    var entries: [UInt64: Entry] = [:]

    /// The totals readings still include.
    var unbilled: [UInt64: ContractTraffic] { entries.filter { !$0.value.billed }.mapValues(\.total) }

    static let fileName = "retired.counters"
    /// A retired file this large is not ours (a few hundred bytes per contract).
    static let maximumFileBytes = 64 << 20

    static func path(directory: String) -> String { directory + "/" + fileName }

    /// A missing file is an empty list; one that cannot be read or decoded is an error, because
    /// starting empty would lose the bytes it holds.
    static func load(directory: String) throws(NetworkError) -> RetiredTraffic {
        let path = path(directory: directory)
        var info = stat()
        guard stat(path, &info) == 0 else {
            if errno == ENOENT { return RetiredTraffic() }
            throw .io(operation: "stat", path: path, errno: errno)
        }
        guard info.st_size <= maximumFileBytes else {
            throw .invalid(what: path, reason: "\(info.st_size) bytes is more than retired counters can be")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw .io(operation: "read", path: path, errno: EIO) }
        do { return try JSONDecoder().decode(RetiredTraffic.self, from: data) } catch {
            throw .invalid(what: path, reason: "not retired counters (\(error))")
        }
    }

    func save(directory: String) throws(NetworkError) {
        let path = Self.path(directory: directory)
        if entries.isEmpty {
            guard unlink(path) == 0 || errno == ENOENT else { throw .io(operation: "remove", path: path, errno: errno) }
            // Durably gone: a file back from before a power loss would be billed again.
            StateFile.syncDirectory(of: path)
            return
        }
        let data: Data
        do { data = try JSONEncoder().encode(self) } catch { throw .invalid(what: "retired counters", reason: "\(error)") }
        try StateFile.write(data, to: path)
    }
}
