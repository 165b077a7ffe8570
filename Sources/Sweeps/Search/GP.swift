import Linalg

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Gaussian-process Bayesian optimisation (`algorithm: gp`), after the design of Optuna's
/// `GPSampler`, written from its description and decided here where it differs.
///
/// **Space.** Every numerical parameter is scaled to [0, 1]: uniform linearly, log-uniform in log
/// space, integers lo…hi as the cells of [lo − ½, hi + ½] (a value is its cell's centre; a point
/// between is rounded to the nearest integer). Categorical parameters keep their index and the
/// kernel sees only equal or different (Hamming distance), as Optuna does.
///
/// **Conditional spaces.** With several optimizer entries a suggestion takes two steps. First the
/// entry: a GP over the entry choice (categorical) and the shared parameters, fitted on every
/// trial, and the entry of its expected-improvement maximiser is taken. Then the point: a GP over
/// the shared parameters and that entry's own, fitted on that entry's trials only, whose maximiser
/// gives every sampled value. Entries are different optimizers, so one entry's trials say little
/// about the shape of another's landscape (its own parameters do not even exist there); the entry
/// choice, though, is informed by all trials. An entry with fewer than 3 finished trials keeps
/// the shared values of the first step and draws its own at random. With one entry only the
/// second step runs: plain GP-BO over all sampled parameters.
///
/// **Values.** Minimisation (`maximize` flips the sign); within an entry, positive values spanning
/// more than three decades are modelled by their logarithm; then standardised to mean 0 and
/// standard deviation 1. A complete trial without a finite value (a divergence) is clipped to the worst
/// finite value seen, so it marks its region as bad without wrecking the scale. Pruned trials are
/// not modelled (as in Optuna): their value is from an earlier epoch than the others'. Failed
/// trials are ignored. The first `startup_trials` (default 10) suggestions, until that many trials
/// are complete, are random draws.
///
/// **Kernel.** Matérn 5/2 with one lengthscale per dimension (ARD), a signal variance and a noise
/// variance of at least 10⁻⁶: k(x, x') = s·(1 + √5r + 5r²/3)·e^(−√5r), r² = Σ_d (x_d − x'_d)²/ℓ_d².
/// The hyperparameters maximise the log marginal likelihood plus Optuna's weak log prior
/// (−Σ(0.1ℓ_d² + 0.1/ℓ_d²) on the lengthscales, Gamma(2, 1) on s, Gamma(1.1, 30) on the noise),
/// in log parameters, with analytic gradients, by L-BFGS (memory 10, backtracking line search,
/// at most 100 iterations) from two starts (all ones, as Optuna; and ℓ_d² = 0.1, noise 0.01) —
/// the better end wins. The Cholesky factor is LAPACK's (`Linalg.Cholesky`, double precision).
///
/// **Acquisition.** Log expected improvement over the best value seen, computed stably in the far
/// tail (Ament et al., "Unexpected Improvements to Expected Improvement", 2023, eq. 9), on the
/// latent function (posterior variance floored at 10⁻¹²). Maximised over 2048 random points of the
/// unit space and then a local search from the best observed point and the 9 best random ones:
/// coordinate pattern search on continuous dimensions (step 0.1 in unit space, divided by 4 when
/// no step improves, down to 10⁻⁴), every value for categorical dimensions and integers with at
/// most 16 values, ±1, ±2, ±4, … for wider integers.
///
/// **Parallelism.** Running trials enter as the kriging believer: with the fitted hyperparameters
/// they are added at the posterior mean, which leaves the mean unchanged but collapses the variance
/// around them, so parallel workers are not all sent to the same place. Optuna instead fantasises
/// Monte-Carlo samples at running trials (a q-batch acquisition); the believer is deterministic
/// and one solve.
///
/// **Cost.** Fitting is O(n³) per likelihood evaluation; at most 500 complete trials are modelled
/// per GP (the 250 best and, of the rest, the 250 latest) and at most 100 running ones.
public enum GP {
    public struct Settings: Sendable, Equatable {
        /// Complete trials before the model is used (random draws until then).
        public var startupTrials = 10
        /// Random points the acquisition is evaluated at before the local search.
        public var candidates = 2048
        /// Local searches: from the best observed point and the best random ones.
        public var localSearches = 10
        /// Complete trials one GP models at most (the best half and the latest of the rest).
        public var maxTrainingTrials = 500
        /// Running trials one GP takes in as believers at most (the latest).
        public var maxRunningTrials = 100
        public init() {}
    }

