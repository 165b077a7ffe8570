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

    struct State: ParameterState {
        var m: Tensor<Scalar>
        static var slots: [StateSlot<Self>] { [.tensor("exp_avg", \.m)] }
    }
    var states = ParameterStates<State>()

    public init(learningRate: Double = 1e-4, beta1: Double = 0.9, beta2: Double = 0.99, weightDecay: Double = 0) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.weightDecay = weightDecay
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func update(_ parameters: Parameters<Scalar>) {
        if states.count != parameters.count { states = ParameterStates(parameters) { State(m: Tensor(zeros: $0)) } }
        step += 1
        let b1 = Scalar(beta1), w1 = Scalar(1 - beta1), b2 = Scalar(beta2), w2 = Scalar(1 - beta2)
        let decay: Scalar? = weightDecay != 0 ? Scalar(1 - learningRate * weightDecay) : nil
        states.forEach(parameters) { _, g, p, n, s in
            s.m.storage.withUnsafeMutableBufferPointer { m in
                lionUpdate(g, p, m.baseAddress!, n, decay: decay, negLR: Scalar(-learningRate)) { m, g in (m * b1 + w1 * g, m * b2 + w2 * g) }
            }
        }
    }

    public func exportState(names: [String]) -> OptimizerState<Scalar> { states.exported(step: step, names: names) }

    public func importState(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws {
        step = try state.integer("step")
        states = step == 0 ? ParameterStates() : try ParameterStates(state, parameters: parameters) { State(m: Tensor(zeros: $0)) }
    }
}

/// Lion's step over one tensor, shared by `Lion` and `SimpleLion`:
///
///     (c, m′) = interpolate(m, g)
///     p ← p·decay − η·sign(c);   m ← m′
///
/// Lion interpolates with two products (β₁ for c, β₂ for m′), SimpleLion with one torch `lerp`
/// (c = m′): the same math for β₁ = β₂, but not the same rounding, so each keeps its own.
@inline(__always)
func lionUpdate<T: BLASScalar>(
    _ g: UnsafePointer<T>, _ p: UnsafeMutablePointer<T>, _ m: UnsafeMutablePointer<T>, _ n: Int, decay: T?, negLR: T,
    _ interpolate: (_ m: SIMD8<T>, _ g: SIMD8<T>) -> (direction: SIMD8<T>, momentum: SIMD8<T>)
) {
    forEachLanes(n) { j, k in
        let (c, mj) = interpolate(loadLanes(m, j, k), loadLanes(g, j, k))
        let p0 = loadLanes(p, j, k)
        storeLanes((decay.map { p0 * $0 } ?? p0) + negLR * signLanes(c), p, j, k)
        storeLanes(mj, m, j, k)
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

    struct State: ParameterState {
        var m: Tensor<Scalar>
        static var slots: [StateSlot<Self>] { [.tensor("momentum", \.m)] }
    }
    var states = ParameterStates<State>()

    public init(learningRate: Double = 0.1, beta: Double = 0.9) {
        self.learningRate = learningRate
        self.beta = beta
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func update(_ parameters: Parameters<Scalar>) {
        if states.count != parameters.count { states = ParameterStates(parameters) { State(m: Tensor(zeros: $0)) } }
        step += 1
        let w = Scalar(1 - beta)
        states.forEach(parameters) { _, g, p, n, s in
            s.m.storage.withUnsafeMutableBufferPointer { m in
                lionUpdate(g, p, m.baseAddress!, n, decay: nil, negLR: Scalar(-learningRate)) { m, g in
                    let mj = lerpLanes(m, g, w)
                    return (mj, mj)
                }
            }
        }
    }

    public func exportState(names: [String]) -> OptimizerState<Scalar> { states.exported(step: step, names: names) }

    public func importState(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws {
        step = try state.integer("step")
        states = step == 0 ? ParameterStates() : try ParameterStates(state, parameters: parameters) { State(m: Tensor(zeros: $0)) }
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
