import CZeroMQ
import Glibc

/// SIGINT and SIGTERM delivered through a file descriptor (a handler writing to a pipe), so a
/// poll loop can wait for them with its sockets. Whichever thread the kernel picks for a signal
/// (OpenBLAS's, the writer's), it is reported here instead of ending the process.
public final class SignalWatcher {
    public let fd: Int32

    public init(_ signals: [Int32] = [SIGINT, SIGTERM]) {
        fd = signals.withUnsafeBufferPointer { csweep_watch_signals($0.baseAddress, Int32($0.count)) }
        precondition(fd >= 0, "cannot watch signals: \(String(cString: strerror(errno)))")
    }

    /// The pending signal's name, if any.
    public func take() -> String? {
        var byte: UInt8 = 0
        guard read(fd, &byte, 1) == 1 else { return nil }
        let signal = Int32(byte)
        return signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "signal \(signal)"
    }
}

/// Makes standard output line-buffered (progress lines must not wait in a buffer).
public func lineBufferStandardOutput() { csweep_stdout_line_buffered() }
