import Linalg

/// SophiaG (Liu et al. 2023, "Sophia: A Scalable Stochastic Second-order Optimizer for Language
/// Model Pre-training") as in the authors' `sophia.py` (github.com/Liuhong99/Sophia, class
/// `SophiaG`, single-tensor path):
///
///     p ← p·(1 − η·λ)                                   (decoupled decay, always applied)
///     m ← β₁·m + (1 − β₁)·g                             (−g with `maximize`)
///     p ← p − η·sign(m)·min(|m| / (ρ·bs·h + 1e-15), 1)
///
/// and, from `updateHessian` (the authors' `update_hessian`), with the gradient of the loss on
/// labels sampled from the model (the Gauss–Newton–Bartlett estimate):
///
///     h ← β₂·h + (1 − β₂)·ĝ²
///
/// Until the first estimate h = 0 and the step is η·sign(m) wherever m ≠ 0.
///
/// When to estimate: the authors' `train_sophiag.py` estimates after the step of iteration
/// `iter_num` (0-based) when `iter_num % hess_interval == hess_interval − 1`. `step` counts steps
/// from 1, so iteration `iter_num` is `step = iter_num + 1`, and `wantsHessianEstimate` is
/// `step % hessianInterval == 0`: with the default 10, after steps 10, 20, 30, …
///
/// `bs`, the batch size that turns the mean-loss gradient's square into the estimator (their
/// `step(bs:)`, the tokens per step in their script), is `batchSize` (the trial key `bs`) when
/// given, else the batch size of the latest estimate as `updateHessian` was told it; it is part
/// of the exported state, so a resumed run continues exactly. NaN propagates (torch's sign(NaN) is
/// 0, but the ratio is NaN then too).
public final class Sophia<Scalar: BLASScalar>: Optimizer, HessianEstimating {
    public let name = "sophia"
    public var learningRate: Double
    public let beta1: Double
    public let beta2: Double
    public let rho: Double
    public let weightDecay: Double
    public let maximize: Bool
    /// Steps between Hessian estimates (the authors' `hess_interval`).
    public let hessianInterval: Int
    /// A fixed `bs` (the trial key); nil: the batch size of each estimate.
    public let batchSize: Int?
    public private(set) var step = 0
    /// The `bs` the updates use: `batchSize`, or that of the latest estimate (0 before one).
    public private(set) var estimateBatchSize: Int

    struct State: ParameterState {
        var m: Tensor<Scalar>, h: Tensor<Scalar>
        static var slots: [StateSlot<Self>] { [.tensor("exp_avg", \.m), .tensor("hessian", \.h)] }
        init(_ shape: [Int]) { (m, h) = (Tensor(zeros: shape), Tensor(zeros: shape)) }
    }
    var states = ParameterStates<State>()

