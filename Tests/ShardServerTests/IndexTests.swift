import Foundation
import Logging
import Testing
@testable import ShardServer

#if canImport(Glibc)
import Glibc
#endif

/// The durable index (index.snapshot per namespace) and namespaces spread over several data
/// directories.
@Suite struct IndexTests {
    func value(_ i: Int, _ size: Int = 300) -> [UInt8] { randomBytes(size, seed: UInt64(i)) }

    static func command(_ parts: [[UInt8]]) -> [UInt8] {
        var out = Array("*\(parts.count)\r\n".utf8)
        for part in parts { out += Array("$\(part.count)\r\n".utf8) + part + Array("\r\n".utf8) }
        return out
    }

    /// GETs every key over one connection and compares the exact reply bytes.
    func expectValues(_ server: TestServer, _ expected: [String: [UInt8]?], namespace: String = "default",
                      sourceLocation: SourceLocation = #_sourceLocation) throws {
        let client = try RawClient(port: server.port)
        client.send(Self.command([Array("SELECT".utf8), Array(namespace.utf8)]))
        #expect(client.receive(atLeast: 5) == Array("+OK\r\n".utf8), sourceLocation: sourceLocation)
        for key in expected.keys.sorted() {
            client.send(Self.command([Array("GET".utf8), Array(key.utf8)]))
            let want: [UInt8]
            if let value = expected[key] ?? nil {
                want = Array("$\(value.count)\r\n".utf8) + value + Array("\r\n".utf8)
            } else {
                want = Array("$-1\r\n".utf8)
            }
            let got = client.receive(atLeast: want.count)
            #expect(got == want, "GET \(key): \(got.count) bytes, expected \(want.count)", sourceLocation: sourceLocation)
        }
    }

    /// SETs k<i> for each i to a value derived from i, one request at a time; returns what is expected back.
    func populate(_ server: TestServer, _ keys: Range<Int>, size: Int = 300) throws -> [String: [UInt8]?] {
        var expected: [String: [UInt8]?] = [:]
        let client = try RawClient(port: server.port)
        for i in keys {
            let key = "k\(i)"
            let data = value(i, size)
            client.send(Self.command([Array("SET".utf8), Array(key.utf8), data]))
            let want = Array("$\(key.utf8.count)\r\n\(key)\r\n".utf8)
            #expect(client.receive(atLeast: want.count) == want, "SET \(key)")
            expected[key] = data
        }
        return expected
    }

    func defaultNamespace(_ server: TestServer) throws -> Namespace {
        let context = try #require(server.server.storeForTesting)
        return try #require(context.namespace("default"))
    }

    @Test func aCleanRestartReplaysNothing() async throws {
        let first = try await TestServer.start()
        var expected = try populate(first, 0..<60)
        _ = try first.cli("DEL", "k7")
        expected["k7"] = .some(nil)
        let second = try await first.restarted()
        #expect(try defaultNamespace(second).recovery == .snapshot(replayedEntries: 0))
        try expectValues(second, expected)
        try await second.stop()
    }

    @Test func aSnapshotBehindTheSegmentsIsCaughtUpByReplay() async throws {
        let first = try await TestServer.start()
        var expected = try populate(first, 0..<40)
        let snapshotPath = first.dataPath + "/default/" + IndexSnapshot.fileName
        let second = try await first.restarted()
        let old = try Data(contentsOf: URL(fileURLWithPath: snapshotPath))
        // Written after the snapshot we keep: new keys, overwrites, deletions.
        expected.merge(try populate(second, 40..<70), uniquingKeysWith: { $1 })
        expected.merge(try populate(second, 0..<5, size: 500), uniquingKeysWith: { $1 })
        _ = try second.cli("DEL", "k10")
        _ = try second.cli("DEL", "k50")
        expected["k10"] = .some(nil)
        expected["k50"] = .some(nil)
        try await second.stop()
        // The process died before its snapshot caught up: put the old one back.
        try old.write(to: URL(fileURLWithPath: snapshotPath))
        let third = try await second.restarted()
        let recovery = try defaultNamespace(third).recovery
        #expect(recovery == .snapshot(replayedEntries: 30 + 5 + 2), "\(recovery)")
        try expectValues(third, expected)
        #expect(try third.server.namespaceInfo("default").entries == 68)
        // Writing continues after the replayed sequence numbers: nothing stored is shadowed.
        _ = try third.cli("SET", "after", "x")
        let fourth = try await third.restarted()
        #expect(try fourth.cli("GET", "after") == "\"x\"")
        #expect(try fourth.server.namespaceInfo("default").entries == 69)
        try await fourth.stop()
    }

