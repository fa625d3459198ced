import Foundation

/// Reads and validates an OCI bundle's config.json. Fields this runtime does not implement are
/// refused by their JSON path; values are checked before anything is created.
public enum SpecParser {
    public static let maxConfigSize = 4 << 20

    public static func load(bundle: String) throws(ContainerRuntimeError) -> ContainerSpec {
        let path = bundle + "/config.json"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .bundle(path: bundle, message: "no readable config.json")
        }
        guard data.count <= maxConfigSize else { throw .bundle(path: bundle, message: "config.json is larger than 4 MiB") }
        return try parse(data, bundle: bundle)
    }

    public static func parse(_ data: Data, bundle: String) throws(ContainerRuntimeError) -> ContainerSpec {
        var top = try JSONReader.parse(data)
        guard let ociVersion = try top.string("ociVersion") else { throw .invalidSpec(field: "ociVersion", message: "is required") }
        guard ociVersion.hasPrefix("1.") else { throw .invalidSpec(field: "ociVersion", message: "\(ociVersion): only 1.x specs are understood") }

        guard var rootReader = try top.object("root") else { throw .invalidSpec(field: "root", message: "is required") }
        guard let rootPathText = try rootReader.string("path"), !rootPathText.isEmpty else {
            throw .invalidSpec(field: "root.path", message: "is required")
        }
        let rootReadonly = try rootReader.bool("readonly") ?? false
        try rootReader.finish()
        let rootPath = rootPathText.hasPrefix("/") ? rootPathText : bundle + "/" + rootPathText
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: rootPath, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw .invalidSpec(field: "root.path", message: "\(rootPath) is not a directory")
        }

        guard var processReader = try top.object("process") else { throw .invalidSpec(field: "process", message: "is required") }
        let process = try parseProcess(&processReader)

        let hostname = try top.string("hostname")
        if let hostname, hostname.utf8.count > 64 || hostname.contains("\0") {
            throw .invalidSpec(field: "hostname", message: "at most 64 bytes, no NUL")
        }
        var mounts = [ContainerSpec.Mount]()
        for var m in try top.objects("mounts") ?? [] { mounts.append(try parseMount(&m)) }
        let annotations = try top.stringMap("annotations") ?? [:]
        top.ignore("domainname")  // an empty domainname is the kernel's default
        if let domain = top.object["domainname"], domain != .string(""), domain != .null {
            throw .unsupported(field: "domainname", message: "setting a domain name is not implemented")
        }

        var namespaces = [ContainerSpec.Namespace]()
        var uidMappings = [ContainerSpec.IDMapping](), gidMappings = [ContainerSpec.IDMapping]()
        var resources = ContainerSpec.Resources()
        var cgroupsPath: String?
        var seccomp: ContainerSpec.Seccomp?
        var masked = [String](), readonly = [String]()
        var sysctl = [String: String]()
        var propagation: String?
        if var linux = try top.object("linux") {
            for var ns in try linux.objects("namespaces") ?? [] {
                guard let typeText = try ns.string("type") else { throw .invalidSpec(field: ns.field("type"), message: "is required") }
                guard let kind = ContainerSpec.NamespaceKind(rawValue: typeText) else {
                    throw .unsupported(field: ns.field("type"), message: "namespace type \(typeText); supported: pid, network, mount, ipc, uts, user, cgroup")
                }
                if namespaces.contains(where: { $0.kind == kind }) { throw .invalidSpec(field: ns.path, message: "\(typeText) appears twice") }
                let path = try ns.string("path")
                if let path, !path.hasPrefix("/") { throw .invalidSpec(field: ns.field("path"), message: "must be absolute") }
                try ns.finish()
                namespaces.append(.init(kind: kind, path: path))
            }
            uidMappings = try parseMappings(&linux, "uidMappings")
            gidMappings = try parseMappings(&linux, "gidMappings")
            if namespaces.contains(where: { $0.kind == .user && $0.path == nil }) {
                guard !uidMappings.isEmpty, !gidMappings.isEmpty else {
                    throw .invalidSpec(field: "linux.uidMappings", message: "a new user namespace needs uidMappings and gidMappings")
                }
            } else if !uidMappings.isEmpty || !gidMappings.isEmpty {
                throw .invalidSpec(field: "linux.uidMappings", message: "mappings need a new user namespace in linux.namespaces")
            }
            if var r = try linux.object("resources") { resources = try parseResources(&r) }
            cgroupsPath = try linux.string("cgroupsPath")
            if let path = cgroupsPath, path.split(separator: "/").contains("..") || path.contains(":") {
                throw .invalidSpec(field: "linux.cgroupsPath", message: "\(path): a plain path without '..' or systemd ':' syntax")
            }
            if var s = try linux.object("seccomp") { seccomp = try parseSeccomp(&s) }
            masked = try linux.strings("maskedPaths") ?? []
            readonly = try linux.strings("readonlyPaths") ?? []
            for (field, list) in [("linux.maskedPaths", masked), ("linux.readonlyPaths", readonly)] {
                for p in list where !p.hasPrefix("/") { throw .invalidSpec(field: field, message: "\(p) must be absolute") }
            }
            sysctl = try linux.stringMap("sysctl") ?? [:]
            for key in sysctl.keys { try checkSysctl(key, namespaces: namespaces) }
            for var device in try linux.objects("devices") ?? [] {
                let path = try device.string("path") ?? "?"
                device.ignore("type", "major", "minor", "fileMode", "uid", "gid")
                guard StandardDevices.paths.contains(path) else {
                    throw .unsupported(field: device.path, message: "device \(path): only the standard nodes (\(StandardDevices.paths.joined(separator: ", "))) are provided")
                }
                try device.finish()
            }
            propagation = try linux.string("rootfsPropagation")
            if let p = propagation, !["private", "slave", "shared", "rprivate", "rslave", "rshared"].contains(p) {
                throw .invalidSpec(field: "linux.rootfsPropagation", message: "\(p): expected private, slave or shared")
            }
            propagation = propagation.map { $0.hasPrefix("r") ? String($0.dropFirst()) : $0 }
            if let label = try linux.string("mountLabel"), !label.isEmpty {
                throw .unsupported(field: "linux.mountLabel", message: "SELinux labels")
            }
            try linux.finish()
        }
        try top.finish()

        return ContainerSpec(
            ociVersion: ociVersion, process: process, rootPath: rootPath, rootReadonly: rootReadonly, hostname: hostname,
            mounts: mounts, namespaces: namespaces, uidMappings: uidMappings, gidMappings: gidMappings, resources: resources,
            cgroupsPath: cgroupsPath, seccomp: seccomp, maskedPaths: masked, readonlyPaths: readonly, sysctl: sysctl,
            rootfsPropagation: propagation, annotations: annotations)
    }

    static let rlimitTypes: [String: Int32] = [
        "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4, "RLIMIT_RSS": 5,
        "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10,
        "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
    ]

    static func parseProcess(_ p: inout JSONReader) throws(ContainerRuntimeError) -> ContainerSpec.Process {
        if try p.bool("terminal") == true {
            throw .unsupported(field: "process.terminal", message: "true (no console socket); set it to false")
        }
        if var size = try p.object("consoleSize") { size.ignore("height", "width"); try size.finish() }
        guard let args = try p.strings("args"), let first = args.first, !first.isEmpty else {
            throw .invalidSpec(field: "process.args", message: "needs at least the program to run")
        }
        guard args.count <= 4096 else { throw .invalidSpec(field: "process.args", message: "more than 4096 arguments") }
        let env = try p.strings("env") ?? []
        for (i, e) in env.enumerated() where !e.contains("=") || e.hasPrefix("=") {
            throw .invalidSpec(field: "process.env[\(i)]", message: "'\(e)' is not NAME=value")
        }
        guard let cwd = try p.string("cwd"), cwd.hasPrefix("/") else {
            throw .invalidSpec(field: "process.cwd", message: "is required and must be absolute")
        }
        var process = ContainerSpec.Process(args: args, env: env, cwd: cwd)
        if var user = try p.object("user") {
            process.uid = UInt32(try user.integer("uid", in: 0...Int64(UInt32.max - 1)) ?? 0)
            process.gid = UInt32(try user.integer("gid", in: 0...Int64(UInt32.max - 1)) ?? 0)
            user.ignore("additionalGids")  // numbers: read from the raw object below
            if let username = try user.string("username"), !username.isEmpty {
                throw .unsupported(field: "process.user.username", message: "give uid and gid instead")
            }
            if let umask = try user.integer("umask"), umask != 0o022 {
                throw .unsupported(field: "process.user.umask", message: "only the default 022")
            }
            try user.finish()
            // additionalGids are numbers: read them through the raw object.
            if case .array(let list)? = user.object["additionalGids"] {
                var gids = [UInt32]()
                for (i, v) in list.enumerated() {
                    guard case .integer(let g) = v, (0...Int64(UInt32.max - 1)).contains(g) else {
                        throw .invalidSpec(field: "process.user.additionalGids[\(i)]", message: "expected a gid number")
                    }
                    gids.append(UInt32(g))
                }
                guard gids.count <= 64 else { throw .invalidSpec(field: "process.user.additionalGids", message: "at most 64 groups") }
                process.additionalGids = gids
            }
        }
        for var r in try p.objects("rlimits") ?? [] {
            guard let type = try r.string("type"), let number = rlimitTypes[type] else {
                throw .invalidSpec(field: r.field("type"), message: "expected one of \(rlimitTypes.keys.sorted().joined(separator: ", "))")
            }
            guard let hard = try r.unsigned("hard"), let soft = try r.unsigned("soft") else {
                throw .invalidSpec(field: r.path, message: "needs soft and hard")
            }
            guard soft <= hard else { throw .invalidSpec(field: r.path, message: "soft \(soft) is above hard \(hard)") }
            try r.finish()
            process.rlimits.append(.init(type: number, soft: soft, hard: hard))
        }
        if var caps = try p.object("capabilities") {
            func mask(_ reader: inout JSONReader, _ key: String) throws(ContainerRuntimeError) -> UInt64 {
                switch Capabilities.mask(try reader.strings(key) ?? []) {
                case .success(let m): return m
                case .failure(let unknown): throw .invalidSpec(field: reader.field(key), message: "unknown capability \(unknown.name)")
                }
            }
            process.capabilities.bounding = try mask(&caps, "bounding")
            process.capabilities.effective = try mask(&caps, "effective")
            process.capabilities.permitted = try mask(&caps, "permitted")
            process.capabilities.inheritable = try mask(&caps, "inheritable")
            process.capabilities.ambient = try mask(&caps, "ambient")
            try caps.finish()
            let c = process.capabilities
            if c.effective & ~c.permitted != 0 {
                throw .invalidSpec(field: "process.capabilities.effective", message: "must be a subset of permitted")
            }
            let impossible = c.ambient & ~(c.permitted & c.inheritable)
            if impossible != 0 {
                // The kernel only raises an ambient capability that is permitted and inheritable;
                // runc's own `runc spec` writes such sets, and runc skips them with a warning too.
                process.capabilities.ambient &= c.permitted & c.inheritable
                process.warnings.append("process.capabilities.ambient: \(Capabilities.list(impossible).joined(separator: ", ")) not raised: an ambient capability must also be permitted and inheritable")
            }
        }
        process.noNewPrivileges = try p.bool("noNewPrivileges") ?? false
        if let adj = try p.integer("oomScoreAdj", in: -1000...1000) { process.oomScoreAdj = Int(adj) }
        if let profile = try p.string("apparmorProfile"), !profile.isEmpty {
            throw .unsupported(field: "process.apparmorProfile", message: "AppArmor profiles")
        }
        if let label = try p.string("selinuxLabel"), !label.isEmpty {
            throw .unsupported(field: "process.selinuxLabel", message: "SELinux labels")
        }
        try p.finish()
        return process
    }

    /// OCI mount options -> mount(2) flags, bind/recursive, and the remaining data string.
    static let mountFlags: [String: (set: UInt, clear: UInt)] = [
        "ro": (MountFlag.rdonly, 0), "rw": (0, MountFlag.rdonly), "nosuid": (MountFlag.nosuid, 0), "suid": (0, MountFlag.nosuid),
        "nodev": (MountFlag.nodev, 0), "dev": (0, MountFlag.nodev), "noexec": (MountFlag.noexec, 0), "exec": (0, MountFlag.noexec),
        "sync": (MountFlag.synchronous, 0), "async": (0, MountFlag.synchronous), "noatime": (MountFlag.noatime, 0),
        "atime": (0, MountFlag.noatime), "nodiratime": (MountFlag.nodiratime, 0), "relatime": (MountFlag.relatime, 0),
        "strictatime": (MountFlag.strictatime, 0), "mand": (0, 0), "nomand": (0, 0), "private": (0, 0), "rprivate": (0, 0),
        "slave": (0, 0), "rslave": (0, 0),
    ]

    static func parseMount(_ m: inout JSONReader) throws(ContainerRuntimeError) -> ContainerSpec.Mount {
        guard let destination = try m.string("destination"), destination.hasPrefix("/") else {
            throw .invalidSpec(field: m.field("destination"), message: "is required and must be absolute")
        }
        let type = try m.string("type")
        let source = try m.string("source")
        var flags: UInt = 0
        var data = [String]()
        var bind = type == "bind"
        for option in try m.strings("options") ?? [] {
            if option == "bind" { bind = true; continue }
            if option == "rbind" { bind = true; flags |= MountFlag.rec; continue }
            if let f = mountFlags[option] {
                flags |= f.set
                flags &= ~f.clear
                continue
            }
            if ["shared", "rshared", "unbindable", "runbindable"].contains(option) {
                throw .unsupported(field: m.field("options"), message: "propagation \(option) on \(destination)")
            }
            data.append(option)
        }
        m.ignore("uidMappings", "gidMappings")
        if m.object["uidMappings"] != nil || m.object["gidMappings"] != nil {
            throw .unsupported(field: m.field("uidMappings"), message: "idmapped mounts")
        }
        try m.finish()
        if bind {
            guard let source, source.hasPrefix("/") else {
                throw .invalidSpec(field: m.field("source"), message: "a bind mount needs an absolute host source path")
            }
            guard FileManager.default.fileExists(atPath: source) else {
                throw .invalidSpec(field: m.field("source"), message: "\(source) does not exist")
            }
        } else if type == nil {
            throw .invalidSpec(field: m.field("type"), message: "is required for \(destination) (or use the bind option)")
        }
        return .init(destination: destination, type: bind ? nil : type, source: source, flags: flags,
                     data: data.joined(separator: ","), bind: bind)
    }

    static func parseMappings(_ linux: inout JSONReader, _ key: String) throws(ContainerRuntimeError) -> [ContainerSpec.IDMapping] {
        var out = [ContainerSpec.IDMapping]()
        for var m in try linux.objects(key) ?? [] {
            guard let c = try m.integer("containerID", in: 0...Int64(UInt32.max - 1)),
                  let h = try m.integer("hostID", in: 0...Int64(UInt32.max - 1)),
                  let s = try m.integer("size", in: 1...Int64(UInt32.max)) else {
                throw .invalidSpec(field: m.path, message: "needs containerID, hostID and size")
            }
            try m.finish()
            out.append(.init(containerID: UInt32(c), hostID: UInt32(h), size: UInt32(s)))
        }
        guard out.count <= 5 else { throw .invalidSpec(field: "linux.\(key)", message: "at most 5 ranges (the kernel's limit without CAP_SYS_ADMIN)") }
        return out
    }

    static func parseResources(_ r: inout JSONReader) throws(ContainerRuntimeError) -> ContainerSpec.Resources {
        var resources = ContainerSpec.Resources()
        if var memory = try r.object("memory") {
            resources.memoryLimit = try memory.integer("limit", in: -1...Int64.max)
            if resources.memoryLimit == -1 { resources.memoryLimit = nil }
            if let limit = resources.memoryLimit, limit < 4 << 20 {
                throw .invalidSpec(field: "linux.resources.memory.limit", message: "\(limit) bytes is below the 4 MiB a process needs")
            }
            try memory.finish()
        }
        if var cpu = try r.object("cpu") {
            resources.cpuQuota = try cpu.integer("quota", in: -1...Int64.max)
            resources.cpuPeriod = try cpu.unsigned("period")
            resources.cpuShares = try cpu.unsigned("shares")
            if let period = resources.cpuPeriod, !(1000...1_000_000).contains(period) {
                throw .invalidSpec(field: "linux.resources.cpu.period", message: "\(period): expected 1000...1000000 microseconds")
            }
            if let quota = resources.cpuQuota, quota >= 0, quota < 1000 {
                throw .invalidSpec(field: "linux.resources.cpu.quota", message: "\(quota): at least 1000 microseconds")
            }
            try cpu.finish()
        }
        if var pids = try r.object("pids") {
            resources.pidsLimit = try pids.integer("limit", in: -1...Int64(Int32.max))
            if resources.pidsLimit == -1 || resources.pidsLimit == 0 { resources.pidsLimit = nil }
            try pids.finish()
        }
        for var rule in try r.objects("devices") ?? [] {
            // The usual deny-all rule is what this runtime does anyway; an allow rule is not.
            guard try rule.bool("allow") == false else {
                throw .unsupported(field: rule.field("allow"), message: "device allow rules; the container gets the standard nodes only")
            }
            rule.ignore("access", "type", "major", "minor")
            try rule.finish()
        }
        try r.finish()
        return resources
    }

    static func parseSeccomp(_ s: inout JSONReader) throws(ContainerRuntimeError) -> ContainerSpec.Seccomp {
        guard let defaultAction = try s.string("defaultAction") else {
            throw .invalidSpec(field: "linux.seccomp.defaultAction", message: "is required")
        }
        try SeccompCompiler.checkAction(defaultAction, field: "linux.seccomp.defaultAction")
        let defaultErrno = try s.integer("defaultErrnoRet", in: 0...4095).map { UInt32($0) }
        let architectures = try s.strings("architectures") ?? []
        for arch in architectures where SeccompCompiler.architectures[arch] == nil {
            throw .invalidSpec(field: "linux.seccomp.architectures", message: "unknown \(arch)")
        }
        if let flags = try s.strings("flags"), !flags.isEmpty {
            throw .unsupported(field: "linux.seccomp.flags", message: "seccomp filter flags")
        }
        var rules = [ContainerSpec.SeccompRule]()
        for var rule in try s.objects("syscalls") ?? [] {
            guard let names = try rule.strings("names"), !names.isEmpty else {
                throw .invalidSpec(field: rule.field("names"), message: "is required")
            }
            guard let action = try rule.string("action") else { throw .invalidSpec(field: rule.field("action"), message: "is required") }
            try SeccompCompiler.checkAction(action, field: rule.field("action"))
            let errnoRet = try rule.integer("errnoRet", in: 0...4095).map { UInt32($0) }
            var args = [ContainerSpec.SeccompRule.Arg]()
            for var arg in try rule.objects("args") ?? [] {
                guard let index = try arg.integer("index", in: 0...5), let value = try arg.unsigned("value"),
                      let op = try arg.string("op") else {
                    throw .invalidSpec(field: arg.path, message: "needs index (0-5), value and op")
                }
                guard SeccompCompiler.operators[op] != nil else {
                    throw .invalidSpec(field: arg.field("op"), message: "unknown \(op)")
                }
                let valueTwo = try arg.unsigned("valueTwo") ?? 0
                try arg.finish()
                args.append(.init(index: UInt32(index), value: value, valueTwo: valueTwo, op: op))
            }
            rule.ignore("comment")
            try rule.finish()
            rules.append(.init(names: names, action: action, errnoRet: errnoRet, args: args))
        }
        s.ignore("listenerPath", "listenerMetadata")
        if let listener = s.object["listenerPath"], listener != .string(""), listener != .null {
            throw .unsupported(field: "linux.seccomp.listenerPath", message: "seccomp notify listeners")
        }
        try s.finish()
        return .init(defaultAction: defaultAction, defaultErrnoRet: defaultErrno, architectures: architectures, rules: rules)
    }

    /// Only namespaced sysctls, and only when the container has that namespace.
    static func checkSysctl(_ key: String, namespaces: [ContainerSpec.Namespace]) throws(ContainerRuntimeError) {
        let field = "linux.sysctl.\(key)"
        guard !key.contains("/"), !key.contains(".."), key.split(separator: ".").count >= 2 else {
            throw .invalidSpec(field: field, message: "not a sysctl name")
        }
        let ipc = ["kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
                   "kernel.shmmni", "kernel.shm_rmid_forced"]
        if ipc.contains(key) || key.hasPrefix("fs.mqueue.") {
            guard namespaces.contains(where: { $0.kind == .ipc }) else { throw .invalidSpec(field: field, message: "needs an ipc namespace") }
            return
        }
        if key.hasPrefix("net.") {
            guard namespaces.contains(where: { $0.kind == .network }) else { throw .invalidSpec(field: field, message: "needs a network namespace") }
            return
        }
        if key == "kernel.hostname" || key == "kernel.domainname" {
            guard namespaces.contains(where: { $0.kind == .uts }) else { throw .invalidSpec(field: field, message: "needs a uts namespace") }
            return
        }
        throw .unsupported(field: field, message: "it is not namespaced: it would change the host")
    }
}

/// mount(2) flag values (Glibc's MS_* are not all visible to Swift).
public enum MountFlag {
    public static let rdonly: UInt = 1
    public static let nosuid: UInt = 2
    public static let nodev: UInt = 4
    public static let noexec: UInt = 8
    public static let synchronous: UInt = 16
    public static let noatime: UInt = 1024
    public static let nodiratime: UInt = 2048
    public static let bind: UInt = 4096
    public static let rec: UInt = 16384
    public static let relatime: UInt = 1 << 21
    public static let strictatime: UInt = 1 << 24
}

/// The device nodes every container gets, bound from the host.
public enum StandardDevices {
    public static let paths = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"]
}
