import ArgumentParser
import Foundation
import GridTypes

struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create the node's identity key and a commented default configuration.",
        discussion: "Never overwrites an existing key; an existing config file is kept as it is."
    )

    @OptionGroup var global: GlobalOptions

    @Flag(name: .long, help: "Print the identity as JSON.")
    var json = false

    @Option(name: .long, help: "Embedded ledger file to write into a new config (chain.ledger_path).")
    var ledger: String?

    @Option(name: .long, help: "Farm id to write into a new config (node.farm_id).")
    var farmId: UInt32?

    func validate() throws {
        if let ledger, let problem = ConfigParser.checkAbsolutePath(ledger) { throw ValidationError("--ledger \(ledger): \(problem)") }
        if farmId == 0 { throw ValidationError("--farm-id must be 1 or more") }
    }

    func run() throws {
        let (config, configExisted) = try global.loadConfig(required: false)
        var wroteConfig = false
        if !configExisted {
            try Self.writeDefaultConfig(path: global.config, text: DefaultConfigFile.text(
                stateDir: config.node.stateDir, ledgerPath: ledger ?? config.chain.ledgerPath, farmID: farmId ?? config.node.farmID))
            wroteConfig = true
        }
        try NodeIdentity.makeDirectory(config.node.stateDir)
        let keyPath = config.node.stateDir + "/" + NodeIdentity.fileName
        let identity = try NodeIdentity.create(at: keyPath)

        if json {
            let object: [String: String] = [
                "key_file": keyPath, "public_key": identity.publicKey.hex, "ss58_address": identity.ss58Address,
                "config_file": global.config,
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            if wroteConfig {
                print("wrote default configuration \(global.config)")
            } else {
                print("kept existing configuration \(global.config)" + (ledger != nil || farmId != nil ? " (--ledger/--farm-id only apply to a new config)" : ""))
            }
            print("created node identity \(keyPath) (mode 0600; back it up)")
            print("public key (hex): 0x\(identity.publicKey.hex)")
            print("SS58 address:     \(identity.ss58Address)")
        }
    }

    static func writeDefaultConfig(path: String, text: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw NodeAgentError.io(operation: "create", path: path, errno: errno) }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else { throw NodeAgentError.io(operation: "write", path: path, errno: errno) }
        guard fsync(fd) == 0 else { throw NodeAgentError.io(operation: "fsync", path: path, errno: errno) }
    }
}
