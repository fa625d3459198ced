// Farmer operations cost: `node-agent status` round trip over the admin socket and the agent's RSS,
// idle and with 100 deployments (zdb namespaces, made through the twin API on an embedded ledger).
// Anchors, measured in the same run: the admin socket's trivial /v1/ping (so the status figure shows
// what assembling the status costs beyond the socket and HTTP), and the idle agent's RSS.
//
//   bench/status-bench.sh            (builds release binaries and runs this)
//   status-bench /path/to/node-agent [deployments]
import ChainClient
import Foundation
import GridTypes
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("status-bench: \(message)\n".utf8))
    exit(1)
}

let arguments = CommandLine.arguments
let siblings = ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? arguments[0]) as NSString
let agentBinary = arguments.count > 1 ? arguments[1] : siblings.deletingLastPathComponent + "/node-agent"
let gridTwinBinary = (agentBinary as NSString).deletingLastPathComponent + "/grid-twin"
let deploymentCount = arguments.count > 2 ? Int(arguments[2]) ?? 100 : 100
guard FileManager.default.isExecutableFile(atPath: agentBinary) else { fail("no node-agent at \(agentBinary)") }

@discardableResult
func run(_ path: String, _ args: [String]) -> (Int32, String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = args
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    do { try process.run() } catch { fail("cannot run \(path): \(error)") }
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, output)
}

func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// One GET on the admin socket (HTTP/1.1, Connection: close), read to EOF; returns the body.
func adminGet(_ socketPath: String, _ path: String) -> [UInt8]? {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(socketPath.utf8)) }
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
    }
    guard connected == 0 else { return nil }
    let request = Array("GET \(path) HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".utf8)
    guard request.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == request.count else { return nil }
    var response = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        response += buffer[0..<n]
    }
    guard let split = response.firstRange(of: Array("\r\n\r\n".utf8)) else { return nil }
    return Array(response[split.upperBound...])
}

func rss(_ pid: Int32) -> (rss: Double, peak: Double) {
    let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    func field(_ name: String) -> Double {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return 0 }
        return Double(line.split(separator: " ").dropFirst().first.map(String.init) ?? "") ?? 0
    }
    return (field("VmRSS") / 1024, field("VmHWM") / 1024)
}

func percentile(_ values: [Double], _ p: Double) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return 0 }
    return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}

func milliseconds(_ d: Duration) -> Double { Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15 }

func roundTrips(_ socketPath: String, _ path: String, count: Int) -> [Double] {
    let clock = ContinuousClock()
    return (0..<count).map { _ in
        let start = clock.now
        guard adminGet(socketPath, path) != nil else { fail("GET \(path) failed") }
        return milliseconds(clock.now - start)
    }
}

func waitFor(_ seconds: Double, _ what: String, _ condition: () async -> Bool) async {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if await condition() { return }
        try? await Task.sleep(for: .milliseconds(100))
    }
    fail("timed out waiting for \(what)")
}

// MARK: set up an agent on an embedded ledger

let dir = NSTemporaryDirectory() + "status-bench-\(UUID().uuidString.prefix(8))"
try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
let config = dir + "/config.toml", state = dir + "/state", ledgerPath = dir + "/ledger.sqlite", socketPath = dir + "/admin.sock"
let apiPort = freePort()
guard run(agentBinary, ["init", "--config", config, "--state-dir", state, "--ledger", ledgerPath, "--farm-id", "1"]).0 == 0 else { fail("init failed") }
var text = try String(contentsOfFile: config, encoding: .utf8)
text = text.replacingOccurrences(of: "block_time_ms = 6000", with: "block_time_ms = 100")
text = text.replacingOccurrences(of: "listen = \"0.0.0.0:9900\"", with: "listen = \"127.0.0.1:\(freePort())\"")
text = text.replacingOccurrences(of: "api_listen = \"127.0.0.1:2021\"", with: "api_listen = \"127.0.0.1:\(apiPort)\"")
text = text.replacingOccurrences(of: "socket = \"/run/node-agent/admin.sock\"", with: "socket = \"\(socketPath)\"")
text = text.replacingOccurrences(of: "metrics_listen = \"127.0.0.1:9101\"", with: "metrics_listen = \"127.0.0.1:\(freePort())\"")
// Its own network names: an agent sweeps the interfaces and nft tables under its prefix it has no record of.
text = text.replacingOccurrences(of: "prefix = \"na\"", with: "prefix = \"sbn\"")
text = text.replacingOccurrences(of: "table = \"node_agent\"", with: "table = \"node_agent_status_bench\"")
try text.write(toFile: config, atomically: true, encoding: .utf8)

let agent = Process()
agent.executableURL = URL(fileURLWithPath: agentBinary)
agent.arguments = ["run", "--config", config, "--log-level", "warning"]
agent.standardOutput = FileHandle.nullDevice
agent.standardError = FileHandle(forWritingAtPath: "/dev/null")
try agent.run()
defer {
    kill(agent.processIdentifier, SIGTERM)
    agent.waitUntilExit()
    try? FileManager.default.removeItem(atPath: dir)
}

await waitFor(20, "the ledger") { FileManager.default.fileExists(atPath: ledgerPath) }
for args in [["twin", "create", "--key", dir + "/farmer.key"], ["farm", "create", "--name", "bench", "--key", dir + "/farmer.key"],
             ["twin", "create", "--key", dir + "/user.key"], ["fund", "100000", "--key", dir + "/user.key"]] {
    let (status, output) = run(gridTwinBinary, args + ["--ledger", ledgerPath])
    guard status == 0 else { fail("grid-twin \(args): \(output)") }
}
let ledger = try LocalLedger(path: ledgerPath)
let user = try NodeIdentity.load(from: dir + "/user.key")
guard let twinID = try await ledger.twinID(account: user.publicKey) else { fail("no user twin") }
await waitFor(60, "the node to register") { FileManager.default.fileExists(atPath: state + "/node.json") }
let nodeKey = try NodeIdentity.load(from: state + "/" + NodeIdentity.fileName).publicKey
guard let nodeTwin = try await ledger.twinID(account: nodeKey), let nodeID = try await ledger.nodeID(twin: nodeTwin) else { fail("no node") }