    /// The smallest noise variance (standardised values).
    public static let minimumNoise = 1e-6

    // MARK: Kernel

    /// Matérn 5/2 as a function of the scaled squared distance r²: (1 + √(5r²) + 5r²/3)·e^(−√(5r²)).
    @inline(__always) public static func matern52(_ r2: Double) -> Double {
        let a = (5 * r2).squareRoot()
        return (1 + a + 5.0 / 3.0 * r2) * exp(-a)
    }

    /// d matern52 / d(r²) = −(5/6)(1 + √(5r²))·e^(−√(5r²)) (finite at 0).
    @inline(__always) static func matern52Derivative(_ r2: Double) -> Double {
        let a = (5 * r2).squareRoot()
        return -5.0 / 6.0 * (1 + a) * exp(-a)
    }

    /// The kernel's hyperparameters.
    public struct Hyperparameters: Sendable, Equatable {
        /// 1/ℓ_d² per dimension.
        public var inverseSquaredLengthscales: [Double]
        public var signalVariance: Double
        public var noiseVariance: Double

        public init(inverseSquaredLengthscales: [Double], signalVariance: Double, noiseVariance: Double) {
            self.inverseSquaredLengthscales = inverseSquaredLengthscales
            self.signalVariance = signalVariance
            self.noiseVariance = noiseVariance
        }

        /// From the optimiser's unconstrained parameters: log(1/ℓ_d²)…, log s, log(noise − minimum).
        public init(raw: [Double]) {
            let d = raw.count - 2
            inverseSquaredLengthscales = raw.prefix(d).map { exp($0) }
            signalVariance = exp(raw[d])
            noiseVariance = exp(raw[d + 1]) + GP.minimumNoise
        }

        public var raw: [Double] {
            inverseSquaredLengthscales.map { log($0) } + [log(signalVariance), log(max(noiseVariance - GP.minimumNoise, 1e-300))]
        }
    }

    /// Per-dimension squared differences (categorical: 0 or 1) between two points.
    @inline(__always) static func scaledSquaredDistance(_ a: [Double], _ b: [Double], _ categorical: [Bool], _ inverse: [Double]) -> Double {
        var r2 = 0.0
        for d in a.indices {
            let diff = a[d] - b[d]
            r2 += inverse[d] * (categorical[d] ? (diff == 0 ? 0 : 1) : diff * diff)
        }
        return r2
    }

    // MARK: Likelihood

    /// Training data: points in the unit space (categorical: indices) and standardised values.
    public struct Data: Sendable {
        public let x: [[Double]]
        public let y: [Double]
        public let categorical: [Bool]
        /// Per dimension, the n×n squared differences (row-major).
        let squaredDifferences: [[Double]]

        public init(x: [[Double]], y: [Double], categorical: [Bool]) {
            precondition(x.count == y.count && x.allSatisfy { $0.count == categorical.count })
            self.x = x
            self.y = y
            self.categorical = categorical
            let n = x.count
            squaredDifferences = categorical.indices.map { d in
                var m = [Double](repeating: 0, count: n * n)
                for i in 0..<n {
                    for j in 0..<i {
                        let diff = x[i][d] - x[j][d]
                        let v = categorical[d] ? (diff == 0 ? 0 : 1) : diff * diff
                        m[i * n + j] = v
                        m[j * n + i] = v
                    }
                }
                return m
            }
        }

        var count: Int { y.count }
        var dimensions: Int { categorical.count }

        /// K + noise·I and the Matérn values' derivatives in r² (row-major).
        func covariance(_ h: Hyperparameters) -> (c: [Double], r2: [Double]) {
            let n = count
            var r2 = [Double](repeating: 0, count: n * n)
            for d in 0..<dimensions {
                let w = h.inverseSquaredLengthscales[d]
                squaredDifferences[d].withUnsafeBufferPointer { s in
                    for k in 0..<(n * n) { r2[k] += w * s[k] }
                }
            }
            var c = r2.map { h.signalVariance * GP.matern52($0) }
            for i in 0..<n { c[i * n + i] += h.noiseVariance }
            return (c, r2)
        }
    }

