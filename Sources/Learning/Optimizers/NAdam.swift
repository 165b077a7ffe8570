import Linalg

/// NAdam exactly as `torch.optim.NAdam` (single-tensor path, `decoupled_weight_decay=False`):
///
///     g ← g + λ·p                                   (coupled L2 decay)
///     μ_t = β₁·(1 − ½·0.96^(t·ψ)),  μ_{t+1} likewise (ψ = momentum_decay)
///     Π ← Π·μ_t                                     (mu_product, starts at 1)
///     m ← lerp(m, g, 1 − β₁);  v ← β₂·v + (1 − β₂)·g²
///     d = √(v / (1 − β₂ᵗ)) + ε
///     p ← p − η(1 − μ_t)/(1 − Π) · g/d − η·μ_{t+1}/(1 − Π·μ_{t+1}) · m/d
///
/// Like torch, Π is kept in the parameters' precision (a float32 scalar under float32) and
/// exported with the moments, so a resumed run continues bit for bit.
public final class NAdam<Scalar: BLASScalar>: Optimizer {
    public let name = "nadam"
    public var learningRate: Double
    public let beta1: Double
    public let beta2: Double
    public let epsilon: Double
    public let weightDecay: Double
    public let momentumDecay: Double
    public private(set) var step = 0
    /// Π μ_τ over the steps taken (torch's per-parameter `mu_product`, the same for all).
    public private(set) var muProduct: Scalar = 1

    struct State: ParameterState {
        var m: Tensor<Scalar>, v: Tensor<Scalar>
        static var slots: [StateSlot<Self>] { [.tensor("exp_avg", \.m), .tensor("exp_avg_sq", \.v)] }
        init(_ shape: [Int]) { (m, v) = (Tensor(zeros: shape), Tensor(zeros: shape)) }
    }
    var states = ParameterStates<State>()

    public init(learningRate: Double = 2e-3, beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double = 1e-8, weightDecay: Double = 0, momentumDecay: Double = 4e-3) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.momentumDecay = momentumDecay
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func update(_ parameters: Parameters<Scalar>) {
        if states.count != parameters.count { states = ParameterStates(parameters, State.init) }
        step += 1
        let t = Double(step), lr = learningRate
        let bias2 = Scalar(1 - Double.pow(beta2, t))
        let mu = beta1 * (1 - 0.5 * Double.pow(0.96, t * momentumDecay))
        let muNext = beta1 * (1 - 0.5 * Double.pow(0.96, (t + 1) * momentumDecay))
        muProduct = muProduct * Scalar(mu)
        let product = Double(muProduct), productNext = product * muNext
        let gradientCoefficient = Scalar(-lr * (1 - mu) / (1 - product))
        let momentumCoefficient = Scalar((-lr * muNext) / (1 - productNext))
        let w1 = Scalar(1 - beta1), b2 = Scalar(beta2), w2 = Scalar(1 - beta2), eps = Scalar(epsilon), wd = Scalar(weightDecay)
        let decays = weightDecay != 0
        states.forEach(parameters) { _, g, p, n, s in
            s.m.storage.withUnsafeMutableBufferPointer { m in
                s.v.storage.withUnsafeMutableBufferPointer { v in
                    let (m, v) = (m.baseAddress!, v.baseAddress!)
                    forEachLanes(n) { j, k in
                        let p0 = loadLanes(p, j, k), g0 = loadLanes(g, j, k)
                        let gj = decays ? g0 + wd * p0 : g0
                        let mj = lerpLanes(loadLanes(m, j, k), gj, w1)
                        let vj = loadLanes(v, j, k) * b2 + w2 * gj * gj
                        storeLanes(mj, m, j, k)
                        storeLanes(vj, v, j, k)
                        let d = squareRootLanes(vj / bias2) + eps
                        let p1 = p0 + gradientCoefficient * gj / d
                        storeLanes(p1 + momentumCoefficient * mj / d, p, j, k)
                    }
                }
            }
        }
    }

    public func exportState(names: [String]) -> OptimizerState<Scalar> {
        var state = OptimizerState<Scalar>()
        state.set("step", integer: step)
        state.set("mu_product", Tensor(shape: [], storage: [muProduct]))
        states.export(names: names, into: &state)
        return state
    }

    public func importState(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws {
        step = try state.integer("step")
        muProduct = try state.tensor("mu_product", shape: []).storage[0]
        states = step == 0 ? ParameterStates() : try ParameterStates(state, parameters: parameters, State.init)
    }
}

enum NAdamDefinition: OptimizerDefinition {
    static let name = "nadam"
    static let keys: [TrialSchema.Key] =
        [
            .lr(2e-3)
        ] + betaKeys(0.9, "first-moment decay", 0.999, "second-moment decay") + [
            .number("eps", 1e-8, "denominator epsilon"),
            .number("weight_decay", 0, "L2 penalty added to the gradient"),
            .number("momentum_decay", 4e-3, "ψ of the momentum schedule μ_t = β₁(1 − ½·0.96^(tψ))"),
        ]

    static func validate(_ config: TrialConfig) throws {
        for key in ["eps", "weight_decay", "momentum_decay"] { try requireNonNegative(config, key) }
    }

    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> {
        let (b1, b2) = try betas(config, keys)
        return NAdam<T>(
            learningRate: try config.double(keys["lr"]), beta1: b1, beta2: b2, epsilon: try config.double(keys["eps"]),
            weightDecay: try config.double(keys["weight_decay"]), momentumDecay: try config.double(keys["momentum_decay"]))
    }
}
