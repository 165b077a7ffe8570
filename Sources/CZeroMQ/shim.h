#ifndef CZEROMQ_SHIM_H
#define CZEROMQ_SHIM_H
#include <zmq.h>
// Signals as a pollable descriptor, for the coordinator and worker event loops.
#include <sys/signalfd.h>
#include <signal.h>
#include <stdio.h>

/// Line-buffered standard output, so each progress line reaches a pipe or log file at once.
static inline void csweep_stdout_line_buffered(void) { setvbuf(stdout, NULL, _IOLBF, 0); }
#endif
