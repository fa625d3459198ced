import Foundation
import NIOCore
import Testing
@testable import ShardServer

/// Bad frames over a raw socket: each gets an error reply, framing errors close only that
/// connection, and everyone else keeps being served.
@Suite(.serialized) struct ProtocolTests {
    /// A second client must still be served after whatever the first one did.
    private func assertStillServing(_ s: TestServer) throws {
        #expect(try s.cli("GET", "canary") == "\"alive\"")
    }

    @Test func negativeAndHugeLengthsAreErrorsThatCloseOnlyThatConnection() async throws {
        try await withServer { s in
            #expect(try s.cli("SET", "canary", "alive") == "\"canary\"")
            let cases: [(String, String)] = [
                ("*1\r\n$-5\r\n", "-Protocol error: invalid bulk length\r\n"),
                ("*-7\r\n", "-Protocol error: invalid multibulk length\r\n"),
                ("*99999999\r\n", "-Protocol error: 99999999 arguments, the limit is 1025\r\n"),
                ("*1\r\n$99999999999999999999\r\n", "-Protocol error: invalid bulk length\r\n"),
                ("*2\r\n$3\r\nSET\r\n$9999999999\r\n", "-Protocol error: bulk length 9999999999 is over the limit of 8388608 bytes\r\n"),
                ("*1\r\n$abc\r\n", "-Protocol error: invalid bulk length\r\n"),
                ("*1\r\n:12\r\n", "-Protocol error: expected '$', got ':'\r\n"),
                ("*1\r\n$4\r\nPINGxx", "-Protocol error: expected CRLF after a bulk string of 4 bytes\r\n"),
                ("*12345678901234567890123\r\n", "-Protocol error: invalid multibulk length\r\n"),
            ]
            for (frame, expected) in cases {
                let client = try RawClient(port: s.port)
                client.send(frame)
                #expect(client.receive(until: "\r\n") == expected, "frame \(frame.debugDescription)")
                #expect(client.isClosedByPeer(), "frame \(frame.debugDescription) should close the connection")
                try assertStillServing(s)
            }
        }
    }

    @Test func oversizedValueIsSkippedAndTheConnectionStaysUsable() async throws {
        try await withServer { s in
            #expect(try s.cli("SET", "canary", "alive") == "\"canary\"")
            let client = try RawClient(port: s.port)
            let size = (8 << 20) + 10
            client.send("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$\(size)\r\n")
            client.send([UInt8](repeating: 0x41, count: size) + Array("\r\n".utf8))
            client.send("*1\r\n$4\r\nPING\r\n")
            let replies = client.receive(until: "+PONG\r\n")
            #expect(replies == "-Value too large (8388618 bytes, limit 8388608)\r\n+PONG\r\n")
            #expect(try s.cli("EXISTS", "big") == "(integer) 0")
            try assertStillServing(s)
        }
    }

    @Test func truncatedFrameWaitsWithoutHarmingOthers() async throws {
        try await withServer { s in
            #expect(try s.cli("SET", "canary", "alive") == "\"canary\"")
            let client = try RawClient(port: s.port, receiveTimeout: 1)
            client.send("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\nabc")  // 7 bytes of the value missing
            #expect(client.receive(atLeast: 1).isEmpty)  // nothing to answer yet
            try assertStillServing(s)
            client.send("defghij\r\n")                    // completing it later works
            #expect(client.receive(atLeast: 6) == Array("$1\r\nk\r\n".utf8))
            #expect(try s.cli("GET", "k") == "\"abcdefghij\"")
        }
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        try await withServer { s in
            let client = try RawClient(port: s.port)
            var batch = ""
            for i in 0..<500 {
                batch += "*3\r\n$3\r\nSET\r\n$\(String(i).count + 1)\r\nk\(i)\r\n$\(String(i).count)\r\n\(i)\r\n"
                batch += "*2\r\n$3\r\nGET\r\n$\(String(i).count + 1)\r\nk\(i)\r\n"
            }
            batch += "PING\r\n"  // inline command at the end
            client.send(batch)
            let text = client.receive(until: "+PONG\r\n")
            var expected = ""
            for i in 0..<500 {
                expected += "$\(String(i).count + 1)\r\nk\(i)\r\n$\(String(i).count)\r\n\(i)\r\n"
            }
            expected += "+PONG\r\n"
            #expect(text == expected)
        }
    }

