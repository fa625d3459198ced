import Foundation
import GridTypes
import WorkloadNetwork

// Throughput of container networks against the anchor, a plain host-to-host veth pair, in one run:
// a node namespace with an "outside" namespace behind a veth; container-to-container over the
// deployment's bridge, and outside-to-container through a published port (DNAT). iperf3, TCP,
// one stream. Run as root: `swift run -c release network-bench [seconds]`.

struct BenchError: Error, CustomStringConvertible { var description: String }

@discardableResult
func run(_ arguments: [String], allowFailure: Bool = false) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: arguments[0])
    process.arguments = Array(arguments.dropFirst())
    let out = Pipe()
    process.standardOutput = out
    process.standardError = out
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self)
    if process.terminationStatus != 0 && !allowFailure { throw BenchError(description: "\(arguments.joined(separator: " ")): \(text)") }
    return text
}

let seconds = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 3 : 3
guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/iperf3") else {
    print("network-bench: needs root and iperf3 (apt-get install iperf3)")
    exit(1)
}
let id = String(UUID().uuidString.prefix(4)).lowercased()
let node = "nb\(id)node", outside = "nb\(id)out"
let stateDir = NSTemporaryDirectory() + "network-bench-\(id)"
var servers: [Process] = []

@MainActor func iperfServer(_ namespace: String, port: Int) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
    process.arguments = ["netns", "exec", namespace, "/usr/bin/iperf3", "-s", "-p", "\(port)", "-1"]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    servers.append(process)
    usleep(300_000)
}

/// Gbit/s received, from iperf3's JSON.
func iperfClient(_ namespace: String, host: String, port: Int) throws -> Double {
    let text = try run(["/usr/sbin/ip", "netns", "exec", namespace, "/usr/bin/iperf3", "-c", host, "-p", "\(port)", "-t", "\(seconds)", "-J"])
    guard let json = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
          let end = json["end"] as? [String: Any], let sum = end["sum_received"] as? [String: Any],
          let bits = sum["bits_per_second"] as? Double else { throw BenchError(description: "iperf3 output: \(text.prefix(500))") }
    return bits / 1e9
}

@MainActor func cleanUp(_ network: NodeNetwork?) async {
    for server in servers where server.isRunning { kill(server.processIdentifier, SIGKILL) }
    if let network { try? await network.removeEverything() }
    for ns in [node, outside] { _ = try? run(["/usr/sbin/ip", "netns", "delete", ns], allowFailure: true) }
    try? FileManager.default.removeItem(atPath: stateDir)
}

var network: NodeNetwork?
do {
    try run(["/usr/sbin/ip", "netns", "add", node])
    try run(["/usr/sbin/ip", "netns", "add", outside])
    try run(["/usr/sbin/ip", "-n", node, "link", "add", "pub0", "type", "veth", "peer", "name", "eth0", "netns", outside])
    try run(["/usr/sbin/ip", "-n", node, "addr", "add", "192.0.2.1/24", "dev", "pub0"])
    try run(["/usr/sbin/ip", "-n", outside, "addr", "add", "192.0.2.2/24", "dev", "eth0"])
    for (ns, dev) in [(node, "pub0"), (outside, "eth0"), (node, "lo"), (outside, "lo")] { try run(["/usr/sbin/ip", "-n", ns, "link", "set", dev, "up"]) }
    let net = try NodeNetwork(configuration: .init(prefix: "b" + String(id.prefix(3)), table: "na_bench_\(id)", stateDirectory: stateDir,
                                                   hostNamespace: node))
    network = net
    try await net.start()
    let c1 = try await net.attach(contractID: 1, name: "c1", network: ContainerNetwork(ports: [.init(protocol: .tcp, port: 5201, publicPort: 15201)]))
    let c2 = try await net.attach(contractID: 1, name: "c2", network: ContainerNetwork())
    _ = c1
    let ns1 = await net.namespaceName(1, "c1"), ns2 = await net.namespaceName(1, "c2")

    try iperfServer(outside, port: 5301)
    let anchor = try iperfClient(node, host: "192.0.2.2", port: 5301)
    try iperfServer(ns2, port: 5202)
    let c2c = try iperfClient(ns1, host: c2.address, port: 5202)
    try iperfServer(ns1, port: 5201)
    let published = try iperfClient(outside, host: "192.0.2.1", port: 15201)
    let traffic = await net.contractTraffic().first { $0.contractID == 1 }

    print("network-bench: TCP, 1 stream, \(seconds) s each (iperf3)")
    print(String(format: "  host-to-host veth (anchor)        %7.2f Gbit/s", anchor))
    print(String(format: "  container-to-container (bridge)   %7.2f Gbit/s   %.2fx anchor", c2c, c2c / anchor))
    print(String(format: "  outside -> published port (DNAT)  %7.2f Gbit/s   %.2fx anchor", published, published / anchor))
    if let traffic {
        print("  counters: public in \(traffic.publicIn) B, public out \(traffic.publicOut) B, private \(traffic.privateBytes) B")
    }
} catch {
    print("network-bench failed: \(error)")
    await cleanUp(network)
    exit(1)
}
await cleanUp(network)
