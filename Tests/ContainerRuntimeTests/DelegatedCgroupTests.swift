@testable import ContainerRuntime
import Foundation
import Testing

/// The placement logic against a plain directory tree standing in for /sys/fs/cgroup.
@Suite struct DelegatedCgroupTests {
    func tree() throws -> String {
        let root = NSTemporaryDirectory() + "cgroup-tree-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root + "/system.slice/node-agent.service", withIntermediateDirectories: true)
        try "4242\n777\n".write(toFile: root + "/system.slice/node-agent.service/cgroup.procs", atomically: true, encoding: .utf8)
        return root
    }

    @Test func aDelegatedUnitCgroupHoldsTheAgentAndItsContainers() throws {
        let root = try tree()
        defer { try? FileManager.default.removeItem(atPath: root) }
        var asked = [String]()
        var writes = [String]()
        let parent = try DelegatedCgroup.prepare(root: root, mode: .unified, ownCgroup: "0::/system.slice/node-agent.service\n", pid: 4242,
                                                 isDelegated: { asked.append($0); return true },
                                                 write: { path, value in writes.append("\(path.dropFirst(root.count)) <- \(value)"); return nil })
        #expect(parent == "system.slice/node-agent.service/containers")
        #expect(asked == [root + "/system.slice/node-agent.service"])
        #expect(FileManager.default.fileExists(atPath: root + "/system.slice/node-agent.service/containers"))
        // The agent moved into its leaf first; what else was in the unit's cgroup was moved after it.
        #expect(writes == ["/system.slice/node-agent.service/agent/cgroup.procs <- 4242", "/system.slice/node-agent.service/agent/cgroup.procs <- 777"])

        // After a restart in the same boot the agent starts in ".../agent": the same answer.
        let again = try DelegatedCgroup.prepare(root: root, mode: .unified, ownCgroup: "0::/system.slice/node-agent.service/agent\n", pid: 4243,
                                                isDelegated: { _ in true }, write: { _, _ in nil })
        #expect(again == parent)
    }

    @Test func withoutDelegationOrV2TheDefaultStays() throws {
        let root = try tree()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let unit = "0::/system.slice/node-agent.service\n"
        #expect(try DelegatedCgroup.prepare(root: root, mode: .unified, ownCgroup: unit, pid: 1, isDelegated: { _ in false }) == nil)
        #expect(try DelegatedCgroup.prepare(root: root, mode: .hybrid, ownCgroup: unit, pid: 1, isDelegated: { _ in true }) == nil)
        #expect(try DelegatedCgroup.prepare(root: root, mode: .unified, ownCgroup: "0::/user.slice/session-3.scope\n", pid: 1,
                                            isDelegated: { _ in true }) == nil)
        #expect(try DelegatedCgroup.prepare(root: root, mode: .unified, ownCgroup: "0::/../node-agent.service\n", pid: 1, isDelegated: { _ in true }) == nil)
        // Another delegated unit (a CI runner that started a test agent) is left alone.
        #expect(try DelegatedCgroup.prepare(root: root, mode: .unified, ownCgroup: "0::/system.slice/runner.service\n", pid: 1,
                                            isDelegated: { _ in true }) == nil)
        #expect(!FileManager.default.fileExists(atPath: root + "/system.slice/node-agent.service/agent"))
    }
}
