#ifndef CZEROMQ_SHIM_H
#define CZEROMQ_SHIM_H
#include <zmq.h>
// Signals as a pollable descriptor, for the coordinator and worker event loops.
#include <signal.h>
#include <stdio.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>

/// ZMQ_ZAP_ENFORCE_DOMAIN is declared only under ZMQ_BUILD_DRAFT_API, but libzmq 4.3 honours it in
/// every build: with it, a CURVE socket whose ZAP handler is missing refuses every client instead
/// of accepting all of them (fail closed).
static inline int csweep_zap_enforce_domain(void) { return 93; }

/// SIGINT/SIGTERM as bytes on a pipe (the self-pipe pattern), so an event loop can poll for them.
/// A handler, not a blocked mask and signalfd: libraries start threads before main (OpenBLAS
/// starts its pool when it loads) and a process-directed signal goes to any thread that does not
/// block it, where the default action would end the process. The handler runs wherever it lands.
static int csweep_signal_pipe[2] = {-1, -1};

static void csweep_signal_handler(int signal) {
    int saved = errno;
    unsigned char byte = (unsigned char)signal;
    ssize_t ignored = write(csweep_signal_pipe[1], &byte, 1);
    (void)ignored;
    errno = saved;
}

/// Installs the handler for `count` signals; returns the pipe's read end (non-blocking), or -1.
/// A signal ignored when the program started stays ignored (as a shell's background jobs ignore
/// SIGINT).
static inline int csweep_watch_signals(const int *signals, int count) {
    if (csweep_signal_pipe[0] < 0 && pipe2(csweep_signal_pipe, O_NONBLOCK | O_CLOEXEC) != 0) return -1;
    struct sigaction action, previous;
    memset(&action, 0, sizeof action);
    action.sa_handler = csweep_signal_handler;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    for (int i = 0; i < count; i++) {
        if (sigaction(signals[i], NULL, &previous) != 0) return -1;
        if (previous.sa_handler == SIG_IGN) continue;
        if (sigaction(signals[i], &action, NULL) != 0) return -1;
        // A parent may have started us with the signal blocked (the mask is inherited).
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, signals[i]);
        pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    }
    return csweep_signal_pipe[0];
}

/// Line-buffered standard output, so each progress line reaches a pipe or log file at once.
static inline void csweep_stdout_line_buffered(void) { setvbuf(stdout, NULL, _IOLBF, 0); }
#endif