    /// The log marginal likelihood log p(y | X, θ) (with its −(n/2)·log 2π) and its gradient in
    /// the raw parameters (`Hyperparameters.raw`). Throws when the covariance is not positive definite.
    public static func logMarginalLikelihood(_ data: Data, _ h: Hyperparameters) throws -> (value: Double, gradient: [Double]) {
        let n = data.count, dims = data.dimensions
        let (c, r2) = data.covariance(h)
        let factor = try Cholesky(c, n: n)
        let alpha = factor.solve(data.y)
        var value = -0.5 * zip(data.y, alpha).reduce(0) { $0 + $1.0 * $1.1 } - 0.5 * factor.logDeterminant - 0.5 * Double(n) * log(2 * Double.pi)
        if !value.isFinite { value = -.infinity }
        // ∂/∂θ = ½ tr((ααᵀ − C⁻¹) ∂C/∂θ); W = ααᵀ − C⁻¹ is symmetric, so each sum runs over i ≥ j.
        let inverse = try factor.inverse()
        var gradient = [Double](repeating: 0, count: dims + 2)
        var lengthscaleSums = [Double](repeating: 0, count: dims)
        var signalSum = 0.0, traceW = 0.0
        for i in 0..<n {
            traceW += alpha[i] * alpha[i] - inverse[i * n + i]
            signalSum += alpha[i] * alpha[i] - inverse[i * n + i]  // K_ii = s·1
            for j in 0..<i {
                let w = 2 * (alpha[i] * alpha[j] - inverse[i * n + j])
                let m = GP.matern52(r2[i * n + j])
                signalSum += w * m
                let dm = w * GP.matern52Derivative(r2[i * n + j])
                for d in 0..<dims { lengthscaleSums[d] += dm * data.squaredDifferences[d][i * n + j] }
            }
        }
        for d in 0..<dims { gradient[d] = 0.5 * h.signalVariance * lengthscaleSums[d] * h.inverseSquaredLengthscales[d] }
        gradient[dims] = 0.5 * h.signalVariance * signalSum
        gradient[dims + 1] = 0.5 * traceW * (h.noiseVariance - minimumNoise)
        return (value, gradient)
    }

    /// Optuna's weak prior on the hyperparameters (up to a constant) and its gradient in the raw parameters.
    public static func logPrior(_ h: Hyperparameters) -> (value: Double, gradient: [Double]) {
        var value = 0.0, gradient: [Double] = []
        for l in h.inverseSquaredLengthscales {
            value -= 0.1 / l + 0.1 * l
            gradient.append(0.1 / l - 0.1 * l)
        }
        // Gamma(2, 1) on s: log s − s; Gamma(1.1, 30) on the noise: 0.1·log σ² − 30σ².
        let s = h.signalVariance, v = h.noiseVariance
        value += log(s) - s + 0.1 * log(v) - 30 * v
        gradient.append(1 - s)
        gradient.append((0.1 / v - 30) * (v - minimumNoise))
        return (value, gradient)
    }

    /// The hyperparameters maximising log likelihood + log prior (see the type's comment).
    public static func fitHyperparameters(_ data: Data) -> Hyperparameters {
        let dims = data.dimensions
        let starts = [
            Hyperparameters(inverseSquaredLengthscales: Array(repeating: 1, count: dims), signalVariance: 1, noiseVariance: 1),
            Hyperparameters(inverseSquaredLengthscales: Array(repeating: 10, count: dims), signalVariance: 1, noiseVariance: 0.01),
        ]
        func objective(_ raw: [Double]) -> (Double, [Double])? {
            guard raw.allSatisfy({ $0.isFinite && abs($0) < 50 }) else { return nil }
            let h = Hyperparameters(raw: raw)
            guard let (l, gl) = try? logMarginalLikelihood(data, h), l.isFinite else { return nil }
            let (p, gp) = logPrior(h)
            let value = -(l + p)
            let gradient = zip(gl, gp).map { -($0 + $1) }
            guard value.isFinite, gradient.allSatisfy(\.isFinite) else { return nil }
            return (value, gradient)
        }
        var best = starts[0], bestValue = Double.infinity
        for start in starts {
            guard let (x, value) = minimize(objective, from: start.raw), value < bestValue else { continue }
            best = Hyperparameters(raw: x)
            bestValue = value
        }
        return best
    }

