import Linalg

/// Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms") as in Google's
/// reference code and lucidrains' `lion-pytorch` (`update_fn`):
///
///     p ← p·(1 − η·λ)                       (decoupled weight decay)
///     p ← p − η·sign(β₁·m + (1 − β₁)·g)
///     m ← β₂·m + (1 − β₂)·g
///
/// sign(0) = 0 as in torch. One deviation: torch's `sign` maps NaN to 0, which would freeze a
/// parameter behind a NaN momentum; here NaN propagates into the parameter so that the trial is
/// reported diverged.
public final class Lion<Scalar: BLASScalar>: Optimizer {
    public let name = "lion"
    public var learningRate: Double
    public let beta1: Double
    public let beta2: Double
    public let weightDecay: Double
    public private(set) var step = 0
    var m: [Tensor<Scalar>] = []

    public init(learningRate: Double = 1e-4, beta1: Double = 0.9, beta2: Double = 0.99, weightDecay: Double = 0) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.weightDecay = weightDecay
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func update(_ parameters: Parameters<Scalar>) {
        if m.count != parameters.count { m = parameters.values.map { Tensor(zeros: $0.shape) } }
        step += 1
        let lr = Scalar(learningRate), decay = Scalar(1 - learningRate * weightDecay), decays = weightDecay != 0
        let b1 = Scalar(beta1), w1 = Scalar(1 - beta1), b2 = Scalar(beta2), w2 = Scalar(1 - beta2)
        for i in 0..<parameters.count {
            let n = parameters.values[i].count
            if n == 0 { continue }
            parameters.gradients[i].storage.withUnsafeBufferPointer { g in
                parameters.values[i].storage.withUnsafeMutableBufferPointer { p in
                    m[i].storage.withUnsafeMutableBufferPointer { m in
                        let (g, p, m) = (g.baseAddress!, p.baseAddress!, m.baseAddress!)
                        forEachLanes(n) { j, k in
                            let gj = loadLanes(g, j, k), mj = loadLanes(m, j, k), p0 = loadLanes(p, j, k)
                            let pj = decays ? p0 * decay : p0
                            storeLanes(pj - lr * signLanes(mj * b1 + w1 * gj), p, j, k)
                            storeLanes(mj * b2 + w2 * gj, m, j, k)
                        }
                    }
                }
            }
        }
    }

    public func exportState(names: [String]) -> OptimizerState<Scalar> {
        var state = OptimizerState<Scalar>()
        state.set("step", integer: step)
        for i in m.indices { state.set("\(names[i])/exp_avg", m[i]) }
        return state
    }

    public func importState(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws {
        step = try state.integer("step")
        if step == 0 { m = []; return }
        m = try parameters.names.indices.map { try state.tensor("\(parameters.names[$0])/exp_avg", shape: parameters.values[$0].shape) }
    }
}

/// The documents' single-beta Lion (`SimpleLion`, seed 003, part c): one momentum both
/// interpolates and decays,
///
///     m ← lerp(m, g, 1 − β)
///     p ← p − η·sign(m)
///
/// (no weight decay). NaN propagates as in `Lion`.
public final class SimpleLion<Scalar: BLASScalar>: Optimizer {
    public let name = "lion-simple"
    public var learningRate: Double
    public let beta: Double
    public private(set) var step = 0
    var m: [Tensor<Scalar>] = []

    public init(learningRate: Double = 0.1, beta: Double = 0.9) {
        self.learningRate = learningRate
        self.beta = beta
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func update(_ parameters: Parameters<Scalar>) {
        if m.count != parameters.count { m = parameters.values.map { Tensor(zeros: $0.shape) } }
        step += 1
        let negLR = Scalar(-learningRate), w = Scalar(1 - beta)
        for i in 0..<parameters.count {
            let n = parameters.values[i].count
            if n == 0 { continue }
            parameters.gradients[i].storage.withUnsafeBufferPointer { g in
                parameters.values[i].storage.withUnsafeMutableBufferPointer { p in
                    m[i].storage.withUnsafeMutableBufferPointer { m in
                        let (g, p, m) = (g.baseAddress!, p.baseAddress!, m.baseAddress!)
                        forEachLanes(n) { j, k in
                            let mj = lerpLanes(loadLanes(m, j, k), loadLanes(g, j, k), w)
                            storeLanes(mj, m, j, k)
                            storeLanes(loadLanes(p, j, k) + negLR * signLanes(mj), p, j, k)
                        }
                    }
                }
            }
        }
    }

    public func exportState(names: [String]) -> OptimizerState<Scalar> {
        var state = OptimizerState<Scalar>()
        state.set("step", integer: step)
        for i in m.indices { state.set("\(names[i])/momentum", m[i]) }
        return state
    }

    public func importState(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws {
        step = try state.integer("step")
        if step == 0 { m = []; return }
        m = try parameters.names.indices.map { try state.tensor("\(parameters.names[$0])/momentum", shape: parameters.values[$0].shape) }
    }
}

enum LionDefinition: OptimizerDefinition {
    static let name = "lion"
    static let keys: [TrialSchema.Key] =
        [
            .lr(1e-4)
        ] + betaKeys(0.9, "interpolation of momentum and gradient inside the sign", 0.99, "momentum decay") + [
            .number("weight_decay", 0, "decoupled weight decay: p·(1 − lr·weight_decay)")
        ]

    static func validate(_ config: TrialConfig) throws { try requireNonNegative(config, "weight_decay") }

    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> {
        let (b1, b2) = try betas(config, keys)
        return Lion<T>(learningRate: try config.double(keys["lr"]), beta1: b1, beta2: b2, weightDecay: try config.double(keys["weight_decay"]))
    }
}

enum SimpleLionDefinition: OptimizerDefinition {
    static let name = "lion-simple"
    static let keys: [TrialSchema.Key] = [.lr(0.1), .number("beta1", 0.9, .unit, "the single momentum coefficient b1 of the documents' SimpleLion")]
    /// Keys renamed: the old name is refused with the new one (`soap-simple` says `beta1` too).
    static let renamedKeys = ["beta": "beta1"]

    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> {
        SimpleLion<T>(learningRate: try config.double(keys["lr"]), beta: try config.double(keys["beta1"]))
    }
}
