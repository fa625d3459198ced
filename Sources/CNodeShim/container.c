// The container init: runs in the clone child of a multi-threaded process, so it uses raw
// syscalls only (no malloc, no stdio, no glibc setxid broadcast, no glibc fork), and reports every
// failure to the parent as (step, errno) before exiting.
#define _GNU_SOURCE
#include "CNodeShimContainer.h"
#include "CNodeShim.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>  // renameat only
#include <stdlib.h>  // abort only
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#endif

#define PATH_BUFFER 4096

struct clone_args_v2 {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

// ---- small async-signal-safe helpers -------------------------------------------------------

static size_t str_copy(char *dst, size_t cap, const char *src) {
    size_t n = 0;
    if (cap == 0) return 0;
    while (src && src[n] && n + 1 < cap) { dst[n] = src[n]; n++; }
    dst[n] = 0;
    return n;
}

static size_t str_append(char *dst, size_t cap, const char *src) {
    size_t n = strlen(dst);
    return n + str_copy(dst + n, cap - n, src);
}

static void str_append_uint(char *dst, size_t cap, unsigned long long v) {
    char digits[24];
    int i = 0;
    do { digits[i++] = (char)('0' + v % 10); v /= 10; } while (v && i < 23);
    char out[24];
    int j = 0;
    while (i > 0) out[j++] = digits[--i];
    out[j] = 0;
    str_append(dst, cap, out);
}

static void write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        p += n;
        len -= (size_t)n;
    }
}

static int status_fd_global = -1;

static void report(int kind, int error, const char *step, const char *detail) {
    if (status_fd_global < 0) return;
    struct nshim_container_status status;
    memset(&status, 0, sizeof status);
    status.kind = kind;
    status.error = error;
    str_copy(status.step, sizeof status.step, step);
    if (detail) {
        str_append(status.step, sizeof status.step, " ");
        str_append(status.step, sizeof status.step, detail);
    }
    write_all(status_fd_global, &status, sizeof status);
}

__attribute__((noreturn)) static void fail(const char *step, const char *detail) {
    report(NSHIM_STATUS_FAILED, errno, step, detail);
    _exit(1);
}

static long raw_clone_fork(void) {
    // glibc's fork() takes locks other threads of the original process may have held; a raw
    // clone without CLONE_VM is a plain fork with none of that.
    return syscall(SYS_clone, (unsigned long)SIGCHLD, NULL, NULL, NULL, NULL);
}

static int resolve_in_root(int rootfd, const char *path, int flags) {
    return nshim_openat2(rootfd, path, (uint64_t)(flags | O_CLOEXEC), 0,
                         NSHIM_RESOLVE_IN_ROOT | NSHIM_RESOLVE_NO_MAGICLINKS);
}

static void fd_path(char *buf, size_t cap, int fd) {
    buf[0] = 0;
    str_append(buf, cap, "/proc/self/fd/");
    str_append_uint(buf, cap, (unsigned long long)fd);
}

