import Linalg

/// The layer-wise trust ratio of LAMB and LARS, as optax's `scale_by_trust_ratio`:
/// `c·‖p‖ / (‖u‖ + ε)`, and 1 when either norm is zero (a zero parameter, such as a
/// zero-initialised layer, would otherwise never move, and a zero update would divide 0 by 0).
/// Norms and the ratio are computed in Double, then applied in the tensor's precision.
@inline(__always)
func trustRatio(parameterNorm: Double, updateNorm: Double, coefficient: Double, epsilon: Double) -> Double {
    parameterNorm == 0 || updateNorm == 0 ? 1 : coefficient * parameterNorm / (updateNorm + epsilon)
}

/// LAMB (You et al. 2020) as optax's `lamb` — `scale_by_adam`, `add_decayed_weights`,
/// `scale_by_trust_ratio`, `scale_by_learning_rate` — per tensor:
///
///     m ← (1 − β₁)·g + β₁·m;  v ← (1 − β₂)·g² + β₂·v
///     u = (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε) + λ·p
///     p ← p − η · r·u,   r = ‖p‖ / ‖u‖  (1 if either is zero)
///
/// With `exclude1D` (the default here; optax's `lamb` masks nothing unless given a `mask`) tensors
/// of rank ≤ 1 — biases — take neither the weight decay nor the trust ratio (r = 1): the same chain
/// with optax's weight-decay mask and `optax.masked` around the trust ratio.
public final class LAMB<Scalar: BLASScalar>: Optimizer {
    public let name = "lamb"
    public var learningRate: Double
    public let beta1: Double
    public let beta2: Double
    public let epsilon: Double
    public let weightDecay: Double
    public let exclude1D: Bool
    public private(set) var step = 0

    struct State: ParameterState {
        var m: Tensor<Scalar>, v: Tensor<Scalar>
        static var slots: [StateSlot<Self>] { [.tensor("exp_avg", \.m), .tensor("exp_avg_sq", \.v)] }
        init(_ shape: [Int]) { (m, v) = (Tensor(zeros: shape), Tensor(zeros: shape)) }
    }
    var states = ParameterStates<State>()
    /// The un-scaled update of the tensor in hand, reused across tensors and steps.
    var scratch: [Scalar] = []

    public init(learningRate: Double = 1e-3, beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double = 1e-6, weightDecay: Double = 0, exclude1D: Bool = true) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.exclude1D = exclude1D
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func update(_ parameters: Parameters<Scalar>) {
        if states.count != parameters.count { states = ParameterStates(parameters, State.init) }
        let largest = parameters.values.map(\.count).max() ?? 0
        if scratch.count < largest { scratch = [Scalar](repeating: 0, count: largest) }
        step += 1
        let t = Double(step)
        let bias1 = Scalar(1 - Double.pow(beta1, t)), bias2 = Scalar(1 - Double.pow(beta2, t))
        let b1 = Scalar(beta1), w1 = Scalar(1 - beta1), b2 = Scalar(beta2), w2 = Scalar(1 - beta2), eps = Scalar(epsilon)
        let wd = Scalar(weightDecay), negLR = Scalar(-learningRate)
        states.forEach(parameters) { shape, g, p, n, s in
            let adapted = !(exclude1D && shape.count <= 1)
            let decays = adapted && weightDecay != 0
            s.m.storage.withUnsafeMutableBufferPointer { m in
                s.v.storage.withUnsafeMutableBufferPointer { v in
                    scratch.withUnsafeMutableBufferPointer { u in
                        let (m, v, u) = (m.baseAddress!, v.baseAddress!, u.baseAddress!)
                        forEachLanes(n) { j, k in
                            let gj = loadLanes(g, j, k)
                            let mj = w1 * gj + b1 * loadLanes(m, j, k)
                            let vj = w2 * (gj * gj) + b2 * loadLanes(v, j, k)
                            storeLanes(mj, m, j, k)
                            storeLanes(vj, v, j, k)
                            let uj = (mj / bias1) / (squareRootLanes(vj / bias2) + eps)
                            storeLanes(decays ? uj + wd * loadLanes(p, j, k) : uj, u, j, k)
                        }
                        trustRatioStep(p, n, adapted: adapted, coefficient: 1, epsilon: 0, negLR: negLR, trace: nil) { j, k in loadLanes(u, j, k) }
                    }
                }
            }
        }
    }

