import Linalg

/// Muon with its auxiliary AdamW, as the author's reference (`SingleDeviceMuonWithAuxAdam`,
/// KellerJordan/Muon): hidden weight matrices take SGD-momentum whose update is orthogonalised by
/// the quintic Newton–Schulz iteration; everything else — biases and other 1-D parameters, and the
/// output layer (the last matrix, unless `muon_output`) — takes AdamW.
///
/// Muon step (per matrix): m ← lerp(m, g, 1 − μ); u = lerp(g, m, μ) (Nesterov) or m;
/// u ← NS₅(u)·scale; p ← p·(1 − η·λ) − η·u, where scale is √max(1, rows/cols) (`keller`, the
/// reference) or 0.2·√max(rows, cols) (`rms`, Moonshot's AdamW-matched variant).
/// AdamW step: the reference's `adam_update` — both moments by lerp, bias corrections, ε added
/// after the square root — with its own lr (`aux_lr`), betas (`aux_betas`), ε and decay.
///
/// The reference runs Newton–Schulz in bfloat16 on GPUs; here it runs in the engine's precision,
/// so results agree with the reference's algorithm exactly in float64 and only to bf16 rounding
/// with the bf16 original.
public final class Muon<Scalar: BLASScalar>: Optimizer {
    public enum Scaling: String, Sendable { case keller, rms }

    public let name = "muon"
    public var learningRate: Double
    public let momentum: Double
    public let nesterov: Bool
    public let nsSteps: Int
    public let weightDecay: Double
    public let scaling: Scaling
    public let muonOutput: Bool
    public let auxLearningRate: Double
    public let auxBeta1: Double, auxBeta2: Double, auxEpsilon: Double, auxWeightDecay: Double
    public private(set) var step = 0

    /// Per parameter: Muon's momentum buffer, or AdamW's two moments and step.
    struct State: ParameterState {
        var momentum: Tensor<Scalar>?
        var m: Tensor<Scalar>?, v: Tensor<Scalar>?, step: Int?
        static var slots: [StateSlot<Self>] {
            [.tensor("momentum_buffer", \.momentum), .tensor("exp_avg", \.m), .tensor("exp_avg_sq", \.v), .integer("step", \.step)]
        }
        static func muon(_ shape: [Int]) -> Self { Self(momentum: Tensor(zeros: shape)) }
        static func adam(_ shape: [Int]) -> Self { Self(m: Tensor(zeros: shape), v: Tensor(zeros: shape), step: 0) }
    }
    var states = ParameterStates<State>()

    public init(
        learningRate: Double = 0.02, momentum: Double = 0.95, nesterov: Bool = true, nsSteps: Int = 5, weightDecay: Double = 0,
        scaling: Scaling = .keller, muonOutput: Bool = false, auxLearningRate: Double = 3e-4, auxBeta1: Double = 0.9,
        auxBeta2: Double = 0.95, auxEpsilon: Double = 1e-10, auxWeightDecay: Double = 0
    ) {
        self.learningRate = learningRate
        self.momentum = momentum
        self.nesterov = nesterov
        self.nsSteps = nsSteps
        self.weightDecay = weightDecay
        self.scaling = scaling
        self.muonOutput = muonOutput
        self.auxLearningRate = auxLearningRate
        self.auxBeta1 = auxBeta1
        self.auxBeta2 = auxBeta2
        self.auxEpsilon = auxEpsilon
        self.auxWeightDecay = auxWeightDecay
    }

