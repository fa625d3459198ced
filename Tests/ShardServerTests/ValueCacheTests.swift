import Foundation
import NIOCore
import Testing
@testable import ShardServer

#if canImport(Glibc)
import Glibc
#endif

/// The small-value reply cache: bounded, never stale, never ahead of a corrupt flag.
@Suite struct ValueCacheTests {
    func reply(_ byte: UInt8, _ count: Int) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: count + 16)
        buffer.writeBulkHeader(count)
        buffer.writeBytes([UInt8](repeating: byte, count: count))
        buffer.writeStaticString("\r\n")
        return buffer
    }

    func key(_ i: Int, namespace: UInt64 = 1) -> ValueCache.Key { .init(namespace: namespace, key: Array("k\(i)".utf8)) }
    func version(_ sequence: UInt64, segment: UInt32 = 0, offset: UInt64 = 0) -> ValueCache.Version {
        .init(sequence: sequence, segmentID: segment, offset: offset)
    }

    @Test func aHitNeedsTheSameNamespaceKeySequenceAndPlace() {
        let cache = ValueCache(capacity: 1 << 20, maxValueLength: 4096)
        let stored = reply(7, 100)
        cache.insert(key(1), version: version(5, segment: 2, offset: 40), reply: stored)
        #expect(cache.lookup(key(1), version: version(5, segment: 2, offset: 40)) == stored)
        #expect(cache.lookup(key(1), version: version(6, segment: 2, offset: 40)) == nil)  // overwritten
        #expect(cache.lookup(key(1), version: version(5, segment: 3, offset: 0)) == nil)   // moved by compaction
        #expect(cache.lookup(key(1, namespace: 2), version: version(5, segment: 2, offset: 40)) == nil)  // another instance
        #expect(cache.lookup(key(2), version: version(5, segment: 2, offset: 40)) == nil)
        cache.remove(key(1))
        #expect(cache.lookup(key(1), version: version(5, segment: 2, offset: 40)) == nil)
        cache.insert(key(3, namespace: 9), version: version(1), reply: stored)
        cache.insert(key(4, namespace: 8), version: version(1), reply: stored)
        cache.removeAll(namespace: 9)
        #expect(cache.lookup(key(3, namespace: 9), version: version(1)) == nil)
        #expect(cache.lookup(key(4, namespace: 8), version: version(1)) == stored)
        #expect(!ValueCache(capacity: 0, maxValueLength: 4096).admits(length: 0))
        #expect(!cache.admits(length: 4097) && cache.admits(length: 4096))
    }

    @Test func staysWithinItsBytesAndKeepsTheHotSetUnderAScan() {
        let capacity = 64 << 10
        let cache = ValueCache(capacity: capacity, maxValueLength: 4096)
        let value = reply(1, 1000)
        // Ten hot keys, looked up between the inserts of a long scan of cold ones.
        for hot in 0..<10 { cache.insert(key(hot), version: version(1), reply: value) }
        var hotHits = 0
        for cold in 100..<2100 {
            cache.insert(key(cold), version: version(1), reply: value)
            #expect(cache.statistics.bytes <= capacity)
            let hot = cold % 10
            if cache.lookup(key(hot), version: version(1)) != nil { hotHits += 1 }
        }
        #expect(cache.statistics.entries < 100)
        // CLOCK gives a referenced key a second chance each lap: the hot keys stay (after the
        // first lap every lookup hits).
        #expect(hotHits >= 1900, "hot hits: \(hotHits)")
        // A value too large for a fair share of the budget is not cached at all.
        cache.insert(key(5000), version: version(1), reply: reply(2, capacity / 4))
        #expect(cache.lookup(key(5000), version: version(1)) == nil)
    }

    @Test func theHandStaysBoundedWhenKeysComeAndGoWithoutFillingTheCache() {
        let cache = ValueCache(capacity: 1 << 30, maxValueLength: 4096)
        let value = reply(3, 10)
        for i in 0..<50_000 {
            cache.insert(key(i % 7), version: version(UInt64(i)), reply: value)
            cache.remove(key(i % 7))
        }
        #expect(cache.statistics.entries == 0 && cache.statistics.bytes == 0)
        #expect(cache.statistics.hand <= 1024 + 2)
    }

    private func info(_ s: TestServer, _ field: String) throws -> Int {
        let text = try s.cli("INFO")
        let line = text.split(separator: "\n").first { $0.hasPrefix(field + ": ") } ?? ""
        return Int(line.dropFirst(field.count + 2).split(separator: " ").first ?? "") ?? -1
    }

    /// Through the server: hits are counted, overwrites and deletes are seen at once, a flag set
    /// by CHECK (or the scrub) wins over cached bytes, compaction moves are re-read.
    @Test func theServerNeverServesStaleOrFlaggedValuesFromTheCache() async throws {
        try await withServer(configure: { config in
            config.maxValueSize = 4096
            config.segmentSize = 64 << 10
        }) { s in
            let v1 = String(repeating: "a", count: 3000)
            #expect(try s.cli("SET", "k", v1) == "\"k\"")
            #expect(try s.cli("GET", "k") == "\"\(v1)\"")
            let hits = try info(s, "value_cache_hits")
            #expect(try s.cli("GET", "k") == "\"\(v1)\"")
            #expect(try info(s, "value_cache_hits") == hits + 1)
            #expect(try s.server.statistics().valueCacheHits == UInt64(hits + 1))  // what status and metrics read
            #expect(try info(s, "value_cache_entries") == 1)

            let v2 = String(repeating: "b", count: 3000)
            #expect(try s.cli("SET", "k", v2) == "\"k\"")
            #expect(try s.cli("GET", "k") == "\"\(v2)\"")
            #expect(try s.cli("DEL", "k") == "OK")
            #expect(try s.cli("GET", "k") == "(nil)")
            #expect(try s.cli("MGET", "k").contains("(nil)"))

            // Damage on disk under a cached value: the cached bytes were verified and are right;
            // once CHECK flags the entry, GET refuses it like any corrupt entry.
            #expect(try s.cli("SET", "victim", v1) == "\"victim\"")
            #expect(try s.cli("GET", "victim") == "\"\(v1)\"")
            let names = try FileManager.default.contentsOfDirectory(atPath: s.dataPath + "/default").filter { $0.hasSuffix(".dat") }.sorted()
            let segment = s.dataPath + "/default/" + (names.last ?? "")
            let size = (try FileManager.default.attributesOfItem(atPath: segment)[.size] as? NSNumber)?.uint64Value ?? 0
            try corruptByte(segment, at: size - 100)
            #expect(try s.cli("GET", "victim") == "\"\(v1)\"")
            #expect(try s.cli("CHECK", "victim") == "(integer) 0")
            #expect(try s.cli("GET", "victim") == "(error) Data corrupted")
            #expect(try s.cli("MGET", "victim").contains("Data corrupted"))

            // Compaction moves live values; the cached copies miss (new place) and are re-read.
            _ = try Python.run(port: s.port, """
            for round in range(3):
                for i in range(60):
                    r.execute_command('SET', 'c%02d' % i, (('round %d key %d ' % (round, i)) * 200)[:2000])
            assert all(r.execute_command('GET', 'c%02d' % i) == (('round 2 key %d ' % i) * 200)[:2000].encode() for i in range(60))
            """)
            let misses = try info(s, "value_cache_misses")
            #expect(try s.server.compactNow(minimumDeadRatio: 0.3) > 0)
            let check = """
            print(all(r.execute_command('GET', 'c%02d' % i) == (('round 2 key %d ' % i) * 200)[:2000].encode() for i in range(60)))
            """
            #expect(try Python.run(port: s.port, check) == "True")
            #expect(try info(s, "value_cache_misses") > misses)
            #expect(try Python.run(port: s.port, check) == "True")
        }
    }

    /// A namespace deleted and created again starts its sequence numbers over: the cache must not
    /// answer for the new namespace with the old one's bytes.
    @Test func aRecreatedNamespaceIsNotServedTheOldValues() async throws {
        try await withServer { s in
            try s.server.createNamespace("ns")
            let script = { (value: String) in """
            r.execute_command('SELECT', 'ns')
            r.execute_command('SET', 'key', '\(value)')
            print(r.execute_command('GET', 'key').decode(), r.execute_command('GET', 'key').decode())
            """ }
            #expect(try Python.run(port: s.port, script("old value")) == "old value old value")
            try s.server.deleteNamespace("ns")
            try s.server.createNamespace("ns")
            #expect(try Python.run(port: s.port, script("new value")) == "new value new value")
        }
    }
}