    public func exportState(names: [String]) -> OptimizerState<Scalar> { states.exported(step: step, names: names) }

    public func importState(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws {
        step = try state.integer("step")
        states = step == 0 ? ParameterStates() : try ParameterStates(state, parameters: parameters, State.init)
    }
}

/// The last stage of LAMB and LARS over one tensor, from its update u (lanes `u(j, k)`):
///
///     s = (u·r)·(−η),   r = c·‖p‖ / (‖u‖ + ε)  (`trustRatio`; 1 unless `adapted`)
///     p ← p + s                                             (no trace: LAMB, LARS without momentum)
///     b ← s + μ·b;  p ← p + b   or   p ← p + (s + μ·b)       (LARS's trace b, Nesterov)
@inline(__always)
func trustRatioStep<T: BLASScalar>(
    _ p: UnsafeMutablePointer<T>, _ n: Int, adapted: Bool, coefficient: Double, epsilon: Double, negLR: T,
    trace: UnsafeMutablePointer<T>?, momentum mu: T = 0, nesterov: Bool = false, _ u: (_ j: Int, _ k: Int) -> SIMD8<T>
) {
    var ratio: T = 1
    if adapted {
        let pn = wideSumOfSquares(UnsafeBufferPointer(start: p, count: n)).squareRoot()
        let un = wideSumOfSquares(n, u).squareRoot()
        ratio = T(trustRatio(parameterNorm: pn, updateNorm: un, coefficient: coefficient, epsilon: epsilon))
    }
    forEachLanes(n) { j, k in
        let scaled = (u(j, k) * ratio) * negLR
        let pj = loadLanes(p, j, k)
        if let b = trace {
            let bj = scaled + mu * loadLanes(b, j, k)
            storeLanes(bj, b, j, k)
            storeLanes(pj + (nesterov ? scaled + mu * bj : bj), p, j, k)
        } else {
            storeLanes(pj + scaled, p, j, k)
        }
    }
}

/// LARS (You et al. 2017) as optax's `lars` — `add_decayed_weights`, masked
/// `scale_by_trust_ratio`, `scale_by_learning_rate`, `trace` — per tensor:
///
///     u = g + λ·p
///     u ← u · c‖p‖ / (‖u‖ + ε)              (1 if either norm is zero)
///     b ← −η·u + μ·b                        (optax's trace holds learning-rate-scaled steps)
///     p ← p + b          or   p ← p + (−η·u + μ·b)   (Nesterov)
///
/// With `exclude1D` (default) tensors of rank ≤ 1 take neither weight decay nor the trust ratio,
/// as optax's `weight_decay_mask` / `trust_ratio_mask`. Because the trace stores steps already
/// multiplied by η, a changing learning rate affects only new contributions, as in optax.
public final class LARS<Scalar: BLASScalar>: Optimizer {
    public let name = "lars"
    public var learningRate: Double
    public let momentum: Double
    public let nesterov: Bool
    public let weightDecay: Double
    public let trustCoefficient: Double
    public let epsilon: Double
    public let exclude1D: Bool
    public private(set) var step = 0
    /// optax's `trace`, absent when μ = 0 (it would only ever hold the current step).
    struct State: ParameterState {
        var trace: Tensor<Scalar>
        static var slots: [StateSlot<Self>] { [.tensor("trace", \.trace)] }
    }
    var states = ParameterStates<State>()

