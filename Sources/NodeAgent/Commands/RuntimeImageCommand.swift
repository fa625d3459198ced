import ArgumentParser
import ContainerRuntime
import Foundation
import GridTypes

/// `node-agent runtime image pull|ls|rm`: the image store the provisioner uses, by hand.
struct RuntimeImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Container images: pull (fetch, verify the BLAKE2b-256 digest, unpack), ls, rm.",
        subcommands: [Pull.self, List.self, Remove.self]
    )

    struct StoreOptions: ParsableArguments {
        @Option(name: .long, help: "Image store directory.")
        var store: String = ImageStore.defaultRoot

        func open(limits: ImageLimits = ImageLimits()) throws(ContainerRuntimeError) -> ImageStore {
            let path = store.hasPrefix("/") ? store : FileManager.default.currentDirectoryPath + "/" + store
            return try ImageStore(root: path, options: .init(limits: limits))
        }
    }

    static func fail(_ error: ContainerRuntimeError) -> ExitCode {
        FileHandle.standardError.write(Data("node-agent runtime image: \(error)\n".utf8))
        return ExitCode(1)
    }

    struct Pull: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Fetch an image (file://, http://, https://), check its digest, unpack it into the store.")
        @OptionGroup var options: StoreOptions
        @Option(name: .long, help: "BLAKE2b-256 of the archive, 64 hex characters (b2sum -l 256).") var digest: String
        @Option(name: .long, help: "Largest archive accepted, in bytes.") var maxSize: UInt64?
        @Flag(name: .long, help: "Print the image record as JSON.") var json = false
        @Argument(help: "Where the archive is: file:///path, http(s)://host/path.") var url: String

        func run() async throws {
            var limits = ImageLimits()
            if let maxSize { limits.maxArchiveBytes = maxSize }
            let record: ImageRecord
            let line = isatty(STDERR_FILENO) == 1 ? ProgressLine() : nil
            var progress: (@Sendable (ImagePullProgress) -> Void)?
            if let line { progress = { line.show($0) } }
            do throws(ContainerRuntimeError) {
                let store = try options.open(limits: limits)
                record = try await store.pull(url: url, digest: digest, progress: progress)
            } catch {
                line?.finish()
                throw RuntimeImageCommand.fail(error)
            }
            line?.finish()
            if json { return try RuntimeCommand.printJSON(record) }
            print("\(record.digest) \(record.format.rawValue) \(ByteCount.text(record.archiveBytes)) archive, " +
                  "\(ByteCount.text(record.unpackedBytes)) unpacked, \(record.entries) entries -> \(record.rootfs)")
            for warning in record.warnings { FileHandle.standardError.write(Data("node-agent runtime image: warning: \(warning)\n".utf8)) }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List the images in the store.")
        @OptionGroup var options: StoreOptions
        @Flag(name: .long, help: "Print JSON.") var json = false

        func run() throws {
            let records: [ImageRecord]
            let store: ImageStore
            do throws(ContainerRuntimeError) {
                store = try options.open()
                records = try store.list()
            } catch { throw RuntimeImageCommand.fail(error) }
            if json { return try RuntimeCommand.printJSON(records) }
            var table = TextTable(["DIGEST", "FORMAT", "ARCHIVE", "UNPACKED", "USERS", "CREATED (UTC)", "URL"])
            for r in records {
                table.add([String(r.digest.prefix(16)), r.format.rawValue, ByteCount.text(r.archiveBytes), ByteCount.text(r.unpackedBytes),
                           String(store.users(digest: r.digest).count), ISO8601DateFormatter().string(from: r.createdAt), r.url])
            }
            print(table.render())
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove an image no container uses.")
        @OptionGroup var options: StoreOptions
        @Argument(help: "The image's digest.") var digest: String

        func run() throws {
            do throws(ContainerRuntimeError) { try options.open().remove(digest: digest) } catch { throw RuntimeImageCommand.fail(error) }
        }
    }
}

/// One status line on a terminal, rewritten in place (stderr, so stdout stays parseable).
private final class ProgressLine: @unchecked Sendable {
    private let lock = NSLock()
    private var last = ContinuousClock.now - .seconds(1)
    private var shown = false

    func show(_ p: ImagePullProgress) {
        lock.lock()
        defer { lock.unlock() }
        let now = ContinuousClock.now
        let complete = p.bytesTotal == p.bytesDone
        guard complete || now - last >= .milliseconds(100) else { return }
        last = now
        var text = "\(p.phase.rawValue) \(ByteCount.text(p.bytesDone))"
        if let total = p.bytesTotal, total > 0 {
            text += " / \(ByteCount.text(total)) (\(p.bytesDone * 100 / total)%)"
        }
        FileHandle.standardError.write(Data("\r\u{1B}[K\(text)".utf8))
        shown = true
    }

    func finish() {
        lock.lock()
        defer { lock.unlock() }
        if shown { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}

enum ByteCount {
    static func text(_ bytes: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(bytes) B" : String(format: "%.1f", value) + " " + units[unit]
    }
}
