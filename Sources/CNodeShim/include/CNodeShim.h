// Prefixed wrappers for the Linux syscalls Swift's Glibc module does not expose, and the code that
// must run between fork and exec (Swift code must never run in the child of a multi-threaded fork).
// Every function returns 0 (or a result >= 0) on success and -errno on failure, so callers never
// race on the global errno.
#ifndef CNODESHIM_H
#define CNODESHIM_H

#include <stdint.h>
#include <sys/types.h>

#define NSHIM_CLONE_NEWNS     0x00020000
#define NSHIM_CLONE_NEWCGROUP 0x02000000
#define NSHIM_CLONE_NEWUTS    0x04000000
#define NSHIM_CLONE_NEWIPC    0x08000000
#define NSHIM_CLONE_NEWUSER   0x10000000
#define NSHIM_CLONE_NEWPID    0x20000000
#define NSHIM_CLONE_NEWNET    0x40000000

#define NSHIM_RESOLVE_NO_XDEV       0x01
#define NSHIM_RESOLVE_NO_MAGICLINKS 0x02
#define NSHIM_RESOLVE_NO_SYMLINKS   0x04
#define NSHIM_RESOLVE_BENEATH       0x08
#define NSHIM_RESOLVE_IN_ROOT       0x10

#define NSHIM_O_PATH 010000000

#define NSHIM_PR_SET_PDEATHSIG     1
#define NSHIM_PR_GET_SECCOMP       21
#define NSHIM_PR_SET_NO_NEW_PRIVS  38
#define NSHIM_PR_GET_NO_NEW_PRIVS  39

int nshim_unshare(int flags);
int nshim_setns(int fd, int nstype);
/// getxattr(2): the value's length, or -errno.
long nshim_getxattr(const char *path, const char *name, void *value, size_t size);
int nshim_pivot_root(const char *new_root, const char *put_old);
int nshim_prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5);
int nshim_setresuid(uid_t ruid, uid_t euid, uid_t suid);
int nshim_setresgid(gid_t rgid, gid_t egid, gid_t sgid);
int nshim_setrlimit(int resource, uint64_t soft, uint64_t hard);
int nshim_getrlimit(int resource, uint64_t *soft, uint64_t *hard);

/// openat2(2): returns a file descriptor or -errno. `resolve` takes NSHIM_RESOLVE_* flags.
int nshim_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve);

/// Loads a classic-BPF seccomp program (an array of `struct sock_filter`, 8 bytes each) into the
/// calling thread. `flags` are SECCOMP_FILTER_FLAG_*.
int nshim_seccomp_load(const void *instructions, unsigned short count, unsigned int flags);
/// 0 when the kernel supports seccomp filter mode with SECCOMP_RET_ERRNO, else -errno.
int nshim_seccomp_filter_available(void);

/// What a spawned child does before execve. Unset fds are -1; unset strings are NULL.
struct nshim_spawn_config {
    const char *path;
    char *const *argv;
    char *const *envp;
    uint64_t clone_flags;      // NSHIM_CLONE_NEW* for new namespaces
    int cgroup_fd;             // >= 0: start the child inside this cgroup v2 directory (clone3)
    int stdin_fd;
    int stdout_fd;
    int stderr_fd;
    int sync_fd;               // >= 0: block until the parent writes one byte (or closes) here
    const char *hostname;      // needs NSHIM_CLONE_NEWUTS
    const char *cwd;
    int die_with_parent;       // PR_SET_PDEATHSIG(SIGKILL)
};

/// Clones a child per `config` and execs it. Returns the child's pid, or -errno if the clone or the
/// child's setup/exec failed (the child's errno is passed back over a close-on-exec pipe, and the
/// failed child is reaped).
pid_t nshim_spawn(const struct nshim_spawn_config *config);

/// Forks a child that tries unshare(flags) and exits. Returns 0 when the namespaces can be created,
/// else the positive errno the child saw. Used by `doctor` without disturbing the calling process.
int nshim_probe_unshare(int flags);

/// Forks a child that loads a seccomp filter answering EPERM for getppid(2) and then calls it.
/// Returns 0 when the filter took effect (getppid failed with EPERM), else a positive errno, or
/// -1 when the filter loaded but did not act.
int nshim_probe_seccomp(void);

/// 1 when the kernel clock is synchronized (adjtimex reports no STA_UNSYNC), 0 when it is not,
/// -errno when it cannot be read.
int nshim_clock_synchronized(void);

/// statfs(2) f_type of `path` (a filesystem magic number), or -errno.
int64_t nshim_filesystem_type(const char *path);

/// pidfd_open(2): a descriptor that becomes readable when the process exits; -errno on failure.
int nshim_pidfd_open(pid_t pid);

#define NSHIM_MNT_DETACH      2
#define NSHIM_UMOUNT_NOFOLLOW 8

/// mount(2), umount2(2) and syncfs(2) for the image store's container roots; 0 or -errno.
int nshim_mount_fs(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data);
int nshim_umount2(const char *target, int flags);
int nshim_syncfs(int fd);
/// ioctl(FICLONE): makes `dst` share `src`'s extents (a reflink copy); 0 or -errno (-EOPNOTSUPP,
/// -EXDEV, -EINVAL when the filesystem cannot).
int nshim_ficlone(int dst, int src);
/// copy_file_range(2) from/to the descriptors' offsets: bytes copied (0 at the end) or -errno.
long nshim_copy_file_range(int in, int out, unsigned long length);

#include "CNodeShimContainer.h"

#endif