    @Test func maxClientsRefusesTheExtraConnection() async throws {
        try await withServer(configure: { $0.maxClients = 2 }) { s in
            let a = try RawClient(port: s.port)
            let b = try RawClient(port: s.port)
            a.send("PING\r\n")
            b.send("PING\r\n")
            #expect(a.receive(until: "\r\n") == "+PONG\r\n")
            #expect(b.receive(until: "\r\n") == "+PONG\r\n")
            let c = try RawClient(port: s.port)
            #expect(c.receive(until: "\r\n") == "-Too many clients, try again later\r\n")
            #expect(c.isClosedByPeer())
            a.send("PING\r\n")
            #expect(a.receive(until: "\r\n") == "+PONG\r\n")
            #expect(try s.server.statistics().connectionsRefused == 1)
        }
    }

    @Test func idleConnectionsAreClosed() async throws {
        try await withServer(configure: { $0.idleTimeoutSeconds = 1 }) { s in
            let client = try RawClient(port: s.port, receiveTimeout: 5)
            client.send("PING\r\n")
            #expect(client.receive(until: "\r\n") == "+PONG\r\n")
            let start = Date()
            #expect(client.isClosedByPeer())
            #expect(Date().timeIntervalSince(start) < 4)
        }
    }

    /// A client that pipelines many GETs of a large value and never reads: the server stops
    /// reading from it (backpressure) instead of queueing replies, and keeps serving others.
    @Test func slowReaderDoesNotMakeTheServerBuffer() async throws {
        try await withServer(configure: { $0.sendfileThreshold = 1 << 20 }) { s in
            _ = try Python.run(port: s.port, "r.execute_command('SET', 'v', os.urandom(512 << 10)); r.execute_command('SET', 'canary', 'alive')")
            let client = try RawClient(port: s.port)
            // Other suites run in this process at the same time: judge the growth, not the total.
            let before = try residentMemoryBytes()
            var request = ""
            for _ in 0..<2000 { request += "*2\r\n$3\r\nGET\r\n$1\r\nv\r\n" }
            // Sending on a non-reading client: the kernel buffers fill, then this would block, so
            // send from another thread and do not wait for it.
            let fd = client.fd
            let bytes = Array(request.utf8)
            DispatchQueue.global().async {
                _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            }
            try await Task.sleep(for: .milliseconds(500))
            try assertStillServing(s)
            // 2000 replies of 512 KiB would be 1 GiB; the server's resident memory must stay far below.
            let rss = try residentMemoryBytes()
            #expect(rss < before + (512 << 20), "RSS grew from \(before >> 20) to \(rss >> 20) MiB")
        }
    }

    private func residentMemoryBytes() throws -> Int {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        let kb = Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
        return kb * 1024
    }
}

/// The decoder alone, byte by byte.
@Suite struct RESPDecoderTests {
    private func decodeAll(_ chunks: [[UInt8]], limits: RESPLimits = RESPLimits()) -> [RESPFrame] {
        var decoder = RESPDecoder(limits: limits)
        var buffer = ByteBuffer()
        var frames: [RESPFrame] = []
        for chunk in chunks {
            buffer.writeBytes(chunk)
            var steps = 0
            loop: while steps < 100_000 {
                steps += 1
                switch decoder.decodeStep(&buffer) {
                case .needMoreData: break loop
                case .continue: continue
                case .frame(let frame): frames.append(frame)
                }
            }
            buffer.discardReadBytes()
        }
        return frames
    }

