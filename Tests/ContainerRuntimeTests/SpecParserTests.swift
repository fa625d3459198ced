import ContainerRuntime
import Foundation
import Testing

/// config.json validation: every refusal names the field, nothing unsupported is ignored.
struct SpecParserTests {
    let bundle: String

    init() throws {
        bundle = NSTemporaryDirectory() + "spec-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: bundle + "/rootfs", withIntermediateDirectories: true)
    }

    func parse(_ edit: (inout [String: Any]) -> Void) throws(ContainerRuntimeError) -> ContainerSpec {
        var config: [String: Any] = [
            "ociVersion": "1.0.2",
            "root": ["path": "rootfs"],
            "process": ["args": ["/bin/sh"], "cwd": "/", "env": ["PATH=/bin"], "user": ["uid": 0, "gid": 0]],
            "linux": ["namespaces": [["type": "mount"], ["type": "pid"]]],
        ]
        edit(&config)
        let data = (try? JSONSerialization.data(withJSONObject: config)) ?? Data()
        return try SpecParser.parse(data, bundle: bundle)
    }

    func refusal(_ edit: (inout [String: Any]) -> Void) -> String {
        do {
            _ = try parse(edit)
            return "accepted"
        } catch {
            return error.description
        }
    }

    @Test func aMinimalSpecParses() throws {
        let spec = try parse { _ in }
        #expect(spec.rootPath == bundle + "/rootfs")
        #expect(spec.process.args == ["/bin/sh"])
        #expect(spec.has(.mount) && spec.has(.pid) && !spec.has(.user))
    }

    @Test func unsupportedFieldsAreRefusedByTheirPath() {
        #expect(refusal { $0["linux"] = ["namespaces": [["type": "mount"]], "intelRdt": ["closID": "x"]] }.contains("linux.intelRdt"))
        #expect(refusal { $0["hooks"] = ["prestart": []] }.contains("hooks"))
        #expect(refusal { c in
            var p = c["process"] as? [String: Any] ?? [:]
            p["terminal"] = true
            c["process"] = p
        }.contains("process.terminal"))
        #expect(refusal { $0["linux"] = ["namespaces": [["type": "time"]]] }.contains("namespace type time"))
        #expect(refusal { $0["linux"] = ["namespaces": [["type": "mount"]], "devices": [["path": "/dev/sda", "type": "b", "major": 8, "minor": 0]]] }
            .contains("/dev/sda"))
    }

    @Test func badValuesAreRefusedWithTheField() {
        #expect(refusal { $0["ociVersion"] = "2.0.0" }.contains("ociVersion"))
        #expect(refusal { $0["root"] = ["path": "missing"] }.contains("root.path"))
        #expect(refusal { c in
            var p = c["process"] as? [String: Any] ?? [:]
            p["args"] = []
            c["process"] = p
        }.contains("process.args"))
        #expect(refusal { $0["linux"] = ["namespaces": [["type": "user"], ["type": "mount"]]] }.contains("uidMappings"))
        #expect(refusal { $0["linux"] = ["namespaces": [["type": "mount"]], "cgroupsPath": "../escape"] }.contains("linux.cgroupsPath"))
        #expect(refusal { $0["hostname"] = String(repeating: "h", count: 65) }.contains("hostname"))
    }

    @Test func impossibleAmbientCapabilitiesAreDroppedWithAWarning() throws {
        let spec = try parse { c in
            var p = c["process"] as? [String: Any] ?? [:]
            p["capabilities"] = ["bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"], "ambient": ["CAP_KILL"]]
            c["process"] = p
        }
        #expect(spec.process.capabilities.ambient == 0)
        #expect(spec.process.warnings.count == 1 && spec.process.warnings[0].contains("CAP_KILL"))
    }

    @Test func theDefaultSeccompProfileCompiles() throws {
        let filter = try SeccompCompiler.compile(DefaultSeccompProfile.spec)
        #expect(filter.count % 8 == 0 && filter.count / 8 > 100)
    }
}
