#ifndef CZEROMQ_SHIM_H
#define CZEROMQ_SHIM_H
#include <zmq.h>
// Signals as a pollable descriptor, for the coordinator and worker event loops.
#include <sys/signalfd.h>
#include <signal.h>
#include <stdio.h>

/// ZMQ_ZAP_ENFORCE_DOMAIN is declared only under ZMQ_BUILD_DRAFT_API, but libzmq 4.3 honours it in
/// every build: with it, a CURVE socket whose ZAP handler is missing refuses every client instead
/// of accepting all of them (fail closed).
static inline int csweep_zap_enforce_domain(void) { return 93; }

/// Line-buffered standard output, so each progress line reaches a pipe or log file at once.
static inline void csweep_stdout_line_buffered(void) { setvbuf(stdout, NULL, _IOLBF, 0); }
#endif