func okDeployments() -> Int {
    guard let body = adminGet(socketPath, "/v1/status"),
          let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
          let work = object["work"] as? [String: Any], let deployments = work["deployments"] as? [String: Int] else { return -1 }
    return deployments["ok"] ?? 0
}
await waitFor(60, "the agent to be Ready") { okDeployments() == 0 }
try await Task.sleep(for: .seconds(2))

let warmup = 20, samples = 300
_ = roundTrips(socketPath, "/v1/status", count: warmup)
let idlePing = roundTrips(socketPath, "/v1/ping", count: samples)
let idleStatus = roundTrips(socketPath, "/v1/status", count: samples)
let idleMemory = rss(agent.processIdentifier)

// MARK: 100 deployments through the twin API

func post(_ deployment: Deployment) async throws -> Int {
    let body = Array(try JSONEncoder().encode(deployment))
    let path = "/api/v1/deployments"
    var request = URLRequest(url: URL(string: "http://127.0.0.1:\(apiPort)\(path)")!, timeoutInterval: 30)
    request.httpMethod = "POST"
    for (name, value) in TwinRequestSignature.headers(method: "POST", path: path, body: body, twinID: twinID, keyPair: user.keyPair) {
        request.setValue(value, forHTTPHeaderField: name)
    }
    request.httpBody = Data(body)
    let (_, response) = try await URLSession.shared.data(for: request)
    return (response as? HTTPURLResponse)?.statusCode ?? 0
}

let clock = ContinuousClock()
let deployStart = clock.now
for n in 0..<deploymentCount {
    var d = Deployment(version: 0, twinID: twinID, description: "bench \(n)",
                       signatureRequirement: SignatureRequirement(requests: [SignatureRequest(twinID: twinID, required: true, weight: 1)], weightRequired: 1),
                       workloads: [Workload(name: "ns", data: .zdb(ZdbData(size: 1 << 20, password: "pw\(n)")))])
    let created = try await ledger.submit(.createNodeContract(nodeID: nodeID, deploymentHash: DeploymentChallenge.hash(d), deploymentData: [],
                                                              publicIPs: 0), signer: user.keyPair)
    guard case .contractCreated(let contract)? = created.events.first else { fail("no contract for deployment \(n)") }
    d.contractID = contract.id
    DeploymentChallenge.sign(&d, twinID: twinID, keyPair: user.keyPair)
    let status = try await post(d)
    guard status == 202 else { fail("deployment \(n): HTTP \(status)") }
}
await waitFor(300, "\(deploymentCount) deployments ok") { okDeployments() == deploymentCount }
let deploySeconds = milliseconds(clock.now - deployStart) / 1000
try await Task.sleep(for: .seconds(2))

_ = roundTrips(socketPath, "/v1/status", count: warmup)
let loadedPing = roundTrips(socketPath, "/v1/ping", count: samples)
let loadedStatus = roundTrips(socketPath, "/v1/status", count: samples)
let loadedMemory = rss(agent.processIdentifier)

var cliTimes = [Double]()
for _ in 0..<20 {
    let start = clock.now
    let (status, _) = run(agentBinary, ["status", "--json", "--config", config])
    guard status == 0 else { fail("node-agent status exited \(status)") }
    cliTimes.append(milliseconds(clock.now - start))
}

func row(_ name: String, _ value: Double, _ anchorName: String, _ anchor: Double, unit: String) {
    func pad(_ text: String, _ width: Int) -> String { text.padding(toLength: max(width, text.count), withPad: " ", startingAt: 0) }
    print(pad(name, 46) + pad(String(format: "%9.3f ", value) + unit, 14) + "   " + pad(anchorName, 28)
          + pad(String(format: "%9.3f ", anchor) + unit, 14) + String(format: "   ratio %6.2fx", anchor > 0 ? value / anchor : 0))
}

print("status-bench: node-agent \(agentBinary), \(samples) requests per figure, \(deploymentCount) zdb deployments "
      + String(format: "(made in %.1f s)", deploySeconds))
row("status round trip p50, 0 deployments", percentile(idleStatus, 0.5), "ping round trip p50", percentile(idlePing, 0.5), unit: "ms")
row("status round trip p50, \(deploymentCount) deployments", percentile(loadedStatus, 0.5), "ping round trip p50", percentile(loadedPing, 0.5), unit: "ms")
row("status round trip p99, \(deploymentCount) deployments", percentile(loadedStatus, 0.99), "ping round trip p99", percentile(loadedPing, 0.99), unit: "ms")
row("status p50, \(deploymentCount) vs 0 deployments", percentile(loadedStatus, 0.5), "status p50, 0 deployments", percentile(idleStatus, 0.5), unit: "ms")
row("`node-agent status --json` (process) p50", percentile(cliTimes, 0.5), "status round trip p50", percentile(loadedStatus, 0.5), unit: "ms")
row("agent RSS, \(deploymentCount) deployments", loadedMemory.rss, "agent RSS, idle", idleMemory.rss, unit: "MiB")
row("agent peak RSS (VmHWM), \(deploymentCount) deployments", loadedMemory.peak, "agent peak RSS, idle", idleMemory.peak, unit: "MiB")
