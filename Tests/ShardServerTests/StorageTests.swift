import Foundation
import Testing
@testable import ShardServer

#if canImport(Glibc)
import Glibc
#endif

/// Recovery, integrity and compaction of the segment store, through the server.
@Suite(.serialized) struct StorageTests {
    private func segments(_ dir: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".dat") }.sorted()
    }

    private func fileSize(_ path: String) throws -> UInt64 {
        (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.uint64Value ?? 0
    }

    @Test func restartKeepsEverythingAndDropsATornTail() async throws {
        let s = try await TestServer.start()
        _ = try Python.run(port: s.port, """
        for i in range(100):
            r.execute_command('SET', 'key%d' % i, ('value %d ' % i) * 50)
        r.execute_command('DEL', 'key7')
        r.execute_command('SET', 'key8', 'overwritten')
        """)
        try await s.stop()
        let segment = s.dataPath + "/default/" + (try segments(s.dataPath + "/default").last ?? "")
        let intactSize = try fileSize(segment)
        // A torn write: half a header, then some of a payload, as a crash mid-append leaves it.
        let header = EntryHeader(flags: 0, keyLength: 4, valueLength: 1000, valueCRC: 0, sequence: 9999, timestamp: 1)
        let torn = Array(header.encode(key: Array("torn".utf8))) + [UInt8](repeating: 7, count: 300)
        let handle = try #require(FileHandle(forWritingAtPath: segment))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(torn))
        try handle.close()

        let s2 = try await s.restarted()
        let out = Result { try Python.run(port: s2.port, """
            ok = all(r.execute_command('GET', 'key%d' % i) == (('value %d ' % i) * 50).encode() for i in range(100) if i not in (7, 8))
            print(json.dumps({'ok': ok, 'k7': r.execute_command('GET', 'key7'), 'k8': r.execute_command('GET', 'key8').decode(),
                              'torn': r.execute_command('EXISTS', 'torn'), 'size': r.execute_command('DBSIZE')}))
            """) }
        try await s2.stop()
        #expect(try out.get() == "{\"ok\": true, \"k7\": null, \"k8\": \"overwritten\", \"torn\": 0, \"size\": 99}")
        #expect(try fileSize(segment) == intactSize)  // the torn bytes were cut off
    }

    @Test func tornPayloadWithFullLengthIsDetectedByItsChecksum() async throws {
        let s = try await TestServer.start()
        #expect(try s.cli("SET", "good", "kept") == "\"good\"")
        #expect(try s.cli("SET", "last", "this value will be damaged") == "\"last\"")
        try await s.stop()
        let segment = s.dataPath + "/default/" + (try segments(s.dataPath + "/default").last ?? "")
        // Damage the last byte: the file is as long as the index says, but the bytes are wrong
        // (as when the size reached the disk and the data did not).
        try corruptByte(segment, at: try fileSize(segment) - 1)
        // The clean stop wrote an index snapshot, and a snapshot only covers bytes already
        // fdatasync'ed: damage under it is the disk's, not a torn write, so GET refuses the value.
        let s2 = try await s.restarted()
        #expect(try s2.cli("GET", "good") == "\"kept\"")
        #expect(try s2.cli("GET", "last") == "(error) Data corrupted")
        try await s2.stop()
        // Without a snapshot (the crash came before one was written) start-up verifies the last
        // segment's values and drops the torn entry.
        #expect(unlink(s.dataPath + "/default/" + IndexSnapshot.fileName) == 0)
        let s3 = try await s2.restarted()
        let good = try s3.cli("GET", "good")
        let last = try s3.cli("GET", "last")
        try await s3.stop()
        #expect(good == "\"kept\"")
        #expect(last == "(nil)")
    }

    @Test func corruptSmallValueIsAnErrorOnGetNeverWrongBytes() async throws {
        try await withServer { s in
            #expect(try s.cli("SET", "first", "aaaaaaaaaaaaaaaaaaaa") == "\"first\"")
            #expect(try s.cli("SET", "victim", "bbbbbbbbbbbbbbbbbbbb") == "\"victim\"")
            let segment = s.dataPath + "/default/" + (try segments(s.dataPath + "/default").first ?? "")
            try corruptByte(segment, at: try fileSize(segment) - 5)  // inside victim's value
            #expect(try s.cli("GET", "victim") == "(error) Data corrupted")
            #expect(try s.cli("CHECK", "victim") == "(integer) 0")
            #expect(try s.cli("GET", "first") == "\"aaaaaaaaaaaaaaaaaaaa\"")
            #expect(try s.cli("PROOF", "victim", "nonce") == "(error) Data corrupted")
            // Writing the key again heals it.
            #expect(try s.cli("SET", "victim", "fresh") == "\"victim\"")
            #expect(try s.cli("GET", "victim") == "\"fresh\"")
        }
    }

    /// Large values go out with sendfile unchecked; CHECK or the scrub finds the damage and from
    /// then on GET refuses the entry.
    @Test func corruptLargeValueIsFoundByCheckAndScrubThenRefused() async throws {
        try await withServer(configure: { $0.sendfileThreshold = 1024 }) { s in
            _ = try Python.run(port: s.port, """
            r.execute_command('SET', 'big1', os.urandom(200000))
            r.execute_command('SET', 'big2', os.urandom(200000))
            """)
            let segment = s.dataPath + "/default/" + (try segments(s.dataPath + "/default").first ?? "")
            let size = try fileSize(segment)
            try corruptByte(segment, at: size - 1000)        // big2
            try corruptByte(segment, at: size / 2 - 50_000)  // big1
            #expect(try s.cli("CHECK", "big2") == "(integer) 0")
            #expect(try s.cli("GET", "big2") == "(error) Data corrupted")
            #expect(try s.server.scrubNow() == 1)  // big1; big2 was already flagged
            #expect(try s.cli("GET", "big1") == "(error) Data corrupted")
            let info = try s.server.namespaceInfo("default")
            #expect(info.corruptEntries == 2)
        }
    }

    @Test func backgroundScrubFlagsCorruptEntries() async throws {
        try await withServer(configure: { $0.scrubBytesPerSecond = 64 << 20 }) { s in
            #expect(try s.cli("SET", "k", String(repeating: "x", count: 1000)) == "\"k\"")
            let segment = s.dataPath + "/default/" + (try segments(s.dataPath + "/default").first ?? "")
            try corruptByte(segment, at: try fileSize(segment) - 10)
            var flagged = false
            for _ in 0..<50 where !flagged {  // the scrub ticks once a second
                try await Task.sleep(for: .milliseconds(100))
                flagged = try s.server.namespaceInfo("default").corruptEntries == 1
            }
            #expect(flagged)
        }
    }

    @Test func compactionReclaimsDeadEntriesAndKeepsOrderAndData() async throws {
        let s = try await TestServer.start { config in
            config.maxValueSize = 4096
            config.segmentSize = 64 << 10
        }
        _ = try Python.run(port: s.port, """
        for round in range(4):
            for i in range(100):
                r.execute_command('SET', 'k%03d' % i, (('round %d key %d ' % (round, i)) * 40)[:1500])
        for i in range(0, 100, 10):
            r.execute_command('DEL', 'k%03d' % i)
        """)
        let before = try s.server.namespaceInfo("default")
        let reclaimed = try s.server.compactNow(minimumDeadRatio: 0.5)
        let after = try s.server.namespaceInfo("default")
        #expect(reclaimed > 0)
        #expect(after.diskSize < before.diskSize)
        #expect(after.entries == 90)
        let check = """
        ok = all(r.execute_command('GET', 'k%03d' % i) == (('round 3 key %d ' % i) * 40)[:1500].encode() for i in range(100) if i % 10)
        gone = all(r.execute_command('GET', 'k%03d' % i) is None for i in range(0, 100, 10))
        keys = []
        cursor = None
        for _ in range(100):
            try:
                reply = r.execute_command('SCAN', cursor) if cursor else r.execute_command('SCAN')
            except redis.ResponseError:
                break
            cursor = reply[0]
            keys += [k.decode() for k, _, _ in reply[1]]
        print(json.dumps({'ok': ok, 'gone': gone, 'order': keys == ['k%03d' % i for i in range(100) if i % 10]}))
        """
        #expect(try Python.run(port: s.port, check) == "{\"ok\": true, \"gone\": true, \"order\": true}")
        // The same after a restart: copies and tombstones were made durable before originals went.
        let s2 = try await s.restarted()
        let again = Result { try Python.run(port: s2.port, check) }
        let info = try s2.server.namespaceInfo("default")
        try await s2.stop()
        #expect(try again.get() == "{\"ok\": true, \"gone\": true, \"order\": true}")
        #expect(info.entries == 90)
    }

    @Test func readersAreServedWhileCompactionRuns() async throws {
        try await withServer(configure: { config in
            config.maxValueSize = 4096
            config.segmentSize = 64 << 10
        }) { s in
            _ = try Python.run(port: s.port, """
            for round in range(3):
                for i in range(300):
                    r.execute_command('SET', 'k%03d' % i, (('r%d k%d ' % (round, i)) * 300)[:2000])
            """)
            // Read everything continuously in a child while compacting here.
            let port = s.port
            let reader = Task.detached {
                try Python.run(port: port, """
                bad = 0
                deadline = time.time() + 3
                n = 0
                while time.time() < deadline:
                    i = n % 300
                    if r.execute_command('GET', 'k%03d' % i) != (('r2 k%d ' % i) * 300)[:2000].encode():
                        bad += 1
                    n += 1
                print(json.dumps({'bad': bad, 'reads': n}))
                """)
            }
            try await Task.sleep(for: .milliseconds(300))
            let reclaimed = try s.server.compactNow(minimumDeadRatio: 0.3)
            let result = try await reader.value
            #expect(reclaimed > 0)
            let parsed = try #require(try JSONSerialization.jsonObject(with: Data(result.utf8)) as? [String: Int])
            #expect(parsed["bad"] == 0)
            #expect((parsed["reads"] ?? 0) > 100)
        }
    }

    @Test func secondServerOnTheSameDirectoryIsRefused() async throws {
        try await withServer { s in
            var config = s.config
            config.port = 0
            let other = ShardServer()
            await #expect(throws: ShardServerError.self) { try await other.start(config) }
        }
    }

    /// A full disk: the write that does not fit gets an error, the segment is cut back so no half
    /// entry remains, everything stored before stays readable, and the server goes on serving.
    @Test(.enabled(if: getuid() == 0, "mounting a small tmpfs needs root"))
    func diskFullIsAnErrorAndLosesNothing() async throws {
        let dir = try TempDir("enospc")
        let mountPoint = dir.path + "/mnt"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let mount = try TestProcess.run("/bin/mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", mountPoint])
        try #require(mount.status == 0, "mount tmpfs: \(mount.stderr)")
        defer { _ = try? TestProcess.run("/bin/umount", ["-l", mountPoint]) }
        let s = try await TestServer.start { config in
            config.dataDirectory = mountPoint + "/data"
            config.maxValueSize = 1 << 20
            config.segmentSize = 2 << 20
        }
        let out = Result { try Python.run(port: s.port, """
            stored = {}
            errors = []
            for i in range(12):
                value = os.urandom(500000)
                try:
                    r.execute_command('SET', 'k%d' % i, value)
                    stored['k%d' % i] = value
                except redis.ResponseError as e:
                    errors.append(str(e))
            intact = all(r.execute_command('GET', k) == v for k, v in stored.items())
            print(json.dumps({'stored': len(stored), 'errors': errors[:1], 'nerrors': len(errors), 'intact': intact,
                              'ping': r.execute_command('PING').decode(), 'dbsize': r.execute_command('DBSIZE')}))
            """) }
        // And after a restart on the same full disk.
        let s2 = try await s.restarted()
        let afterRestart = Result { try RedisCLI.run(port: s2.port, ["DBSIZE"]) }
        try await s2.stop()
        let res = try #require(try JSONSerialization.jsonObject(with: Data(try out.get().utf8)) as? [String: Any])
        let stored = res["stored"] as? Int ?? 0
        #expect(stored >= 4 && stored < 12)
        #expect((res["errors"] as? [String])?.first?.hasPrefix("Cannot write data right now: No space left on device") == true)
        #expect(res["intact"] as? Bool == true)
        #expect(res["ping"] as? String == "PONG")
        #expect(res["dbsize"] as? Int == stored)
        #expect(try afterRestart.get() == "(integer) \(stored)")
    }
}
