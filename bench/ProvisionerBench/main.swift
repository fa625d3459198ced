// Provisioner latency and throughput on the embedded ledger, in one process with the real pieces:
// block producer, contract watcher into the ContractBook, Provisioner with real loop-mounted volumes
// and namespaces on a real ShardServer.
//  1. contract creation -> running: submit create_node_contract (waits for its block), hand the
//     signed deployment to the provisioner, wait until every workload is ok. Target (issue 6):
//     under 1 s plus one block time.
//  2. deployments accepted per second: N zdb deployments whose contracts already exist, verified
//     against the chain, admitted and recorded (one at a time, then 8 concurrent clients).
// Run as root (loop mounts): swift run -c release provisioner-bench
import ChainClient
import ContainerRuntime
import Foundation
import GridTypes
import Logging
import Provisioner
import ShardServer
import WorkloadBackends

func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
func median(_ v: [Double]) -> Double { let s = v.sorted(); return s.isEmpty ? 0 : s[s.count / 2] }

LoggingSystem.bootstrap { label in var h = StreamLogHandler.standardError(label: label); h.logLevel = .error; return h }
let blockMilliseconds = Int(ProcessInfo.processInfo.environment["BENCH_BLOCK_MS"] ?? "") ?? 1000
let latencyRounds = Int(ProcessInfo.processInfo.environment["BENCH_ROUNDS"] ?? "") ?? 10
let throughputCount = Int(ProcessInfo.processInfo.environment["BENCH_DEPLOYMENTS"] ?? "") ?? 200
let clock = ContinuousClock()
let dir = NSTemporaryDirectory() + "provisioner-bench-\(UUID().uuidString)"
try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)

let ledger = try LocalLedger(path: dir + "/ledger.sqlite", parameters: LedgerParameters(blockTimeMilliseconds: blockMilliseconds))
let producer = BlockProducer(ledger: ledger, name: "bench")
func apply(_ call: ChainCall, _ key: Ed25519KeyPair) async throws -> Inclusion {
    let id = try ledger.enqueue(call, signer: key)
    try await producer.produceBlock()
    return try await ledger.awaitOutcome(transaction: id, call: call.name)
}
let user = try Ed25519KeyPair.generate(), farmer = try Ed25519KeyPair.generate(), nodeKey = try Ed25519KeyPair.generate()
for key in [user, farmer, nodeKey] { _ = try await apply(.createTwin, key) }
_ = try await apply(.createFarm(name: "bench"), farmer)
_ = try await apply(.createNode(farmID: 1, resources: Resources(hru: 1 << 50, sru: 1 << 50, cru: 1024, mru: 1 << 45)), nodeKey)
let twinID = try await ledger.twinID(account: user.publicKey) ?? 0
let nodeID: UInt32 = 1

let shards = ShardServer()
var shardConfig = ShardServerConfig(host: "127.0.0.1", port: 0, dataDirectory: dir + "/shards", adminPassword: "bench")
shardConfig.fsync = .never
_ = try await shards.start(shardConfig)
let book = try ContractBook(path: dir + "/contracts.sqlite")
let store = try DeploymentStore(path: dir + "/deployments.sqlite")
let capacity = Resources(hru: 1 << 50, sru: 1 << 50, cru: 1024, mru: 1 << 45)
let volumes = VolumeManager(root: dir + "/volumes")
for path in [dir, dir + "/containers"] { chmod(path, 0o711) }
let containers = ContainerManager(service: RuntimeContainers(runtime: OCIRuntime(stateRoot: dir + "/runtime", cgroupParent: "node-agent-bench"),
                                                             images: try ImageStore(root: dir + "/images"), bundles: dir + "/containers"))
let provisioner = Provisioner(configuration: .init(nodeID: nodeID, total: capacity, allocatable: capacity, pollInterval: .milliseconds(100)),
                              store: store, book: book, chain: ledger,
                              managers: [volumes, ZdbManager(service: ShardNamespaces(server: shards, host: "127.0.0.1", port: 0)), containers])

/// A busybox rootfs tar (the image) and its BLAKE2b-256.
func busyboxImage() throws -> (url: String, digest: String) {
    let rootfs = dir + "/image-rootfs"
    for sub in ["bin", "tmp", "proc", "sys", "dev", "etc"] {
        try FileManager.default.createDirectory(atPath: rootfs + "/" + sub, withIntermediateDirectories: true)
    }
    try FileManager.default.copyItem(atPath: "/bin/busybox", toPath: rootfs + "/bin/busybox")
    for applet in ["sh", "sleep"] { try FileManager.default.createSymbolicLink(atPath: rootfs + "/bin/" + applet, withDestinationPath: "busybox") }
    let tar = Process()
    tar.executableURL = URL(fileURLWithPath: "/usr/bin/tar")
    tar.arguments = ["-C", rootfs, "-cf", dir + "/busybox.tar", "."]
    try tar.run()
    tar.waitUntilExit()
    let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir + "/busybox.tar")))
    return ("file://" + dir + "/busybox.tar", Hex.encode(Blake2b.hash256(bytes)))
}
let image = try busyboxImage()
let watcher = ContractWatcher(chain: ledger, sink: book, nodeID: nodeID)
let background = Task {
    await withTaskGroup(of: Void.self) { group in
        group.addTask { await producer.run() }
        group.addTask { await watcher.run() }
        group.addTask { await provisioner.run() }
    }
}

