import CNodeShim
@testable import ContainerRuntime
import Foundation
import Testing

/// A store, a directory of source archives and an outside directory that hostile archives aim at.
struct ImageWorkspace {
    let base: String
    var storeRoot: String { base + "/store" }
    var sources: String { base + "/src" }
    var outside: String { base + "/outside" }

    init() throws {
        base = NSTemporaryDirectory() + "img-\(getpid())-\(UUID().uuidString.prefix(8))"
        for dir in [sources, outside] { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
    }

    struct Archive {
        var path: String
        var url: String { "file://" + path }
        var digest: String
    }

    func archive(_ name: String, _ entries: [TarEntry], compression: TestArchive.Compression = .none) throws -> Archive {
        let path = sources + "/" + name
        try TestArchive.write(entries, to: path, compression: compression)
        return Archive(path: path, digest: try TestArchive.digest(path))
    }

    func store(limits: ImageLimits = ImageLimits(), rootfs: ImageStore.RootfsPreference = .automatic) throws -> ImageStore {
        try ImageStore(root: storeRoot, options: .init(limits: limits, rootfs: rootfs))
    }

    /// Names in the store's temporary directory (what an interrupted or refused pull left).
    var leftovers: [String] { (try? FileManager.default.contentsOfDirectory(atPath: storeRoot + "/.tmp")) ?? [] }

    func remove() {
        // Containers' roots first: a mount left in the tree would stop the removal.
        if let dirs = try? FileManager.default.contentsOfDirectory(atPath: base + "/containers") {
            for dir in dirs { _ = nshim_umount2(base + "/containers/" + dir + "/rootfs", Int32(NSHIM_MNT_DETACH)) }
        }
        try? FileManager.default.removeItem(atPath: base)
    }
}

/// Runs a pull and returns its error (nil on success).
func pullError(_ store: ImageStore, url: String, digest: String) async -> ContainerRuntimeError? {
    do {
        _ = try await store.pull(url: url, digest: digest)
        return nil
    } catch {
        return error
    }
}

func owner(_ path: String) -> (uid: UInt32, gid: UInt32, mode: UInt32)? {
    var info = stat()
    guard lstat(path, &info) == 0 else { return nil }
    return (info.st_uid, info.st_gid, UInt32(info.st_mode & 0o7777))
}

@Suite(.serialized, .enabled(if: TestRootfs.available, "needs root and /bin/busybox (busybox-static)"))
struct ImageStoreTests {
    @Test(arguments: TestArchive.Compression.allCases)
    func plainTarPullsFromFileURLAndIsReused(_ compression: TestArchive.Compression) async throws {
        let ws = try ImageWorkspace()
        defer { ws.remove() }
        let archive = try ws.archive("rootfs.tar", TestArchive.busyboxRootfs(extra: [.file("etc/hello", "hi\n", uid: 1000)]), compression: compression)
        let store = try ws.store()
        let record = try await store.pull(url: archive.url, digest: archive.digest)
        #expect(record.digest == archive.digest)
        #expect(record.format == .rootfsTar)
        #expect(record.url == archive.url)
        #expect(record.archiveBytes == UInt64(try FileManager.default.attributesOfItem(atPath: archive.path)[.size] as? Int ?? -1))
        #expect(record.rootfs == ws.storeRoot + "/" + archive.digest + "/rootfs")
        let busybox = try Data(contentsOf: URL(fileURLWithPath: "/bin/busybox"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: record.rootfs + "/bin/busybox")) == busybox)
        #expect(record.unpackedBytes >= UInt64(busybox.count))
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: record.rootfs + "/bin/sh") == "busybox")
        // Owners shifted into the containers' id range; modes kept.
        #expect(owner(record.rootfs)?.uid == 100_000)
        #expect(owner(record.rootfs + "/bin/busybox").map { ($0.uid, $0.mode) } ?? (0, 0) == (100_000, 0o755))
        #expect(owner(record.rootfs + "/bin/sh")?.uid == 100_000)
        #expect(owner(record.rootfs + "/etc/hello").map { ($0.uid, $0.gid) } ?? (0, 0) == (101_000, 101_000))
        #expect(owner(record.rootfs + "/tmp")?.mode == 0o1777)
        // The store's own directories are root's alone.
        #expect(owner(ws.storeRoot)?.mode == 0o700)
        #expect(ws.leftovers.isEmpty)

        // A second pull finds the image: the source is not read again.
        try FileManager.default.removeItem(atPath: archive.path)
        let again = try await store.pull(url: archive.url, digest: archive.digest)
        #expect(again == record)
        #expect(store.image(digest: archive.digest.uppercased()) == record)
        #expect(try store.list() == [record])
    }

    @Test func pullFromLoopbackHTTPReportsProgress() async throws {
        let ws = try ImageWorkspace()
        defer { ws.remove() }
        let archive = try ws.archive("rootfs.tar.gz", TestArchive.busyboxRootfs(), compression: .gzip)
        let server = try LoopbackHTTPServer(directory: ws.sources)
        defer { server.stop() }
        let store = try ws.store()
        let events = ProgressLog()
        let url = "http://127.0.0.1:\(server.port)/rootfs.tar.gz"
        let record = try await store.pull(url: url, digest: archive.digest) { events.add($0) }
        #expect(record.url == url)
        #expect(FileManager.default.isExecutableFile(atPath: record.rootfs + "/bin/busybox"))
        let size = record.archiveBytes
        let downloads = events.all.filter { $0.phase == .download }
        let unpacks = events.all.filter { $0.phase == .unpack }
        #expect(downloads.first?.bytesDone == 0)
        #expect(downloads.last == ImagePullProgress(phase: .download, bytesDone: size, bytesTotal: size))
        #expect(zip(downloads, downloads.dropFirst()).allSatisfy { $0.bytesDone <= $1.bytesDone })
        #expect(unpacks.last == ImagePullProgress(phase: .unpack, bytesDone: size, bytesTotal: size))

        let missing = await pullError(store, url: "http://127.0.0.1:\(server.port)/nope.tar", digest: String(repeating: "ab", count: 32))
        guard case .imageFetch(_, let message)? = missing else { Issue.record("expected a fetch error, got \(String(describing: missing))"); return }
        #expect(message.contains("404"), "\(message)")
        #expect(ws.leftovers.isEmpty)

        // A reply larger than the cap is cut off.
        let small = try ImageStore(root: ws.base + "/small-store", options: .init(limits: ImageLimits(maxArchiveBytes: 100_000)))
        let tooBig = await pullError(small, url: url, digest: archive.digest)
        guard case .imageLimit(let what, 100_000)? = tooBig else { Issue.record("expected the size limit, got \(String(describing: tooBig))"); return }
        #expect(what.contains("archive size"))
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: small.root + "/.tmp")) ?? ["?"]).isEmpty)
    }

    /// A container can build a tree deeper than any stack or descriptor budget; removal must cope.
    @Test func removeTreeCopesWithTreesDeeperThanItsDescriptorBudget() throws {
        let ws = try ImageWorkspace()
        defer { ws.remove() }
        let top = ws.base + "/deep"
        var path = top
        #expect(mkdir(top, 0o755) == 0)
        for level in 0..<300 {
            path += "/d"
            #expect(mkdir(path, 0o755) == 0)
            if level % 50 == 0 { try Data("x".utf8).write(to: URL(fileURLWithPath: path + "/f")) }
        }
        #expect(symlink(ws.outside, top + "/d/escape") == 0)
        try Data("keep".utf8).write(to: URL(fileURLWithPath: ws.outside + "/keep"))
        let fd = open(ws.base, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        try FileTree.removeTree(fd, Array("deep".utf8CString), display: top, maxOpen: 16)
        #expect(!FileManager.default.fileExists(atPath: top))
        #expect(FileManager.default.fileExists(atPath: ws.outside + "/keep"), "a symlink in the tree is removed, not followed")
    }

    @Test func digestMismatchIsRefusedWithBothDigests() async throws {
        let ws = try ImageWorkspace()
        defer { ws.remove() }
        let archive = try ws.archive("rootfs.tar", TestArchive.busyboxRootfs())
        let store = try ws.store()
        let wrong = String(repeating: "0", count: 64)
        let error = await pullError(store, url: archive.url, digest: wrong)
        #expect(error == .imageDigestMismatch(url: archive.url, expected: wrong, actual: archive.digest))
        #expect("\(error.map { "\($0)" } ?? "")".contains("expected \(wrong), got \(archive.digest)"))
        #expect(store.image(digest: wrong) == nil)
        #expect(!FileManager.default.fileExists(atPath: ws.storeRoot + "/" + wrong))
        #expect(ws.leftovers.isEmpty)
        // Not a digest at all.
        let malformed = await pullError(store, url: archive.url, digest: "abc")
        #expect(malformed.map { "\($0)".contains("64 hex") } ?? false)
    }

    /// Each archive aims at something outside the image root, or past a limit; each is refused,
    /// nothing is written outside, and nothing of it stays in the store.
    @Test func hostileArchivesAreRefused() async throws {
        let ws = try ImageWorkspace()
        defer { ws.remove() }
        let base: [TarEntry] = [.dir("./"), .dir("etc"), .file("etc/ok", "fine\n")]
        let cases: [(name: String, entries: [TarEntry], check: (ContainerRuntimeError) -> Bool)] = [
            ("dotdot", base + [.file("../evil", "x")], { if case .imageEntryRefused(_, let r) = $0 { return r.contains("'..'") }; return false }),
            ("nested-dotdot", base + [.file("etc/../../evil", "x")], { if case .imageEntryRefused(_, let r) = $0 { return r.contains("'..'") }; return false }),
            ("absolute", base + [.file(ws.outside + "/evil", "x")], { if case .imageEntryRefused(_, let r) = $0 { return r.contains("absolute") }; return false }),
            ("symlink-then-write", base + [.symlink("link", to: ws.outside), .file("link/evil", "x")],
             { if case .imageEntryRefused("link/evil", let r) = $0 { return r.contains("symlink") }; return false }),
            ("relative-symlink-then-write", base + [.symlink("up", to: "../../../../../../../../.." + ws.outside), .file("up/evil", "x")],
             { if case .imageEntryRefused("up/evil", let r) = $0 { return r.contains("symlink") }; return false }),
            ("symlink-dir-then-mkdir", base + [.symlink("d", to: ws.outside), .dir("d/sub"), .file("d/sub/evil", "x")],
             { if case .imageEntryRefused(let e, let r) = $0 { return e.hasPrefix("d/sub") && r.contains("symlink") }; return false }),
            ("hardlink-to-etc-passwd", base + [.hardlink("passwd", to: "/etc/passwd")],
             { if case .imageEntryRefused("passwd", let r) = $0 { return r.contains("absolute") }; return false }),
            ("hardlink-dotdot", base + [.hardlink("passwd", to: "../../../../../../etc/passwd")],
             { if case .imageEntryRefused("passwd", let r) = $0 { return r.contains("'..'") }; return false }),
            ("hardlink-through-symlink", base + [.symlink("hostetc", to: "/etc"), .hardlink("passwd", to: "hostetc/passwd")],
             { if case .imageEntryRefused("passwd", let r) = $0 { return r.contains("symlink") }; return false }),
            ("char-device", base + [TarEntry(path: "dev/mem", kind: .characterDevice(major: 1, minor: 1), mode: 0o666)],
             { if case .imageEntryRefused("dev/mem", let r) = $0 { return r.contains("device") }; return false }),
            ("block-device", base + [TarEntry(path: "sda", kind: .blockDevice(major: 8, minor: 0), mode: 0o660)],
             { if case .imageEntryRefused("sda", let r) = $0 { return r.contains("device") }; return false }),
            ("oversize", base + [TarEntry(path: "big", kind: .file(Data(count: 300_000)), mode: 0o644)],
             { if case .imageLimit(let what, 200_000) = $0 { return what.contains("unpacked size") }; return false }),
            ("too-many-entries", base + (0..<40).map { .file("f\($0)", "x") },
             { if case .imageLimit(let what, 32) = $0 { return what.contains("entries") }; return false }),
            ("too-deep", base + [.file(Array(repeating: "d", count: 40).joined(separator: "/") + "/f", "x")],
             { if case .imageLimit(let what, 16) = $0 { return what.contains("depth") }; return false }),
            ("not-a-tar", [], { if case .imageFormat = $0 { return true }; return false }),
        ]
        let store = try ws.store(limits: ImageLimits(maxUnpackedBytes: 200_000, maxEntries: 32, maxDepth: 16))
        for c in cases {
            let archive: ImageWorkspace.Archive
            if c.name == "not-a-tar" {
                let path = ws.sources + "/not-a-tar"
                try Data("this is not an archive, just text that is long enough to not be a tar header".utf8).write(to: URL(fileURLWithPath: path))
                archive = .init(path: path, digest: try TestArchive.digest(path))
            } else {
                archive = try ws.archive(c.name + ".tar", c.entries)
            }
            let error = await pullError(store, url: archive.url, digest: archive.digest)
            #expect(error.map(c.check) ?? false, "\(c.name): \(String(describing: error))")
            #expect(store.image(digest: archive.digest) == nil, "\(c.name)")
            #expect(!FileManager.default.fileExists(atPath: ws.storeRoot + "/" + archive.digest), "\(c.name)")
            #expect(ws.leftovers.isEmpty, "\(c.name): \(ws.leftovers)")
            #expect((try FileManager.default.contentsOfDirectory(atPath: ws.outside)).isEmpty, "\(c.name) wrote outside the root")
            #expect(!FileManager.default.fileExists(atPath: ws.base + "/evil"), "\(c.name)")
        }
        // The archive itself over the size cap never gets unpacked.
        let small = try ws.store(limits: ImageLimits(maxArchiveBytes: 1024))
        let big = try ws.archive("big.tar", base + [TarEntry(path: "big", kind: .file(Data(count: 4096)), mode: 0o644)])
        let error = await pullError(small, url: big.url, digest: big.digest)
        guard case .imageLimit(let what, 1024)? = error else { Issue.record("expected the archive size limit, got \(String(describing: error))"); return }
        #expect(what.contains("archive size"))
    }

    @Test func setuidBitsAreDroppedAndIDsShifted() async throws {
        let ws = try ImageWorkspace()
        defer { ws.remove() }
        let archive = try ws.archive("ids.tar", [
            .dir("./"), .dir("bin"), .dir("shared", mode: 0o2775),
            .file("bin/su", "#!/bin/sh\n", mode: 0o4755), .file("bin/wall", "#!/bin/sh\n", mode: 0o2755),
            .file("owned", "x", uid: 1000), .file("far", "x", uid: 70_000),
            TarEntry(path: "pipe", kind: .fifo, mode: 0o640),
            .hardlink("bin/su2", to: "bin/su"),
        ])
        let record = try await ws.store().pull(url: archive.url, digest: archive.digest)
        #expect(owner(record.rootfs + "/bin/su")?.mode == 0o755)
        #expect(owner(record.rootfs + "/bin/wall")?.mode == 0o755)
        #expect(owner(record.rootfs + "/shared")?.mode == 0o2775, "setgid on a directory only steers group inheritance: kept")
        #expect(owner(record.rootfs + "/owned")?.uid == 101_000)
        #expect(owner(record.rootfs + "/far")?.uid == UInt32(100_000 + 65_534))
        #expect(owner(record.rootfs + "/pipe").map { ($0.uid, $0.mode) } ?? (0, 0) == (100_000, 0o640))
        var a = stat(), b = stat()
        #expect(lstat(record.rootfs + "/bin/su", &a) == 0 && lstat(record.rootfs + "/bin/su2", &b) == 0 && a.st_ino == b.st_ino)
        #expect(record.warnings.contains { $0.contains("setuid/setgid bits dropped from 2") }, "\(record.warnings)")
        #expect(record.warnings.contains { $0.contains("mapped to nobody") }, "\(record.warnings)")
    }

    @Test func ociLayoutAppliesLayersInOrderWithWhiteouts() async throws {
        let ws = try ImageWorkspace()
        defer { ws.remove() }
        let lower = try TestArchive.busyboxRootfs(extra: [
            .file("etc/removed", "gone\n"), .dir("opq"), .file("opq/old", "old\n"), .dir("opq/olddir"), .file("opq/olddir/f", "f"),
            .dir("keep"), .file("keep/file", "kept\n"), .dir("gone-dir"), .file("gone-dir/f", "f"), .file("replaced", "v1\n"),
        ])
        let upper: [TarEntry] = [
            .dir("etc"), .file("etc/.wh.removed", ""), .dir("opq"), .file("opq/new", "new\n"), .file("opq/.wh..wh..opq", ""),
            .file(".wh.gone-dir", ""), .file("added", "added\n"), .file("replaced", "v2\n"), .file(".wh..wh.plnk", ""),
        ]
        let layout = try OCITestLayout(ws: ws, layers: [(lower, .gzip), (upper, .zstd)],
                                       config: #"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/sh","-c"],"Cmd":["echo hi"],"Env":["PATH=/bin","A=b"],"WorkingDir":"/root"},"rootfs":{"type":"layers","diff_ids":[]}}"#)
        let archive = try ws.archive("layout.tar", layout.entries)
        let record = try await ws.store().pull(url: archive.url, digest: archive.digest)
        let root = record.rootfs
        let fm = FileManager.default
        #expect(record.format == .ociLayout)
        #expect(record.config == ImageConfig(entrypoint: ["/bin/sh", "-c"], cmd: ["echo hi"], env: ["PATH=/bin", "A=b"], workingDir: "/root"))
        #expect(fm.isExecutableFile(atPath: root + "/bin/busybox"))
        #expect(!fm.fileExists(atPath: root + "/etc/removed"))
        #expect(!fm.fileExists(atPath: root + "/etc/.wh.removed"))
        #expect(fm.fileExists(atPath: root + "/etc/passwd"))
        #expect(try fm.contentsOfDirectory(atPath: root + "/opq") == ["new"])
        #expect(!fm.fileExists(atPath: root + "/gone-dir"))
        #expect(try String(contentsOfFile: root + "/keep/file", encoding: .utf8) == "kept\n")
        #expect(try String(contentsOfFile: root + "/added", encoding: .utf8) == "added\n")
        #expect(try String(contentsOfFile: root + "/replaced", encoding: .utf8) == "v2\n")
        #expect(!fm.fileExists(atPath: root + "/.wh..wh.plnk"))
        #expect(!fm.fileExists(atPath: root + "/blobs") && !fm.fileExists(atPath: root + "/index.json"), "the layout is not the rootfs")
        #expect(ws.leftovers.isEmpty)

        // A layout whose layer does not match its descriptor's digest is refused.
        var tampered = layout
        tampered.corruptFirstLayer()
        let bad = try ws.archive("tampered.tar", tampered.entries)
        let error = await pullError(try ws.store(), url: bad.url, digest: bad.digest)
        guard case .imageFormat(let message)? = error else { Issue.record("expected a format error, got \(String(describing: error))"); return }
        #expect(message.contains("has digest"), "\(message)")
    }

    @Test func leftoversOfACrashedPullAreRemovedByTheNextPull() async throws {
        let ws = try ImageWorkspace()
        defer { ws.remove() }
        let archive = try ws.archive("rootfs.tar", TestArchive.busyboxRootfs())
        let store = try ws.store()
        // What a crash mid-unpack leaves: a temp directory, and an image directory without its record.
        let stale = ws.storeRoot + "/.tmp/" + archive.digest + ".dead1234"
        try FileManager.default.createDirectory(atPath: stale + "/rootfs/usr/lib", withIntermediateDirectories: true)
        try Data("partial".utf8).write(to: URL(fileURLWithPath: stale + "/archive"))
        try FileManager.default.createDirectory(atPath: ws.storeRoot + "/" + archive.digest + "/rootfs/half", withIntermediateDirectories: true)
        #expect(store.image(digest: archive.digest) == nil, "no record: not an image")
        #expect(try store.list().isEmpty)
        let record = try await store.pull(url: archive.url, digest: archive.digest)
        #expect(ws.leftovers.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: record.rootfs + "/half"))
        #expect(FileManager.default.fileExists(atPath: record.rootfs + "/bin/busybox"))
        // Remove, then the directory is gone and the image can be pulled again.
        try store.remove(digest: archive.digest)
        #expect(!FileManager.default.fileExists(atPath: ws.storeRoot + "/" + archive.digest))
        #expect(throws: ContainerRuntimeError.imageNotFound(digest: archive.digest)) { try store.remove(digest: archive.digest) }
        #expect(ws.leftovers.isEmpty)
    }

    @Test func concurrentPullsOfOneDigestUnpackOnce() async throws {
        let ws = try ImageWorkspace()
        defer { ws.remove() }
        let archive = try ws.archive("rootfs.tar.zst", TestArchive.busyboxRootfs(), compression: .zstd)
        let store = try ws.store()
        let records = try await withThrowingTaskGroup(of: ImageRecord.self) { group in
            for _ in 0..<4 { group.addTask { try await store.pull(url: archive.url, digest: archive.digest) } }
            return try await group.reduce(into: [ImageRecord]()) { $0.append($1) }
        }
        #expect(records.count == 4)
        #expect(Set(records.map(\.createdAt)).count == 1, "one unpack, the others found its record")
        #expect(ws.leftovers.isEmpty)
    }
}

/// Progress events, collected from any thread.
final class ProgressLog: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [ImagePullProgress] = []
    func add(_ event: ImagePullProgress) { lock.lock(); events.append(event); lock.unlock() }
    var all: [ImagePullProgress] { lock.lock(); defer { lock.unlock() }; return events }
}

