import COpenBLAS
import Glibc

/// The OpenBLAS library as this process uses it: which kernel, how many threads.
///
/// Debian's OpenBLAS 0.3.21 misdetects recent Intel CPUs as `Prescott` and runs sgemm about 5×
/// slower. It reads `OPENBLAS_CORETYPE` once, when the library is loaded, which for a program
/// linked against it is before `main`. So programs call `selectKernel(arguments:)` first thing:
/// when the variable is unset and the CPU supports a better kernel it sets the variable and
/// re-executes the program, and OpenBLAS then loads with the right kernel.
public enum BLASRuntime {
    /// The environment variable that records the automatic choice, so the re-executed process
    /// can report it and never loops.
    static let reexecMarker = "SWEEP_OPENBLAS_REEXEC"

    /// Makes OpenBLAS load with the best kernel for this CPU, re-executing the process if
    /// needed. An explicit `OPENBLAS_CORETYPE` is always respected. Returns normally when no
    /// re-exec was needed (or it failed, which leaves OpenBLAS's own choice in place).
    public static func selectKernel(arguments: [String] = CommandLine.arguments) {
        if getenv("OPENBLAS_CORETYPE") != nil || getenv(reexecMarker) != nil { return }
        guard let preferred = copenblas_preferred_coretype() else { return }
        let name = String(cString: preferred)
        if coreName.caseInsensitiveCompare(name) { return }
        setenv("OPENBLAS_CORETYPE", name, 1)
        setenv(reexecMarker, name, 1)
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        argv.append(nil)
        // Exec the resolved path (not /proc/self/exe) so the process keeps its name in ps/top.
        var path = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &path, path.count - 1)
        execv(n > 0 ? path : Array("/proc/self/exe".utf8CString), argv)
        // exec failed: carry on with OpenBLAS's own choice, and say so.
        let message = "warning: could not re-execute to select OpenBLAS kernel \(name): \(String(cString: strerror(errno)))\n"
        _ = message.withCString { write(2, $0, strlen($0)) }
    }

    /// The kernel OpenBLAS is using (`openblas_get_corename`), e.g. `SkylakeX` or `Prescott`.
    public static var coreName: String {
        guard let p = openblas_get_corename() else { return "unknown" }
        return String(cString: p)
    }

    /// How the kernel was chosen: by the user's `OPENBLAS_CORETYPE`, by this program, or by
    /// OpenBLAS's own CPU detection.
    public static var kernelSource: String {
        if getenv(reexecMarker) != nil { return "selected by sweep (CPU features)" }
        if getenv("OPENBLAS_CORETYPE") != nil { return "OPENBLAS_CORETYPE" }
        return "OpenBLAS detection"
    }

    /// The kernel this CPU could use, for diagnostics (nil: none better than OpenBLAS's guess).
    public static var preferredCoreName: String? {
        copenblas_preferred_coretype().map { String(cString: $0) }
    }

    public static var threads: Int { Int(openblas_get_num_threads()) }

    public static func setThreads(_ n: Int) {
        precondition(n >= 1, "BLAS thread count must be at least 1")
        openblas_set_num_threads(Int32(n))
    }

    /// The largest order of the single-precision products that run on the engine's own AVX2
    /// kernel rather than OpenBLAS (nil: this CPU has no AVX2, OpenBLAS does them all).
    public static var smallProductLimit: Int? { smallGemmLimit }

    /// One line for logs and results: kernel, how it was chosen, threads, the small-product kernel.
    public static var summary: String {
        "OpenBLAS \(coreName) (\(kernelSource)), \(threads) thread\(threads == 1 ? "" : "s")"
            + (smallProductLimit.map { ", float products up to \($0) on the AVX2 small-matrix kernel" } ?? "")
    }
}

extension String {
    fileprivate func caseInsensitiveCompare(_ other: String) -> Bool { lowercased() == other.lowercased() }
}
