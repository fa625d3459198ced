// tfchain-bench: decode speed of the metadata-driven SCALE decoder on the inputs that
// bench/tfchain-bench.sh makes with Python's scalecodec (which it also times, for the ratio).
// Usage: tfchain-bench METADATA_JSON INPUTS_FILE [SECONDS]
// INPUTS_FILE lines: "events <hex>" (one System.Events value) and "contract <hex>" (one Contracts value).
import ChainClient
import Foundation
import GridTypes

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data(("tfchain-bench: " + message + "\n").utf8))
    exit(2)
}

let args = CommandLine.arguments
guard args.count >= 3 else { fail("usage: tfchain-bench METADATA_JSON INPUTS_FILE [SECONDS]") }
let seconds = args.count > 3 ? Double(args[3]) ?? 2 : 2
guard let json = FileManager.default.contents(atPath: args[1]),
      let object = try? JSONSerialization.jsonObject(with: json) as? [String: Any],
      let metaHex = object["result"] as? String else { fail("cannot read metadata from \(args[1])") }
guard let inputs = try? String(contentsOfFile: args[2], encoding: .utf8) else { fail("cannot read \(args[2])") }
var eventsBlob = [UInt8](), contractBlob = [UInt8]()
for line in inputs.split(separator: "\n") {
    let parts = line.split(separator: " ")
    guard parts.count == 2, let bytes = try? Hex.decode(parts[1].dropFirst(2)) else { continue }
    if parts[0] == "events" { eventsBlob = bytes } else if parts[0] == "contract" { contractBlob = bytes }
}

func measure(_ body: () throws -> Int) rethrows -> (perSecond: Double, iterations: Int) {
    let clock = ContinuousClock()
    var items = 0, iterations = 0
    let start = clock.now
    var elapsed = Duration.zero
    while elapsed < .seconds(seconds) {
        items += try body()
        iterations += 1
        elapsed = clock.now - start
    }
    let s = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    return (Double(items) / s, iterations)
}

do {
    let metaStart = ContinuousClock.now
    let metadata = try RuntimeMetadata(hex: metaHex)
    let metaTime = ContinuousClock.now - metaStart
    let perBlock = try metadata.decodeEvents(eventsBlob).count
    let events = try measure { try metadata.decodeEvents(eventsBlob).count }
    let (_, entry) = try metadata.storageEntry("SmartContractModule", "Contracts")
    let storage = try measure { () throws -> Int in
        _ = try metadata.registry.decode(entry.valueType, from: contractBlob)
        return 1
    }
    print("metadata_parse_ms \(String(format: "%.2f", Double(metaTime.components.attoseconds) / 1e15 + Double(metaTime.components.seconds) * 1000))")
    print("events_per_block \(perBlock)")
    print("swift_events_per_s \(Int(events.perSecond))")
    print("swift_storage_items_per_s \(Int(storage.perSecond))")
} catch {
    fail("\(error)")
}
