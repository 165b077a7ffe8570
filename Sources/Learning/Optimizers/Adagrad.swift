import Linalg

/// Adagrad exactly as `torch.optim.Adagrad` (single-tensor path, dense gradients):
///
///     g ← g + λ·p                          (coupled L2 decay)
///     η_t = η / (1 + (t − 1)·lr_decay)
///     s ← s + g²                           (s starts at initial_accumulator_value)
///     p ← p − η_t·g / (√s + ε)
///
/// State: the accumulators `sum` and the step count.
public final class Adagrad<Scalar: BLASScalar>: Optimizer {
    public let name = "adagrad"
    public var learningRate: Double
    public let lrDecay: Double
    public let weightDecay: Double
    public let initialAccumulatorValue: Double
    public let epsilon: Double
    public private(set) var step = 0

    struct State: ParameterState {
        var sum: Tensor<Scalar>
        static var slots: [StateSlot<Self>] { [.tensor("sum", \.sum)] }
    }
    var states = ParameterStates<State>()

    public init(learningRate: Double = 1e-2, lrDecay: Double = 0, weightDecay: Double = 0, initialAccumulatorValue: Double = 0, epsilon: Double = 1e-10) {
        self.learningRate = learningRate
        self.lrDecay = lrDecay
        self.weightDecay = weightDecay
        self.initialAccumulatorValue = initialAccumulatorValue
        self.epsilon = epsilon
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func update(_ parameters: Parameters<Scalar>) {
        if states.count != parameters.count { states = ParameterStates(parameters, makeState) }
        step += 1
        let negClr = Scalar(-(learningRate / (1 + Double(step - 1) * lrDecay)))
        let wd = Scalar(weightDecay), eps = Scalar(epsilon), decays = weightDecay != 0
        states.forEach(parameters) { _, g, p, n, s in
            s.sum.storage.withUnsafeMutableBufferPointer { s in
                let s = s.baseAddress!
                forEachLanes(n) { j, k in
                    let pj = loadLanes(p, j, k), g0 = loadLanes(g, j, k)
                    let gj = decays ? g0 + wd * pj : g0
                    let sj = loadLanes(s, j, k) + gj * gj
                    storeLanes(sj, s, j, k)
                    storeLanes(pj + negClr * gj / (squareRootLanes(sj) + eps), p, j, k)
                }
            }
        }
    }

    func makeState(_ shape: [Int]) -> State { State(sum: Tensor(repeating: Scalar(initialAccumulatorValue), shape: shape)) }

    public func exportState(names: [String]) -> OptimizerState<Scalar> { states.exported(step: step, names: names) }

    public func importState(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws {
        step = try state.integer("step")
        states = step == 0 ? ParameterStates() : try ParameterStates(state, parameters: parameters, makeState)
    }
}

enum AdagradDefinition: OptimizerDefinition {
    static let name = "adagrad"
    static let keys: [TrialSchema.Key] = [
        .lr(1e-2),
        .number("lr_decay", 0, "learning-rate decay: lr/(1 + (t−1)·lr_decay)"),
        .number("initial_accumulator_value", 0, "starting value of the squared-gradient sums"),
        .number("eps", 1e-10, "added to √sum"),
        .number("weight_decay", 0, "L2 penalty added to the gradient"),
    ]

    static func validate(_ config: TrialConfig) throws {
        for key in ["lr_decay", "initial_accumulator_value", "eps", "weight_decay"] {
            try requireNonNegative(config, key)
        }
    }

    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> {
        Adagrad<T>(
            learningRate: try config.double(keys["lr"]), lrDecay: try config.double(keys["lr_decay"]),
            weightDecay: try config.double(keys["weight_decay"]),
            initialAccumulatorValue: try config.double(keys["initial_accumulator_value"]), epsilon: try config.double(keys["eps"]))
    }
}

/// Throws unless the key, when given, is a finite number ≥ 0 (torch's `Invalid … value` checks).
func requireNonNegative(_ config: TrialConfig, _ key: String) throws {
    guard config.values[key] != nil else { return }
    let x = try config.double(key, default: 0)
    guard x >= 0, x.isFinite else { throw config.error(key, "must be a number ≥ 0, got \(x)") }
}