    /// Which parameters Muon takes: matrices, except the last one (the output layer) unless asked.
    func usesMuon(_ parameters: Parameters<Scalar>) -> [Bool] {
        let matrices = parameters.values.indices.filter { parameters.values[$0].rank >= 2 }
        return parameters.values.indices.map { i in
            parameters.values[i].rank >= 2 && (muonOutput || i != matrices.last)
        }
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func update(_ parameters: Parameters<Scalar>) {
        if states.count != parameters.count { states = ParameterStates(count: parameters.count) }
        let muonFlags = usesMuon(parameters)
        step += 1
        for i in 0..<parameters.count {
            let g = parameters.gradients[i]
            if muonFlags[i] {
                if states[i]?.momentum == nil { states[i] = .muon(g.shape) }
                let mu = Scalar(momentum), w = Scalar(1 - momentum)
                lerpInPlace(&states[i]!.momentum!, g, w)
                var u = g
                if nesterov { lerpInPlace(&u, states[i]!.momentum!, mu) } else { u = states[i]!.momentum! }
                let rows = g.rows, cols = g.cols
                var o = newtonSchulzOrthogonalize(u.reshaped([rows, cols]), steps: nsSteps)
                let scale: Scalar =
                    switch scaling {
                    case .keller: Scalar(Double.maximum(1, Double(rows) / Double(cols)).squareRoot())
                    case .rms: Scalar(0.2 * Double(max(rows, cols)).squareRoot())
                    }
                for j in 0..<o.count { o.storage[j] *= scale }
                let decay = Scalar(1 - learningRate * weightDecay), lr = Scalar(learningRate)
                parameters.values[i].storage.withUnsafeMutableBufferPointer { p in
                    for j in 0..<p.count {
                        p[j] *= decay
                        p[j] += -lr * o.storage[j]
                    }
                }
            } else {
                if states[i]?.step == nil { states[i] = .adam(g.shape) }
                states[i]!.step! += 1
                let t = states[i]!.step!
                let w1 = Scalar(1 - auxBeta1), w2 = Scalar(1 - auxBeta2)
                let bc1 = Scalar(1 - Double.pow(auxBeta1, Double(t))), bc2 = Scalar(1 - Double.pow(auxBeta2, Double(t)))
                let eps = Scalar(auxEpsilon), lr = Scalar(auxLearningRate), decay = Scalar(1 - auxLearningRate * auxWeightDecay)
                states.with(i) { s in
                    s.m!.storage.withUnsafeMutableBufferPointer { m in
                        s.v!.storage.withUnsafeMutableBufferPointer { v in
                            g.storage.withUnsafeBufferPointer { g in
                                parameters.values[i].storage.withUnsafeMutableBufferPointer { p in
                                    for j in 0..<p.count {
                                        let gj = g[j]
                                        m[j] = lerp(m[j], gj, w1)
                                        v[j] = lerp(v[j], gj * gj, w2)
                                        let update = (m[j] / bc1) / ((v[j] / bc2).squareRoot() + eps)
                                        p[j] *= decay
                                        p[j] += -lr * update
                                    }
                                }
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
        let flags = usesMuon(parameters)
        states = try ParameterStates(whereSaved: state, parameters: parameters) { i in
            flags[i] ? .muon(parameters.values[i].shape) : .adam(parameters.values[i].shape)
        }
    }
}

/// The documents' "SOAP-style" optimizer (`SimpleSOAP`, 003): momentum by lerp; for matrices the
/// update is the momentum orthogonalised by SVD, U·Vᵀ, rescaled to the momentum's Frobenius norm;
/// 1-D parameters take the momentum itself. p ← p − η·u.
public final class SimpleSOAP<Scalar: BLASScalar>: Optimizer {
    public let name = "soap-simple"
    public var learningRate: Double
    public let beta1: Double
    public private(set) var step = 0

    struct State: ParameterState {
        var momentum: Tensor<Scalar>
        var step = 0
        static var slots: [StateSlot<Self>] { [.tensor("momentum", \.momentum), .integer("step", \.step)] }
    }
    var states = ParameterStates<State>()

    public init(learningRate: Double = 0.1, beta1: Double = 0.9) {
        self.learningRate = learningRate
        self.beta1 = beta1
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func update(_ parameters: Parameters<Scalar>) {
        if states.count != parameters.count { states = ParameterStates(parameters) { State(momentum: Tensor(zeros: $0)) } }
        step += 1
        let lr = Scalar(learningRate)
        for i in 0..<parameters.count {
            states[i]!.step += 1
            lerpInPlace(&states[i]!.momentum, parameters.gradients[i], Scalar(1 - beta1))
            let m = states[i]!.momentum
            var u = m
            if m.rank >= 2 {
                let matrix = m.reshaped([m.rows, m.cols])
                // A NaN momentum makes LAPACK fail: the update is NaN and the trial ends diverged.
                if let (left, _, vt) = try? svd(matrix) {
                    let u0 = matmul(left, vt)
                    let scale = Scalar(Double(matrix.norm) / (Double(u0.norm) + 1e-16))
                    u = Tensor(shape: m.shape, storage: u0.storage.map { $0 * scale })
                } else {
                    u = m.map { _ in .nan }
                }
            }
            parameters.values[i].storage.withUnsafeMutableBufferPointer { p in
                for j in 0..<p.count { p[j] += -lr * u.storage[j] }
            }
        }
    }

    public func exportState(names: [String]) -> OptimizerState<Scalar> { states.exported(step: step, names: names) }

    public func importState(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws {
        step = try state.integer("step")
        states = step == 0 ? ParameterStates() : try ParameterStates(state, parameters: parameters) { State(momentum: Tensor(zeros: $0)) }
    }
}