/// Creates every directory of `path` inside the root (and the last component as an empty file when
/// `as_file`), resolving each parent with RESOLVE_IN_ROOT so no symlink leads outside.
static int make_path_in_root(int rootfd, const char *path, int as_file) {
    char prefix[PATH_BUFFER];
    size_t len = strlen(path);
    if (len >= sizeof prefix) { errno = ENAMETOOLONG; return -1; }
    size_t i = 0;
    while (i < len) {
        while (i < len && path[i] == '/') i++;
        size_t start = i;
        while (i < len && path[i] != '/') i++;
        if (i == start) break;
        int last = (i >= len) || (path[i] == '/' && i + 1 >= len);
        memcpy(prefix, path, i);
        prefix[i] = 0;
        int fd = resolve_in_root(rootfd, prefix, O_PATH);
        if (fd >= 0) { close(fd); continue; }
        if (-fd != ENOENT) { errno = -fd; return -1; }
        char parent[PATH_BUFFER];
        memcpy(parent, path, start);
        parent[start] = 0;
        if (start == 0) { parent[0] = '/'; parent[1] = 0; }
        int pfd = resolve_in_root(rootfd, parent, O_PATH | O_DIRECTORY);
        if (pfd < 0) { errno = -pfd; return -1; }
        char name[256];
        size_t nlen = i - start;
        if (nlen >= sizeof name) { close(pfd); errno = ENAMETOOLONG; return -1; }
        memcpy(name, path + start, nlen);
        name[nlen] = 0;
        int rc;
        if (last && as_file) {
            rc = openat(pfd, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
            if (rc >= 0) close(rc);
        } else {
            rc = mkdirat(pfd, name, 0755);
        }
        int err = errno;
        close(pfd);
        if (rc < 0 && err != EEXIST) { errno = err; return -1; }
    }
    return 0;
}

/// Flags the kernel locks on a mount made in another user namespace: a remount must repeat them.
static unsigned long locked_flags(const char *path) {
    struct statvfs info;
    if (statvfs(path, &info) < 0) return 0;
    unsigned long flags = 0;
    if (info.f_flag & ST_NOSUID) flags |= MS_NOSUID;
    if (info.f_flag & ST_NODEV) flags |= MS_NODEV;
    if (info.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
    if (info.f_flag & ST_NOATIME) flags |= MS_NOATIME;
    if (info.f_flag & ST_NODIRATIME) flags |= MS_NODIRATIME;
    if (info.f_flag & ST_RELATIME) flags |= MS_RELATIME;
    return flags;
}

static void remount_readonly_at(int rootfd, const char *dest, unsigned long extra) {
    int fd = resolve_in_root(rootfd, dest, O_PATH);
    if (fd < 0) { errno = -fd; fail("remount read-only: resolve", dest); }
    char proc_path[64];
    fd_path(proc_path, sizeof proc_path, fd);
    unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY | extra | locked_flags(proc_path);
    if (mount(NULL, proc_path, NULL, flags, NULL) < 0) { close(fd); fail("remount read-only", dest); }
    close(fd);
}

static int is_dir_fd(int fd) {
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
}

static void do_mount(int rootfd, const struct nshim_mount *m) {
    int source_is_dir = 1;
    if (m->bind && m->source) {
        struct stat st;
        if (stat(m->source, &st) < 0) fail("bind mount: source", m->source);
        source_is_dir = S_ISDIR(st.st_mode);
    }
    if (make_path_in_root(rootfd, m->destination, !source_is_dir) < 0) fail("create mount point", m->destination);
    int fd = resolve_in_root(rootfd, m->destination, O_PATH);
    if (fd < 0) { errno = -fd; fail("resolve mount point", m->destination); }
    char target[64];
    fd_path(target, sizeof target, fd);
    if (m->bind) {
        unsigned long bind_flags = MS_BIND | (m->flags & MS_REC);
        if (mount(m->source, target, NULL, bind_flags, NULL) < 0) { close(fd); fail("bind mount", m->destination); }
        close(fd);
        unsigned long remount = m->flags & ~(MS_REC | MS_BIND);
        if (remount & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)) {
            fd = resolve_in_root(rootfd, m->destination, O_PATH);
            if (fd < 0) { errno = -fd; fail("resolve bind mount", m->destination); }
            fd_path(target, sizeof target, fd);
            if (mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | remount | locked_flags(target), NULL) < 0) {
                close(fd);
                fail("remount bind mount", m->destination);
            }
            close(fd);
        }
        return;
    }
    if (mount(m->source ? m->source : m->fstype, target, m->fstype, m->flags, m->data) < 0) {
        int err = errno;
        // sysfs needs a network namespace of our own; without one, bind the host's read-only.
        if (err == EPERM && m->fstype && strcmp(m->fstype, "sysfs") == 0) {
            if (mount("/sys", target, NULL, MS_BIND | MS_REC, NULL) == 0) {
                close(fd);
                remount_readonly_at(rootfd, m->destination, MS_NOSUID | MS_NODEV | MS_NOEXEC);
                return;
            }
        }
        close(fd);
        errno = err;
        fail("mount", m->destination);
    }
    close(fd);
}

