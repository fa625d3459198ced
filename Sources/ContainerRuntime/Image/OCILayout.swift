import CNodeShim
import Foundation

/// An OCI image layout (image-spec "image-layout"), unpacked from the archive into a directory:
/// `oci-layout`, `index.json`, and `blobs/sha256/<hex>`. Every blob is read beneath the layout
/// directory without following symlinks, checked against its descriptor's size and SHA-256.
struct OCILayout {
    struct Descriptor: Decodable {
        var mediaType: String?
        var digest: String
        var size: Int64
        var platform: Platform?
    }
    struct Platform: Decodable {
        var architecture: String?
        var os: String?
    }
    struct Index: Decodable {
        var manifests: [Descriptor]
    }
    struct Manifest: Decodable {
        var mediaType: String?
        var config: Descriptor
        var layers: [Descriptor]
    }
    struct ConfigFile: Decodable {
        struct Runtime: Decodable {
            var Entrypoint: [String]?
            var Cmd: [String]?
            var Env: [String]?
            var WorkingDir: String?
            var User: String?
        }
        var config: Runtime?
    }

    static let indexTypes: Set<String> = ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"]
    static let manifestTypes: Set<String> = ["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"]
    static let layerTypes: Set<String> = [
        "application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.nondistributable.v1.tar", "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar.gzip", "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    ]
    /// index.json, manifests and configs are small; a larger one is not an image.
    static let maxJSONBytes = 4 << 20

    let path: String
    private let fd: Int32

    /// Is `directory` (an unpacked archive) an OCI image layout?
    static func detect(_ directory: String) -> Bool {
        var info = stat()
        return lstat(directory + "/oci-layout", &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
            && lstat(directory + "/index.json", &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }

    init(path: String) throws(ContainerRuntimeError) {
        self.path = path
        fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw .io(operation: "open", path: path, errno: errno) }
    }

    func close() { _ = Glibc.close(fd) }

    /// The layers (blob paths, lowest first) and runtime config of the image for this machine.
    func resolve(limits: ImageLimits) throws(ContainerRuntimeError) -> (layers: [String], config: ImageConfig?) {
        let index: Index = try decode(readSmall("index.json"), what: "index.json")
        var descriptor = try pick(index.manifests, from: "index.json")
        // An index may point at a nested index (multi-platform images as buildx writes them).
        for _ in 0..<4 {
            guard let type = descriptor.mediaType, Self.indexTypes.contains(type) else { break }
            let nested: Index = try decode(try readBlob(descriptor, verify: true), what: "index \(descriptor.digest)")
            descriptor = try pick(nested.manifests, from: "index \(descriptor.digest)")
        }
        if let type = descriptor.mediaType, !Self.manifestTypes.contains(type) {
            throw .imageFormat("OCI layout: manifest media type \(type) is not an image manifest")
        }
        let manifest: Manifest = try decode(try readBlob(descriptor, verify: true), what: "manifest \(descriptor.digest)")
        guard manifest.layers.count <= limits.maxLayers else { throw .imageLimit(what: "the number of layers", limit: UInt64(limits.maxLayers)) }
        var layers: [String] = []
        for layer in manifest.layers {
            let type = layer.mediaType ?? "(none)"
            guard Self.layerTypes.contains(type) else {
                throw .imageFormat("OCI layout: layer \(layer.digest) has media type \(type); supported: tar, tar+gzip, tar+zstd")
            }
            let relative = try blobPath(layer.digest)
            try verify(relative, descriptor: layer)
            layers.append(path + "/" + relative)
        }
        let configFile: ConfigFile = try decode(try readBlob(manifest.config, verify: true), what: "config \(manifest.config.digest)")
        let config = configFile.config.map {
            ImageConfig(entrypoint: $0.Entrypoint, cmd: $0.Cmd, env: $0.Env, workingDir: $0.WorkingDir, user: $0.User)
        }
        return (layers, config)
    }

    /// The one manifest for this machine: the only one, or the one for linux/<this architecture>.
    private func pick(_ manifests: [Descriptor], from: String) throws(ContainerRuntimeError) -> Descriptor {
        if manifests.count == 1, let only = manifests.first { return only }
        let arch = Self.hostArchitecture
        if let match = manifests.first(where: { $0.platform?.os == "linux" && $0.platform?.architecture == arch }) { return match }
        let offered = manifests.map { "\($0.platform?.os ?? "?")/\($0.platform?.architecture ?? "?")" }.joined(separator: ", ")
        throw .imageFormat("OCI layout: \(from) has no manifest for linux/\(arch) (it offers: \(offered.isEmpty ? "none" : offered))")
    }

    static var hostArchitecture: String {
        #if arch(x86_64)
        return "amd64"
        #elseif arch(arm64)
        return "arm64"
        #else
        return "unknown"
        #endif
    }

    /// `blobs/sha256/<hex>` for a digest; anything else (another algorithm, a path in disguise) is refused.
    private func blobPath(_ digest: String) throws(ContainerRuntimeError) -> String {
        let parts = digest.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, parts[0] == "sha256", parts[1].utf8.count == 64,
              parts[1].utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) else {
            throw .imageFormat("OCI layout: digest '\(digest.prefix(100))' is not sha256:<64 lowercase hex>")
        }
        return "blobs/sha256/" + parts[1]
    }

    private func verify(_ relative: String, descriptor: Descriptor) throws(ContainerRuntimeError) {
        let blob = FileTree.openBeneath(fd, relative, O_RDONLY)
        guard blob >= 0 else {
            throw .imageFormat("OCI layout: blob \(descriptor.digest) is missing or not a plain file (\(String(cString: strerror(-blob))))")
        }
        defer { Glibc.close(blob) }
        var info = stat()
        guard fstat(blob, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, info.st_size == descriptor.size else {
            throw .imageFormat("OCI layout: blob \(descriptor.digest) is not a file of the \(descriptor.size) bytes its descriptor says")
        }
        let hasher = SHA256Stream()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = read(blob, buffer.baseAddress, buffer.count)
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw .io(operation: "read", path: path + "/" + relative, errno: errno) }
            if n == 0 { break }
            hasher.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
        let actual = "sha256:" + hasher.finish()
        guard actual == descriptor.digest else { throw .imageFormat("OCI layout: blob \(descriptor.digest) has digest \(actual)") }
    }

    private func readBlob(_ descriptor: Descriptor, verify check: Bool) throws(ContainerRuntimeError) -> Data {
        let relative = try blobPath(descriptor.digest)
        guard descriptor.size >= 0, descriptor.size <= Self.maxJSONBytes else {
            throw .imageLimit(what: "the size of JSON blob \(descriptor.digest)", limit: UInt64(Self.maxJSONBytes))
        }
        if check { try verify(relative, descriptor: descriptor) }
        return try readSmall(relative)
    }

    private func readSmall(_ relative: String) throws(ContainerRuntimeError) -> Data {
        let file = FileTree.openBeneath(fd, relative, O_RDONLY)
        guard file >= 0 else { throw .imageFormat("OCI layout: \(relative) is missing or not a plain file (\(String(cString: strerror(-file))))") }
        defer { Glibc.close(file) }
        var data = Data()
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(file, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw .io(operation: "read", path: path + "/" + relative, errno: errno) }
            if n == 0 { break }
            data.append(contentsOf: chunk[0..<n])
            guard data.count <= Self.maxJSONBytes else { throw .imageLimit(what: "the size of \(relative)", limit: UInt64(Self.maxJSONBytes)) }
        }
        return data
    }

    private func decode<T: Decodable>(_ data: Data, what: String) throws(ContainerRuntimeError) -> T {
        do { return try JSONDecoder().decode(T.self, from: data) } catch {
            throw .imageFormat("OCI layout: \(what) is not valid: \(error)")
        }
    }
}
