// A libFuzzer target for the wire-message decoder, built by scripts/fuzz.sh (SWEEP_FUZZ=1 adds it
// to the package; it links only with -sanitize=fuzzer).
import CLibFuzzer
import Transport

#if canImport(Glibc)
    import Glibc
#endif

/// One input: a first byte below 0x80 picks a command (modulo their number) and the rest is its
/// JSON payload, behind the right header, so that every command's payload decoding is reached;
/// a first byte of 0x80 or more splits the rest at zero bytes into raw frames (header, command,
/// payload, and any more). Thrown errors are fine; a crash or a hang is a finding.
func fuzzProtocol(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size > 0 else { return 0 }
    let input = UnsafeBufferPointer(start: data, count: size)
    let frames: [[UInt8]]
    if input[0] < 0x80 {
        let command = Command.allCases[Int(input[0]) % Command.allCases.count]
        frames = [Protocol.header, Array(command.rawValue.utf8), Array(input.dropFirst())]
    } else {
        frames = input.dropFirst().split(separator: 0, maxSplits: 3, omittingEmptySubsequences: false).map(Array.init)
    }
    _ = try? Message.decode(frames)
    return 0
}

var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { fuzzProtocol($0, $1) })
