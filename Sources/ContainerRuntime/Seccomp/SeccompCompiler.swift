import CSeccomp
import Foundation

/// Compiles an OCI seccomp spec into classic BPF with libseccomp, in the parent, so the container
/// child only has to load bytes. Syscall names this kernel/arch does not know are skipped, as the
/// established runtimes do.
public enum SeccompCompiler {
    static let actionAllow: UInt32 = 0x7fff_0000
    static let actionKillThread: UInt32 = 0x0000_0000
    static let actionKillProcess: UInt32 = 0x8000_0000
    static let actionTrap: UInt32 = 0x0003_0000
    static let actionLog: UInt32 = 0x7ffc_0000
    static func actionErrno(_ errno: UInt32) -> UInt32 { 0x0005_0000 | (errno & 0xffff) }
    static func actionTrace(_ value: UInt32) -> UInt32 { 0x7ff0_0000 | (value & 0xffff) }

    static let actionNames = ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS",
                              "SCMP_ACT_TRAP", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"]

    public static let architectures: [String: UInt32] = [
        "SCMP_ARCH_X86_64": 0xc000_003e, "SCMP_ARCH_X86": 0x4000_0003, "SCMP_ARCH_X32": 0x4000_003e,
        "SCMP_ARCH_AARCH64": 0xc000_00b7, "SCMP_ARCH_ARM": 0x4000_0028,
    ]

    static let operators: [String: scmp_compare] = [
        "SCMP_CMP_NE": SCMP_CMP_NE, "SCMP_CMP_LT": SCMP_CMP_LT, "SCMP_CMP_LE": SCMP_CMP_LE, "SCMP_CMP_EQ": SCMP_CMP_EQ,
        "SCMP_CMP_GE": SCMP_CMP_GE, "SCMP_CMP_GT": SCMP_CMP_GT, "SCMP_CMP_MASKED_EQ": SCMP_CMP_MASKED_EQ,
    ]

    static func checkAction(_ name: String, field: String) throws(ContainerRuntimeError) {
        guard actionNames.contains(name) else {
            throw .invalidSpec(field: field, message: "unknown action \(name); expected one of \(actionNames.joined(separator: ", "))")
        }
    }

    static func action(_ name: String, errno: UInt32?) -> UInt32 {
        switch name {
        case "SCMP_ACT_ALLOW": return actionAllow
        case "SCMP_ACT_ERRNO": return actionErrno(errno ?? UInt32(EPERM))
        case "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD": return actionKillThread
        case "SCMP_ACT_KILL_PROCESS": return actionKillProcess
        case "SCMP_ACT_TRAP": return actionTrap
        case "SCMP_ACT_LOG": return actionLog
        default: return actionTrace(errno ?? UInt32(EPERM))
        }
    }

    /// The filter as BPF instructions (8 bytes each).
    public static func compile(_ spec: ContainerSpec.Seccomp) throws(ContainerRuntimeError) -> [UInt8] {
        let defaultAction = action(spec.defaultAction, errno: spec.defaultErrnoRet)
        guard let ctx = seccomp_init(defaultAction) else { throw .seccomp("seccomp_init failed for \(spec.defaultAction)") }
        defer { seccomp_release(ctx) }
        // The child sets no_new_privs itself when the spec asks; libseccomp must not force it.
        _ = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)
        for arch in spec.architectures {
            guard let token = architectures[arch] else { throw .seccomp("unknown architecture \(arch)") }
            let rc = seccomp_arch_add(ctx, token)
            if rc < 0 && rc != -EEXIST { throw .seccomp("cannot add architecture \(arch): errno \(-rc)") }
        }
        for (index, rule) in spec.rules.enumerated() {
            let ruleAction = action(rule.action, errno: rule.errnoRet)
            if ruleAction == defaultAction { continue }  // libseccomp refuses rules equal to the default
            var comparisons = [scmp_arg_cmp]()
            for arg in rule.args {
                guard let op = operators[arg.op] else { throw .seccomp("syscalls[\(index)]: unknown operator \(arg.op)") }
                comparisons.append(scmp_arg_cmp(arg: arg.index, op: op, datum_a: arg.value, datum_b: arg.valueTwo))
            }
            for name in rule.names {
                let number = seccomp_syscall_resolve_name(name)
                if number == __NR_SCMP_ERROR { continue }
                let rc = comparisons.withUnsafeBufferPointer { buffer in
                    seccomp_rule_add_array(ctx, ruleAction, number, UInt32(buffer.count), buffer.baseAddress)
                }
                if rc < 0 { throw .seccomp("syscalls[\(index)] \(name) (\(rule.action)): libseccomp refused the rule, errno \(-rc)") }
            }
        }
        return try export(ctx)
    }

    private static func export(_ ctx: scmp_filter_ctx) throws(ContainerRuntimeError) -> [UInt8] {
        // libseccomp writes to a descriptor; an unlinked temporary file holds filters of any size.
        var template = Array((NSTemporaryDirectory() + "seccomp-XXXXXX").utf8CString)
        let fd = mkstemp(&template)
        guard fd >= 0 else { throw .seccomp("cannot create a temporary file: errno \(errno)") }
        _ = unlink(template)
        defer { close(fd) }
        let rc = seccomp_export_bpf(ctx, fd)
        guard rc == 0 else { throw .seccomp("seccomp_export_bpf failed: errno \(-rc)") }
        let size = lseek(fd, 0, SEEK_END)
        guard size > 0, size % 8 == 0, size <= 8 * 65535 else { throw .seccomp("exported filter has an invalid size \(size)") }
        var bytes = [UInt8](repeating: 0, count: Int(size))
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n == Int(size) else { throw .seccomp("reading the exported filter failed: errno \(errno)") }
        return bytes
    }
}
