import Learning
import Linalg

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The most values one generator (`range`, `linspace`, `logspace`) may produce.
let maxGeneratedValues = 100_000
/// The most trials one sweep may expand to.
let maxTrials = 100_000
/// The most values a sweep's trials may hold together (trials × the values of each one's
/// configuration, a list counting itself and its items): each configuration is validated and
/// identified by its canonical JSON, so this bounds the work of expanding a sweep.
let maxSweepValues = 10_000_000

/// A grid generator: `{range: [start, stop, step]}`, `{linspace: [start, stop, count]}`,
/// `{logspace: [start, stop, count]}`.
enum Generator: String, CaseIterable {
    case range, linspace, logspace

    var usage: String {
        switch self {
        case .range: "{range: [start, stop, step]}"
        case .linspace: "{linspace: [start, stop, count]}"
        case .logspace: "{logspace: [start, stop, count]}"
        }
    }

    /// The generated values, or a message saying what is wrong with the arguments.
    func values(_ args: [ConfigValue]) -> Result<[ConfigValue], GeneratorError> {
        guard args.count == 3 else {
            return .failure(GeneratorError("\(rawValue) needs three numbers, \(usage); got \(ConfigValue.list(args))"))
        }
        for a in args where a.asDouble == nil || !(a.asDouble!.isFinite) {
            return .failure(GeneratorError("\(rawValue) needs three finite numbers, \(usage); found \(a.typeName) \(a)"))
        }
        switch self {
        case .range: return range(args)
        case .linspace, .logspace:
            guard case .int(let count) = args[2] else {
                return .failure(GeneratorError("\(rawValue): the count must be an integer, got \(args[2])"))
            }
            guard count >= 1, count <= maxGeneratedValues else {
                return .failure(GeneratorError("\(rawValue): the count must be between 1 and \(maxGeneratedValues), got \(count)"))
            }
            let a = args[0].asDouble!, b = args[1].asDouble!
            if self == .logspace {
                guard a > 0, b > 0 else {
                    return .failure(GeneratorError("logspace needs a positive start and stop (the values themselves, not exponents), \(usage); got start \(args[0]), stop \(args[1])"))
                }
            }
            if count == 1 { return .success([.double(a)]) }
            var out: [ConfigValue] = []
            out.reserveCapacity(count)
            for i in 0..<count {
                let t = Double(i) / Double(count - 1)
                let x: Double
                if i == 0 {
                    x = a
                } else if i == count - 1 {
                    x = b
                } else if self == .linspace {
                    x = roundToSignificantDigits(a + (b - a) * t)
                } else {
                    x = roundToSignificantDigits(exp(log(a) + (log(b) - log(a)) * t))
                }
                out.append(.double(x))
            }
            return .success(out)
        }
    }

    private func range(_ args: [ConfigValue]) -> Result<[ConfigValue], GeneratorError> {
        if case .int(let start) = args[0], case .int(let stop) = args[1], case .int(let step) = args[2] {
            guard step != 0 else { return .failure(GeneratorError("range: the step must not be 0")) }
            let (span, overflow) = stop.subtractingReportingOverflow(start)
            guard !overflow else { return .failure(GeneratorError("range: too many values")) }
            guard span == 0 || (span > 0) == (step > 0) else {
                return .failure(GeneratorError("range: a step of \(step) never reaches \(stop) from \(start)"))
            }
            let count = span / step + 1
            guard count <= maxGeneratedValues else {
                return .failure(GeneratorError("range: \(count) values; at most \(maxGeneratedValues) are allowed"))
            }
            return .success((0..<count).map { .int(start + $0 * step) })
        }
        let start = args[0].asDouble!, stop = args[1].asDouble!, step = args[2].asDouble!
        guard step != 0 else { return .failure(GeneratorError("range: the step must not be 0")) }
        let q = (stop - start) / step
        guard q.isFinite, q > -1e-9 else {
            return .failure(GeneratorError("range: a step of \(args[2]) never reaches \(args[1]) from \(args[0])"))
        }
        guard q < Double(maxGeneratedValues) else {
            return .failure(GeneratorError("range: more than \(maxGeneratedValues) values"))
        }
        let hitsStop = abs(q - q.rounded()) < 1e-9
        let last = hitsStop ? Int(q.rounded()) : Int(q.rounded(.down))
        return .success(
            (0...max(last, 0)).map { i in
                if i == last && hitsStop { return .double(stop) }
                return .double(i == 0 ? start : roundToSignificantDigits(start + Double(i) * step))
            })
    }
}

