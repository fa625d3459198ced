import ContainerRuntime
import Foundation

// The container lifecycle as the agent drives it: in one long-lived process, through the library.
// Usage: runtime-bench BUNDLE STATE_ROOT ITERATIONS
// Prints one line per iteration: milliseconds for create+start+wait+delete.
let arguments = CommandLine.arguments
guard arguments.count == 4, let iterations = Int(arguments[3]) else {
    FileHandle.standardError.write(Data("usage: runtime-bench BUNDLE STATE_ROOT ITERATIONS\n".utf8))
    exit(2)
}
let runtime = OCIRuntime(stateRoot: arguments[2], cgroupParent: "runtime-bench")
do {
    let spec = try SpecParser.load(bundle: arguments[1])
    let clock = ContinuousClock()
    for i in 0..<iterations {
        let elapsed = try clock.measure {
            let id = "lib\(i)"
            try runtime.create(id: id, bundle: arguments[1], spec: spec, options: .init(output: .inherit))
            try runtime.start(id: id)
            _ = try runtime.wait(id: id)
            try runtime.delete(id: id, force: true)
        }
        print(Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000)
    }
} catch {
    FileHandle.standardError.write(Data("runtime-bench: \(error)\n".utf8))
    exit(1)
}
