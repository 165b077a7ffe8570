import Linalg

/// RMSprop exactly as `torch.optim.RMSprop` (single-tensor path):
///
///     g ← g + λ·p                          (coupled L2 decay)
///     s ← α·s + (1 − α)·g²
///     ḡ ← lerp(ḡ, g, 1 − α)                (centered)
///     d = √(s − ḡ²) + ε   (centered)   or   √s + ε
///     b ← μ·b + g/d;  p ← p − η·b          (momentum μ > 0)
///     p ← p − η·g/d                        (otherwise)
///
/// State: `square_avg`, `grad_avg` (centered), `momentum_buffer` (μ > 0) and the step count.
public final class RMSprop<Scalar: BLASScalar>: Optimizer {
    public let name = "rmsprop"
    public var learningRate: Double
    public let alpha: Double
    public let epsilon: Double
    public let weightDecay: Double
    public let momentum: Double
    public let centered: Bool
    public private(set) var step = 0

    struct State: ParameterState {
        var squareAverage: Tensor<Scalar>
        /// Present when centered.
        var gradientAverage: Tensor<Scalar>?
        /// Present with momentum.
        var buffer: Tensor<Scalar>?
        static var slots: [StateSlot<Self>] {
            [.tensor("square_avg", \.squareAverage), .tensor("grad_avg", \.gradientAverage), .tensor("momentum_buffer", \.buffer)]
        }
    }
    var states = ParameterStates<State>()

    public init(learningRate: Double = 1e-2, alpha: Double = 0.99, epsilon: Double = 1e-8, weightDecay: Double = 0, momentum: Double = 0, centered: Bool = false) {
        self.learningRate = learningRate
        self.alpha = alpha
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.momentum = momentum
        self.centered = centered
    }

    func makeState(_ shape: [Int]) -> State {
        State(squareAverage: Tensor(zeros: shape), gradientAverage: centered ? Tensor(zeros: shape) : nil, buffer: momentum > 0 ? Tensor(zeros: shape) : nil)
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func update(_ parameters: Parameters<Scalar>) {
        if states.count != parameters.count { states = ParameterStates(parameters, makeState) }
        step += 1
        let a = Scalar(alpha), w = Scalar(1 - alpha), eps = Scalar(epsilon), wd = Scalar(weightDecay)
        let negLR = Scalar(-learningRate), mu = Scalar(momentum)
        let decays = weightDecay != 0, centered = self.centered, usesMomentum = momentum > 0
        states.forEach(parameters) { _, g, p, n, s in
            s.squareAverage.storage.withUnsafeMutableBufferPointer { sq in
                withStorage(&s.gradientAverage) { ga in
                    withStorage(&s.buffer) { b in
                        let s = sq.baseAddress!
                        forEachLanes(n) { j, k in
                            let pj = loadLanes(p, j, k), g0 = loadLanes(g, j, k)
                            let gj = decays ? g0 + wd * pj : g0
                            let sj = loadLanes(s, j, k) * a + w * gj * gj
                            storeLanes(sj, s, j, k)
                            var d: SIMD8<Scalar>
                            if centered {
                                let mj = lerpLanes(loadLanes(ga!, j, k), gj, w)
                                storeLanes(mj, ga!, j, k)
                                d = squareRootLanes(sj - mj * mj)
                            } else {
                                d = squareRootLanes(sj)
                            }
                            d = d + eps
                            if usesMomentum {
                                let bj = loadLanes(b!, j, k) * mu + gj / d
                                storeLanes(bj, b!, j, k)
                                storeLanes(pj + negLR * bj, p, j, k)
                            } else {
                                storeLanes(pj + negLR * gj / d, p, j, k)
                            }
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

enum RMSpropDefinition: OptimizerDefinition {
    static let name = "rmsprop"
    static let keys: [TrialSchema.Key] = [
        .lr(1e-2),
        .number("alpha", 0.99, .closedUnit, "smoothing constant of the squared-gradient average"),
        .number("eps", 1e-8, "added to the root"),
        .flag("centered", false, "divide by the gradient's estimated variance instead"),
        .number("momentum", 0, .nonNegative, "momentum factor"),
        .number("weight_decay", 0, "L2 penalty added to the gradient"),
    ]

    static func validate(_ config: TrialConfig) throws {
        for key in ["eps", "weight_decay"] { try requireNonNegative(config, key) }
        let alpha = try config.double(keys["alpha"])
        guard (0...1).contains(alpha) else { throw config.error("alpha", "must be in [0, 1], got \(alpha)") }
        _ = try config.bool(keys["centered"])
    }

    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> {
        RMSprop<T>(
            learningRate: try config.double(keys["lr"]), alpha: try config.double(keys["alpha"]),
            epsilon: try config.double(keys["eps"]), weightDecay: try config.double(keys["weight_decay"]),
            momentum: try config.double(keys["momentum"]), centered: try config.bool(keys["centered"]))
    }
}