    @Test func aDamagedSnapshotIsIgnoredAndTheIndexRebuilt() async throws {
        let first = try await TestServer.start()
        let expected = try populate(first, 0..<30)
        try await first.stop()
        let path = first.dataPath + "/default/" + IndexSnapshot.fileName
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[bytes.count / 2] ^= 0x40
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let second = try await first.restarted()
        #expect(try defaultNamespace(second).recovery == .rebuilt(reason: "checksum mismatch"))
        try expectValues(second, expected)
        try await second.stop()
        // The rebuilt index was written back: the next start uses it.
        let third = try await second.restarted()
        #expect(try defaultNamespace(third).recovery == .snapshot(replayedEntries: 0))
        try await third.stop()
    }

    @Test func aSegmentCutBelowTheSnapshotForcesARebuild() async throws {
        let first = try await TestServer.start()
        var expected = try populate(first, 0..<20)
        try await first.stop()
        // A machine crash can leave the log shorter than a snapshot that was written before the
        // disk lost its cache (a broken disk, really; the server syncs first). Cut the last entry.
        let segment = first.dataPath + "/default/" + Segment.fileName(id: 1)
        let size = try #require(try FileManager.default.attributesOfItem(atPath: segment)[.size] as? Int)
        #expect(truncate(segment, off_t(size - 10)) == 0)
        let second = try await first.restarted()
        let recovery = try defaultNamespace(second).recovery
        guard case .rebuilt(let reason) = recovery else {
            Issue.record("expected a rebuild, got \(recovery)")
            return
        }
        #expect(reason.contains("shorter than"))
        // The last SET (k19) was torn by the cut and is dropped; everything before it is served.
        expected["k19"] = .some(nil)
        try expectValues(second, expected)
        try await second.stop()
    }

    @Test func aCrashImageWithSealedSegmentsRecoversFromSnapshotPlusTail() async throws {
        let crashCopy = try TempDir("crash-image")
        let first = try await TestServer.start { config in
            config.maxValueSize = 4096
            config.segmentSize = 16 << 10  // a few entries per segment: many rolls
        }
        let expected = try populate(first, 0..<120, size: 1000)
        // The maintenance tick (every second) writes the snapshot a roll asked for.
        let namespace = try defaultNamespace(first)
        for _ in 0..<50 where namespace.wantsSnapshot { try await Task.sleep(for: .milliseconds(100)) }
        #expect(!namespace.wantsSnapshot)
        #expect(namespace.segmentSizes().count > 5)
        // More writes after the snapshot, then the "crash": copy the directory as it is on disk now.
        var more = expected
        more.merge(try populate(first, 120..<130, size: 1000), uniquingKeysWith: { $1 })
        _ = try TestProcess.run("/bin/cp", ["-a", first.dataPath, crashCopy.path + "/data"])
        try await first.stop()
        unlink(crashCopy.path + "/data/.lock")
        let second = try await TestServer.start(directory: crashCopy) { config in
            config.maxValueSize = 4096
            config.segmentSize = 16 << 10
        }
        let recovery = try defaultNamespace(second).recovery
        guard case .snapshot(let replayed) = recovery else {
            Issue.record("expected recovery from the snapshot, got \(recovery)")
            try await second.stop()
            return
        }
        // Only what came after the snapshot was read from the segments, not all 130 entries.
        #expect(replayed >= 10 && replayed < 130, "\(replayed) entries replayed")
        try expectValues(second, more)
        try await second.stop()
    }

