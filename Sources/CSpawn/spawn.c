#define _GNU_SOURCE
#include "sweep_spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/// Reports `error` to the parent and exits (child side, async-signal-safe).
static void fail(int status_fd, int error) {
    ssize_t ignored = write(status_fd, &error, sizeof error);
    (void)ignored;
    _exit(127);
}

/// Closes the descriptors lo…hi (close_range, or one by one below 4096 where the kernel lacks it).
static void close_from(unsigned lo, unsigned hi) {
    if (lo > hi) return;
    if (syscall(SYS_close_range, lo, hi, 0) == 0) return;
    for (unsigned fd = lo; fd <= hi && fd < 4096; fd++) close((int)fd);
}

pid_t sweep_spawn(const char *path, char *const argv[], char *const envp[], const char *directory, int stdout_fd, int stderr_fd,
                  int report_fd, int report_target) {
    int status[2];
    if (pipe2(status, O_CLOEXEC) != 0) return -errno;
    pid_t parent = getpid();
    // vfork, not fork: the child borrows the worker's memory until it execs, so no page tables
    // are copied and no fork handlers run (OpenBLAS's would stop its threads under a running
    // GEMM of another slot). Every signal stays blocked until the child has reset the handlers,
    // so that none of the worker's runs on the borrowed stack.
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    pid_t pid = vfork();
    if (pid < 0) {
        int e = errno;
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        close(status[0]);
        close(status[1]);
        return -e;
    }
    if (pid == 0) {
        // Only system calls from here to execve: the memory is the parent's.
        int status_fd = fcntl(status[1], F_DUPFD_CLOEXEC, 10);
        if (status_fd < 0) _exit(127);
        setpgid(0, 0);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(status_fd, errno);
        if (getppid() != parent) _exit(127);  // the parent died before prctl
        // The worker's signal handlers, ignored signals and mask are not the program's.
        struct sigaction standard = {0};
        standard.sa_handler = SIG_DFL;
        for (int s = 1; s < NSIG; s++) sigaction(s, &standard, NULL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        // Move the three descriptors out of the way, then onto their numbers (dup2 clears
        // close-on-exec on the copy).
        int out = fcntl(stdout_fd, F_DUPFD_CLOEXEC, 10), err = fcntl(stderr_fd, F_DUPFD_CLOEXEC, 10);
        int report = fcntl(report_fd, F_DUPFD_CLOEXEC, 10);
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (out < 0 || err < 0 || report < 0 || null < 0) fail(status_fd, errno);
        if (dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0 || dup2(report, report_target) < 0) fail(status_fd, errno);
        if (chdir(directory) != 0) fail(status_fd, errno);
        // Every other descriptor the worker holds stays with the worker.
        close_from((unsigned)report_target + 1, (unsigned)status_fd - 1);
        close_from((unsigned)status_fd + 1, ~0U);
        execve(path, argv, envp);
        fail(status_fd, errno);
    }
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    close(status[1]);
    int error = 0;
    ssize_t n;
    do {
        n = read(status[0], &error, sizeof error);
    } while (n < 0 && errno == EINTR);
    close(status[0]);
    if (n == (ssize_t)sizeof error) {
        int ignored;
        while (waitpid(pid, &ignored, 0) < 0 && errno == EINTR) {}
        return -error;
    }
    return pid;
}
