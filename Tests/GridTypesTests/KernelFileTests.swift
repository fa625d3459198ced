import Foundation
import GridTypes
import Testing

@Suite struct KernelFileTests {
    /// procfs hands out about a page per read: a file of many pages must come back whole.
    @Test(.enabled(if: FileManager.default.isReadableFile(atPath: "/proc/kallsyms")))
    func procfsFilesAreReadPastTheFirstPage() throws {
        let text = try #require(KernelFile.read("/proc/kallsyms", limit: 256 << 20))
        let wc = Process()
        wc.executableURL = URL(fileURLWithPath: "/usr/bin/wc")
        wc.arguments = ["-c", "/proc/kallsyms"]
        let out = Pipe()
        wc.standardOutput = out
        try wc.run()
        let counted = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(separator: " ").first.flatMap { Int($0) }
        wc.waitUntilExit()
        #expect(text.utf8.count > 4096)
        #expect(text.utf8.count == counted)
    }

    @Test func limitsAndMissingFiles() throws {
        let path = NSTemporaryDirectory() + "kernel-file-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try String(repeating: "x", count: 100_000).write(toFile: path, atomically: true, encoding: .utf8)
        #expect(KernelFile.read(path)?.utf8.count == 100_000)
        #expect(KernelFile.read(path, limit: 50_000) == nil)
        #expect(KernelFile.read(path + ".missing") == nil)
    }
}