    /// L-BFGS (memory 10) with a backtracking (Armijo) line search; nil if `f` fails at `x0`.
    /// `f` returns nil where it cannot be evaluated (the line search then backs off).
    static func minimize(
        _ f: ([Double]) -> (Double, [Double])?, from x0: [Double], maxIterations: Int = 100, gradientTolerance: Double = 1e-3
    ) -> (x: [Double], value: Double)? {
        guard var (fx, g) = f(x0) else { return nil }
        var x = x0
        var ss: [[Double]] = [], ys: [[Double]] = []
        func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }
        for iteration in 0..<maxIterations {
            if g.map(abs).max()! < gradientTolerance { break }
            // Two-loop recursion: direction = −H·g.
            var q = g
            var alphas: [Double] = []
            for k in stride(from: ss.count - 1, through: 0, by: -1) {
                let a = dot(ss[k], q) / dot(ys[k], ss[k])
                alphas.append(a)
                for i in q.indices { q[i] -= a * ys[k][i] }
            }
            let gamma = ss.isEmpty ? 1 / max(1, g.map(abs).max()!) : dot(ss.last!, ys.last!) / dot(ys.last!, ys.last!)
            for i in q.indices { q[i] *= gamma }
            for k in 0..<ss.count {
                let b = dot(ys[k], q) / dot(ys[k], ss[k])
                let a = alphas[ss.count - 1 - k]
                for i in q.indices { q[i] += (a - b) * ss[k][i] }
            }
            var direction = q.map { -$0 }
            var slope = dot(direction, g)
            if !(slope < 0) {  // not a descent direction: steepest descent, memory cleared
                ss.removeAll()
                ys.removeAll()
                direction = g.map { -$0 / max(1, g.map(abs).max()!) }
                slope = dot(direction, g)
            }
            var step = 1.0, accepted: (x: [Double], fx: Double, g: [Double])?
            for _ in 0..<30 {
                let candidate = zip(x, direction).map { $0 + step * $1 }
                if let (fc, gc) = f(candidate), fc <= fx + 1e-4 * step * slope {
                    accepted = (candidate, fc, gc)
                    break
                }
                step *= 0.5
            }
            guard let (xn, fn, gn) = accepted else { break }
            let s = zip(xn, x).map { $0 - $1 }, y = zip(gn, g).map { $0 - $1 }
            if dot(s, y) > 1e-12 {
                ss.append(s)
                ys.append(y)
                if ss.count > 10 {
                    ss.removeFirst()
                    ys.removeFirst()
                }
            }
            let improvement = fx - fn
            (x, fx, g) = (xn, fn, gn)
            if improvement < 1e-9 * max(1, abs(fx)) && iteration > 0 { break }
        }
        return (x, fx)
    }

    // MARK: Posterior

    /// A GP conditioned on its data with fixed hyperparameters.
    public struct Model: Sendable {
        public let data: Data
        public let hyperparameters: Hyperparameters
        let factor: Cholesky
        let alpha: [Double]

        public init(_ data: Data, _ h: Hyperparameters) throws {
            self.data = data
            self.hyperparameters = h
            factor = try Cholesky(data.covariance(h).c, n: data.count)
            alpha = factor.solve(data.y)
        }

        /// Posterior mean and variance of the latent function at each point (variance ≥ 0).
        public func posterior(_ points: [[Double]]) -> [(mean: Double, variance: Double)] {
            let n = data.count, m = points.count
            guard m > 0 else { return [] }
            let h = hyperparameters
            var k = [Double](repeating: 0, count: m * n)
            for (r, p) in points.enumerated() {
                for j in 0..<n {
                    k[r * n + j] = h.signalVariance * GP.matern52(GP.scaledSquaredDistance(p, data.x[j], data.categorical, h.inverseSquaredLengthscales))
                }
            }
            var means = [Double](repeating: 0, count: m)
            for r in 0..<m {
                var s = 0.0
                for j in 0..<n { s += k[r * n + j] * alpha[j] }
                means[r] = s
            }
            factor.solveLower(rows: &k, count: m)
            return (0..<m).map { r in
                var q = 0.0
                for j in 0..<n { q += k[r * n + j] * k[r * n + j] }
                return (means[r], max(h.signalVariance - q, 0))
            }
        }

        /// The model with `points` added at its own posterior means (kriging believer).
        public func believing(_ points: [[Double]]) throws -> Model {
            guard !points.isEmpty else { return self }
            let means = posterior(points).map(\.mean)
            return try Model(Data(x: data.x + points, y: data.y + means, categorical: data.categorical), hyperparameters)
        }
    }

    // MARK: Acquisition

    /// log E[max(0, Z + z)] for Z ~ N(0, 1), accurate for every finite z: the closed form
    /// z·Φ(z) + φ(z) down to z = −25; below, log φ(z) plus the log of an asymptotic series that
    /// never subtracts nearly equal numbers (the closed form loses everything there).
    public static func standardLogEI(_ z: Double) -> Double {
        if z.isNaN { return -.infinity }
        if z >= -25 {
            return log(0.5 * z * erfc(-z / 2.0.squareRoot()) + exp(-0.5 * z * z) / (2 * Double.pi).squareRoot())
        }
        // z·Φ(z) + φ(z) = φ(z)·(1 − t·R(t)) with t = −z and R the Mills ratio Φ(−t)/φ(t);
        // 1 − t·R(t) = 1/t² − 3/t⁴ + 15/t⁶ − 105/t⁸ + 945/t¹⁰ − … (asymptotic, t > 25: the terms
        // shrink by ≥ 1/625·(2k + 1) each, so six carry double precision).
        let u = 1 / (z * z)
        let series = u * (1 + u * (-3 + u * (15 + u * (-105 + u * (945 - 10395 * u)))))
        return -0.5 * z * z - 0.5 * log(2 * Double.pi) + log(series)
    }

    /// log EI of a posterior N(mean, variance) over the incumbent `best` (maximisation).
    public static func logEI(mean: Double, variance: Double, best: Double) -> Double {
        let sigma = max(variance, 1e-12).squareRoot()
        return standardLogEI((mean - best) / sigma) + log(sigma)
    }

    /// One dimension of a GP's unit space.
    enum Axis: Sendable, Equatable {
        case continuous
        /// `count` integers, as cells of [0, 1].
        case integer(count: Int)
        /// Choices 0..<count (kept as indices).
        case categorical(count: Int)

        var isCategorical: Bool {
            if case .categorical = self { true } else { false }
        }

        /// The values the local search tries on a discrete axis (unit coordinates), if few enough.
        var grid: [Double]? {
            switch self {
            case .continuous: nil
            case .integer(let count): count <= 16 ? (0..<count).map { (Double($0) + 0.5) / Double(count) } : nil
            case .categorical(let count): (0..<count).map(Double.init)
            }
        }

        func random(_ rng: inout Xoshiro256) -> Double {
            switch self {
            case .continuous: rng.nextUnit()
            case .integer(let count): (Double(uniformBelow(UInt64(count), &rng)) + 0.5) / Double(count)
            case .categorical(let count): Double(uniformBelow(UInt64(count), &rng))
            }
        }
    }

    /// The point maximising log EI over `best` (see the type's comment).
    static func maximizeAcquisition(
        _ model: Model, axes: [Axis], best: Double, incumbent: [Double]?, settings: Settings, _ rng: inout Xoshiro256
    ) -> [Double] {
        func acquisition(_ points: [[Double]]) -> [Double] {
            model.posterior(points).map { logEI(mean: $0.mean, variance: $0.variance, best: best) }
        }
        let candidates = (0..<settings.candidates).map { _ in axes.map { $0.random(&rng) } }
        let values = acquisition(candidates)
        let order = candidates.indices.sorted { (values[$0], -$0) > (values[$1], -$1) }
        var starts = order.prefix(max(settings.localSearches - (incumbent == nil ? 0 : 1), 1)).map { (candidates[$0], values[$0]) }
        if let incumbent { starts.insert((incumbent, acquisition([incumbent])[0]), at: 0) }
        var bestPoint = starts[0].0, bestValue = -Double.infinity
        for (start, startValue) in starts {
            let (x, v) = localSearch(from: start, value: startValue, axes: axes, acquisition)
            if v > bestValue {
                bestPoint = x
                bestValue = v
            }
        }
        return bestPoint
    }

    /// Coordinate pattern search from `x` (see the type's comment); the end point and its value.
    static func localSearch(from x0: [Double], value v0: Double, axes: [Axis], _ f: ([[Double]]) -> [Double]) -> ([Double], Double) {
        var x = x0, value = v0.isNaN ? -.infinity : v0
        var h = 0.1
        for _ in 0..<200 {
            var improved = false
            for (d, axis) in axes.enumerated() {
                var trials: [Double]
                switch axis {
                case .continuous: trials = [min(x[d] + h, 1), max(x[d] - h, 0)]
                case .integer(let count) where count > 16:
                    let cell = 1 / Double(count)
                    trials = []
                    var k = 1
                    while k < count {
                        for s in [x[d] + Double(k) * cell, x[d] - Double(k) * cell] where s > 0 && s < 1 { trials.append(s) }
                        k *= 2
                    }
                default: trials = axis.grid ?? []
                }
                trials = trials.filter { $0 != x[d] }
                guard !trials.isEmpty else { continue }
                let points = trials.map { t -> [Double] in
                    var p = x
                    p[d] = t
                    return p
                }
                let values = f(points)
                if let i = values.indices.max(by: { values[$0] < values[$1] }), values[i] > value {
                    x = points[i]
                    value = values[i]
                    improved = true
                }
            }
            if !improved {
                if h < 1e-4 || !axes.contains(.continuous) { break }
                h /= 4
            }
        }
        return (x, value)
    }
}

