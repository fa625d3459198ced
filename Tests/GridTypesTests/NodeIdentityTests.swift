import CSodium
import Foundation
import GridTypes
import Testing

@Suite struct NodeIdentityTests {
    func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "identity-test-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    func mode(_ path: String) -> UInt16 {
        var info = stat()
        stat(path, &info)
        return UInt16(info.st_mode & 0o7777)
    }

    @Test func createWritesA0600FileThatLoadsBackAndSigns() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/state/identity.key"
        let created = try NodeIdentity.create(at: path)
        #expect(mode(path) == 0o600)
        #expect(mode(dir + "/state") == 0o700)
        let loaded = try NodeIdentity.load(from: path)
        #expect(loaded.publicKey == created.publicKey)
        #expect(loaded.ss58Address == SS58.encode(publicKey: created.publicKey.bytes))
        let message = Array("hello grid".utf8)
        let signature = loaded.keyPair.sign(message)
        #expect(crypto_sign_verify_detached(signature, message, UInt64(message.count), created.publicKey.bytes) == 0)
        // No temporary files left beside the key.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/state") == ["identity.key"])
    }

    @Test func refusesToOverwrite() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/identity.key"
        let first = try NodeIdentity.create(at: path)
        #expect(throws: GridTypesError.keyFileExists(path: path)) { try NodeIdentity.create(at: path) }
        #expect(try NodeIdentity.load(from: path).publicKey == first.publicKey)
    }

    @Test func refusesAReadableByOthersFile() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/identity.key"
        _ = try NodeIdentity.create(at: path)
        chmod(path, 0o644)
        #expect(throws: GridTypesError.keyFileInsecure(path: path, mode: 0o644)) { try NodeIdentity.load(from: path) }
        chmod(path, 0o640)
        #expect(throws: GridTypesError.keyFileInsecure(path: path, mode: 0o640)) { try NodeIdentity.load(from: path) }
    }

    @Test func refusesDamagedFiles() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/identity.key"
        _ = try NodeIdentity.create(at: path)
        let original = try String(contentsOfFile: path, encoding: .utf8)

        func write(_ text: String) throws {
            try text.write(toFile: path, atomically: false, encoding: .utf8)
            chmod(path, 0o600)
        }
        func expectDamaged(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            try write(text)
            #expect(sourceLocation: sourceLocation) { try NodeIdentity.load(from: path) } throws: { error in
                guard case GridTypesError.keyFileDamaged = error else { return false }
                return true
            }
        }
        // One flipped hex digit of the seed: the derived key no longer matches.
        let seedLine = original.split(separator: "\n").first { $0.hasPrefix("seed=") }.map(String.init) ?? ""
        let lastIndex = seedLine.index(before: seedLine.endIndex)
        let flipped = String(seedLine[..<lastIndex]) + (seedLine.last == "0" ? "1" : "0")
        try expectDamaged(original.replacingOccurrences(of: seedLine, with: flipped))
        try expectDamaged(original.replacingOccurrences(of: seedLine, with: "seed=abc"))
        try expectDamaged(original.replacingOccurrences(of: seedLine, with: "seed=zz"))
        try expectDamaged("")
        try expectDamaged("garbage\n")
        try expectDamaged(String(repeating: "#", count: 5000))
    }

    @Test func refusesMissingFileAndSymlink() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: GridTypesError.keyFileMissing(path: dir + "/none")) { try NodeIdentity.load(from: dir + "/none") }
        _ = try NodeIdentity.create(at: dir + "/real.key")
        symlink(dir + "/real.key", dir + "/link.key")
        #expect { try NodeIdentity.load(from: dir + "/link.key") } throws: { error in
            guard case GridTypesError.keyFileDamaged = error else { return false }
            return true
        }
    }
}
