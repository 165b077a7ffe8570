import Linalg

/// How Adafactor factors a tensor of rank ≥ 2: `batch` independent `rows × cols` matrices (the
/// last two dimensions), with row statistics of shape `shape.dropLast()` and column statistics of
/// shape `shape[..<rank−2] + [cols]`, as transformers' and the documents' code keep them.
struct FactoredLayout {
    let batch: Int, rows: Int, cols: Int
    let rowShape: [Int], colShape: [Int]

    /// Nil for rank < 2 (those keep a full second moment).
    init?(_ shape: [Int]) {
        guard shape.count >= 2 else { return nil }
        rows = shape[shape.count - 2]
        cols = shape[shape.count - 1]
        batch = shape.dropLast(2).reduce(1, *)
        rowShape = Array(shape.dropLast())
        colShape = Array(shape.dropLast(2)) + [cols]
    }
}

/// Adafactor's second-moment statistics, per tensor, and the scratch of its update.
struct AdafactorStatistics<Scalar: BLASScalar> {
    /// One tensor's statistics: row and column statistics (rank ≥ 2), or the full second moment.
    struct Factors: ParameterState {
        var layout: FactoredLayout?
        var row: Tensor<Scalar>?, col: Tensor<Scalar>?, full: Tensor<Scalar>?
        static var slots: [StateSlot<Self>] { [.tensor("exp_avg_sq_row", \.row), .tensor("exp_avg_sq_col", \.col), .tensor("exp_avg_sq", \.full)] }

        init(_ shape: [Int]) {
            layout = FactoredLayout(shape)
            if let layout {
                (row, col) = (Tensor(zeros: layout.rowShape), Tensor(zeros: layout.colShape))
            } else {
                full = Tensor(zeros: shape)
            }
        }
    }
    var factors = ParameterStates<Factors>()
    /// Per-row and per-column factors of the tensor in hand, and column sums (scratch).
    var rowScratch: [Scalar] = []
    var colScratch: [Scalar] = []
    var sumScratch: [Scalar] = []

    init() {}

    init(_ factors: ParameterStates<Factors>) {
        self.factors = factors
        let layouts = factors.states.map { $0!.layout }
        rowScratch = [Scalar](repeating: 0, count: layouts.map { $0.map { $0.batch * $0.rows } ?? 0 }.max() ?? 0)
        colScratch = [Scalar](repeating: 0, count: layouts.map { $0.map { $0.batch * $0.cols } ?? 0 }.max() ?? 0)
        sumScratch = [Scalar](repeating: 0, count: layouts.map { $0?.cols ?? 0 }.max() ?? 0)
    }

    /// Zero statistics for every parameter.
    init(_ parameters: Parameters<Scalar>) { self.init(ParameterStates(parameters, Factors.init)) }

