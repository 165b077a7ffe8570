import Linalg

/// Muon with its auxiliary AdamW, as the author's reference (`SingleDeviceMuonWithAuxAdam`,
/// KellerJordan/Muon): hidden weights — parameters of role `weight` and rank ≥ 2, matrices and
/// convolution kernels — take SGD-momentum whose update is orthogonalised by the quintic
/// Newton–Schulz iteration; everything else — embeddings, the output layer (role `head`, unless
/// `muon_output`), norm parameters, biases and any other vector — takes AdamW, as the reference's
/// recipe splits a model (hidden matrices by Muon; embeddings, head and scalars by Adam).
///
/// Muon step (per tensor): m ← lerp(m, g, 1 − μ); u = lerp(g, m, μ) (Nesterov) or m;
/// u ← NS₅(U)·scale; p ← p·(1 − η·λ) − η·u, where U is u as a matrix: itself for a matrix, and a
/// convolution kernel [out, in, kh, kw] flattened to [out, in·kh·kw] (the reference's
/// `update.view(len(update), -1)`). scale is
///
/// - `keller` (the reference): √max(1, a/b) of the tensor's last two dimensions as the parameter
///   has them (`grad.size(-2) / grad.size(-1)`): rows/cols for a matrix, kh/kw — 1 for a square
///   kernel — for a convolution kernel, not the flattened matrix's rows/cols;
/// - `rms` (Moonshot's AdamW-matched variant): 0.2·√max(rows, cols) of the orthogonalised matrix U
///   (so the update's RMS is 0.2 for kernels too; Moonshot's code and `torch.optim.Muon` take 2-D
///   parameters only).
///
/// Muon refuses (`ShapeChecking`) a tensor it would orthogonalise of rank 3 or above 4: the
/// reference would treat a 3-D tensor as a batch of matrices, which no model here means.
///
/// AdamW step: the reference's `adam_update` — both moments by lerp, bias corrections, ε added
/// after the square root — with its own lr (`aux_lr`), betas (`aux_betas`), ε and decay.
///
/// The reference runs Newton–Schulz in bfloat16 on GPUs; here it runs in the engine's precision,
/// so results agree with the reference's algorithm exactly in float64 and only to bf16 rounding
/// with the bf16 original.
public final class Muon<Scalar: BLASScalar>: Optimizer, ShapeChecking {
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

    /// Whether Muon (rather than AdamW) steps a tensor of this role and shape: hidden weights of
    /// rank ≥ 2, and the head too with `muon_output`.
    public func usesMuon(role: ParameterRole, shape: [Int]) -> Bool {
        shape.count >= 2 && (role == .weight || (muonOutput && role == .head))
    }

    func usesMuon(_ parameters: Parameters<Scalar>) -> [Bool] {
        parameters.values.indices.map { usesMuon(role: parameters.roles[$0], shape: parameters.values[$0].shape) }
    }

    /// The matrix Newton–Schulz orthogonalises for a tensor of this shape: a matrix as it is, a
    /// convolution kernel [out, in, kh, kw] as [out, in·kh·kw]; nil for other ranks.
    static func matrixShape(_ shape: [Int]) -> (rows: Int, cols: Int)? {
        switch shape.count {
        case 2: (shape[0], shape[1])
        case 4: (shape[0], shape[1] * shape[2] * shape[3])
        default: nil
        }
    }

    /// The factor the orthogonalised update of a matrix or kernel of this shape is multiplied by
    /// (see the type's documentation).
    public func updateScale(_ shape: [Int]) -> Double {
        guard let (rows, cols) = Self.matrixShape(shape) else { preconditionFailure("muon orthogonalises no tensor of shape \(shape)") }
        switch scaling {
        case .keller: return Double.maximum(1, Double(shape[shape.count - 2]) / Double(shape[shape.count - 1])).squareRoot()
        case .rms: return 0.2 * Double(max(rows, cols)).squareRoot()
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
                guard let (rows, cols) = Self.matrixShape(g.shape) else {
                    preconditionFailure("muon cannot orthogonalise \(parameters.names[i]) of shape \(g.shape) (see Muon.check)")
                }
                var o = newtonSchulzOrthogonalize(u.reshaped([rows, cols]), steps: nsSteps)
                let scale = Scalar(updateScale(g.shape))
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

    public func check(_ layout: ParameterLayout) throws {
        for (parameter, shape, role) in layout.entries where usesMuon(role: role, shape: shape) && Self.matrixShape(shape) == nil {
            throw UnsupportedParameterError(
                optimizer: name, parameter: parameter, shape: shape, role: role,
                reason: "Muon orthogonalises matrices and 4-D convolution kernels; give this tensor another role or use another optimizer")
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

/// The documents' "SOAP-style" optimizer (`SimpleSOAP`, 003): momentum by lerp; for tensors of
/// rank ≥ 2 the update is the momentum orthogonalised by SVD, U·Vᵀ, rescaled to the momentum's
/// Frobenius norm; 1-D parameters take the momentum itself. p ← p − η·u.
///
/// As the document's code (`torch.linalg.svd` batches over leading dimensions) a tensor of rank
/// > 2 is orthogonalised matrix by matrix over its last two dimensions — a convolution kernel
/// [out, in, kh, kw] as out·in separate kh×kw matrices — and rescaled to the whole momentum's norm.
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
                let rows = m.shape[m.rank - 2], cols = m.shape[m.rank - 1], size = rows * cols
                var u0 = [Scalar]()
                u0.reserveCapacity(m.count)
                for start in stride(from: 0, to: m.count, by: size) {
                    let matrix = Tensor(shape: [rows, cols], storage: Array(m.storage[start..<(start + size)]))
                    // A NaN momentum makes LAPACK fail: the update is NaN and the trial ends diverged.
                    if let (left, _, vt) = try? svd(matrix) {
                        u0 += matmul(left, vt).storage
                    } else {
                        u0 += Array(repeating: .nan, count: size)
                    }
                }
                let u0Norm = Tensor(shape: [u0.count], storage: u0).norm
                let scale = Scalar(Double(m.norm) / (Double(u0Norm) + 1e-16))
                u = Tensor(shape: m.shape, storage: u0.map { $0 * scale })
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