    public init(
        learningRate: Double = 1e-4, beta1: Double = 0.965, beta2: Double = 0.99, rho: Double = 0.04, weightDecay: Double = 0.1,
        maximize: Bool = false, hessianInterval: Int = 10, batchSize: Int? = nil
    ) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.rho = rho
        self.weightDecay = weightDecay
        self.maximize = maximize
        self.hessianInterval = hessianInterval
        self.batchSize = batchSize
        self.estimateBatchSize = batchSize ?? 0
    }

    public var wantsHessianEstimate: Bool { step > 0 && step % hessianInterval == 0 }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func update(_ parameters: Parameters<Scalar>) {
        if states.count != parameters.count { states = ParameterStates(parameters, State.init) }
        step += 1
        let decay = Scalar(1 - learningRate * weightDecay), negLR = Scalar(-learningRate)
        let b1 = Scalar(beta1), w1 = Scalar(1 - beta1)
        let scale = Scalar(rho * Double(estimateBatchSize)), floor = Scalar(1e-15)
        let gradientSign: Scalar = maximize ? -1 : 1
        states.forEach(parameters) { _, g, p, n, s in
            s.m.storage.withUnsafeMutableBufferPointer { m in
                s.h.storage.withUnsafeBufferPointer { h in
                    let (m, h) = (m.baseAddress!, h.baseAddress!)
                    forEachLanes(n) { j, k in
                        let pj = loadLanes(p, j, k) * decay
                        let mj = loadLanes(m, j, k) * b1 + w1 * (gradientSign * loadLanes(g, j, k))
                        storeLanes(mj, m, j, k)
                        let ratio = atMostOneLanes(absLanes(mj) / (scale * loadLanes(h, j, k) + floor))
                        storeLanes(pj + negLR * signLanes(mj) * ratio, p, j, k)
                    }
                }
            }
        }
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func updateHessian(_ parameters: Parameters<Scalar>, batchSize: Int) {
        if states.count != parameters.count { states = ParameterStates(parameters, State.init) }
        estimateBatchSize = self.batchSize ?? batchSize
        let b2 = Scalar(beta2), w2 = Scalar(1 - beta2)
        for i in 0..<parameters.count {
            let n = parameters.values[i].count
            if n == 0 { continue }
            parameters.gradients[i].storage.withUnsafeBufferPointer { g in
                states[i]!.h.storage.withUnsafeMutableBufferPointer { h in
                    let (g, h) = (g.baseAddress!, h.baseAddress!)
                    forEachLanes(n) { j, k in
                        let gj = loadLanes(g, j, k)
                        storeLanes(loadLanes(h, j, k) * b2 + w2 * gj * gj, h, j, k)
                    }
                }
            }
        }
    }

    public func exportState(names: [String]) -> OptimizerState<Scalar> {
        var state = OptimizerState<Scalar>()
        state.set("step", integer: step)
        state.set("bs", integer: estimateBatchSize)
        states.export(names: names, into: &state)
        return state
    }

    public func importState(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws {
        let imported = try state.integer("step"), bs = try state.integer("bs")
        // An estimate may precede the first step, so the moments go by presence, not by step.
        states = state["\(parameters.names.first ?? "")/exp_avg"] == nil ? ParameterStates() : try ParameterStates(state, parameters: parameters, State.init)
        step = imported
        estimateBatchSize = bs
    }
}

/// |x| lane-wise (NaN stays NaN).
@inline(__always)
func absLanes<T: BLASScalar>(_ x: SIMD8<T>) -> SIMD8<T> {
    if T.self == Float.self {
        let xf = unsafeBitCast(x, to: SIMD8<Float>.self)
        return unsafeBitCast(xf.replacing(with: -xf, where: xf .< 0), to: SIMD8<T>.self)
    }
    if T.self == Double.self {
        let xd = unsafeBitCast(x, to: SIMD8<Double>.self)
        return unsafeBitCast(xd.replacing(with: -xd, where: xd .< 0), to: SIMD8<T>.self)
    }
    return x.replacing(with: -x, where: x .< 0)
}

/// min(x, 1) lane-wise, keeping NaN (torch's `clamp(max: 1)`).
@inline(__always)
func atMostOneLanes<T: BLASScalar>(_ x: SIMD8<T>) -> SIMD8<T> {
    if T.self == Float.self {
        let xf = unsafeBitCast(x, to: SIMD8<Float>.self), one = SIMD8<Float>(repeating: 1)
        return unsafeBitCast(xf.replacing(with: one, where: xf .> one), to: SIMD8<T>.self)
    }
    if T.self == Double.self {
        let xd = unsafeBitCast(x, to: SIMD8<Double>.self), one = SIMD8<Double>(repeating: 1)
        return unsafeBitCast(xd.replacing(with: one, where: xd .> one), to: SIMD8<T>.self)
    }
    let one = SIMD8<T>(repeating: 1)
    return x.replacing(with: one, where: x .> one)
}

enum SophiaDefinition: OptimizerDefinition {
    static let name = "sophia"
    static let keys: [TrialSchema.Key] =
        [
            .lr(1e-4)
        ] + betaKeys(0.965, "momentum decay", 0.99, "decay of the Hessian estimate") + [
            .number("rho", 0.04, "ρ: the step is clipped where |m| > ρ·bs·h"),
            .number("weight_decay", 0.1, "decoupled weight decay p·(1 − lr·weight_decay)"),
            .flag("maximize", false, "ascend instead of descend"),
            .integer("hessian_interval", 10, "estimate the Hessian after every k-th step: steps k, 2k, …"),
            .integer("bs", nil, .atLeast(1), note: "that of each estimate's batch", "the authors' bs, batch size of the estimator ρ·bs·h"),
        ]

    static func validate(_ config: TrialConfig) throws {
        for key in ["rho", "weight_decay"] { try requireNonNegative(config, key) }
        _ = try config.bool(keys["maximize"])
        guard try config.int(keys["hessian_interval"]) >= 1 else { throw config.error("hessian_interval", "must be at least 1") }
        if let bs = try config.optionalInt(keys["bs"]), bs < 1 { throw config.error("bs", "must be at least 1, got \(bs)") }
    }

    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> {
        let (b1, b2) = try betas(config, keys)
        return Sophia<T>(
            learningRate: try config.double(keys["lr"]), beta1: b1, beta2: b2, rho: try config.double(keys["rho"]),
            weightDecay: try config.double(keys["weight_decay"]), maximize: try config.bool(keys["maximize"]),
            hessianInterval: try config.int(keys["hessian_interval"]), batchSize: try config.optionalInt(keys["bs"]))
    }
}