    @Test func aSnapshotFromBeforeACompactionStillRecoversEverything() async throws {
        let small: (inout ShardServerConfig) -> Void = { config in
            config.maxValueSize = 4096
            config.segmentSize = 16 << 10
        }
        let first = try await TestServer.start(small)
        var expected = try populate(first, 0..<60, size: 1000)
        // Overwrite two keys in three: the sealed segments become two-thirds dead, and
        // compaction has live entries (every third key) to copy.
        for i in 0..<60 where i % 3 != 0 {
            expected.merge(try populate(first, i..<(i + 1), size: 900), uniquingKeysWith: { _, new in new })
        }
        let snapshotPath = first.dataPath + "/default/" + IndexSnapshot.fileName
        let second = try await first.restarted(small)
        let beforeCompaction = try Data(contentsOf: URL(fileURLWithPath: snapshotPath))
        let reclaimed = try second.server.compactNow(minimumDeadRatio: 0.5)
        #expect(reclaimed > 0)
        try await second.stop()
        // The process died after compacting and before the new snapshot: the old one points
        // into segment files that are gone.
        try beforeCompaction.write(to: URL(fileURLWithPath: snapshotPath))
        let third = try await second.restarted(small)
        let recovery = try defaultNamespace(third).recovery
        // The copies compaction appended after the snapshot's position are replayed over the
        // snapshot's entries in the deleted segments (same sequence, later position wins).
        guard case .snapshot(let replayed) = recovery else {
            Issue.record("expected a replay from the snapshot, got \(recovery)")
            try await third.stop()
            return
        }
        #expect(replayed > 0)
        try expectValues(third, expected)
        #expect(try third.server.namespaceInfo("default").entries == 60)
        try await third.stop()
    }

    @Test func snapshotsRoundTripAndRefuseBadCounts() {
        let snapshot = IndexSnapshot(
            nextSequence: 9, nextSeqID: 3, coveredSegment: 2, coveredOffset: 777,
            segments: [.init(id: 1, size: 100, deadBytes: 40), .init(id: 2, size: 777, deadBytes: 0)],
            entries: [.init(key: [1, 2, 3], segmentID: 1, offset: 0, valueLength: 10, valueCRC: 5, sequence: 1,
                            timestamp: 1000, corrupt: false),
                      .init(key: Array(repeating: 7, count: 255), segmentID: 2, offset: 60, valueLength: 0, valueCRC: 0,
                            sequence: 8, timestamp: 1001, corrupt: true)])
        let bytes = snapshot.encode()
        #expect(IndexSnapshot.decode(bytes, maxValueLength: 1 << 20) == .success(snapshot))
        // A huge entry count with a valid checksum must be refused before anything is allocated.
        var forged = Array(bytes.prefix(bytes.count - 4))
        forged.replaceSubrange(40..<48, with: withUnsafeBytes(of: UInt64.max.littleEndian) { Array($0) })
        forged += withUnsafeBytes(of: CRC32C.checksum(forged).littleEndian) { Array($0) }
        guard case .failure(let problem) = IndexSnapshot.decode(forged, maxValueLength: 1 << 20) else {
            Issue.record("a forged entry count was accepted")
            return
        }
        #expect(problem.snapshotReason.contains("does not fit"))
        for cut in [0, 10, 51, bytes.count - 1] {
            #expect(throws: Never.self) { _ = IndexSnapshot.decode(Array(bytes.prefix(cut)), maxValueLength: 1 << 20) }
            if case .success = IndexSnapshot.decode(Array(bytes.prefix(cut)), maxValueLength: 1 << 20) {
                Issue.record("a snapshot cut at \(cut) bytes was accepted")
            }
        }
    }

