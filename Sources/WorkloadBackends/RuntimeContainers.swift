import ContainerRuntime
import Foundation
import GridTypes
import Provisioner

/// The provisioner's container workloads on this node's runtime: images pulled and checked by
/// digest, a per-container overlay root, the secure defaults, cgroup limits from the reservation,
/// logs to capped files. A running container with the same revision is left alone, so a restart of
/// the agent re-adopts its containers instead of restarting them.
public struct RuntimeContainers: ContainerService {
    let runtime: OCIRuntime
    let images: ImageStore
    /// Per-container bundle directories (rootfs mount, revision, logs).
    let bundles: String

    public init(runtime: OCIRuntime, images: ImageStore, bundles: String) {
        self.runtime = runtime
        self.images = images
        self.bundles = bundles
    }

    func bundle(_ id: String) -> String { "\(bundles)/\(id)" }

    func fail(_ id: String, _ operation: String, _ error: any Error, permanent: Bool = false) -> ProvisionerError {
        .workload(name: id, operation: operation, detail: "\(error)", permanent: permanent)
    }

    public func ensure(_ launch: ContainerLaunch, paused: Bool) async throws(ProvisionerError) -> ContainerStatus {
        let id = launch.id
        let revisionPath = bundle(id) + "/revision"
        let recorded = (try? String(contentsOfFile: revisionPath, encoding: .utf8)) ?? ""
        if let state = try? runtime.state(id: id) {
            if recorded == launch.revision, state.status == .running || state.status == .created {
                do {
                    if state.status == .created { try runtime.start(id: id) }
                    if try runtime.isPaused(id: id) != paused { try runtime.pause(id: id, paused) }
                } catch { throw fail(id, paused ? "pause" : "resume", error) }
                return ContainerStatus(pid: state.pid ?? 0, running: true, paused: paused)
            }
            // Stopped, or its definition changed: replaced by a fresh one below.
            do {
                if state.status != .stopped { try? runtime.kill(id: id, signal: SIGKILL, all: true) }
                try runtime.delete(id: id, force: true)
            } catch { throw fail(id, "replace", error) }
        }
        let record: ImageRecord
        do { record = try await images.pull(url: launch.image, digest: launch.imageDigest) } catch {
            // A digest mismatch or a malformed image does not heal by retrying the same URL.
            throw fail(id, "pull image \(launch.image)", error, permanent: Self.isPermanent(error))
        }
        do { try FileManager.default.createDirectory(atPath: bundle(id), withIntermediateDirectories: true) } catch {
            throw fail(id, "create bundle", error)
        }
        let rootfs: ContainerRootfs
        do { rootfs = try images.prepareRootfs(digest: record.digest, containerID: id, at: bundle(id)) } catch {
            throw fail(id, "prepare root filesystem", error)
        }
        var args = launch.entrypoint.isEmpty ? (record.config?.entrypoint ?? []) + (launch.args.isEmpty ? record.config?.cmd ?? [] : []) : [launch.entrypoint]
        args += launch.args
        guard !args.isEmpty else {
            throw .workload(name: id, operation: "start", detail: "no entrypoint: the workload names none and the image has no Entrypoint/Cmd", permanent: true)
        }
        var env = record.config?.env ?? ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        env += launch.env
        var binds = launch.mounts.map { (source: $0.source, destination: $0.destination, readonly: false) }
        if let network = launch.network {
            // The node's resolv.conf for the container, bound read-only: the image's /etc is never written.
            let resolv = bundle(id) + "/resolv.conf"
            do { try Data(network.resolvConf.utf8).write(to: URL(fileURLWithPath: resolv), options: .atomic) } catch {
                throw fail(id, "write resolv.conf", error)
            }
            chmod(resolv, 0o644)
            binds.append((source: resolv, destination: "/etc/resolv.conf", readonly: true))
        }
        let workload = SecureDefaults.Workload(
            rootfs: rootfs.path, args: args, env: env, cwd: record.config?.workingDir ?? "/", hostname: String(id.prefix(63)),
            memoryBytes: Int64(clamping: launch.memoryBytes), milliCPUs: Int64(launch.cpus) * 1000,
            binds: binds, networkNamespacePath: launch.network?.namespacePath)
        do {
            try Data(launch.revision.utf8).write(to: URL(fileURLWithPath: revisionPath), options: .atomic)
            let state = try runtime.create(id: id, bundle: bundle(id), spec: SecureDefaults.spec(workload),
                                           options: .init(output: .files(directory: bundle(id) + "/logs", maxBytes: 8 << 20, keep: 2)))
            try runtime.start(id: id)
            if paused { try runtime.pause(id: id, true) }
            return ContainerStatus(pid: state.pid ?? 0, running: true, paused: paused)
        } catch {
            try? runtime.delete(id: id, force: true)
            throw fail(id, "start container", error)
        }
    }

    static func isPermanent(_ error: ContainerRuntimeError) -> Bool {
        let text = "\(error)"
        return text.contains("digest") || text.contains("refus") || text.contains("not an image")
    }

    public func remove(id: String) async throws(ProvisionerError) {
        do {
            if let state = try? runtime.state(id: id) {
                if state.status != .stopped { try? runtime.kill(id: id, signal: SIGKILL, all: true) }
                try runtime.delete(id: id, force: true)
            }
            if FileManager.default.fileExists(atPath: bundle(id)) {
                try images.releaseRootfs(containerID: id, at: bundle(id))
                try FileManager.default.removeItem(atPath: bundle(id))
            }
        } catch { throw fail(id, "remove container", error) }
    }

    public func containerIDs() async throws(ProvisionerError) -> [String] {
        var ids = Set(runtime.list())
        // A crash between making a bundle and creating the container leaves only the bundle.
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: bundles) { ids.formUnion(entries) }
        return Array(ids)
    }
}
