// The container's side of creation: everything between clone and exec, in C, because Swift code
// must not run in the child of a multi-threaded fork. Swift validates the OCI spec, compiles the
// seccomp filter, prepares cgroups and uid maps, and hands this code a flat description.
#ifndef CNODESHIM_CONTAINER_H
#define CNODESHIM_CONTAINER_H

#include <stdint.h>
#include <sys/types.h>

/// One mount, destination resolved inside the rootfs (openat2 RESOLVE_IN_ROOT) before mounting.
struct nshim_mount {
    const char *source;          // NULL for pseudo filesystems
    const char *destination;     // absolute path inside the container
    const char *fstype;          // NULL for a bind mount
    unsigned long flags;         // MS_* applied at mount (bind: applied by a remount)
    const char *data;            // filesystem options, or NULL
    int bind;                    // 1: bind mount (MS_BIND, recursive when flags has MS_REC)
};

struct nshim_container_config {
    const char *rootfs;          // absolute host path
    int readonly_root;
    const char *hostname;        // NULL: keep
    const struct nshim_mount *mounts;
    int mount_count;
    const char *const *masked_paths;
    int masked_count;
    const char *const *readonly_paths;
    int readonly_count;
    const char *const *sysctl_paths;    // relative to /proc/sys, e.g. "net/ipv4/ip_forward"
    const char *const *sysctl_values;
    int sysctl_count;
    int populate_dev;            // bind the standard device nodes into /dev and add its symlinks
    const char *rootfs_propagation; // "private", "slave" (default), "shared"

    // Namespaces to join: fds of /proc/PID/ns/* files and their CLONE_NEW* types, user first.
    const int *join_fds;
    const int *join_types;
    int join_count;
    int become_root;             // setresuid/gid(0) right after the user namespace is set up

    // The workload.
    const char *path;            // absolute, or a name searched in the PATH of envp
    char *const *argv;
    char *const *envp;
    const char *cwd;
    uint32_t uid, gid;
    const uint32_t *additional_gids;
    int additional_gid_count;
    const int *rlimit_types;
    const uint64_t *rlimit_soft;
    const uint64_t *rlimit_hard;
    int rlimit_count;
    uint64_t cap_bounding, cap_effective, cap_permitted, cap_inheritable, cap_ambient;
    int no_new_privileges;
    const void *seccomp_filter;  // classic BPF, 8-byte instructions; NULL for none
    unsigned short seccomp_instructions;
    int oom_score_adj_set;
    int oom_score_adj;

    // Plumbing (host fds, opened by the caller; -1 when unused).
    int exec_fifo_fd;            // O_PATH fd of the exec FIFO: the init blocks on it until `start`
    int exit_status_fd;          // the init writes "exit_code N\nsignal S\n" here when the workload ends
    int log_dir_fd;              // >= 0: workload stdout/stderr go to stdout.log/stderr.log here
    uint64_t log_max_bytes;      // rotate a log when it grows past this
    int log_keep;                // rotated files kept (stdout.log.1 ... .N)
    int stdin_fd, stdout_fd, stderr_fd;  // when log_dir_fd < 0: the workload's stdio
};

/// Result of nshim_container_spawn: the init's pid and the two pipe ends the caller drives.
struct nshim_container_child {
    pid_t pid;
    int sync_fd;                 // write 1 byte when uid maps and cgroups are in place (close to abort)
    int status_fd;               // read one struct nshim_container_status
};

#define NSHIM_STATUS_READY 1
#define NSHIM_STATUS_FAILED 2

/// What the child reports once: ready (waiting on the exec FIFO), or the step that failed.
struct nshim_container_status {
    int32_t kind;
    int32_t error;               // errno
    char step[120];              // what was being done, e.g. "mount /proc"
};

/// Clones the container init with `clone_flags` (CLONE_NEW*) into `cgroup_fd` (cgroup v2 dir fd,
/// or -1) and returns at once; the child waits on `sync_fd` before doing anything.
/// Returns 0 or -errno.
int nshim_container_spawn(const struct nshim_container_config *config, uint64_t clone_flags, int cgroup_fd,
                          struct nshim_container_child *child);

#endif