/// One suggestion's GP work: the history as points and losses, and the GPs fitted for it (kept
/// across the attempts of one `Search.suggest` call, whose draws differ only in their stream).
final class GPPlanner {
    let space: SearchSpace
    let settings: GP.Settings
    /// Complete trials in trial order: the point and the value to minimise (nil: not finite).
    let complete: [(point: SearchSpace.Point, loss: Double?)]
    /// Running trials' points in trial order.
    let running: [SearchSpace.Point]
    private var fitted: [Int: Fitted?] = [:]

    struct Fitted {
        let model: GP.Model
        let axes: [GP.Axis]
        /// The best standardised value (maximised) and where it is.
        let best: Double
        let incumbent: [Double]
    }

    init(space: SearchSpace, history: [Search.Record], maximize: Bool, settings: GP.Settings) {
        self.space = space
        self.settings = settings
        var complete: [(SearchSpace.Point, Double?)] = [], running: [SearchSpace.Point] = []
        for r in history.sorted(by: { $0.trial.index < $1.trial.index }) {
            guard let b = space.branches.firstIndex(where: { $0.name == r.trial.branch }), let p = space.point(of: r.trial.config, branch: b) else { continue }
            switch r.outcome {
            case .complete(let v): complete.append((p, v.isFinite ? (maximize ? -v : v) : nil))
            case .running: running.append(p)
            case .pruned, .failed: continue
            }
        }
        self.complete = complete
        self.running = running
    }