static const char *const device_nodes[] = { "null", "zero", "full", "random", "urandom", "tty" };

/// The standard device nodes, bound from the host's (mknod is not allowed in a user namespace),
/// and the usual /dev symlinks. No other host device is reachable.
static void populate_dev(int rootfd) {
    char path[64];
    for (size_t i = 0; i < sizeof device_nodes / sizeof device_nodes[0]; i++) {
        path[0] = 0;
        str_append(path, sizeof path, "/dev/");
        str_append(path, sizeof path, device_nodes[i]);
        struct stat st;
        if (stat(path, &st) < 0) continue;
        if (make_path_in_root(rootfd, path, 1) < 0) fail("create device node", path);
        int fd = resolve_in_root(rootfd, path, O_PATH);
        if (fd < 0) { errno = -fd; fail("resolve device node", path); }
        char target[64];
        fd_path(target, sizeof target, fd);
        if (mount(path, target, NULL, MS_BIND, NULL) < 0) { close(fd); fail("bind device node", path); }
        close(fd);
    }
    int devfd = resolve_in_root(rootfd, "/dev", O_PATH | O_DIRECTORY);
    if (devfd < 0) { errno = -devfd; fail("open /dev", NULL); }
    const char *links[][2] = {
        { "/proc/self/fd", "fd" }, { "/proc/self/fd/0", "stdin" }, { "/proc/self/fd/1", "stdout" },
        { "/proc/self/fd/2", "stderr" }, { "pts/ptmx", "ptmx" },
    };
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        if (symlinkat(links[i][0], devfd, links[i][1]) < 0 && errno != EEXIST) { close(devfd); fail("symlink in /dev", links[i][1]); }
    }
    close(devfd);
}

static void mask_path(int rootfd, const char *path) {
    int fd = resolve_in_root(rootfd, path, O_PATH);
    if (fd < 0) {
        if (-fd == ENOENT) return;
        errno = -fd;
        fail("masked path", path);
    }
    char target[64];
    fd_path(target, sizeof target, fd);
    int rc = is_dir_fd(fd) ? mount("tmpfs", target, "tmpfs", MS_RDONLY, "size=0")
                           : mount("/dev/null", target, NULL, MS_BIND, NULL);
    close(fd);
    if (rc < 0) fail("mask path", path);
}

static void readonly_path(int rootfd, const char *path) {
    int fd = resolve_in_root(rootfd, path, O_PATH);
    if (fd < 0) {
        if (-fd == ENOENT) return;
        errno = -fd;
        fail("read-only path", path);
    }
    char target[64];
    fd_path(target, sizeof target, fd);
    int rc = mount(target, target, NULL, MS_BIND | MS_REC, NULL);
    close(fd);
    if (rc < 0) fail("bind read-only path", path);
    remount_readonly_at(rootfd, path, 0);
}

static void write_sysctl(int procfd, const char *key, const char *value) {
    char path[PATH_BUFFER];
    path[0] = 0;
    str_append(path, sizeof path, "sys/");
    str_append(path, sizeof path, key);
    int fd = openat(procfd, path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) fail("sysctl", key);
    ssize_t n = write(fd, value, strlen(value));
    close(fd);
    if (n < 0) fail("write sysctl", key);
}

static int compare_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/// Closes every descriptor except 0-2 and `keep`: the init outlives the agent, and must not hold
/// its sockets or databases open.
static void close_other_fds(int *keep, int count) {
    // insertion sort: tiny arrays, no qsort (not guaranteed async-signal-safe)
    for (int i = 1; i < count; i++) {
        int v = keep[i], j = i - 1;
        while (j >= 0 && keep[j] > v) { keep[j + 1] = keep[j]; j--; }
        keep[j + 1] = v;
    }
    (void)compare_int;
    unsigned int next = 3;
    for (int i = 0; i < count; i++) {
        if (keep[i] < (int)next) continue;
        if ((unsigned int)keep[i] > next) syscall(SYS_close_range, next, (unsigned int)keep[i] - 1, 0);
        next = (unsigned int)keep[i] + 1;
    }
    syscall(SYS_close_range, next, ~0U, 0);
}

