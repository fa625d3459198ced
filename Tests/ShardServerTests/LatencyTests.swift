import Foundation
import Testing
@testable import ShardServer

/// The per-command latency histograms, in statistics() and in INFO.
@Suite struct LatencyTests {
    @Test func bucketsAndPercentiles() {
        #expect(LatencyHistogram.bucket(forMicros: 0) == 0)
        #expect(LatencyHistogram.bucket(forMicros: 1) == 1)
        #expect(LatencyHistogram.bucket(forMicros: 3) == 2)
        #expect(LatencyHistogram.bucket(forMicros: 4) == 3)
        #expect(LatencyHistogram.bucket(forMicros: UInt64.max) == LatencyHistogram.bucketCount - 1)
        var h = LatencyHistogram()
        for micros in [UInt64](repeating: 5, count: 98) + [900, 100_000] {
            h.buckets[LatencyHistogram.bucket(forMicros: micros)] += 1
            h.count += 1
            h.totalMicros += micros
            h.maxMicros = max(h.maxMicros, micros)
        }
        #expect(h.percentileMicros(0.5) == 8)       // 5 µs falls in [4, 8)
        #expect(h.percentileMicros(0.99) == 1024)   // the 99th of 100 is the 900 µs one
        #expect(h.percentileMicros(1.0) == 100_000) // capped by the maximum seen
        #expect(LatencyHistogram().percentileMicros(0.5) == 0)
    }

    @Test func commandsAreTimedPerCommandAndShownInInfo() async throws {
        try await withServer(configure: { $0.fsync = .always }) { server in
            let client = try RawClient(port: server.port)
            for i in 0..<20 {
                client.send(IndexTests.command([Array("SET".utf8), Array("key\(i)".utf8), randomBytes(100, seed: UInt64(i))]))
                _ = client.receive(until: "key\(i)\r\n")
            }
            for i in 0..<50 {
                client.send(IndexTests.command([Array("GET".utf8), Array("key\(i % 20)".utf8)]))
                _ = client.receive(atLeast: 100 + 8)
            }
            client.send("PING\r\n")
            _ = client.receive(until: "PONG")

            let stats = try server.server.statistics()
            let get = try #require(stats.latencies["get"])
            let set = try #require(stats.latencies["set"])
            #expect(get.count == 50)
            #expect(set.count == 20)
            #expect(stats.latencies["other"]?.count == 1)
            #expect(stats.latencies["del"]?.count == 0)
            #expect(get.buckets.reduce(0, +) == 50)
            #expect(get.percentileMicros(0.5) <= get.percentileMicros(0.99))
            #expect(get.percentileMicros(0.99) <= get.maxMicros)
            // fsync=always: a SET's latency includes its fdatasync, so it cannot be under 1 µs.
            #expect(set.buckets[0] == 0)

            let info = try RedisCLI.run(port: server.port, ["INFO"], raw: true)
            #expect(info.contains("# latency"))
            #expect(info.contains("latency_get: calls=50 "), "\(info)")
            #expect(info.contains("latency_set: calls=20 "))
            #expect(info.contains("latency_get_buckets: lt"))
            #expect(!info.contains("latency_del:"))
        }
    }
}