    /// Still in the random start-up phase.
    var isStarting: Bool { complete.isEmpty || complete.count < settings.startupTrials }

    /// The coordinates a step models: the entry choice with the shared parameters (`branch` nil),
    /// or the shared parameters with entry `branch`'s own.
    func group(branch: Int?) -> [SearchSpace.Coordinate] {
        guard let b = branch else { return space.groups[0] }
        return space.shared.map { SearchSpace.Coordinate(kind: .shared($0), dimension: $0.distribution.dimension) }
            + space.branches[b].params.map { SearchSpace.Coordinate(kind: .own(branch: b, $0), dimension: $0.distribution.dimension) }
    }

    func suggest(_ rng: inout Xoshiro256) -> SearchSpace.Point {
        var point = space.draw(&rng)
        if space.branches.count > 1, let f = fit(branch: nil) {
            let x = GP.maximizeAcquisition(f.model, axes: f.axes, best: f.best, incumbent: f.incumbent, settings: settings, &rng)
            let group = group(branch: nil)
            var chosen = SearchSpace.Point(branch: 0, values: [:])
            space.assign(zip(group, x).map { Self.coordinate($1, $0.dimension) }, group, to: &chosen)
            // The shared values from this step; the entry's own drawn, unless its GP replaces them below.
            var values = chosen.values
            for p in space.branches[chosen.branch].params { values[p.key] = p.distribution.draw(&rng) }
            point = SearchSpace.Point(branch: chosen.branch, values: values)
        }
        let b = point.branch
        let group = group(branch: b)
        let entryTrials = complete.filter { $0.point.branch == b }.count
        if !group.isEmpty, entryTrials >= (space.branches.count > 1 ? 3 : 1), let f = fit(branch: b) {
            let x = GP.maximizeAcquisition(f.model, axes: f.axes, best: f.best, incumbent: f.incumbent, settings: settings, &rng)
            space.assign(zip(group, x).map { Self.coordinate($1, $0.dimension) }, group, to: &point)
        }
        return point
    }

    /// The GP of a step (cached), or nil without data.
    func fit(branch: Int?) -> Fitted? {
        let key = branch ?? -1
        if let f = fitted[key] { return f }
        let f = makeFit(branch: branch)
        fitted[key] = f
        return f
    }