    /// Snapshots are read and written in chunks: nothing holds the whole file, so the size limit
    /// only catches damage (it used to be a 1 GiB whole-file read, about 20 million keys).
    @Test func snapshotsStreamInChunksAndTheSizeLimitIsAParameter() throws {
        let dir = NSTemporaryDirectory() + "shard-snapshot-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/" + IndexSnapshot.fileName
        let entries = (0..<500).map { i in
            IndexSnapshot.EntryRecord(key: Array("key-\(i)-".utf8) + Array(repeating: UInt8(i & 0xFF), count: i % 200),
                                      segmentID: UInt32(i % 3), offset: UInt64(i) * 4096, valueLength: UInt32(i * 7),
                                      valueCRC: UInt32(i) &* 2_654_435_761, sequence: UInt64(i + 1), timestamp: 1_700_000_000,
                                      corrupt: i % 97 == 0)
        }
        let snapshot = IndexSnapshot(nextSequence: 501, nextSeqID: 0, coveredSegment: 2, coveredOffset: 12_345,
                                     segments: (0..<3).map { .init(id: $0, size: 1 << 20, deadBytes: UInt64($0) * 10) },
                                     entries: entries)
        // Written in 1000-byte pieces, then read back with chunk sizes that split every field.
        var pieces = 0
        try FileIO.writeAtomically(to: path, directory: dir) { write in
            try snapshot.encode(chunkSize: 1000) { pieces += 1; try write($0) }
        }
        #expect(pieces > 10)
        let whole = snapshot.encode()
        #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: path))) == whole)
        for chunk in [1, 7, 64, 4096, IndexSnapshot.chunkSize] {
            #expect(IndexSnapshot.read(path: path, maxValueLength: 1 << 20, chunkSize: chunk) == .success(snapshot), "chunk \(chunk)")
        }
        // The limit is the file size: one byte over it is fine, one byte under is refused.
        #expect(IndexSnapshot.read(path: path, maxValueLength: 1 << 20, maxFileSize: whole.count) == .success(snapshot))
        guard case .failure(let tooLarge) = IndexSnapshot.read(path: path, maxValueLength: 1 << 20, maxFileSize: whole.count - 1) else {
            Issue.record("a snapshot over the size limit was read")
            return
        }
        #expect(tooLarge.snapshotReason.contains("larger than"))
        // Damage anywhere is caught by the checksum of the streamed body, whatever the chunk size.
        for position in [0, 47, whole.count / 2, whole.count - 5, whole.count - 1] {
            var damaged = whole
            damaged[position] ^= 0x10
            try Data(damaged).write(to: URL(fileURLWithPath: path))
            for chunk in [7, 4096] {
                guard case .failure(let problem) = IndexSnapshot.read(path: path, maxValueLength: 1 << 20, chunkSize: chunk) else {
                    Issue.record("a snapshot damaged at byte \(position) was accepted (chunk \(chunk))")
                    continue
                }
                #expect(problem.snapshotReason == "checksum mismatch", "byte \(position): \(problem.snapshotReason)")
            }
        }
        // Cut short: refused, never a crash.
        for cut in [0, 20, 52, whole.count / 3, whole.count - 1] {
            try Data(whole.prefix(cut)).write(to: URL(fileURLWithPath: path))
            if case .success = IndexSnapshot.read(path: path, maxValueLength: 1 << 20, chunkSize: 64) {
                Issue.record("a snapshot cut at \(cut) bytes was accepted")
            }
        }
    }

