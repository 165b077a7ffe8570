import Linalg

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The tree-structured Parzen estimator (Bergstra et al., "Algorithms for Hyper-Parameter
/// Optimization", NeurIPS 2011), as Optuna's `TPESampler` runs it by default today: multivariate
/// kernels within each group of parameters that always occur together, the constant-liar
/// treatment of running trials, 10 random start-up trials and 24 candidates.
///
/// The finished trials are split into the best `γ(n) = min(⌈n/10⌉, 25)` ("below") and the rest
/// ("above", which also holds the running trials: the constant liar makes parallel workers not
/// all get the same suggestion). Each part gives a Parzen estimator: a mixture of one truncated
/// normal (categorical: a peaked distribution) per trial plus a prior over the whole range, in the
/// transformed space (logarithm for log-uniform parameters). Candidates are drawn from the
/// "below" mixture and the one maximising log l(x) − log g(x) is suggested.
public enum TPE {
    public struct Settings: Sendable, Equatable {
        /// Finished trials before the model is used (random draws until then).
        public var startupTrials = 10
        /// Candidates drawn from l(x) per suggestion.
        public var candidates = 24
        /// The prior component's weight in each mixture.
        public var priorWeight = 1.0
        public init() {}
    }

    /// How many of `n` finished trials are "below" (the good part).
    public static func gamma(_ n: Int) -> Int { min(Int((0.1 * Double(n)).rounded(.up)), 25) }

    /// The mixture weights of `n` observations in trial order: flat for the latest 25, a ramp
    /// from 1/n up to 1 for the older ones (older observations count less).
    public static func weights(_ n: Int) -> [Double] {
        guard n >= 25 else { return Array(repeating: 1, count: n) }
        let rampCount = n - 25
        var out: [Double] = []
        out.reserveCapacity(n)
        let start = 1 / Double(n)
        for i in 0..<rampCount {
            out.append(rampCount == 1 ? start : start + (1 - start) * Double(i) / Double(rampCount - 1))
        }
        return out + Array(repeating: 1, count: 25)
    }

    /// One dimension of a group, in the estimator's terms.
    public enum Dimension: Sendable, Equatable {
        /// A real interval; `log` models it in log space.
        case continuous(low: Double, high: Double, log: Bool)
        /// Integers low…high (step 1).
        case integer(low: Double, high: Double)
        /// Choices 0..<count.
        case categorical(count: Int)

        /// The interval the kernels live on (log-transformed, widened by half a step for integers).
        var adapted: (low: Double, high: Double)? {
            switch self {
            case .continuous(let lo, let hi, let log): log ? (Glibc.log(lo), Glibc.log(hi)) : (lo, hi)
            case .integer(let lo, let hi): (lo - 0.5, hi + 0.5)
            case .categorical: nil
            }
        }
    }

    /// A mixture of product kernels over a group's dimensions, one per observation and one prior.
    public struct ParzenEstimator {
        let dimensions: [Dimension]
        /// Normalised mixture weights (observations in order, then the prior).
        let weights: [Double]
        /// Per dimension: each kernel's centre and width (numerical), or its probabilities
        /// (categorical, one row per kernel).
        let mus: [[Double]]
        let sigmas: [[Double]]
        let probabilities: [[[Double]]]

        /// `observations[i][d]`: trial i's value in dimension d (categorical: the choice's index;
        /// log-uniform: the value itself, not its log), in trial order.
        public init(observations: [[Double]], dimensions: [Dimension], settings: Settings) {
            self.dimensions = dimensions
            let n = observations.count
            var w = n == 0 ? [1.0] : TPE.weights(n) + [settings.priorWeight]
            let total = w.reduce(0, +)
            for i in w.indices { w[i] /= total }
            self.weights = w
            var mus: [[Double]] = [], sigmas: [[Double]] = [], probabilities: [[[Double]]] = []
            for (d, dimension) in dimensions.enumerated() {
                let column = observations.map { $0[d] }
                switch dimension {
                case .categorical(let count):
                    mus.append([])
                    sigmas.append([])
                    if n == 0 {
                        probabilities.append([Array(repeating: 1 / Double(count), count: count)])
                        continue
                    }
                    let kernels = n + 1
                    var rows = Array(repeating: Array(repeating: settings.priorWeight / Double(kernels), count: count), count: kernels)
                    for (i, x) in column.enumerated() { rows[i][Int(x)] += 1 }
                    for i in rows.indices {
                        let sum = rows[i].reduce(0, +)
                        if sum > 0 { rows[i] = rows[i].map { $0 / sum } }
                    }
                    probabilities.append(rows)
                default:
                    let (low, high) = dimension.adapted!
                    var isLog = false
                    if case .continuous(_, _, true) = dimension { isLog = true }
                    let centres = column.map { isLog ? log($0) : $0 }
                    var widths = Self.bandwidths(centres, low: low, high: high, kernels: n + 1)
                    mus.append(centres + [0.5 * (low + high)])
                    widths.append(high - low)
                    sigmas.append(widths)
                    probabilities.append([])
                }
            }
            self.mus = mus
            self.sigmas = sigmas
            self.probabilities = probabilities
        }

        /// Each centre's width: the larger gap to its neighbours (the interval's ends count as
        /// neighbours, except that the outermost centres use their inner gap once there are two
        /// or more), clipped to [range / min(100, 1 + kernels), range].
        public static func bandwidths(_ centres: [Double], low: Double, high: Double, kernels: Int) -> [Double] {
            let n = centres.count
            guard n > 0 else { return [] }
            let order = centres.indices.sorted { centres[$0] < centres[$1] }
            let points = [low] + order.map { centres[$0] } + [high]
            var sorted: [Double] = []
            for k in 1...n {
                let left: Double = points[k] - points[k - 1]
                let right: Double = points[k + 1] - points[k]
                sorted.append(max(left, right))
            }
            if points.count >= 4 {
                sorted[0] = points[2] - points[1]
                sorted[n - 1] = points[n] - points[n - 1]
            }
            let maxSigma = high - low
            let minSigma = (high - low) / min(100, 1 + Double(kernels))
            var out = Array(repeating: 0.0, count: n)
            for (rank, i) in order.enumerated() { out[i] = min(max(sorted[rank], minSigma), maxSigma) }
            return out
        }

        /// log p(x) under the mixture (x in the same terms as the observations).
        public func logDensity(_ x: [Double]) -> Double {
            var terms = weights.map { log($0) }
            for (d, dimension) in dimensions.enumerated() {
                switch dimension {
                case .categorical:
                    let rows = probabilities[d], choice = Int(x[d])
                    for j in terms.indices { terms[j] += log(rows[rows.count == 1 ? 0 : j][choice]) }
                case .continuous(_, _, let isLog):
                    let (low, high) = dimension.adapted!
                    let v = isLog ? log(x[d]) : x[d]
                    for j in terms.indices {
                        let mu = mus[d][j], sigma = sigmas[d][j]
                        let z = (v - mu) / sigma
                        terms[j] += -0.5 * z * z - 0.5 * log(2 * Double.pi) - log(sigma) - logNormalMass((low - mu) / sigma, (high - mu) / sigma)
                    }
                case .integer:
                    let (low, high) = dimension.adapted!
                    for j in terms.indices {
                        let mu = mus[d][j], sigma = sigmas[d][j]
                        terms[j] += logNormalMass((x[d] - 0.5 - mu) / sigma, (x[d] + 0.5 - mu) / sigma) - logNormalMass((low - mu) / sigma, (high - mu) / sigma)
                    }
                }
            }
            return logSumExp(terms)
        }

        /// `count` draws: a kernel by weight, then each dimension from that kernel.
        public func sample(_ count: Int, _ rng: inout Xoshiro256) -> [[Double]] {
            (0..<count).map { _ in
                let j = pick(weights, &rng)
                return dimensions.enumerated().map { d, dimension in
                    switch dimension {
                    case .categorical:
                        let rows = probabilities[d]
                        return Double(pick(rows[rows.count == 1 ? 0 : j], &rng))
                    case .continuous(let lo, let hi, let isLog):
                        let (low, high) = dimension.adapted!
                        let v = truncatedNormal(mu: mus[d][j], sigma: sigmas[d][j], low: low, high: high, &rng)
                        return isLog ? min(max(exp(v), lo), hi) : v
                    case .integer(let lo, let hi):
                        let (low, high) = dimension.adapted!
                        let v = truncatedNormal(mu: mus[d][j], sigma: sigmas[d][j], low: low, high: high, &rng)
                        return min(max((v - lo).rounded() + lo, lo), hi)
                    }
                }
            }
        }
    }
}

/// An index drawn with the given (normalised) probabilities.
func pick(_ probabilities: [Double], _ rng: inout Xoshiro256) -> Int {
    let u = rng.nextUnit()
    var cumulative = 0.0
    for (i, p) in probabilities.enumerated() {
        cumulative += p
        if u < cumulative { return i }
    }
    return probabilities.count - 1
}

/// A standard normal draw (Box–Muller, one of the pair).
func standardNormal(_ rng: inout Xoshiro256) -> Double {
    let u1 = 1 - rng.nextUnit()  // (0, 1]
    let u2 = rng.nextUnit()
    return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
}

/// A normal draw restricted to [low, high] by rejection. The estimators' kernels are centred in
/// their interval and no wider than it, so at least a third of the draws are accepted.
func truncatedNormal(mu: Double, sigma: Double, low: Double, high: Double, _ rng: inout Xoshiro256) -> Double {
    for _ in 0..<10_000 {
        let v = mu + sigma * standardNormal(&rng)
        if v >= low && v <= high { return v }
    }
    return min(max(mu, low), high)
}

/// log(Φ(b) − Φ(a)) for a < b, accurate in both tails.
func logNormalMass(_ a: Double, _ b: Double) -> Double {
    let s = 1 / 2.0.squareRoot()
    let mass: Double
    if a >= 0 {
        mass = 0.5 * (erfc(a * s) - erfc(b * s))
    } else if b <= 0 {
        mass = 0.5 * (erfc(-b * s) - erfc(-a * s))
    } else {
        mass = 0.5 * (erf(b * s) - erf(a * s))
    }
    if mass > 0 { return log(mass) }
    // Beyond double precision in a far tail: the density at the nearer end times the width.
    let z = min(abs(a), abs(b))
    return -0.5 * z * z - 0.5 * log(2 * Double.pi) + log(b - a)
}

func logSumExp(_ xs: [Double]) -> Double {
    guard let m = xs.max(), m > -.infinity else { return -.infinity }
    if m == .infinity { return .infinity }
    return m + log(xs.reduce(0) { $0 + exp($1 - m) })
}