// ---- the workload ----------------------------------------------------------------------------

static void exec_workload(const struct nshim_container_config *c) {
    // Searching PATH as execvpe does, without its allocations.
    if (strchr(c->path, '/')) {
        execve(c->path, c->argv, c->envp);
        return;
    }
    const char *search = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    for (char *const *e = c->envp; e && *e; e++) {
        if (strncmp(*e, "PATH=", 5) == 0) { search = *e + 5; break; }
    }
    int saw_eacces = 0;
    char candidate[PATH_BUFFER];
    const char *p = search;
    while (*p) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 0 && len + strlen(c->path) + 2 < sizeof candidate) {
            memcpy(candidate, p, len);
            candidate[len] = '/';
            str_copy(candidate + len + 1, sizeof candidate - len - 1, c->path);
            execve(candidate, c->argv, c->envp);
            if (errno == EACCES) saw_eacces = 1;
        }
        if (!end) break;
        p = end + 1;
    }
    errno = saw_eacces ? EACCES : ENOENT;
}

struct cap_header { uint32_t version; int pid; };
struct cap_data { uint32_t effective, permitted, inheritable; };

__attribute__((noreturn)) static void workload_child(const struct nshim_container_config *c, int out_w, int err_w) {
    sigset_t none;
    sigemptyset(&none);
    for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
    sigprocmask(SIG_SETMASK, &none, NULL);
    const char *what = "prepare";
    if (c->log_dir_fd >= 0) {
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (devnull >= 0) { dup2(devnull, 0); close(devnull); }
        if (dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0) { what = "stdio"; goto failed; }
    } else {
        if (c->stdin_fd >= 0 && dup2(c->stdin_fd, 0) < 0) { what = "stdin"; goto failed; }
        if (c->stdout_fd >= 0 && dup2(c->stdout_fd, 1) < 0) { what = "stdout"; goto failed; }
        if (c->stderr_fd >= 0 && dup2(c->stderr_fd, 2) < 0) { what = "stderr"; goto failed; }
    }
    setsid();
    for (int i = 0; i < c->rlimit_count; i++) {
        struct rlimit64 lim = { .rlim_cur = c->rlimit_soft[i], .rlim_max = c->rlimit_hard[i] };
        if (syscall(SYS_prlimit64, 0, c->rlimit_types[i], &lim, NULL) < 0) { what = "setrlimit"; goto failed; }
    }
    if (c->cwd && chdir(c->cwd) < 0) { what = "chdir to the process cwd"; goto failed; }
    if (c->no_new_privileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) { what = "no_new_privs"; goto failed; }
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it before the caps go.
    if (c->seccomp_filter && !c->no_new_privileges &&
        nshim_seccomp_load(c->seccomp_filter, c->seccomp_instructions, 0) < 0) { what = "load seccomp"; goto failed; }
    for (int cap = 0; cap < 64; cap++) {
        if (!(c->cap_bounding & (1ULL << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) {
            what = "drop bounding capability";
            goto failed;
        }
    }
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) { what = "keepcaps"; goto failed; }
    gid_t groups[64];
    int ngroups = c->additional_gid_count < 64 ? c->additional_gid_count : 64;
    for (int i = 0; i < ngroups; i++) groups[i] = c->additional_gids[i];
    if (syscall(SYS_setgroups, ngroups, groups) < 0) { what = "setgroups"; goto failed; }
    if (syscall(SYS_setresgid, c->gid, c->gid, c->gid) < 0) { what = "setresgid"; goto failed; }
    if (syscall(SYS_setresuid, c->uid, c->uid, c->uid) < 0) { what = "setresuid"; goto failed; }
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) { what = "keepcaps off"; goto failed; }
    struct cap_header header = { 0x20080522, 0 };
    struct cap_data data[2] = {
        { (uint32_t)c->cap_effective, (uint32_t)c->cap_permitted, (uint32_t)c->cap_inheritable },
        { (uint32_t)(c->cap_effective >> 32), (uint32_t)(c->cap_permitted >> 32), (uint32_t)(c->cap_inheritable >> 32) },
    };
    if (syscall(SYS_capset, &header, data) < 0) { what = "capset"; goto failed; }
    for (int cap = 0; cap < 64; cap++) {
        if ((c->cap_ambient & (1ULL << cap)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0) {
            what = "raise ambient capability";
            goto failed;
        }
    }
    syscall(SYS_close_range, 3U, ~0U, 0);
    if (c->seccomp_filter && c->no_new_privileges &&
        nshim_seccomp_load(c->seccomp_filter, c->seccomp_instructions, 0) < 0) { what = "load seccomp"; goto failed; }
    exec_workload(c);
    what = "exec";
failed:;
    int err = errno;
    char msg[512];
    msg[0] = 0;
    str_append(msg, sizeof msg, "container init: ");
    str_append(msg, sizeof msg, what);
    str_append(msg, sizeof msg, " failed for ");
    str_append(msg, sizeof msg, c->path);
    str_append(msg, sizeof msg, ": errno ");
    str_append_uint(msg, sizeof msg, (unsigned long long)err);
    str_append(msg, sizeof msg, "\n");
    write_all(2, msg, strlen(msg));
    _exit(err == ENOENT ? 127 : 126);
}

// ---- the init: pid 1 of the container --------------------------------------------------------

struct log_stream {
    int pipe_fd;
    int file_fd;
    uint64_t size;
    const char *name;
};

static void log_rotate(const struct nshim_container_config *c, struct log_stream *s) {
    char from[64], to[64];
    for (int i = c->log_keep; i >= 1; i--) {
        from[0] = 0;
        str_append(from, sizeof from, s->name);
        if (i > 1) { str_append(from, sizeof from, "."); str_append_uint(from, sizeof from, (unsigned long long)(i - 1)); }
        to[0] = 0;
        str_append(to, sizeof to, s->name);
        str_append(to, sizeof to, ".");
        str_append_uint(to, sizeof to, (unsigned long long)i);
        renameat(c->log_dir_fd, from, c->log_dir_fd, to);
    }
    if (s->file_fd >= 0) close(s->file_fd);
    s->file_fd = openat(c->log_dir_fd, s->name, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
    s->size = 0;
}

/// Reads what is available from a workload pipe into its log. Returns 0 at EOF.
static int log_pump(const struct nshim_container_config *c, struct log_stream *s) {
    char buf[65536];
    ssize_t n = read(s->pipe_fd, buf, sizeof buf);
    if (n < 0) return errno == EAGAIN || errno == EINTR ? 1 : 0;
    if (n == 0) return 0;
    // Split the chunk so no file grows past the cap, cutting at a line end where one fits.
    const char *p = buf;
    size_t left = (size_t)n;
    while (left > 0) {
        if (c->log_max_bytes > 0 && s->size >= c->log_max_bytes) log_rotate(c, s);
        size_t room = c->log_max_bytes > 0 ? (size_t)(c->log_max_bytes - s->size) : left;
        size_t chunk = left < room ? left : room;
        if (chunk < left) {
            size_t cut = chunk;
            while (cut > 0 && p[cut - 1] != '\n') cut--;
            if (cut > 0) chunk = cut;
            else if (s->size > 0) { log_rotate(c, s); continue; }
        }
        if (s->file_fd >= 0) write_all(s->file_fd, p, chunk);
        s->size += (uint64_t)chunk;
        p += chunk;
        left -= chunk;
    }
    return 1;
}

__attribute__((noreturn)) static void init_loop(const struct nshim_container_config *c, pid_t workload,
                                               struct log_stream *streams, int stream_count, int sfd) {
    int status = 0, done = 0;
    while (!done) {
        struct pollfd fds[3];
        int n = 0;
        fds[n].fd = sfd; fds[n].events = POLLIN; n++;
        for (int i = 0; i < stream_count; i++) {
            if (streams[i].pipe_fd >= 0) { fds[n].fd = streams[i].pipe_fd; fds[n].events = POLLIN; n++; }
        }
        if (poll(fds, (nfds_t)n, -1) < 0) continue;
        for (int i = 1; i < n; i++) {
            if (!(fds[i].revents & (POLLIN | POLLHUP))) continue;
            for (int k = 0; k < stream_count; k++) {
                if (streams[k].pipe_fd == fds[i].fd && !log_pump(c, &streams[k])) {
                    close(streams[k].pipe_fd);
                    streams[k].pipe_fd = -1;
                }
            }
        }
        if (!(fds[0].revents & POLLIN)) continue;
        struct signalfd_siginfo info;
        while (read(sfd, &info, sizeof info) == (ssize_t)sizeof info) {
            if (info.ssi_signo == SIGCHLD) {
                int st;
                pid_t p;
                while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
                    if (p == workload) { status = st; done = 1; }
                }
            } else {
                kill(workload, (int)info.ssi_signo);
            }
        }
    }
    for (int k = 0; k < stream_count; k++) {
        if (streams[k].pipe_fd < 0) continue;
        fcntl(streams[k].pipe_fd, F_SETFL, O_NONBLOCK);
        for (int guard = 0; guard < 1024 && log_pump(c, &streams[k]); guard++) {
            struct pollfd pfd = { streams[k].pipe_fd, POLLIN, 0 };
            if (poll(&pfd, 1, 0) <= 0) break;
        }
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    if (c->exit_status_fd >= 0) {
        char text[64];
        text[0] = 0;
        str_append(text, sizeof text, "exit_code ");
        str_append_uint(text, sizeof text, (unsigned long long)code);
        str_append(text, sizeof text, "\nsignal ");
        str_append_uint(text, sizeof text, (unsigned long long)sig);
        str_append(text, sizeof text, "\n");
        if (ftruncate(c->exit_status_fd, 0) == 0) {
            lseek(c->exit_status_fd, 0, SEEK_SET);
            write_all(c->exit_status_fd, text, strlen(text));
            fsync(c->exit_status_fd);
        }
    }
    _exit(code);
}

__attribute__((noreturn)) static void container_child(const struct nshim_container_config *c, int sync_fd, int status_fd,
                                                      unsigned long joined_before_clone) {
    status_fd_global = status_fd;
    // First of all, drop every descriptor of the runtime's process we do not need: the clone
    // inherited them all (databases, sockets, flock'd lock files) and would hold them while it
    // waits for the parent, and for the container's whole life.
    int keep[16];
    int nkeep = 0;
    keep[nkeep++] = sync_fd;
    keep[nkeep++] = status_fd;
    if (c->exec_fifo_fd >= 0) keep[nkeep++] = c->exec_fifo_fd;
    if (c->exit_status_fd >= 0) keep[nkeep++] = c->exit_status_fd;
    if (c->log_dir_fd >= 0) keep[nkeep++] = c->log_dir_fd;
    if (c->stdin_fd >= 0) keep[nkeep++] = c->stdin_fd;
    if (c->stdout_fd >= 0) keep[nkeep++] = c->stdout_fd;
    if (c->stderr_fd >= 0) keep[nkeep++] = c->stderr_fd;
    for (int i = 0; i < c->join_count && nkeep < 16; i++) keep[nkeep++] = c->join_fds[i];
    close_other_fds(keep, nkeep);
    char byte;
    ssize_t got;
    do { got = read(sync_fd, &byte, 1); } while (got < 0 && errno == EINTR);
    if (got != 1) _exit(1);  // the parent gave up: nothing to report to
    close(sync_fd);
    // The init is a clone of the runtime, not an exec: name it so `ps` in the container says what it is.
    prctl(PR_SET_NAME, (unsigned long)"container-init", 0, 0, 0);

    for (int i = 0; i < c->join_count; i++) {
        if (!(joined_before_clone & (1UL << i)) && setns(c->join_fds[i], c->join_types[i]) < 0) fail("join namespace", NULL);
        close(c->join_fds[i]);
    }
    if (c->become_root) {
        if (syscall(SYS_setresgid, 0, 0, 0) < 0) fail("become root in the user namespace (gid)", NULL);
        if (syscall(SYS_setresuid, 0, 0, 0) < 0) fail("become root in the user namespace (uid)", NULL);
    }


    unsigned long propagation = MS_SLAVE;
    if (c->rootfs_propagation && strcmp(c->rootfs_propagation, "private") == 0) propagation = MS_PRIVATE;
    if (c->rootfs_propagation && strcmp(c->rootfs_propagation, "shared") == 0) propagation = MS_SHARED;
    if (mount(NULL, "/", NULL, MS_REC | propagation, NULL) < 0) fail("make / a slave mount", NULL);
    if (mount(c->rootfs, c->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0) fail("bind the rootfs onto itself", c->rootfs);
    int rootfd = open(c->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) fail("open rootfs", c->rootfs);
    for (int i = 0; i < c->mount_count; i++) do_mount(rootfd, &c->mounts[i]);
    if (c->populate_dev) populate_dev(rootfd);
    close(rootfd);

    // The host's procfs, kept across pivot_root to reopen the exec FIFO and write our oom score.
    int procfd = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (procfd < 0) fail("open /proc", NULL);
    if (c->oom_score_adj_set) {
        int fd = openat(procfd, "self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        char value[24];
        value[0] = 0;
        if (c->oom_score_adj < 0) { str_append(value, sizeof value, "-"); str_append_uint(value, sizeof value, (unsigned long long)(-c->oom_score_adj)); }
        else str_append_uint(value, sizeof value, (unsigned long long)c->oom_score_adj);
        if (fd < 0 || write(fd, value, strlen(value)) < 0) fail("oom_score_adj", NULL);
        close(fd);
    }

    if (chdir(c->rootfs) < 0) fail("chdir to rootfs", c->rootfs);
    if (nshim_pivot_root(".", ".") < 0) { errno = errno ? errno : EINVAL; fail("pivot_root", c->rootfs); }
    if (umount2(".", MNT_DETACH) < 0) fail("detach the old root", NULL);
    if (chdir("/") < 0) fail("chdir /", NULL);

    int newroot = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (newroot < 0) fail("open new root", NULL);
    for (int i = 0; i < c->masked_count; i++) mask_path(newroot, c->masked_paths[i]);
    for (int i = 0; i < c->readonly_count; i++) readonly_path(newroot, c->readonly_paths[i]);
    if (c->readonly_root) {
        if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | locked_flags("/"), NULL) < 0) fail("read-only root", NULL);
    }
    close(newroot);
    if (c->hostname && sethostname(c->hostname, strlen(c->hostname)) < 0) fail("sethostname", c->hostname);
    for (int i = 0; i < c->sysctl_count; i++) write_sysctl(procfd, c->sysctl_paths[i], c->sysctl_values[i]);

    // Nobody in the container may read this process's memory or descriptors through /proc.
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    report(NSHIM_STATUS_READY, 0, "ready", NULL);
    close(status_fd);
    status_fd_global = -1;

    if (c->exec_fifo_fd >= 0) {
        char fifo_path[64];
        fifo_path[0] = 0;
        str_append(fifo_path, sizeof fifo_path, "self/fd/");
        str_append_uint(fifo_path, sizeof fifo_path, (unsigned long long)c->exec_fifo_fd);
        int fifo = openat(procfd, fifo_path, O_WRONLY | O_CLOEXEC);  // blocks until `start` opens it
        if (fifo < 0) _exit(125);
        write_all(fifo, "0", 1);
        close(fifo);
        close(c->exec_fifo_fd);
    }
    close(procfd);

    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    int sfd = signalfd(-1, &all, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) _exit(125);

    struct log_stream streams[2];
    int stream_count = 0;
    int out_pipe[2] = { -1, -1 }, err_pipe[2] = { -1, -1 };
    if (c->log_dir_fd >= 0) {
        if (pipe2(out_pipe, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0) _exit(125);
        streams[0] = (struct log_stream){ out_pipe[0], -1, 0, "stdout.log" };
        streams[1] = (struct log_stream){ err_pipe[0], -1, 0, "stderr.log" };
        stream_count = 2;
        for (int i = 0; i < 2; i++) {
            streams[i].file_fd = openat(c->log_dir_fd, streams[i].name, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
            struct stat st;
            if (streams[i].file_fd >= 0 && fstat(streams[i].file_fd, &st) == 0) streams[i].size = (uint64_t)st.st_size;
        }
    }
    long pid = raw_clone_fork();
    if (pid < 0) _exit(125);
    if (pid == 0) {
        close(sfd);
        if (out_pipe[0] >= 0) { close(out_pipe[0]); close(err_pipe[0]); }
        workload_child(c, out_pipe[1], err_pipe[1]);
    }
    if (out_pipe[1] >= 0) { close(out_pipe[1]); close(err_pipe[1]); }
    if (c->stdin_fd >= 0) close(c->stdin_fd);
    init_loop(c, (pid_t)pid, streams, stream_count, sfd);
}

int nshim_container_spawn(const struct nshim_container_config *c, uint64_t clone_flags, int cgroup_fd,
                          struct nshim_container_child *child) {
    if (!c || !c->rootfs || !c->path || !c->argv || !child) return -EINVAL;
    int sync_pipe[2], status_pipe[2];
    if (pipe2(sync_pipe, O_CLOEXEC) < 0) return -errno;
    if (pipe2(status_pipe, O_CLOEXEC) < 0) {
        int err = errno;
        close(sync_pipe[0]);
        close(sync_pipe[1]);
        return -err;
    }
    // A network namespace made by the host (the agent's container networks) belongs to the initial
    // user namespace: a child already inside its new user namespace may not join it. So this
    // thread joins it for the clone (network namespaces are per thread, allowed in a multithreaded
    // process) and the child inherits it; the thread goes back to its own right after.
    unsigned long joined_before_clone = 0;
    int own_netns = -1;
    if (clone_flags & CLONE_NEWUSER) {
        for (int i = 0; i < c->join_count && i < (int)(8 * sizeof joined_before_clone); i++) {
            if (c->join_types[i] != CLONE_NEWNET) continue;
            if (own_netns < 0) own_netns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
            if (own_netns < 0 || setns(c->join_fds[i], CLONE_NEWNET) < 0) {
                int err = errno;
                if (own_netns >= 0) close(own_netns);
                close(sync_pipe[0]); close(sync_pipe[1]); close(status_pipe[0]); close(status_pipe[1]);
                return -err;
            }
            joined_before_clone |= 1UL << i;
        }
    }
    struct clone_args_v2 args;
    memset(&args, 0, sizeof args);
    args.flags = clone_flags;
    args.exit_signal = SIGCHLD;
    if (cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)cgroup_fd;
    }
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid < 0 && errno == ENOSYS && cgroup_fd < 0) {
        pid = syscall(SYS_clone, (unsigned long)(clone_flags | SIGCHLD), NULL, NULL, NULL, NULL);
    }
    int clone_errno = errno;
    if (pid != 0 && own_netns >= 0) {
        // A runtime thread left in a container's network namespace would put the agent's later
        // sockets there: stop rather than go on wrong.
        if (setns(own_netns, CLONE_NEWNET) < 0) abort();
        close(own_netns);
    }
    if (pid < 0) {
        close(sync_pipe[0]); close(sync_pipe[1]); close(status_pipe[0]); close(status_pipe[1]);
        return -clone_errno;
    }
    if (pid == 0) {
        if (own_netns >= 0) close(own_netns);
        close(sync_pipe[1]);
        close(status_pipe[0]);
        container_child(c, sync_pipe[0], status_pipe[1], joined_before_clone);
    }
    close(sync_pipe[0]);
    close(status_pipe[1]);
    child->pid = (pid_t)pid;
    child->sync_fd = sync_pipe[1];
    child->status_fd = status_pipe[0];
    return 0;
}