/// `python3 -m http.server` on 127.0.0.1 and a port the kernel picks; stopped by its pid.
final class LoopbackHTTPServer {
    let process = Process()
    private(set) var port = 0

    init(directory: String) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", directory]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let fd = out.fileHandleForReading.fileDescriptor
        var text = ""
        let deadline = Date().addingTimeInterval(15)
        while port == 0 && Date() < deadline {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 200) > 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: 512)
            let n = read(fd, &buffer, buffer.count)
            if n <= 0 { break }
            text += String(decoding: buffer[0..<n], as: UTF8.self)
            // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
            if let range = text.range(of: " port "), let number = Int(text[range.upperBound...].prefix { $0.isNumber }) { port = number }
        }
        if port == 0 {
            stop()
            throw TestArchive.Failure(description: "python3 -m http.server did not start: \(text)")
        }
    }

    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

/// An OCI image layout as tar entries: blobs, manifest, index.
struct OCITestLayout {
    var entries: [TarEntry] = []
    private var firstLayerPath = ""

    init(ws: ImageWorkspace, layers: [([TarEntry], TestArchive.Compression)], config: String) throws {
        var layerDescriptors: [String] = []
        entries = [.dir("blobs"), .dir("blobs/sha256"), .file("oci-layout", #"{"imageLayoutVersion":"1.0.0"}"#)]
        for (i, layer) in layers.enumerated() {
            let path = ws.sources + "/layer\(i)"
            try TestArchive.write(layer.0, to: path, compression: layer.1)
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            let digest = TestArchive.sha256(data)
            let type = "application/vnd.oci.image.layer.v1.tar" + (layer.1 == .none ? "" : "+" + layer.1.rawValue)
            layerDescriptors.append(#"{"mediaType":"\#(type)","digest":"sha256:\#(digest)","size":\#(data.count)}"#)
            entries.append(TarEntry(path: "blobs/sha256/" + digest, kind: .file(data), mode: 0o644))
            if i == 0 { firstLayerPath = "blobs/sha256/" + digest }
        }
        let configData = Data(config.utf8)
        let configDigest = TestArchive.sha256(configData)
        entries.append(TarEntry(path: "blobs/sha256/" + configDigest, kind: .file(configData), mode: 0o644))
        let manifest = Data(#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:\#(configDigest)","size":\#(configData.count)},"layers":[\#(layerDescriptors.joined(separator: ","))]}"#.utf8)
        let manifestDigest = TestArchive.sha256(manifest)
        entries.append(TarEntry(path: "blobs/sha256/" + manifestDigest, kind: .file(manifest), mode: 0o644))
        entries.append(.file("index.json", #"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:\#(manifestDigest)","size":\#(manifest.count),"platform":{"architecture":"amd64","os":"linux"}}]}"#))
    }

    /// Flips a byte of the first layer's blob, keeping its size.
    mutating func corruptFirstLayer() {
        guard let i = entries.firstIndex(where: { $0.path == firstLayerPath }), case .file(var data) = entries[i].kind else { return }
        data[data.count / 2] ^= 0xff
        entries[i].kind = .file(data)
    }
}