func deployment(_ n: Int, volume: Bool, container: Bool = false) -> Deployment {
    var workloads = [Workload(name: "ns", data: .zdb(ZdbData(size: 1 << 20, password: "pw")))]
    if volume { workloads.append(Workload(name: "disk", data: .volume(DiskData(size: 16 << 20)))) }
    if container {
        workloads = [Workload(name: "web", data: .container(ContainerData(image: image.url, imageDigest: image.digest, entrypoint: "/bin/sleep",
                                                                         args: ["100000"], compute: .init(cpu: 1, memory: 32 << 20))))]
    }
    return Deployment(twinID: twinID, description: "bench \(n) \(UUID().uuidString)",
                      signatureRequirement: SignatureRequirement(requests: [SignatureRequest(twinID: twinID, required: true, weight: 1)], weightRequired: 1),
                      workloads: workloads)
}

/// Contract creation (waiting for its block) -> deploy -> every workload ok, in seconds.
func contractToRunning(_ d: Deployment) async throws -> Double {
    var d = d
    let started = clock.now
    let id = try ledger.enqueue(.createNodeContract(nodeID: nodeID, deploymentHash: DeploymentChallenge.hash(d), deploymentData: [], publicIPs: 0),
                                signer: user)
    let inclusion = try await ledger.awaitOutcome(transaction: id, call: "create_node_contract")
    guard case .contractCreated(let contract)? = inclusion.events.first else { fatalError("no contract created") }
    d.contractID = contract.id
    DeploymentChallenge.sign(&d, twinID: twinID, keyPair: user)
    try await provisioner.deploy(d, caller: twinID)
    while true {
        let current = try await provisioner.get(contractID: d.contractID, caller: nil)
        if current.workloads.allSatisfy({ $0.result?.state == .ok }) { break }
        if let failed = current.workloads.first(where: { $0.result?.state == .error }) { fatalError("\(failed.name): \(failed.result?.message ?? "")") }
        try await Task.sleep(for: .milliseconds(5))
    }
    return seconds(clock.now - started)
}

// 1. Contract creation -> every workload running.
let target = 1.0 + Double(blockMilliseconds) / 1000
var latencies = [Double]()
for round in 0..<latencyRounds { latencies.append(try await contractToRunning(deployment(round, volume: true))) }
print(String(format: "contract creation -> zdb + volume running: median %.3f s, max %.3f s over %d rounds (block time %.1f s)",
             median(latencies), latencies.max() ?? 0, latencies.count, Double(blockMilliseconds) / 1000))
print(String(format: "  target: under %.1f s (1 s + one block); ratio to target %.2f (below 1 is better)", target, median(latencies) / target))
let firstPull = try await contractToRunning(deployment(500, volume: false, container: true))
var containerLatencies = [Double]()
for round in 0..<latencyRounds { containerLatencies.append(try await contractToRunning(deployment(600 + round, volume: false, container: true))) }
print(String(format: "contract creation -> container running, cached image: median %.3f s, max %.3f s over %d rounds (first, with the pull: %.3f s)",
             median(containerLatencies), containerLatencies.max() ?? 0, containerLatencies.count, firstPull))
print(String(format: "  target: under %.1f s; ratio to target %.2f (below 1 is better)", target, median(containerLatencies) / target))

// 2. Acceptance throughput on contracts that already exist.
var prepared = [Deployment]()
var transactions = [Int64]()
var pending = [Deployment]()
for n in 0..<throughputCount {
    let d = deployment(1000 + n, volume: false)
    transactions.append(try ledger.enqueue(.createNodeContract(nodeID: nodeID, deploymentHash: DeploymentChallenge.hash(d), deploymentData: [],
                                                               publicIPs: 0), signer: user))
    pending.append(d)
}
for (tx, var d) in zip(transactions, pending) {
    let inclusion = try await ledger.awaitOutcome(transaction: tx, call: "create_node_contract")
    guard case .contractCreated(let contract)? = inclusion.events.first else { fatalError("no contract created") }
    d.contractID = contract.id
    DeploymentChallenge.sign(&d, twinID: twinID, keyPair: user)
    prepared.append(d)
}
let half = prepared.count / 2
var started = clock.now
for d in prepared[..<half] { try await provisioner.deploy(d, caller: twinID) }
let sequential = Double(half) / seconds(clock.now - started)
started = clock.now
let concurrentSlice = Array(prepared[half...])
try await withThrowingTaskGroup(of: Void.self) { group in
    for worker in 0..<8 {
        group.addTask {
            for d in concurrentSlice.enumerated().filter({ $0.offset % 8 == worker }).map(\.element) {
                try await provisioner.deploy(d, caller: twinID)
            }
        }
    }
    try await group.waitForAll()
}
let concurrent = Double(concurrentSlice.count) / seconds(clock.now - started)
print(String(format: "deployments accepted per second (verify against chain, admit, record): %.0f sequential, %.0f with 8 concurrent clients", sequential, concurrent))

background.cancel()
await provisioner.settle()
for d in try await store.deployments() {
    for w in d.deployment.workloads {
        let id = WorkloadID(contractID: d.deployment.contractID, name: w.name)
        if w.type == "volume" { try? await volumes.remove(id, type: .volume) }
        if w.type == "container" { try? await containers.remove(id, type: .container) }
    }
}
try? await shards.stop()
try? FileManager.default.removeItem(atPath: dir)