    init(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws {
        self.init(try ParameterStates(state, parameters: parameters, Factors.init))
    }

    /// Updates the factored statistics of one `rows × cols` block from `q(g)` (g² + ε₁ for
    /// transformers, g² for the documents) with `stat ← stat·ρ + (1 − ρ)·mean(q)`:
    /// row means over the last dimension, column means over the rows.
    @inline(__always)
    static func accumulate(
        g: UnsafePointer<Scalar>, rows: Int, cols: Int, rowStat: UnsafeMutablePointer<Scalar>, colStat: UnsafeMutablePointer<Scalar>,
        colSums: UnsafeMutablePointer<Scalar>, rho: Scalar, oneMinusRho: Scalar, epsilon: Scalar
    ) {
        colSums.update(repeating: 0, count: cols)
        let ev = SIMD8<Scalar>(repeating: epsilon)
        let rowCount = Scalar(rows), colCount = Scalar(cols)
        for r in 0..<rows {
            let row = g + r * cols
            var acc = SIMD8<Scalar>(repeating: 0)
            var c = 0
            while c + 8 <= cols {
                let x = loadLanes(row, c)
                let q = x * x + ev
                acc += q
                storeLanes(loadLanes(colSums, c) + q, colSums, c)
                c += 8
            }
            var sum = acc.sum()
            while c < cols {
                let q = row[c] * row[c] + epsilon
                sum += q
                colSums[c] += q
                c += 1
            }
            rowStat[r] = rowStat[r] * rho + oneMinusRho * (sum / colCount)
        }
        for c in 0..<cols { colStat[c] = colStat[c] * rho + oneMinusRho * (colSums[c] / rowCount) }
    }
}

/// Adafactor (Shazeer & Stern 2018) exactly as Hugging Face transformers'
/// `transformers.optimization.Adafactor` (itself fairseq's):
///
///     ρ_t = 1 − t^decay_rate
///     rank ≥ 2:  R ← ρ_t·R + (1 − ρ_t)·mean_cols(g² + ε₁);  C ← ρ_t·C + (1 − ρ_t)·mean_rows(g² + ε₁)
///                u = g · 1/√(R / mean(R)) · 1/√C                (outer product of the factors)
///     rank < 2:  v ← ρ_t·v + (1 − ρ_t)·(g² + ε₁);  u = g/√v
///     u ← u / max(1, RMS(u)/clip_threshold)
///     α_t = (relative_step ? min(warmup_init ? 1e-6·t : 1e-2, 1/√t) : lr) · (scale_parameter ? max(ε₂, RMS(p)) : 1)
///     u ← α_t·u;   m ← β₁·m + (1 − β₁)·u,  u = m           (only when beta1 is given)
///     p ← p − λ·α_t·p − u
///
/// RMS(p) is taken before the step. With `relative_step` the learning rate (and any schedule of
/// it) is ignored, as in transformers, where `lr` must then be None.
public final class Adafactor<Scalar: BLASScalar>: Optimizer {
    public let name = "adafactor"
    public var learningRate: Double
    public let relativeStep: Bool
    public let warmupInit: Bool
    public let scaleParameter: Bool
    public let decayRate: Double
    public let clipThreshold: Double
    public let epsilon1: Double
    public let epsilon2: Double
    public let beta1: Double?
    public let weightDecay: Double
    public private(set) var step = 0
    var statistics = AdafactorStatistics<Scalar>()
    /// The first moment of the update, when beta1 is given.
    struct FirstMoment: ParameterState {
        var m: Tensor<Scalar>
        static var slots: [StateSlot<Self>] { [.tensor("exp_avg", \.m)] }
    }
    var firstMoments = ParameterStates<FirstMoment>()

