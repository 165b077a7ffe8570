#ifndef SWEEP_SPAWN_H
#define SWEEP_SPAWN_H

#include <sys/types.h>

/// Starts the executable at `path` (no PATH search) with `argv` and `envp` (NULL-terminated) in
/// `directory`, as the leader of a new process group, with standard input from /dev/null,
/// standard output and error on `stdout_fd` and `stderr_fd`, and `report_fd` as descriptor
/// `report_target` (every other descriptor closed). The child receives SIGKILL when the thread
/// that called this exits (PR_SET_PDEATHSIG): a worker killed with SIGKILL takes its programs
/// along. Between fork and exec the child calls only async-signal-safe functions.
///
/// Returns the child's pid, or -errno when it could not be started (the errno of fork, chdir or
/// execve, reported back over a close-on-exec pipe).
pid_t sweep_spawn(const char *path, char *const argv[], char *const envp[], const char *directory, int stdout_fd, int stderr_fd,
                  int report_fd, int report_target);

#endif
