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

    func run() throws {
        let (config, configExisted) = try global.loadConfig(required: false)
        var wroteConfig = false
        if !configExisted {
            try Self.writeDefaultConfig(path: global.config, stateDir: config.node.stateDir)
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
            print(wroteConfig ? "wrote default configuration \(global.config)" : "kept existing configuration \(global.config)")
            print("created node identity \(keyPath) (mode 0600; back it up)")
            print("public key (hex): 0x\(identity.publicKey.hex)")
            print("SS58 address:     \(identity.ss58Address)")
        }
    }

    static func writeDefaultConfig(path: String, stateDir: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw NodeAgentError.io(operation: "create", path: path, errno: errno) }
        defer { close(fd) }
        let bytes = Array(DefaultConfigFile.text(stateDir: stateDir).utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else { throw NodeAgentError.io(operation: "write", path: path, errno: errno) }
        guard fsync(fd) == 0 else { throw NodeAgentError.io(operation: "fsync", path: path, errno: errno) }
    }
}