    private func makeFit(branch: Int?) -> Fitted? {
        let group = group(branch: branch)
        let axes = group.map { Self.axis($0.dimension) }
        let belongs: (SearchSpace.Point) -> Bool = { p in branch.map { p.branch == $0 } ?? true }
        var rows: [(x: [Double], loss: Double?)] = []
        for (p, loss) in complete where belongs(p) {
            guard let c = space.coordinates(p, group) else { continue }
            rows.append((zip(group, c).map { Self.unit($1, $0.dimension) }, loss))
        }
        guard !rows.isEmpty else { return nil }
        if rows.count > settings.maxTrainingTrials {
            // The best half by value, then the latest of the rest; in trial order.
            let half = settings.maxTrainingTrials / 2
            let byValue = rows.indices.sorted { (rows[$0].loss ?? .infinity, $0) < (rows[$1].loss ?? .infinity, $1) }
            var keep = Set(byValue.prefix(half))
            for i in rows.indices.reversed() where keep.count < settings.maxTrainingTrials { keep.insert(i) }
            rows = rows.indices.filter(keep.contains).map { rows[$0] }
        }
        // Divergences at the worst finite value; standardised, signs flipped (the GP maximises).
        // Within an entry, positive values spanning more than three decades (a loss near its floor
        // next to runs that barely moved) are modelled by their logarithm, on which a stationary
        // kernel fits; the entry choice compares entries on the values themselves.
        let finite = rows.compactMap(\.loss)
        let worst = finite.max() ?? 0
        let logScale = branch != nil && (finite.min() ?? 0) > 0 && worst / finite.min()! > 1e3
        let losses: [Double] = rows.map { row in
            let v: Double = row.loss ?? worst
            return logScale ? Glibc.log(v) : v
        }
        let mean = losses.reduce(0, +) / Double(losses.count)
        let std = (losses.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(losses.count)).squareRoot()
        let y = losses.map { -($0 - mean) / max(std, 1e-10) }
        let data = GP.Data(x: rows.map(\.x), y: y, categorical: axes.map(\.isCategorical))
        let h = GP.fitHyperparameters(data)
        let fallback = GP.Hyperparameters(inverseSquaredLengthscales: Array(repeating: 1, count: axes.count), signalVariance: 1, noiseVariance: 1)
        guard var model = (try? GP.Model(data, h)) ?? (try? GP.Model(data, fallback)) else { return nil }
        let believers = running.filter(belongs).suffix(settings.maxRunningTrials).compactMap { p in
            space.coordinates(p, group).map { c in zip(group, c).map { Self.unit($1, $0.dimension) } }
        }
        if let believing = try? model.believing(believers) { model = believing }
        let bestIndex = y.indices.max { y[$0] < y[$1] }!
        return Fitted(model: model, axes: axes, best: y[bestIndex], incumbent: data.x[bestIndex])
    }

    static func axis(_ d: TPE.Dimension) -> GP.Axis {
        switch d {
        case .continuous: .continuous
        case .integer(let lo, let hi): .integer(count: Int(hi - lo) + 1)
        case .categorical(let count): .categorical(count: count)
        }
    }

    /// A coordinate (as `SearchSpace.coordinates` gives it) in the unit space.
    static func unit(_ x: Double, _ d: TPE.Dimension) -> Double {
        switch d {
        case .continuous(let lo, let hi, let isLog):
            guard hi > lo else { return 0.5 }
            return isLog ? (log(x) - log(lo)) / (log(hi) - log(lo)) : (x - lo) / (hi - lo)
        case .integer(let lo, let hi): return (x - lo + 0.5) / (hi - lo + 1)
        case .categorical: return x
        }
    }

    /// A unit-space value back as a coordinate (integers and choices rounded, inside the range).
    static func coordinate(_ u: Double, _ d: TPE.Dimension) -> Double {
        switch d {
        case .continuous(let lo, let hi, let isLog):
            let v = isLog ? exp(log(lo) + u * (log(hi) - log(lo))) : lo + u * (hi - lo)
            return min(max(v, lo), hi)
        case .integer(let lo, let hi): return min(max(lo + (u * (hi - lo + 1)).rounded(.down), lo), hi)
        case .categorical(let count): return min(max(u.rounded(), 0), Double(count - 1))
        }
    }
}
