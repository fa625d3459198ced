import Foundation
import GridTypes
import Testing

/// `node-agent runtime image pull|ls|rm` on a busybox-static rootfs tarred by GNU tar.
@Suite(.serialized, .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/bin/busybox"), "needs root and busybox-static"))
struct RuntimeImageCLITests {
    @Test func pullListRemoveWithDigestCheck() throws {
        let dir = NSTemporaryDirectory() + "img-cli-\(getpid())-\(UUID().uuidString.prefix(8))"
        let fm = FileManager.default
        defer { try? fm.removeItem(atPath: dir) }
        for sub in ["bin", "etc", "tmp"] { try fm.createDirectory(atPath: dir + "/rootfs/" + sub, withIntermediateDirectories: true) }
        try fm.copyItem(atPath: "/bin/busybox", toPath: dir + "/rootfs/bin/busybox")
        try fm.createSymbolicLink(atPath: dir + "/rootfs/bin/sh", withDestinationPath: "busybox")
        let tar = Process()
        tar.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        tar.arguments = ["tar", "-C", dir + "/rootfs", "-czf", dir + "/image.tar.gz", "."]
        try tar.run()
        tar.waitUntilExit()
        #expect(tar.terminationStatus == 0)
        let digest = Hex.encode(Blake2b.hash256(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/image.tar.gz")))))
        let store = dir + "/store"
        let url = "file://" + dir + "/image.tar.gz"

        let wrong = String(repeating: "1", count: 64)
        let refused = try CommandLineTests.run(["runtime", "image", "pull", url, "--digest", wrong, "--store", store])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("digest mismatch: expected \(wrong), got \(digest)"), "\(refused.stderr)")

        let pulled = try CommandLineTests.run(["runtime", "image", "pull", url, "--digest", digest, "--store", store, "--json"])
        #expect(pulled.status == 0, "\(pulled.stderr)")
        let record = try #require(try JSONSerialization.jsonObject(with: Data(pulled.stdout.utf8)) as? [String: Any])
        #expect(record["digest"] as? String == digest)
        #expect(record["format"] as? String == "rootfs-tar")
        let rootfs = try #require(record["rootfs"] as? String)
        #expect(fm.isExecutableFile(atPath: rootfs + "/bin/busybox"))

        let plain = try CommandLineTests.run(["runtime", "image", "pull", url, "--digest", digest, "--store", store])
        #expect(plain.status == 0 && plain.stdout.hasPrefix(digest + " rootfs-tar"), "\(plain.stdout)")

        let listed = try CommandLineTests.run(["runtime", "image", "ls", "--store", store, "--json"])
        #expect(listed.status == 0)
        let images = try #require(try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]])
        #expect(images.map { $0["digest"] as? String } == [digest])
        let table = try CommandLineTests.run(["runtime", "image", "ls", "--store", store])
        #expect(table.stdout.contains(String(digest.prefix(16))) && table.stdout.contains("DIGEST"))

        #expect(try CommandLineTests.run(["runtime", "image", "rm", digest, "--store", store]).status == 0)
        #expect(!fm.fileExists(atPath: rootfs))
        let again = try CommandLineTests.run(["runtime", "image", "rm", digest, "--store", store])
        #expect(again.status == 1 && again.stderr.contains("not in the store"), "\(again.stderr)")
    }
}