struct GeneratorError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// A random-search distribution: `{uniform: [low, high]}`, `{loguniform: [low, high]}`,
/// `{randint: [low, high]}` (inclusive) or `{choice: [v1, v2, …]}`.
enum Distribution: Sendable, Equatable, CustomStringConvertible {
    case uniform(Double, Double)
    case loguniform(Double, Double)
    case randint(Int, Int)
    case choice([ConfigValue])

    static let names = ["choice", "loguniform", "randint", "uniform"]

    /// As a sweep file writes it: `{loguniform: [0.0001, 0.1]}`.
    var description: String {
        switch self {
        case .uniform(let lo, let hi): "{uniform: [\(lo), \(hi)]}"
        case .loguniform(let lo, let hi): "{loguniform: [\(lo), \(hi)]}"
        case .randint(let lo, let hi): "{randint: [\(lo), \(hi)]}"
        case .choice(let items): "{choice: \(ConfigValue.list(items))}"
        }
    }

    static func usage(_ name: String) -> String {
        switch name {
        case "uniform": "{uniform: [low, high]} with low < high"
        case "loguniform": "{loguniform: [low, high]} with 0 < low < high"
        case "randint": "{randint: [low, high]} with integers low ≤ high (both included)"
        default: "{choice: [value, …]} with at least one value"
        }
    }

    /// Parses a distribution's arguments, or says what is wrong with them.
    static func make(_ name: String, _ args: ConfigValue) -> Result<Distribution, GeneratorError> {
        let bad = GeneratorError("\(name) needs \(usage(name)); got \(args)")
        guard case .list(let items) = args else { return .failure(bad) }
        switch name {
        case "choice":
            return items.isEmpty ? .failure(bad) : .success(.choice(items))
        case "randint":
            guard items.count == 2, case .int(let lo) = items[0], case .int(let hi) = items[1], lo <= hi else { return .failure(bad) }
            return .success(.randint(lo, hi))
        default:
            guard items.count == 2, let lo = items[0].asDouble, let hi = items[1].asDouble, lo.isFinite, hi.isFinite, lo < hi else {
                return .failure(bad)
            }
            if name == "loguniform" {
                guard lo > 0 else { return .failure(bad) }
                return .success(.loguniform(lo, hi))
            }
            return .success(.uniform(lo, hi))
        }
    }

    /// One draw. Uniform draws use `nextUnit()` (53 bits); integer draws are unbiased.
    func draw(_ rng: inout Xoshiro256) -> ConfigValue {
        switch self {
        case .uniform(let lo, let hi):
            return .double(lo + (hi - lo) * rng.nextUnit())
        case .loguniform(let lo, let hi):
            return .double(exp(log(lo) + (log(hi) - log(lo)) * rng.nextUnit()))
        case .randint(let lo, let hi):
            let width = UInt64(bitPattern: Int64(hi) &- Int64(lo)) &+ 1  // 0 means all 2^64 values
            let r = uniformBelow(width, &rng)
            return .int(Int(truncatingIfNeeded: UInt64(bitPattern: Int64(lo)) &+ r))
        case .choice(let items):
            return items[Int(uniformBelow(UInt64(items.count), &rng))]
        }
    }
}

/// Uniform in `0..<n` by rejection (no modulo bias); `n == 0` stands for 2^64.
func uniformBelow(_ n: UInt64, _ rng: inout Xoshiro256) -> UInt64 {
    if n == 0 { return rng.next() }
    let threshold = (0 &- n) % n  // 2^64 mod n
    while true {
        let r = rng.next()
        if r >= threshold { return r % n }
    }
}

/// Rounds to 12 significant digits, so that generated values such as `0.1 + 2 × 0.1` or
/// `exp(log(1e-5) + …)` come out as the decimals one would write (`0.3`, `0.0001`).
func roundToSignificantDigits(_ x: Double, digits: Int = 12) -> Double {
    guard x.isFinite, x != 0 else { return x }
    let k = digits - 1 - Int(floor(log10(abs(x))))
    func power(_ n: Int) -> Double {  // exact for n ≤ 22
        var p = 1.0
        for _ in 0..<n { p *= 10 }
        return p
    }
    if k >= 0 && k <= 22 {
        let s = power(k)
        return (x * s).rounded() / s
    }
    if k < 0 && -k <= 22 {
        let s = power(-k)
        return (x / s).rounded() * s
    }
    return x
}