    public init(
        learningRate: Double = 1e-3, relativeStep: Bool = true, warmupInit: Bool = false, scaleParameter: Bool = true, decayRate: Double = -0.8,
        clipThreshold: Double = 1, epsilon1: Double = 1e-30, epsilon2: Double = 1e-3, beta1: Double? = nil, weightDecay: Double = 0
    ) {
        self.learningRate = learningRate
        self.relativeStep = relativeStep
        self.warmupInit = warmupInit
        self.scaleParameter = scaleParameter
        self.decayRate = decayRate
        self.clipThreshold = clipThreshold
        self.epsilon1 = epsilon1
        self.epsilon2 = epsilon2
        self.beta1 = beta1
        self.weightDecay = weightDecay
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func update(_ parameters: Parameters<Scalar>) {
        if statistics.factors.count != parameters.count {
            statistics = AdafactorStatistics(parameters)
            firstMoments = beta1 == nil ? ParameterStates() : ParameterStates(parameters) { FirstMoment(m: Tensor(zeros: $0)) }
        }
        step += 1
        // Work on a local copy (moved out, so updated in place): nested in-place accesses to
        // different statistics of a class property would overlap.
        var stats = AdafactorStatistics<Scalar>()
        swap(&stats, &statistics)
        defer { swap(&stats, &statistics) }
        let t = Double(step)
        let beta2t = 1 - Double.pow(t, decayRate)
        let rho = Scalar(beta2t), oneMinusRho = Scalar(1 - beta2t), eps1 = Scalar(epsilon1)
        let relativeStepSize = relativeStep ? Swift.min(warmupInit ? 1e-6 * t : 1e-2, 1 / t.squareRoot()) : learningRate
        let b1 = Scalar(beta1 ?? 0), w1 = Scalar(1 - (beta1 ?? 0)), usesMomentum = beta1 != nil
        for i in 0..<parameters.count {
            let n = parameters.values[i].count
            if n == 0 { continue }
            let parameterRMS = parameters.values[i].storage.withUnsafeBufferPointer { wideSumOfSquares($0).squareRoot() } / Double(n).squareRoot()
            let alpha = (scaleParameter ? Swift.max(epsilon2, parameterRMS) : 1) * relativeStepSize
            let a = Scalar(alpha), decay = Scalar(-weightDecay * alpha), decays = weightDecay != 0
            let layout = stats.factors[i]!.layout
            parameters.gradients[i].storage.withUnsafeBufferPointer { gBuffer in
                let g = gBuffer.baseAddress!
                // 1. Statistics, the factors of the update, and the sum of squares of the
                //    unclipped update u (recomputed in pass 2 rather than stored).
                var sumOfSquares = 0.0
                if let layout {
                    let (rows, cols) = (layout.rows, layout.cols)
                    stats.factors.with(i) { f in
                        f.row!.storage.withUnsafeMutableBufferPointer { rowStat in
                            f.col!.storage.withUnsafeMutableBufferPointer { colStat in
                                stats.rowScratch.withUnsafeMutableBufferPointer { rowFactor in
                                    stats.colScratch.withUnsafeMutableBufferPointer { colFactor in
                                        stats.sumScratch.withUnsafeMutableBufferPointer { colSums in
                                            for b in 0..<layout.batch {
                                                let rs = rowStat.baseAddress! + b * rows, cs = colStat.baseAddress! + b * cols
                                                AdafactorStatistics.accumulate(
                                                    g: g + b * rows * cols, rows: rows, cols: cols, rowStat: rs, colStat: cs, colSums: colSums.baseAddress!,
                                                    rho: rho, oneMinusRho: oneMinusRho, epsilon: eps1)
                                                var rowTotal: Scalar = 0
                                                for r in 0..<rows { rowTotal += rs[r] }
                                                let rowMean = rowTotal / Scalar(rows)
                                                for r in 0..<rows { rowFactor[b * rows + r] = 1 / (rs[r] / rowMean).squareRoot() }
                                                for c in 0..<cols { colFactor[b * cols + c] = 1 / cs[c].squareRoot() }
                                            }
                                            let cf = UnsafePointer(colFactor.baseAddress!)
                                            for b in 0..<layout.batch {
                                                for r in 0..<rows {
                                                    let fr = rowFactor[b * rows + r]
                                                    let gr = g + (b * rows + r) * cols, cfb = cf + b * cols
                                                    sumOfSquares += wideSumOfSquares(cols) { j, k in fr * loadLanes(cfb, j, k) * loadLanes(gr, j, k) }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                } else {
                    stats.factors.with(i) { f in
                        f.full!.storage.withUnsafeMutableBufferPointer { v in
                            let v = v.baseAddress!
                            forEachLanes(n) { j, k in
                                let gj = loadLanes(g, j, k)
                                storeLanes(loadLanes(v, j, k) * rho + oneMinusRho * (gj * gj + eps1), v, j, k)
                            }
                            sumOfSquares = wideSumOfSquares(n) { j, k in 1 / squareRootLanes(loadLanes(v, j, k)) * loadLanes(g, j, k) }
                        }
                    }
                }
                // 2. Clip, scale, momentum, decay, step.
                let clip = Scalar(Swift.max((sumOfSquares.squareRoot() / Double(n).squareRoot()) / clipThreshold, 1))
                parameters.values[i].storage.withUnsafeMutableBufferPointer { p in
                    firstMoments.withStorage(i, \.m) { m in
                        let p = p.baseAddress!
                        @inline(__always) func apply(_ j: Int, _ k: Int, _ u0: SIMD8<Scalar>) {
                            var u = u0 / clip * a
                            if usesMomentum {
                                u = loadLanes(m!, j, k) * b1 + w1 * u
                                storeLanes(u, m!, j, k)
                            }
                            var pj = loadLanes(p, j, k)
                            if decays { pj = pj + decay * pj }
                            storeLanes(pj - u, p, j, k)
                        }
                        if let layout {
                            stats.rowScratch.withUnsafeBufferPointer { rowFactor in
                                stats.colScratch.withUnsafeBufferPointer { colFactor in
                                    let (rows, cols) = (layout.rows, layout.cols)
                                    for b in 0..<layout.batch {
                                        let cf = colFactor.baseAddress! + b * cols
                                        for r in 0..<rows {
                                            let fr = rowFactor[b * rows + r], base = (b * rows + r) * cols
                                            forEachLanes(cols) { c, k in apply(base + c, k, fr * loadLanes(cf, c, k) * loadLanes(g, base + c, k)) }
                                        }
                                    }
                                }
                            }
                        } else {
                            stats.factors.with(i) { f in
                                f.full!.storage.withUnsafeBufferPointer { v in
                                    let v = v.baseAddress!
                                    forEachLanes(n) { j, k in apply(j, k, 1 / squareRootLanes(loadLanes(v, j, k)) * loadLanes(g, j, k)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    public func exportState(names: [String]) -> OptimizerState<Scalar> {
        var state = statistics.factors.exported(step: step, names: names)
        firstMoments.export(names: names, into: &state)
        return state
    }

    public func importState(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws {
        step = try state.integer("step")
        if step == 0 { (statistics, firstMoments) = (AdafactorStatistics(), ParameterStates()); return }
        statistics = try AdafactorStatistics(state, parameters: parameters)
        firstMoments = beta1 == nil ? ParameterStates() : try ParameterStates(state, parameters: parameters) { FirstMoment(m: Tensor(zeros: $0)) }
    }
}

/// The documents' Adafactor (`AdafactorSolution`, seed 000, part 2), step for step:
///
///     p ← p·(1 − η·λ)    (p·(1 − λ) with a relative step: the document's `lr` is None)
///     ρ_t = min(1 − t^decay_rate, 0.999)
///     rank ≥ 2:  R ← ρ_t·R + (1 − ρ_t)·mean_cols(g²);  C ← ρ_t·C + (1 − ρ_t)·mean_rows(g²)
///                V̂ = max((R / mean(R)) ⊗ C, ε₁)
///     rank < 2:  v ← ρ_t·v + (1 − ρ_t)·g²;  V̂ = max(v, ε₁)
///     u = g / √V̂;   u ← u·clip/RMS(u) when RMS(u) > clip_threshold
///     α = relative_step ? max(ε₂, RMS(p))·max(1e-3, 1/√t) : lr
///     p ← p − α·u
///
/// The document's `scale_parameter` only guards against `lr=None` without it, so a relative step
/// here always scales by RMS(p) (taken after the decay), as the document does; no first moment.
public final class SimpleAdafactor<Scalar: BLASScalar>: Optimizer {
    public let name = "adafactor-simple"
    public var learningRate: Double
    public let relativeStep: Bool
    public let decayRate: Double
    public let clipThreshold: Double
    public let epsilon1: Double
    public let epsilon2: Double
    public let weightDecay: Double
    public private(set) var step = 0
    var statistics = AdafactorStatistics<Scalar>()

    public init(
        learningRate: Double = 1e-2, relativeStep: Bool = true, decayRate: Double = -0.8, clipThreshold: Double = 1, epsilon1: Double = 1e-30,
        epsilon2: Double = 1e-3, weightDecay: Double = 0
    ) {
        self.learningRate = learningRate
        self.relativeStep = relativeStep
        self.decayRate = decayRate
        self.clipThreshold = clipThreshold
        self.epsilon1 = epsilon1
        self.epsilon2 = epsilon2
        self.weightDecay = weightDecay
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func update(_ parameters: Parameters<Scalar>) {
        if statistics.factors.count != parameters.count { statistics = AdafactorStatistics(parameters) }
        step += 1
        // Work on a local copy (moved out, so updated in place): nested in-place accesses to
        // different statistics of a class property would overlap.
        var stats = AdafactorStatistics<Scalar>()
        swap(&stats, &statistics)
        defer { swap(&stats, &statistics) }
        let t = Double(step)
        let rhoValue = Swift.min(1 - Double.pow(t, decayRate), 0.999)
        let rho = Scalar(rhoValue), oneMinusRho = Scalar(1 - rhoValue), eps1 = Scalar(epsilon1)
        let decays = weightDecay != 0
        let decay = Scalar(relativeStep ? 1 - weightDecay : 1 - learningRate * weightDecay)
        let timeScale = Swift.max(1e-3, 1 / t.squareRoot())
        /// u = g / √max(x, ε₁), NaN-preserving like torch's clamp.
        @inline(__always) func scaled(_ g: SIMD8<Scalar>, _ x: SIMD8<Scalar>) -> SIMD8<Scalar> { g / squareRootLanes(atLeastLanes(x, eps1)) }
        for i in 0..<parameters.count {
            let n = parameters.values[i].count
            if n == 0 { continue }
            // The document decays p first and takes RMS(p) after; the decay itself is folded into
            // the final pass (the same products, so the same values).
            var alpha = learningRate
            if relativeStep {
                let sum = parameters.values[i].storage.withUnsafeBufferPointer { p in
                    let p = p.baseAddress!
                    return wideSumOfSquares(n) { j, k in decays ? loadLanes(p, j, k) * decay : loadLanes(p, j, k) }
                }
                alpha = Swift.max(epsilon2, sum.squareRoot() / Double(n).squareRoot()) * timeScale
            }
            let negAlpha = Scalar(-alpha)
            let layout = stats.factors[i]!.layout
            parameters.gradients[i].storage.withUnsafeBufferPointer { gBuffer in
                let g = gBuffer.baseAddress!
                // 1. Statistics, and the sum of squares of the unclipped update u.
                var sumOfSquares = 0.0
                if let layout {
                    let (rows, cols) = (layout.rows, layout.cols)
                    stats.factors.with(i) { f in
                        f.row!.storage.withUnsafeMutableBufferPointer { rowStat in
                            f.col!.storage.withUnsafeMutableBufferPointer { colStat in
                                stats.rowScratch.withUnsafeMutableBufferPointer { rowFactor in
                                    stats.sumScratch.withUnsafeMutableBufferPointer { colSums in
                                        for b in 0..<layout.batch {
                                            let rs = rowStat.baseAddress! + b * rows, cs = colStat.baseAddress! + b * cols
                                            AdafactorStatistics.accumulate(
                                                g: g + b * rows * cols, rows: rows, cols: cols, rowStat: rs, colStat: cs, colSums: colSums.baseAddress!,
                                                rho: rho, oneMinusRho: oneMinusRho, epsilon: 0)
                                            var rowTotal: Scalar = 0
                                            for r in 0..<rows { rowTotal += rs[r] }
                                            let rowMean = rowTotal / Scalar(rows)
                                            for r in 0..<rows {
                                                let fr = rs[r] / rowMean
                                                rowFactor[b * rows + r] = fr
                                                let gr = g + (b * rows + r) * cols
                                                sumOfSquares += wideSumOfSquares(cols) { j, k in scaled(loadLanes(gr, j, k), fr * loadLanes(cs, j, k)) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                } else {
                    stats.factors.with(i) { f in
                        f.full!.storage.withUnsafeMutableBufferPointer { v in
                            let v = v.baseAddress!
                            forEachLanes(n) { j, k in
                                let gj = loadLanes(g, j, k)
                                storeLanes(loadLanes(v, j, k) * rho + oneMinusRho * gj * gj, v, j, k)
                            }
                            sumOfSquares = wideSumOfSquares(n) { j, k in scaled(loadLanes(g, j, k), loadLanes(v, j, k)) }
                        }
                    }
                }
                // 2. Clip, decay, step.
                let rms = sumOfSquares.squareRoot() / Double(n).squareRoot()
                let clips = rms > clipThreshold, clip = Scalar(clipThreshold / rms)
                parameters.values[i].storage.withUnsafeMutableBufferPointer { p in
                    let p = p.baseAddress!
                    @inline(__always) func apply(_ j: Int, _ k: Int, _ u0: SIMD8<Scalar>) {
                        let u = clips ? u0 * clip : u0
                        let p0 = loadLanes(p, j, k)
                        storeLanes((decays ? p0 * decay : p0) + negAlpha * u, p, j, k)
                    }
                    if let layout {
                        stats.rowScratch.withUnsafeBufferPointer { rowFactor in
                            stats.factors.with(i) { f in
                                f.col!.storage.withUnsafeBufferPointer { colStat in
                                    let (rows, cols) = (layout.rows, layout.cols)
                                    for b in 0..<layout.batch {
                                        let cs = colStat.baseAddress! + b * cols
                                        for r in 0..<rows {
                                            let fr = rowFactor[b * rows + r], base = (b * rows + r) * cols
                                            forEachLanes(cols) { c, k in apply(base + c, k, scaled(loadLanes(g, base + c, k), fr * loadLanes(cs, c, k))) }
                                        }
                                    }
                                }
                            }
                        }
                    } else {
                        stats.factors.with(i) { f in
                            f.full!.storage.withUnsafeBufferPointer { v in
                                let v = v.baseAddress!
                                forEachLanes(n) { j, k in apply(j, k, scaled(loadLanes(g, j, k), loadLanes(v, j, k))) }
                            }
                        }
                    }
                }
            }
        }
    }

    public func exportState(names: [String]) -> OptimizerState<Scalar> {
        statistics.factors.exported(step: step, names: names)
    }

    public func importState(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws {
        step = try state.integer("step")
        statistics = step == 0 ? AdafactorStatistics() : try AdafactorStatistics(state, parameters: parameters)
    }
}

/// `relative_step`: true unless `lr` is given (transformers' `lr=None`, the document's likewise);
/// giving both is an error, as in transformers, and so is neither.
func adafactorRelativeStep(_ config: TrialConfig) throws -> Bool {
    let relative = try config.bool(adafactorCommonKeys["relative_step"], otherwise: config.values["lr"] == nil)
    if relative && config.values["lr"] != nil {
        throw config.error("relative_step", "a relative step ignores lr: give lr or relative_step: true, not both")
    }
    if !relative && config.values["lr"] == nil { throw config.error("relative_step", "relative_step: false needs an lr") }
    return relative
}

/// Checks shared by both Adafactors.
func validateAdafactor(_ config: TrialConfig) throws {
    _ = try adafactorRelativeStep(config)
    for key in ["eps", "eps2", "weight_decay"] { try requireNonNegative(config, key) }
    let decayRate = try config.double(adafactorCommonKeys["decay_rate"])
    guard decayRate <= 0, decayRate.isFinite else { throw config.error("decay_rate", "must be ≤ 0 (ρ_t = 1 − t^decay_rate), got \(decayRate)") }
    let clip = try config.double(adafactorCommonKeys["clip_threshold"])
    guard clip > 0, clip.isFinite else { throw config.error("clip_threshold", "must be a positive number, got \(clip)") }
}

/// The keys both Adafactors share (`relative_step`'s help differs and is added by each).
let adafactorCommonKeys: [TrialSchema.Key] = adafactorKeys(relativeStep: "")

func adafactorKeys(relativeStep: String) -> [TrialSchema.Key] {
    [
        TrialSchema.Key("relative_step", .boolean, default: nil, note: "true unless lr is given", help: relativeStep),
        .number("decay_rate", -0.8, "second-moment decay ρ_t = 1 − t^decay_rate"),
        .number("clip_threshold", 1, "largest RMS of the update before scaling"),
        .number("eps", 1e-30, .nonNegative, "ε₁, regularises the squared gradient"),
        .number("eps2", 1e-3, .nonNegative, "ε₂, floor of the parameter RMS in the relative step"),
    ]
}

enum AdafactorDefinition: OptimizerDefinition {
    static let name = "adafactor"
    static let keys: [TrialSchema.Key] =
        [.lr(1e-3)] + adafactorKeys(relativeStep: "ignore lr; step min(1e-2, 1/√t)") + [
            .flag("warmup_init", false, "relative step min(1e-6·t, 1/√t)"),
            .flag("scale_parameter", true, "multiply the step by max(eps2, RMS(p))"),
            .number("beta1", nil, .unit, note: "unset: no first moment", "first-moment decay of the update"),
            .number("weight_decay", 0, "p ← p − weight_decay·α_t·p, α_t the step size"),
        ]

    static func validate(_ config: TrialConfig) throws {
        try validateAdafactor(config)
        if try config.bool(keys["warmup_init"]), !(try adafactorRelativeStep(config)) {
            throw config.error("warmup_init", "warmup_init needs relative_step (no lr)")
        }
        _ = try config.bool(keys["scale_parameter"])
    }

    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> {
        Adafactor<T>(
            learningRate: try config.double(keys["lr"]), relativeStep: try adafactorRelativeStep(config),
            warmupInit: try config.bool(keys["warmup_init"]), scaleParameter: try config.bool(keys["scale_parameter"]),
            decayRate: try config.double(keys["decay_rate"]), clipThreshold: try config.double(keys["clip_threshold"]),
            epsilon1: try config.double(keys["eps"]), epsilon2: try config.double(keys["eps2"]),
            beta1: try config.optionalDouble(keys["beta1"]), weightDecay: try config.double(keys["weight_decay"]))
    }
}

enum SimpleAdafactorDefinition: OptimizerDefinition {
    static let name = "adafactor-simple"
    static let keys: [TrialSchema.Key] =
        [.lr(1e-2)] + adafactorKeys(relativeStep: "ignore lr; step max(eps2, RMS(p))·max(1e-3, 1/√t)") + [
            .number("weight_decay", 0, "p ← p·(1 − lr·weight_decay), or p·(1 − weight_decay) with a relative step")
        ]

    static func validate(_ config: TrialConfig) throws { try validateAdafactor(config) }

    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> {
        SimpleAdafactor<T>(
            learningRate: try config.double(keys["lr"]), relativeStep: try adafactorRelativeStep(config),
            decayRate: try config.double(keys["decay_rate"]), clipThreshold: try config.double(keys["clip_threshold"]),
            epsilon1: try config.double(keys["eps"]), epsilon2: try config.double(keys["eps2"]),
            weightDecay: try config.double(keys["weight_decay"]))
    }
}
