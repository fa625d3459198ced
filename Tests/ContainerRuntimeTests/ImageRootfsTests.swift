import CNodeShim
@testable import ContainerRuntime
import Foundation
import GridTypes
import Testing

/// Containers run on roots made from stored images: the image stays read-only, the container's
/// writes land in its own layer, and release leaves no mount behind.
@Suite(.serialized, .enabled(if: TestRootfs.available, "needs root and /bin/busybox (busybox-static)"))
struct ImageRootfsTests {
    static func mounts(under path: String) -> [String] {
        let text = KernelFile.read("/proc/self/mountinfo") ?? ""
        return text.split(separator: "\n").map { $0.split(separator: " ") }.filter { $0.count > 4 && $0[4].hasPrefix(path) }.map { String($0[4]) }
    }

    func pulledImage(_ ws: ImageWorkspace, _ store: ImageStore) async throws -> ImageRecord {
        let archive = try ws.archive("rootfs.tar.gz", TestArchive.busyboxRootfs(), compression: .gzip)
        return try await store.pull(url: archive.url, digest: archive.digest)
    }

    @Test(arguments: [ImageStore.RootfsPreference.overlay, .copy])
    func containerWritesLandInItsOwnLayerNotInTheImage(_ preference: ImageStore.RootfsPreference) async throws {
        let ws = try ImageWorkspace()
        let fs = try TestRootfs()  // the runtime, its state root and cgroup parent
        defer {
            fs.remove()
            ws.remove()
        }
        let store = try ws.store(rootfs: preference)
        let image = try await pulledImage(ws, store)
        let directory = ws.base + "/containers/c1"
        let prepared = try store.prepareRootfs(digest: image.digest, containerID: "c1", at: directory)
        #expect(prepared.path == directory + "/rootfs")
        #expect(prepared.mode == (preference == .overlay ? .overlay : .copy))
        #expect(prepared.fallbackReason == nil)
        #expect(Self.mounts(under: directory) == [directory + "/rootfs"])
        // Idempotent: a second prepare finds the mount and adds none.
        #expect(try store.prepareRootfs(digest: image.digest, containerID: "c1", at: directory) == prepared)
        #expect(Self.mounts(under: directory).count == 1)
        #expect(store.users(digest: image.digest) == ["c1"])
        #expect(owner(directory + "/image-layers")?.mode == 0o700, "host users cannot reach the container's files")

        let spec = SecureDefaults.spec(.init(rootfs: prepared.path, args: ["sh", "-c", "echo hello > /written && rm /etc/passwd && id -u && ls -A /etc && echo end"],
                                             hostname: "img", memoryBytes: 128 << 20, milliCPUs: 500, idBase: TestRootfs.idBase))
        let result = try fs.run("img-\(preference.rawValue)", spec)
        #expect(result.exit == ContainerExit(code: 0, signal: 0, oomKilled: false), "\(result.stderr)")
        #expect(result.stdout == "0\nend\n", "\(result.stdout) \(result.stderr)")

        let layer = directory + "/image-layers/" + (preference == .overlay ? "upper" : "copy")
        #expect(try String(contentsOfFile: layer + "/written", encoding: .utf8) == "hello\n")
        #expect(owner(layer + "/written")?.uid == TestRootfs.idBase, "written by the container's root = host uid \(TestRootfs.idBase)")
        #expect(!FileManager.default.fileExists(atPath: image.rootfs + "/written"), "the image is not written")
        #expect(FileManager.default.fileExists(atPath: image.rootfs + "/etc/passwd"), "a delete inside does not reach the image")
        // A removing image under a live root is refused.
        #expect(throws: ContainerRuntimeError.imageInUse(digest: image.digest, containers: ["c1"])) { try store.remove(digest: image.digest) }

        try store.releaseRootfs(containerID: "c1", at: directory)
        #expect(Self.mounts(under: directory).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: directory + "/rootfs"))
        #expect(!FileManager.default.fileExists(atPath: directory + "/image-layers"))
        #expect(store.users(digest: image.digest).isEmpty)
        try store.releaseRootfs(containerID: "c1", at: directory)  // idempotent
        try store.remove(digest: image.digest)
    }

    @Test func automaticFallsBackToACopyWhenOverlayCannotBeUsed() async throws {
        let ws = try ImageWorkspace()
        defer { ws.remove() }
        // overlayfs options cannot carry a ':' in lowerdir: the automatic mode must copy instead, and say so.
        let store = try ImageStore(root: ws.base + "/st:ore", options: .init(rootfs: .automatic))
        let image = try await pulledImage(ws, store)
        let directory = ws.base + "/containers/c3"
        let prepared = try store.prepareRootfs(digest: image.digest, containerID: "c3", at: directory)
        #expect(prepared.mode == .copy)
        #expect(prepared.fallbackReason?.contains("overlay") == true, "\(String(describing: prepared.fallbackReason))")
        #expect(try Data(contentsOf: URL(fileURLWithPath: prepared.path + "/bin/busybox")) == Data(contentsOf: URL(fileURLWithPath: "/bin/busybox")))
        #expect(owner(prepared.path + "/bin/busybox").map { ($0.uid, $0.mode) } ?? (0, 0) == (TestRootfs.idBase, 0o755))
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: prepared.path + "/bin/sh") == "busybox")
        #expect(owner(prepared.path + "/tmp")?.mode == 0o1777)
        // The same answer again, reason included, from the marker.
        #expect(try store.prepareRootfs(digest: image.digest, containerID: "c3", at: directory) == prepared)
        #expect(Self.mounts(under: directory).count == 1)
        // An overlay-only store refuses instead.
        let strict = try ImageStore(root: ws.base + "/st:ore", options: .init(rootfs: .overlay))
        #expect(throws: ContainerRuntimeError.self) { try strict.prepareRootfs(digest: image.digest, containerID: "c4", at: ws.base + "/containers/c4") }
        try strict.releaseRootfs(containerID: "c4", at: ws.base + "/containers/c4")
        try store.releaseRootfs(containerID: "c3", at: directory)
        #expect(Self.mounts(under: ws.base).isEmpty)
        #expect(store.users(digest: image.digest).isEmpty)
    }

    @Test func prepareAfterAnUnmountKeepsTheContainersWrites() async throws {
        let ws = try ImageWorkspace()
        defer { ws.remove() }
        let store = try ws.store(rootfs: .overlay)
        let image = try await pulledImage(ws, store)
        let directory = ws.base + "/containers/c2"
        let prepared = try store.prepareRootfs(digest: image.digest, containerID: "c2", at: directory)
        try Data("state\n".utf8).write(to: URL(fileURLWithPath: prepared.path + "/root/data"))
        // As after a reboot: the mount is gone, the directories are not.
        #expect(nshim_umount2(prepared.path, 0) == 0)
        #expect(!FileManager.default.fileExists(atPath: prepared.path + "/root/data"))
        let again = try store.prepareRootfs(digest: image.digest, containerID: "c2", at: directory)
        #expect(again == prepared)
        #expect(try String(contentsOfFile: again.path + "/root/data", encoding: .utf8) == "state\n")
        // Another container may not take this directory over.
        #expect(throws: ContainerRuntimeError.self) { try store.prepareRootfs(digest: image.digest, containerID: "other", at: directory) }
        try store.releaseRootfs(containerID: "c2", at: directory)
        #expect(Self.mounts(under: directory).isEmpty)
    }
}