    private func commands(_ frames: [RESPFrame]) -> [[String]] {
        frames.compactMap {
            if case .command(let args) = $0 { return args.map { String(buffer: $0) } }
            return nil
        }
    }

    @Test func splitAtEveryByteGivesTheSameCommands() {
        let wire = Array("*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\n*1\r\n$4\r\nPING\r\nGET  key\r\n".utf8)
        let whole = commands(decodeAll([wire]))
        #expect(whole == [["SET", "key", "va\r\nl"], ["PING"], ["GET", "key"]])
        for cut in 1..<wire.count {
            #expect(commands(decodeAll([Array(wire[..<cut]), Array(wire[cut...])])) == whole, "cut at \(cut)")
        }
        #expect(commands(decodeAll(wire.map { [$0] })) == whole)
    }

    @Test func emptyMultibulkIsIgnored() {
        #expect(commands(decodeAll([Array("*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n".utf8)])) == [["PING"]])
    }

    @Test func inlineLineOverTheLimitIsFatal() {
        var limits = RESPLimits()
        limits.maxInlineLength = 100
        let frames = decodeAll([[UInt8](repeating: 0x41, count: 200)], limits: limits)
        guard case .fatal(let text)? = frames.first else {
            Issue.record("expected a fatal frame, got \(frames)")
            return
        }
        #expect(text == "Protocol error: too big inline request")
    }

    /// Bounded fuzzing: random and mutated frames must never crash the decoder, never hand on an
    /// argument over the limits, and always end (fatal, or all input consumed).
    @Test func fuzzedFramesStayWithinBounds() {
        var limits = RESPLimits()
        limits.maxBulkLength = 64
        limits.maxRequestBytes = 256
        limits.maxSkippedBytes = 1024
        limits.maxArguments = 8
        limits.maxInlineLength = 128
        let seeds: [[UInt8]] = [
            Array("*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n".utf8),
            Array("*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n".utf8),
            Array("PING\r\n".utf8),
            Array("*1\r\n$100\r\n".utf8) + [UInt8](repeating: 0x61, count: 100) + Array("\r\n".utf8),
        ]
        let alphabet = Array("*$\r\n-0123456789:+ ".utf8)
        var rng = SystemRandomNumberGenerator()
        var fatal = 0, commandsSeen = 0
        for iteration in 0..<20_000 {
            var input = seeds[iteration % seeds.count]
            for _ in 0..<Int.random(in: 0...6, using: &rng) {
                let position = Int.random(in: 0...input.count, using: &rng)
                switch Int.random(in: 0..<4, using: &rng) {
                case 0 where !input.isEmpty: input[min(position, input.count - 1)] = alphabet.randomElement(using: &rng) ?? 0
                case 1: input.insert(UInt8.random(in: 0...255, using: &rng), at: position)
                case 2 where position < input.count: input.remove(at: position)
                default: input.insert(contentsOf: seeds.randomElement(using: &rng) ?? [], at: position)
                }
            }
            // Feed in random chunks.
            var chunks: [[UInt8]] = []
            var rest = input[...]
            while !rest.isEmpty {
                let n = Int.random(in: 1...max(1, rest.count), using: &rng)
                chunks.append(Array(rest.prefix(n)))
                rest = rest.dropFirst(n)
            }
            for frame in decodeAll(chunks, limits: limits) {
                switch frame {
                case .command(let args):
                    commandsSeen += 1
                    #expect(!args.isEmpty && args.count <= limits.maxArguments)
                    #expect(args.allSatisfy { $0.readableBytes <= max(limits.maxBulkLength, limits.maxInlineLength) })
                    #expect(args.reduce(0) { $0 + $1.readableBytes } <= max(limits.maxRequestBytes, limits.maxInlineLength))
                case .fatal:
                    fatal += 1
                case .invalid:
                    break
                }
            }
        }
        // The mutations must exercise both outcomes, or the fuzzer is not testing anything.
        #expect(fatal > 100)
        #expect(commandsSeen > 1000)
    }
}
