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
    var squareAverages: [Tensor<Scalar>] = []
    var gradientAverages: [Tensor<Scalar>] = []
    var buffers: [Tensor<Scalar>] = []

    public init(learningRate: Double = 1e-2, alpha: Double = 0.99, epsilon: Double = 1e-8, weightDecay: Double = 0, momentum: Double = 0, centered: Bool = false) {
        self.learningRate = learningRate
        self.alpha = alpha
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.momentum = momentum
        self.centered = centered
    }

    func allocate(_ parameters: Parameters<Scalar>) {
        squareAverages = parameters.values.map { Tensor(zeros: $0.shape) }
        gradientAverages = centered ? parameters.values.map { Tensor(zeros: $0.shape) } : []
        buffers = momentum > 0 ? parameters.values.map { Tensor(zeros: $0.shape) } : []
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func update(_ parameters: Parameters<Scalar>) {
        if squareAverages.count != parameters.count { allocate(parameters) }
        step += 1
        let a = Scalar(alpha), w = Scalar(1 - alpha), eps = Scalar(epsilon), wd = Scalar(weightDecay)
        let negLR = Scalar(-learningRate), mu = Scalar(momentum)
        let decays = weightDecay != 0, centered = self.centered, usesMomentum = momentum > 0
        // Empty placeholders stand in for the optional buffers (never indexed when unused).
        var noGradientAverage: [Scalar] = [], noBuffer: [Scalar] = []
        for i in 0..<parameters.count {
            let n = parameters.values[i].count
            if n == 0 { continue }
            parameters.gradients[i].storage.withUnsafeBufferPointer { g in
                parameters.values[i].storage.withUnsafeMutableBufferPointer { p in
                    squareAverages[i].storage.withUnsafeMutableBufferPointer { s in
                        withOptionalBuffer(&gradientAverages, i, centered, &noGradientAverage) { ga in
                            withOptionalBuffer(&buffers, i, usesMomentum, &noBuffer) { b in
                                let (g, p, s, ga, b) = (g.baseAddress!, p.baseAddress!, s.baseAddress!, ga.baseAddress, b.baseAddress)
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
        }
    }

    public func exportState(names: [String]) -> OptimizerState<Scalar> {
        var state = OptimizerState<Scalar>()
        state.set("step", integer: step)
        for i in squareAverages.indices {
            state.set("\(names[i])/square_avg", squareAverages[i])
            if centered { state.set("\(names[i])/grad_avg", gradientAverages[i]) }
            if momentum > 0 { state.set("\(names[i])/momentum_buffer", buffers[i]) }
        }
        return state
    }

    public func importState(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws {
        step = try state.integer("step")
        if step == 0 { squareAverages = []; gradientAverages = []; buffers = []; return }
        func load(_ suffix: String) throws -> [Tensor<Scalar>] {
            try parameters.names.indices.map { try state.tensor("\(parameters.names[$0])/\(suffix)", shape: parameters.values[$0].shape) }
        }
        squareAverages = try load("square_avg")
        gradientAverages = centered ? try load("grad_avg") : []
        buffers = momentum > 0 ? try load("momentum_buffer") : []
    }
}

/// Runs `body` on tensor `i`'s storage when `present`, else on `placeholder` (an empty buffer).
@inline(__always)
func withOptionalBuffer<T: BLASScalar, R>(
    _ tensors: inout [Tensor<T>], _ i: Int, _ present: Bool, _ placeholder: inout [T], _ body: (UnsafeMutableBufferPointer<T>) -> R
) -> R {
    present ? tensors[i].storage.withUnsafeMutableBufferPointer { body($0) } : placeholder.withUnsafeMutableBufferPointer { body($0) }
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