    /// A namespace whose snapshot is over the store's limit rebuilds its index from the segments
    /// (and serves every value); under the default limit the same snapshot is used.
    @Test func aSnapshotOverTheLimitIsRebuiltFromTheSegments() async throws {
        let first = try await TestServer.start()
        let expected = try populate(first, 0..<50)
        try await first.stop()
        let directory = first.dataPath + "/default"
        let size = try #require(try FileManager.default.attributesOfItem(atPath: directory + "/" + IndexSnapshot.fileName)[.size] as? Int)
        let logger = Logger(label: "shard-test")

        var small = StoreLimits(maxValueLength: 8 << 20, segmentSize: 256 << 20)
        small.maxSnapshotSize = size - 1
        let rebuilt = try Namespace.open(name: "default", directory: directory, limits: small, logger: logger)
        guard case .rebuilt(let reason) = rebuilt.recovery else {
            Issue.record("expected a rebuild, got \(rebuilt.recovery)")
            return
        }
        #expect(reason.contains("larger than"), "\(reason)")
        #expect(rebuilt.info().entries == 50)

        var exact = small
        exact.maxSnapshotSize = size
        let fromSnapshot = try Namespace.open(name: "default", directory: directory, limits: exact, logger: logger)
        #expect(fromSnapshot.recovery == .snapshot(replayedEntries: 0))
        #expect(fromSnapshot.info().entries == 50)

        let second = try await first.restarted()
        try expectValues(second, expected)
        try await second.stop()
    }

    // MARK: - Several data directories

    @Test func placementFollowsFreeSpacePerNamespace() {
        typealias U = ShardStore.RootUsage
        #expect(ShardStore.placement([U(freeBytes: 100, namespaces: 0), U(freeBytes: 300, namespaces: 0)]) == 1)
        #expect(ShardStore.placement([U(freeBytes: 100, namespaces: 0), U(freeBytes: 300, namespaces: 3)]) == 0)
        #expect(ShardStore.placement([U(freeBytes: 100, namespaces: 1), U(freeBytes: 100, namespaces: 1)]) == 0)
        #expect(ShardStore.placement([U(freeBytes: 0, namespaces: 0), U(freeBytes: 1, namespaces: 9)]) == 1)
    }

    @Test func namespacesSpreadOverDataDirectoriesAndComeBackFromAll() async throws {
        let dir = try TempDir("multi")
        let dirs = [dir.path + "/disk-a", dir.path + "/disk-b"]
        let first = try await TestServer.start(directory: dir) { $0.dataDirectories = dirs }
        let session = ["AUTH admin-secret"] + (1...4).flatMap { ["NSNEW ns\($0)", "SELECT ns\($0)", "SET key value-\($0)"] }
        let replies = try RedisCLI.session(port: first.port, session)
        #expect(replies.filter { $0 == "OK" }.count == 1 + 4 + 4, "\(replies)")
        let inA = try FileIO.listDirectory(dirs[0]).filter { !$0.hasPrefix(".") }.sorted()
        let inB = try FileIO.listDirectory(dirs[1]).filter { !$0.hasPrefix(".") }.sorted()
        // Same file system, so equal free space: the directories take turns.
        #expect(inA == ["default", "ns2", "ns4"])
        #expect(inB == ["ns1", "ns3"])
        let info = try RedisCLI.run(port: first.port, ["NSINFO", "ns1"], raw: true)
        #expect(info.contains("data_dir: \(dirs[1])"))

        let second = try await first.restarted()
        for i in 1...4 {
            #expect(try RedisCLI.session(port: second.port, ["SELECT ns\(i)", "GET key"]) == ["OK", "\"value-\(i)\""])
        }
        // NSDEL moves the namespace to its own directory's trash.
        #expect(try RedisCLI.session(port: second.port, ["AUTH admin-secret", "NSDEL ns3"]) == ["OK", "OK"])
        #expect(!FileIO.exists(dirs[1] + "/ns3"))
        try await second.stop()

        // A name in two directories is refused at start: which copy is current cannot be told.
        _ = try TestProcess.run("/bin/cp", ["-a", dirs[1] + "/ns1", dirs[0] + "/ns1"])
        await #expect {
            _ = try await TestServer.start(directory: dir) { $0.dataDirectories = dirs }
        } throws: { error in
            guard case ShardServerError.namespaceConflict("ns1", _) = error else { return false }
            return true
        }
    }
}