    public init(learningRate: Double = 1, momentum: Double = 0.9, nesterov: Bool = false, weightDecay: Double = 0, trustCoefficient: Double = 1e-3, epsilon: Double = 0, exclude1D: Bool = true) {
        self.learningRate = learningRate
        self.momentum = momentum
        self.nesterov = nesterov
        self.weightDecay = weightDecay
        self.trustCoefficient = trustCoefficient
        self.epsilon = epsilon
        self.exclude1D = exclude1D
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func update(_ parameters: Parameters<Scalar>) {
        let usesMomentum = momentum != 0
        if usesMomentum && states.count != parameters.count { states = ParameterStates(parameters) { State(trace: Tensor(zeros: $0)) } }
        step += 1
        let wd = Scalar(weightDecay), negLR = Scalar(-learningRate), mu = Scalar(momentum), nesterov = self.nesterov
        for i in 0..<parameters.count {
            let adapted = !(exclude1D && parameters.values[i].rank <= 1)
            let decays = adapted && weightDecay != 0
            let n = parameters.values[i].count
            if n == 0 { continue }
            parameters.gradients[i].storage.withUnsafeBufferPointer { g in
                parameters.values[i].storage.withUnsafeMutableBufferPointer { p in
                    let (g, p) = (g.baseAddress!, p.baseAddress!)
                    // The update u = g + λ·p, recomputed where needed rather than stored.
                    states.withStorage(i, \.trace) { trace in
                        trustRatioStep(p, n, adapted: adapted, coefficient: trustCoefficient, epsilon: epsilon, negLR: negLR, trace: trace, momentum: mu, nesterov: nesterov) { j, k in
                            let gj = loadLanes(g, j, k)
                            return decays ? gj + wd * loadLanes(p, j, k) : gj
                        }
                    }
                }
            }
        }
    }

    public func exportState(names: [String]) -> OptimizerState<Scalar> { states.exported(step: step, names: names) }

    public func importState(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws {
        step = try state.integer("step")
        if step == 0 || momentum == 0 { states = ParameterStates(); return }
        states = try ParameterStates(state, parameters: parameters) { State(trace: Tensor(zeros: $0)) }
    }
}

/// `exclude_1d`, shared by LAMB and LARS.
let exclude1DKey = TrialSchema.Key.flag("exclude_1d", true, "keep rank-1 tensors (biases) out of the trust ratio and the weight decay")

enum LAMBDefinition: OptimizerDefinition {
    static let name = "lamb"
    static let keys: [TrialSchema.Key] =
        [
            .lr(1e-3)
        ] + betaKeys(0.9, "first-moment decay", 0.999, "second-moment decay") + [
            .number("eps", 1e-6, .nonNegative, "added to the root of the second moment"),
            .number("weight_decay", 0, "decay added to the update before the trust ratio, as AdamW's"),
            exclude1DKey,
        ]

    static func validate(_ config: TrialConfig) throws {
        for key in ["eps", "weight_decay"] { try requireNonNegative(config, key) }
        _ = try config.bool(keys["exclude_1d"])
    }

    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> {
        let (b1, b2) = try betas(config, keys)
        return LAMB<T>(
            learningRate: try config.double(keys["lr"]), beta1: b1, beta2: b2, epsilon: try config.double(keys["eps"]),
            weightDecay: try config.double(keys["weight_decay"]), exclude1D: try config.bool(keys["exclude_1d"]))
    }
}

enum LARSDefinition: OptimizerDefinition {
    static let name = "lars"
    static let keys: [TrialSchema.Key] = [
        .lr(1),
        .number("momentum", 0.9, .nonNegative, "momentum of the learning-rate-scaled steps"),
        .flag("nesterov", false, "Nesterov momentum"),
        .number("weight_decay", 0, "L2 decay added to the gradient before the trust ratio"),
        .number("trust_coefficient", 1e-3, "c of the trust ratio c·‖p‖/(‖u‖ + eps)"),
        .number("eps", 0, .nonNegative, "added to ‖u‖ in the trust ratio"),
        exclude1DKey,
    ]

    static func validate(_ config: TrialConfig) throws {
        for key in ["eps", "weight_decay"] { try requireNonNegative(config, key) }
        let c = try config.double(keys["trust_coefficient"])
        guard c > 0, c.isFinite else { throw config.error("trust_coefficient", "must be a positive number, got \(c)") }
        _ = try config.bool(keys["exclude_1d"])
    }

    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> {
        LARS<T>(
            learningRate: try config.double(keys["lr"]), momentum: try config.double(keys["momentum"]),
            nesterov: try config.bool(keys["nesterov"]), weightDecay: try config.double(keys["weight_decay"]),
            trustCoefficient: try config.double(keys["trust_coefficient"]), epsilon: try config.double(keys["eps"]),
            exclude1D: try config.bool(keys["exclude_1d"]))
    }
}
