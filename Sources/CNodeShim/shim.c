#define _GNU_SOURCE
#include "CNodeShim.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

static inline int neg_errno(long rc) { return rc < 0 ? -errno : (int)rc; }

int nshim_unshare(int flags) { return neg_errno(unshare(flags)); }
int nshim_setns(int fd, int nstype) { return neg_errno(setns(fd, nstype)); }
long nshim_getxattr(const char *path, const char *name, void *value, size_t size) {
    ssize_t n = getxattr(path, name, value, size);
    return n < 0 ? -errno : (long)n;
}
int nshim_pivot_root(const char *new_root, const char *put_old) {
    return neg_errno(syscall(SYS_pivot_root, new_root, put_old));
}
int nshim_prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5) {
    return neg_errno(prctl(option, a2, a3, a4, a5));
}
int nshim_setresuid(uid_t r, uid_t e, uid_t s) { return neg_errno(syscall(SYS_setresuid, r, e, s)); }
int nshim_setresgid(gid_t r, gid_t e, gid_t s) { return neg_errno(syscall(SYS_setresgid, r, e, s)); }

int nshim_setrlimit(int resource, uint64_t soft, uint64_t hard) {
    struct rlimit64 lim = { .rlim_cur = soft, .rlim_max = hard };
    return neg_errno(setrlimit64((__rlimit_resource_t)resource, &lim));
}
int nshim_getrlimit(int resource, uint64_t *soft, uint64_t *hard) {
    struct rlimit64 lim;
    if (getrlimit64((__rlimit_resource_t)resource, &lim) < 0) return -errno;
    *soft = lim.rlim_cur;
    *hard = lim.rlim_max;
    return 0;
}

struct nshim_open_how { uint64_t flags, mode, resolve; };

int nshim_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve) {
    struct nshim_open_how how = { .flags = flags, .mode = mode, .resolve = resolve };
    return neg_errno(syscall(SYS_openat2, dirfd, path, &how, sizeof how));
}

int nshim_seccomp_load(const void *instructions, unsigned short count, unsigned int flags) {
    struct sock_fprog prog = { .len = count, .filter = (struct sock_filter *)instructions };
    return neg_errno(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog));
}

int nshim_seccomp_filter_available(void) {
    uint32_t action = SECCOMP_RET_ERRNO;
    return neg_errno(syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action));
}

struct nshim_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
        set_tid_size, cgroup;
};

// Runs in the child only: async-signal-safe calls, then execve. Reports a failure as errno on `report`.
static void spawn_child(const struct nshim_spawn_config *c, int report) __attribute__((noreturn));
static void spawn_child(const struct nshim_spawn_config *c, int report) {
    int err = 0;
    if (c->die_with_parent && prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) goto fail;
    if (c->sync_fd >= 0) {
        char byte;
        ssize_t n;
        do { n = read(c->sync_fd, &byte, 1); } while (n < 0 && errno == EINTR);
        close(c->sync_fd);
    }
    if (c->stdin_fd >= 0 && dup2(c->stdin_fd, 0) < 0) goto fail;
    if (c->stdout_fd >= 0 && dup2(c->stdout_fd, 1) < 0) goto fail;
    if (c->stderr_fd >= 0 && dup2(c->stderr_fd, 2) < 0) goto fail;
    if (c->hostname && sethostname(c->hostname, strlen(c->hostname)) < 0) goto fail;
    if (c->cwd && chdir(c->cwd) < 0) goto fail;
    // Signals the parent blocked or ignored must not leak into the workload.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
    execve(c->path, c->argv, c->envp ? c->envp : (char *const[]){ NULL });
fail:
    err = errno;
    while (write(report, &err, sizeof err) < 0 && errno == EINTR) {}
    _exit(127);
}

pid_t nshim_spawn(const struct nshim_spawn_config *c) {
    if (!c || !c->path || !c->argv) return -EINVAL;
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) return -errno;

    long pid;
    struct nshim_clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = c->clone_flags;
    args.exit_signal = SIGCHLD;
    if (c->cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)c->cgroup_fd;
    }
    pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid < 0 && errno == ENOSYS && c->cgroup_fd < 0) {
        // Kernels before 5.3: a raw clone without CLONE_VM and with a NULL stack behaves like fork.
        pid = syscall(SYS_clone, (unsigned long)(c->clone_flags | SIGCHLD), NULL, NULL, NULL, NULL);
    }
    if (pid < 0) {
        int err = errno;
        close(pipefd[0]);
        close(pipefd[1]);
        return -err;
    }
    if (pid == 0) {
        close(pipefd[0]);
        spawn_child(c, pipefd[1]);
    }
    close(pipefd[1]);
    int child_err = 0;
    ssize_t n;
    do { n = read(pipefd[0], &child_err, sizeof child_err); } while (n < 0 && errno == EINTR);
    close(pipefd[0]);
    if (n == (ssize_t)sizeof child_err) {
        int status;
        while (waitpid((pid_t)pid, &status, 0) < 0 && errno == EINTR) {}
        return -(child_err ? child_err : ECHILD);
    }
    return (pid_t)pid;
}

static int wait_exit_code(pid_t pid) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return errno;
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return EINTR;
}

int nshim_probe_unshare(int flags) {
    pid_t pid = fork();
    if (pid < 0) return errno;
    if (pid == 0) {
        if (unshare(flags) < 0) _exit(errno & 0xff);
        _exit(0);
    }
    return wait_exit_code(pid);
}

int nshim_probe_seccomp(void) {
    pid_t pid = fork();
    if (pid < 0) return errno;
    if (pid == 0) {
        struct sock_filter filter[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) _exit(errno & 0xff);
        if (nshim_seccomp_load(filter, sizeof filter / sizeof filter[0], 0) < 0) _exit(errno & 0xff);
        long rc = syscall(SYS_getppid);
        if (rc < 0 && errno == EPERM) _exit(0);
        _exit(255);
    }
    int code = wait_exit_code(pid);
    return code == 255 ? -1 : code;
}

int nshim_clock_synchronized(void) {
    struct timex tx;
    memset(&tx, 0, sizeof tx);
    int state = adjtimex(&tx);
    if (state < 0) return -errno;
    return (state == TIME_ERROR || (tx.status & STA_UNSYNC)) ? 0 : 1;
}

int64_t nshim_filesystem_type(const char *path) {
    struct statfs info;
    if (statfs(path, &info) < 0) return -errno;
    return (int64_t)info.f_type;
}

int nshim_pidfd_open(pid_t pid) {
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
    return neg_errno(syscall(SYS_pidfd_open, pid, 0));
}

#ifndef FICLONE
#define FICLONE _IOW(0x94, 9, int)
#endif

int nshim_mount_fs(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data) {
    return neg_errno(mount(source, target, fstype, flags, data));
}
int nshim_umount2(const char *target, int flags) { return neg_errno(umount2(target, flags)); }
int nshim_syncfs(int fd) { return neg_errno(syncfs(fd)); }
int nshim_ficlone(int dst, int src) { return neg_errno(ioctl(dst, FICLONE, src)); }
long nshim_copy_file_range(int in, int out, unsigned long length) {
    ssize_t n = copy_file_range(in, NULL, out, NULL, length, 0);
    return n < 0 ? -errno : (long)n;
}
