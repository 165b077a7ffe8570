// A libFuzzer target for sweep and trial files, built by scripts/fuzz.sh (SWEEP_FUZZ=1 adds it
// to the package; it links only with -sanitize=fuzzer).
import CLibFuzzer
import Learning
import Sweeps

#if canImport(Glibc)
    import Glibc
#endif

/// One input: the bytes of a file, decoded as the file loaders do (invalid UTF-8 is an error),
/// then parsed as a sweep file (also with its `full` profile when it has profiles) and as a
/// trial configuration. Thrown errors are fine; a crash, a hang or a memory blow-up is a finding.
func fuzzFiles(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    guard let text = try? decodeUTF8(bytes, source: "fuzz.yaml") else { return 0 }
    _ = try? SweepFile.parse(yaml: text, source: "fuzz.yaml")
    if text.contains("profiles") { _ = try? SweepFile.parse(yaml: text, source: "fuzz.yaml", profile: "full") }
    _ = try? TrialConfig.parse(yaml: text, source: "fuzz.yaml")
    return 0
}

var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { fuzzFiles($0, $1) })
