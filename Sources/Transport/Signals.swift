import CZeroMQ
import Glibc

/// SIGINT and SIGTERM delivered through a file descriptor (signalfd), so a poll loop can wait
/// for them with its sockets.
public final class SignalWatcher {
    public let fd: Int32

    public init(_ signals: [Int32] = [SIGINT, SIGTERM]) {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        fd = signalfd(-1, &set, Int32(SFD_NONBLOCK | SFD_CLOEXEC))
    }

    /// The pending signal's name, if any.
    public func take() -> String? {
        var info = signalfd_siginfo()
        let n = read(fd, &info, MemoryLayout<signalfd_siginfo>.size)
        guard n == MemoryLayout<signalfd_siginfo>.size else { return nil }
        return info.ssi_signo == UInt32(SIGINT) ? "SIGINT" : info.ssi_signo == UInt32(SIGTERM) ? "SIGTERM" : "signal \(info.ssi_signo)"
    }
}

/// Makes standard output line-buffered (progress lines must not wait in a buffer).
public func lineBufferStandardOutput() { csweep_stdout_line_buffered() }
