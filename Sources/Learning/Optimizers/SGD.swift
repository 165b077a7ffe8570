import Linalg

/// Stochastic gradient descent with momentum, dampening, Nesterov momentum and coupled (L2)
/// weight decay, exactly as `torch.optim.SGD`:
///
///     g ← g + λ·p
///     b ← g                      (first step)
///     b ← μ·b + (1 − τ)·g        (later steps)
///     g ← g + μ·b  (Nesterov)   or   g ← b
///     p ← p − η·g
public final class SGD<Scalar: BLASScalar>: Optimizer {
    public let name = "sgd"
    public var learningRate: Double
    public var momentum: Double
    public let dampening: Double
    public let nesterov: Bool
    public let weightDecay: Double
    public private(set) var step = 0
    /// Momentum buffers, created on first use as torch does.
    struct State: ParameterState {
        var buffer: Tensor<Scalar>
        static var slots: [StateSlot<Self>] { [.tensor("momentum_buffer", \.buffer)] }
    }
    var states = ParameterStates<State>()

    public init(learningRate: Double, momentum: Double = 0, dampening: Double = 0, nesterov: Bool = false, weightDecay: Double = 0) {
        precondition(!nesterov || (momentum > 0 && dampening == 0), "Nesterov momentum requires a momentum and zero dampening")
        self.learningRate = learningRate
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
        self.weightDecay = weightDecay
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func update(_ parameters: Parameters<Scalar>) {
        if states.count != parameters.count { states = ParameterStates(count: parameters.count) }
        let lr = Scalar(learningRate), wd = Scalar(weightDecay), mu = Scalar(momentum)
        let damp = Scalar(1 - dampening)
        for i in 0..<parameters.count {
            let n = parameters.values[i].count
            let first = states[i] == nil
            if momentum != 0 && first { states[i] = State(buffer: Tensor(zeros: parameters.values[i].shape)) }
            parameters.gradients[i].storage.withUnsafeBufferPointer { g in
                parameters.values[i].storage.withUnsafeMutableBufferPointer { p in
                    if momentum == 0 {
                        for j in 0..<n { p[j] -= lr * (g[j] + wd * p[j]) }
                        return
                    }
                    states[i]!.buffer.storage.withUnsafeMutableBufferPointer { b in
                        for j in 0..<n {
                            let d = wd == 0 ? g[j] : g[j] + wd * p[j]
                            b[j] = first ? d : mu * b[j] + damp * d
                            let direction = nesterov ? d + mu * b[j] : b[j]
                            p[j] -= lr * direction
                        }
                    }
                }
            }
        }
        step += 1
    }

    public func exportState(names: [String]) -> OptimizerState<Scalar> { states.exported(step: step, names: names) }

    public func importState(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws {
        step = try state.integer("step")
        states = try ParameterStates(whereSaved: state, parameters: parameters) { State(buffer: Tensor(zeros: parameters.values[$0].shape)) }
    }
}

extension SGD: MomentumCycling {
    public var cycledMomentum: Double {
        get { momentum }
        set { momentum = newValue }
    }
}
