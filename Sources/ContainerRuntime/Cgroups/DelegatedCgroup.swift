import CNodeShim
import Foundation
import GridTypes

/// Where the agent's containers get their cgroups. Under systemd with `Delegate=yes` on a unified
/// (v2) hierarchy, the unit's cgroup is the agent's to manage: containers go below it
/// (`<unit>/containers/<id>`), so `systemctl status` and the unit's accounting see them, and the
/// agent itself moves into the leaf `<unit>/agent` (v2 allows no processes in a cgroup that
/// delegates controllers to children). Elsewhere (no systemd, no delegation, cgroup v1) the
/// runtime's default top-level parent stays.
public enum DelegatedCgroup {
    /// The parent for new containers' cgroups, relative to `root`, after moving this process into
    /// `<unit>/agent`; nil when the agent does not run in a delegated v2 unit cgroup.
    /// `ownCgroup` is /proc/self/cgroup's text; `isDelegated` tells whether systemd delegated a
    /// cgroup directory (it marks those with the `trusted.delegate` extended attribute).
    /// Only the agent's own unit (`unitName`) counts: an agent started by hand from inside another
    /// delegated unit (a CI runner, a container engine) must not rearrange that unit's processes.
    public static func prepare(root: String = "/sys/fs/cgroup", unitName: String = "node-agent.service", mode: CgroupMode? = nil,
                               ownCgroup: String? = KernelFile.read("/proc/self/cgroup"),
                               pid: Int32 = getpid(),
                               isDelegated: (String) -> Bool = hasDelegateMark,
                               write customWrite: ((String, String) -> ContainerRuntimeError?)? = nil) throws(ContainerRuntimeError) -> String? {
        // A failure as a value: typed-throws closures with a default crash this compiler.
        let write: (String, String) -> ContainerRuntimeError? = customWrite ?? { path, value in
            do throws(ContainerRuntimeError) { try CgroupFiles.put(path, value); return nil } catch { return error }
        }
        guard (mode ?? CgroupMode.detect(root: root)) == .unified, let ownCgroup else { return nil }
        // "0::/system.slice/node-agent.service" (or ".../agent" after a previous prepare in this boot).
        guard let line = ownCgroup.split(separator: "\n").first(where: { $0.hasPrefix("0::/") }) else { return nil }
        var unit = String(line.dropFirst(3)).split(separator: "/").map(String.init)
        if unit.last == "agent" { unit.removeLast() }
        guard unit.last == unitName, !unit.contains("..") else { return nil }
        let unitPath = unit.joined(separator: "/")
        let unitDirectory = root + "/" + unitPath
        guard isDelegated(unitDirectory) else { return nil }

        let agentDirectory = unitDirectory + "/agent"
        if mkdir(agentDirectory, 0o755) != 0 && errno != EEXIST { throw .cgroup(path: agentDirectory, operation: "mkdir", errno: errno) }
        if let failure = write(agentDirectory + "/cgroup.procs", String(pid)) { throw failure }
        // Helpers the agent started before the move (none are expected) would keep the unit's own
        // cgroup "internal": move whatever is left there too.
        for other in CgroupFiles.pids(unitDirectory + "/cgroup.procs") where other != pid {
            _ = write(agentDirectory + "/cgroup.procs", String(other))
        }
        let containers = unitDirectory + "/containers"
        if mkdir(containers, 0o755) != 0 && errno != EEXIST { throw .cgroup(path: containers, operation: "mkdir", errno: errno) }
        return unitPath + "/containers"
    }

    /// systemd (v251 and later) marks the cgroups it delegates with `trusted.delegate=1`.
    public static func hasDelegateMark(_ directory: String) -> Bool {
        var value = [UInt8](repeating: 0, count: 8)
        let length = nshim_getxattr(directory, "trusted.delegate", &value, value.count)
        return length > 0 && value[0] == UInt8(ascii: "1")
    }
}
