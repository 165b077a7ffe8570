import Linalg

/// Adam and AdamW exactly as `torch.optim.Adam` / `torch.optim.AdamW` (single tensor path):
///
///     p ← p·(1 − η·λ)                       (AdamW: decoupled decay)
///     g ← g + λ·p                           (Adam: coupled L2 decay)
///     m ← m + (1 − β₁)·(g − m)              (torch's lerp)
///     v ← β₂·v + (1 − β₂)·g²
///     v̂max ← max(v̂max, v)                    (amsgrad)
///     p ← p − (η / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
public final class Adam<Scalar: BLASScalar>: Optimizer {
    public let name: String
    public var learningRate: Double
    public var beta1: Double
    public let beta2: Double
    public let epsilon: Double
    public let weightDecay: Double
    /// Decoupled (AdamW) or coupled (Adam) weight decay.
    public let decoupled: Bool
    public let amsgrad: Bool
    public private(set) var step = 0

    struct State: ParameterState {
        var m: Tensor<Scalar>, v: Tensor<Scalar>
        /// amsgrad's running maximum of v.
        var vMax: Tensor<Scalar>?
        static var slots: [StateSlot<Self>] { [.tensor("exp_avg", \.m), .tensor("exp_avg_sq", \.v), .tensor("max_exp_avg_sq", \.vMax)] }
    }
    var states = ParameterStates<State>()
    /// Scratch for Adam's coupled decay (g + λp), reused across steps.
    var coupled: [Scalar] = []

    public init(
        learningRate: Double, beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double = 1e-8,
        weightDecay: Double, decoupled: Bool, amsgrad: Bool = false
    ) {
        self.name = decoupled ? "adamw" : "adam"
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.decoupled = decoupled
        self.amsgrad = amsgrad
    }

    /// `torch.optim.AdamW` defaults (weight decay 0.01).
    public static func adamW(learningRate: Double = 1e-3, beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double = 1e-8, weightDecay: Double = 1e-2, amsgrad: Bool = false) -> Adam {
        Adam(learningRate: learningRate, beta1: beta1, beta2: beta2, epsilon: epsilon, weightDecay: weightDecay, decoupled: true, amsgrad: amsgrad)
    }

    func makeState(_ shape: [Int]) -> State {
        State(m: Tensor(zeros: shape), v: Tensor(zeros: shape), vMax: amsgrad ? Tensor(zeros: shape) : nil)
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func update(_ parameters: Parameters<Scalar>) {
        if states.count != parameters.count { states = ParameterStates(parameters, makeState) }
        step += 1
        let t = Double(step)
        let lr = learningRate
        let stepSize = Scalar(lr / (1 - Double.pow(beta1, t)))
        let bc2Sqrt = Scalar((1 - Double.pow(beta2, t)).squareRoot())
        let b1c = Scalar(1 - beta1), b2 = Scalar(beta2), b2c = Scalar(1 - beta2), eps = Scalar(epsilon)
        let decay = Scalar(1 - lr * weightDecay), wd = Scalar(weightDecay)
        let (decoupled, amsgrad, weightDecay) = (self.decoupled, self.amsgrad, self.weightDecay)
        states.forEach(parameters) { _, g, p, n, s in
            s.m.storage.withUnsafeMutableBufferPointer { m in
                s.v.storage.withUnsafeMutableBufferPointer { v in
                    if amsgrad {
                        s.vMax!.storage.withUnsafeMutableBufferPointer { vm in
                            for j in 0..<n {
                                var gj = g[j]
                                if decoupled { p[j] *= decay } else { gj += wd * p[j] }
                                m[j] = lerp(m[j], gj, b1c)
                                v[j] = b2 * v[j] + b2c * (gj * gj)
                                vm[j] = Swift.max(vm[j], v[j])
                                p[j] -= stepSize * (m[j] / (vm[j].squareRoot() / bc2Sqrt + eps))
                            }
                        }
                    } else {
                        // Coupled decay folds λ·p into the gradient first.
                        if !decoupled && weightDecay != 0 {
                            if coupled.count < n { coupled = [Scalar](repeating: 0, count: n) }
                            coupled.withUnsafeMutableBufferPointer { cg in
                                for j in 0..<n { cg[j] = g[j] + wd * p[j] }
                                adamUpdate(
                                    p: p, g: cg.baseAddress!, m: m.baseAddress!, v: v.baseAddress!, count: n, decay: 1,
                                    oneMinusBeta1: b1c, beta2: b2, oneMinusBeta2: b2c, stepSize: stepSize, bias2Sqrt: bc2Sqrt, epsilon: eps)
                            }
                        } else {
                            adamUpdate(
                                p: p, g: g, m: m.baseAddress!, v: v.baseAddress!, count: n,
                                decay: decoupled ? decay : 1, oneMinusBeta1: b1c, beta2: b2, oneMinusBeta2: b2c,
                                stepSize: stepSize, bias2Sqrt: bc2Sqrt, epsilon: eps)
                        }
                    }
                }
            }
        }
    }

    public func exportState(names: [String]) -> OptimizerState<Scalar> { states.exported(step: step, names: names) }

    public func importState(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws {
        step = try state.integer("step")
        states = step == 0 ? ParameterStates() : try ParameterStates(state, parameters: parameters, makeState)
    }
}
/// torch's `lerp`: `a + w·(b − a)` for `|w| < 0.5`, else `b − (b − a)·(1 − w)` (exact at both ends).
@inline(__always)
func lerp<T: BLASScalar>(_ a: T, _ b: T, _ w: T) -> T {
    Swift.abs(w) < 0.5 ? a + w * (b - a) : b - (b - a) * (1 - w)
}

extension Adam: MomentumCycling {
    /// One-cycle drives β₁, as torch's OneCycleLR does for `betas`.
    public var cycledMomentum: Double {
        get { beta1 }
        set { beta1 = newValue }
    }
}
