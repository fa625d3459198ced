import Foundation
import Testing

/// `node-agent runtime` driven the way OCI tools drive runc, with the config.json `runc spec`
/// writes (terminal switched off), from a busybox-static rootfs.
@Suite(.serialized, .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/bin/busybox"), "needs root and busybox-static"))
struct RuntimeCLITests {
    /// `runc spec` output of runc 1.1.5, verbatim.
    static let runcSpec = #"""
{
 "ociVersion": "1.0.2-dev",
 "process": {
  "terminal": true,
  "user": {
   "uid": 0,
   "gid": 0
  },
  "args": [
   "sh"
  ],
  "env": [
   "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
   "TERM=xterm"
  ],
  "cwd": "/",
  "capabilities": {
   "bounding": [
    "CAP_AUDIT_WRITE",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE"
   ],
   "effective": [
    "CAP_AUDIT_WRITE",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE"
   ],
   "permitted": [
    "CAP_AUDIT_WRITE",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE"
   ],
   "ambient": [
    "CAP_AUDIT_WRITE",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE"
   ]
  },
  "rlimits": [
   {
    "type": "RLIMIT_NOFILE",
    "hard": 1024,
    "soft": 1024
   }
  ],
  "noNewPrivileges": true
 },
 "root": {
  "path": "rootfs",
  "readonly": true
 },
 "hostname": "runc",
 "mounts": [
  {
   "destination": "/proc",
   "type": "proc",
   "source": "proc"
  },
  {
   "destination": "/dev",
   "type": "tmpfs",
   "source": "tmpfs",
   "options": [
    "nosuid",
    "strictatime",
    "mode=755",
    "size=65536k"
   ]
  },
  {
   "destination": "/dev/pts",
   "type": "devpts",
   "source": "devpts",
   "options": [
    "nosuid",
    "noexec",
    "newinstance",
    "ptmxmode=0666",
    "mode=0620",
    "gid=5"
   ]
  },
  {
   "destination": "/dev/shm",
   "type": "tmpfs",
   "source": "shm",
   "options": [
    "nosuid",
    "noexec",
    "nodev",
    "mode=1777",
    "size=65536k"
   ]
  },
  {
   "destination": "/dev/mqueue",
   "type": "mqueue",
   "source": "mqueue",
   "options": [
    "nosuid",
    "noexec",
    "nodev"
   ]
  },
  {
   "destination": "/sys",
   "type": "sysfs",
   "source": "sysfs",
   "options": [
    "nosuid",
    "noexec",
    "nodev",
    "ro"
   ]
  },
  {
   "destination": "/sys/fs/cgroup",
   "type": "cgroup",
   "source": "cgroup",
   "options": [
    "nosuid",
    "noexec",
    "nodev",
    "relatime",
    "ro"
   ]
  }
 ],
 "linux": {
  "resources": {
   "devices": [
    {
     "allow": false,
     "access": "rwm"
    }
   ]
  },
  "namespaces": [
   {
    "type": "pid"
   },
   {
    "type": "network"
   },
   {
    "type": "ipc"
   },
   {
    "type": "uts"
   },
   {
    "type": "mount"
   }
  ],
  "maskedPaths": [
   "/proc/acpi",
   "/proc/asound",
   "/proc/kcore",
   "/proc/keys",
   "/proc/latency_stats",
   "/proc/timer_list",
   "/proc/timer_stats",
   "/proc/sched_debug",
   "/sys/firmware",
   "/proc/scsi"
  ],
  "readonlyPaths": [
   "/proc/bus",
   "/proc/fs",
   "/proc/irq",
   "/proc/sys",
   "/proc/sysrq-trigger"
  ]
 }
}
"""#

    static func waitUntil(seconds: Double = 5, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return }
            usleep(10_000)
        }
    }

    struct Bundle {
        let dir: String
        var root: String { dir + "/state" }
        init(args: [String], edit: (inout [String: Any]) -> Void = { _ in }) throws {
            dir = NSTemporaryDirectory() + "oci-cli-\(getpid())-\(UUID().uuidString.prefix(8))"
            let fm = FileManager.default
            for sub in ["bin", "proc", "dev", "sys", "tmp"] { try fm.createDirectory(atPath: dir + "/rootfs/" + sub, withIntermediateDirectories: true) }
            try fm.copyItem(atPath: "/bin/busybox", toPath: dir + "/rootfs/bin/busybox")
            for applet in ["sh", "echo", "sleep", "cat", "hostname", "true"] {
                try fm.createSymbolicLink(atPath: dir + "/rootfs/bin/" + applet, withDestinationPath: "busybox")
            }
            var config = try #require(try JSONSerialization.jsonObject(with: Data(RuntimeCLITests.runcSpec.utf8)) as? [String: Any])
            var process = try #require(config["process"] as? [String: Any])
            process["terminal"] = false
            process["args"] = args
            config["process"] = process
            edit(&config)
            try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: dir + "/config.json"))
        }
        func cli(_ arguments: [String]) throws -> CommandLineTests.Result {
            // Output goes to files: a created container holds the runtime's stdio open, as with runc.
            let out = dir + "/cli.out", err = dir + "/cli.err"
            FileManager.default.createFile(atPath: out, contents: nil)
            FileManager.default.createFile(atPath: err, contents: nil)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: CommandLineTests.binary)
            process.arguments = ["runtime"] + arguments
            process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
            process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
            try process.run()
            process.waitUntilExit()
            let read = { (p: String) in String(decoding: FileManager.default.contents(atPath: p) ?? Data(), as: UTF8.self) }
            return .init(status: process.terminationStatus, stdout: read(out), stderr: read(err))
        }
        func state(_ id: String) throws -> [String: Any] {
            let result = try cli(["state", "--root", root, id])
            return (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]) ?? [:]
        }
        func remove() {
            _ = try? cli(["delete", "--force", "--root", root, "c1"])
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    @Test func createStartStateKillDeleteLikeAnOCITool() throws {
        let bundle = try Bundle(args: ["sh", "-c", "trap 'echo bye; exit 7' TERM; echo up > /tmp/up; while true; do sleep 0.05; done"]) { config in
            config["root"] = ["path": "rootfs", "readonly": false]
        }
        defer { bundle.remove() }
        let created = try bundle.cli(["create", "--root", bundle.root, "--bundle", bundle.dir, "--pid-file", bundle.dir + "/pid", "c1"])
        #expect(created.status == 0, "\(created.stderr)")
        var state = try bundle.state("c1")
        #expect(state["status"] as? String == "created")
        #expect(state["ociVersion"] as? String == "1.0.2")
        #expect(state["bundle"] as? String == bundle.dir)
        let pid = try #require(state["pid"] as? Int)
        #expect(try String(contentsOfFile: bundle.dir + "/pid", encoding: .utf8) == "\(pid)")
        #expect(!FileManager.default.fileExists(atPath: bundle.dir + "/rootfs/tmp/up"), "nothing runs before start")

        #expect(try bundle.cli(["start", "--root", bundle.root, "c1"]).status == 0)
        try Self.waitUntil { FileManager.default.fileExists(atPath: bundle.dir + "/rootfs/tmp/up") }
        #expect(try bundle.state("c1")["status"] as? String == "running")
        #expect(try bundle.cli(["delete", "--root", bundle.root, "c1"]).status != 0, "a running container is not deleted without --force")

        #expect(try bundle.cli(["kill", "--root", bundle.root, "c1", "TERM"]).status == 0)
        try Self.waitUntil { try bundle.state("c1")["status"] as? String == "stopped" }
        state = try bundle.state("c1")
        #expect(state["status"] as? String == "stopped")
        #expect((state["exit"] as? [String: Any])?["code"] as? Int == 7)
        #expect(state["pid"] == nil)

        #expect(try bundle.cli(["delete", "--root", bundle.root, "c1"]).status == 0)
        let gone = try bundle.cli(["state", "--root", bundle.root, "c1"])
        #expect(gone.status != 0 && gone.stderr.contains("does not exist"))
    }

    @Test func runPassesStdioThroughAndExitsWithTheContainersCode() throws {
        let bundle = try Bundle(args: ["sh", "-c", "echo out-$(hostname); echo err >&2; exit 42"])
        defer { bundle.remove() }
        let result = try bundle.cli(["run", "--root", bundle.root, "--bundle", bundle.dir, "c1"])
        #expect(result.status == 42, "\(result.stderr)")
        #expect(result.stdout == "out-runc\n")
        #expect(result.stderr.hasSuffix("err\n"))
        #expect(try bundle.cli(["list", "--root", bundle.root, "--json"]).stdout.contains("[") )
        #expect(!FileManager.default.fileExists(atPath: bundle.root + "/c1"), "run deletes the container afterwards")
    }

    @Test func unsupportedFieldsAreRefusedByName() throws {
        let bundle = try Bundle(args: ["true"]) { config in
            var linux = config["linux"] as? [String: Any] ?? [:]
            linux["intelRdt"] = ["closID": "x"]
            config["linux"] = linux
        }
        defer { bundle.remove() }
        let result = try bundle.cli(["run", "--root", bundle.root, "--bundle", bundle.dir, "c1"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("linux.intelRdt"), "\(result.stderr)")
        let signal = try bundle.cli(["kill", "--root", bundle.root, "c1", "NOPE"])
        #expect(signal.status == 1 && signal.stderr.contains("unknown signal NOPE"))
    }
}
