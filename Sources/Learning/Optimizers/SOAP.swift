import Linalg

/// SOAP (Vyas et al., 2024) as the authors' implementation (`soap.py`, nikhilvyas/SOAP): Adam run
/// in the eigenbasis of Shampoo's statistics.
///
/// For a matrix parameter with gradient G (m×n) it keeps L = EMA(GGᵀ) and R = EMA(GᵀG) (β =
/// `shampoo_beta`, or β₂ when negative) and their eigenbases Q_L, Q_R. The first step only
/// initialises (statistics from the first gradient, bases by eigendecomposition) and leaves the
/// parameter alone. Each later step projects the gradient, G' = Q_Lᵀ·G·Q_R, runs Adam on it
/// (moments kept in the rotated basis, bias correction folded into the step size, ε added to
/// √v), rotates the direction back, Q_L·D·Q_Rᵀ, applies decoupled weight decay after the step,
/// then updates L and R; every `precondition_frequency` steps the bases are refreshed by one power
/// iteration and a QR decomposition (eigenvalue estimates sorted, second moments permuted to
/// match), the first-moment buffer moving with the basis. Dimensions above `max_precond_dim` are
/// left unrotated; 1-D parameters run plain Adam unless `precondition_1d`.
///
/// Not supported from the reference: `merge_dims` for >2-D tensors (the engine's models have
/// none), `normalize_grads` is supported. Tensors of rank > 2 are treated as rows × rest.
public final class SOAP<Scalar: BLASScalar>: Optimizer {
    public let name = "soap"
    public var learningRate: Double
    public let beta1: Double, beta2: Double
    public let shampooBeta: Double
    public let epsilon: Double
    public let weightDecay: Double
    public let preconditionFrequency: Int
    public let maxPreconditionDim: Int
    public let precondition1D: Bool
    public let normalizeGrads: Bool
    public let correctBias: Bool
    public private(set) var step = 0

    /// Per parameter (nil until its first gradient).
    struct State: ParameterState {
        var step: Int
        var expAvg: Tensor<Scalar>  // in the rotated basis once step > 0
        var expAvgSq: Tensor<Scalar>
        var left: Tensor<Scalar>?  // L (GGᵀ statistics), nil when that side is not preconditioned
        var right: Tensor<Scalar>?
        var qLeft: Tensor<Scalar>?
        var qRight: Tensor<Scalar>?
        static var slots: [StateSlot<Self>] {
            [.integer("step", \.step), .tensor("exp_avg", \.expAvg), .tensor("exp_avg_sq", \.expAvgSq), .tensor("L", \.left), .tensor("R", \.right), .tensor("Q_L", \.qLeft), .tensor("Q_R", \.qRight)]
        }
    }
    var states = ParameterStates<State>()

    public init(
        learningRate: Double = 3e-3, beta1: Double = 0.95, beta2: Double = 0.95, shampooBeta: Double = -1, epsilon: Double = 1e-8,
        weightDecay: Double = 0.01, preconditionFrequency: Int = 10, maxPreconditionDim: Int = 10_000, precondition1D: Bool = false,
        normalizeGrads: Bool = false, correctBias: Bool = true
    ) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.shampooBeta = shampooBeta >= 0 ? shampooBeta : beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.preconditionFrequency = preconditionFrequency
        self.maxPreconditionDim = maxPreconditionDim
        self.precondition1D = precondition1D
        self.normalizeGrads = normalizeGrads
        self.correctBias = correctBias
    }

    /// (rows, cols) of the matrix view and which sides are rotated.
    func sides(_ shape: [Int]) -> (rows: Int, cols: Int, left: Bool, right: Bool) {
        if shape.count <= 1 {
            let n = shape.first ?? 1
            return (1, n, false, precondition1D && n <= maxPreconditionDim)
        }
        let rows = shape[0], cols = shape.dropFirst().reduce(1, *)
        return (rows, cols, rows <= maxPreconditionDim, cols <= maxPreconditionDim)
    }

    /// Q_Lᵀ·X·Q_R (rotated sides only).
    func project(_ x: Tensor<Scalar>, _ s: State) -> Tensor<Scalar> {
        var y = x
        if let ql = s.qLeft { y = matmul(ql, transposeA: true, y) }
        if let qr = s.qRight { y = matmul(y, qr) }
        return y
    }

    /// Q_L·X·Q_Rᵀ.
    func projectBack(_ x: Tensor<Scalar>, _ s: State) -> Tensor<Scalar> {
        var y = x
        if let ql = s.qLeft { y = matmul(ql, y) }
        if let qr = s.qRight { y = matmul(y, qr, transposeB: true) }
        return y
    }

    /// Eigenvectors, largest eigenvalue first (the reference flips eigh's ascending order).
    static func eigenbasis(_ m: Tensor<Scalar>) throws -> Tensor<Scalar> {
        var shifted = m
        let n = m.rows
        for i in 0..<n { shifted.storage[i * n + i] += Scalar(1e-30) }
        let (_, v) = try symmetricEigen(shifted)
        var flipped = v
        for i in 0..<n { for j in 0..<n { flipped.storage[i * n + j] = v.storage[i * n + (n - 1 - j)] } }
        return flipped
    }

    /// One power iteration + QR; returns the new basis and the permutation applied.
    static func refresh(_ m: Tensor<Scalar>, _ q: Tensor<Scalar>) throws -> (Tensor<Scalar>, [Int]) {
        let n = m.rows
        let mq = matmul(m, q)
        var estimates = [Scalar](repeating: 0, count: n)
        for j in 0..<n {
            var s: Scalar = 0
            for i in 0..<n { s += q.storage[i * n + j] * mq.storage[i * n + j] }
            estimates[j] = s
        }
        let order = (0..<n).sorted { estimates[$0] > estimates[$1] || (estimates[$0] == estimates[$1] && $0 < $1) }
        var sorted = Tensor<Scalar>(zeros: [n, n])
        for i in 0..<n { for (k, j) in order.enumerated() { sorted.storage[i * n + k] = q.storage[i * n + j] } }
        let (basis, _) = try qr(matmul(m, sorted))
        return (basis, order)
    }

    func updatePreconditioner(_ g: Tensor<Scalar>, _ s: inout State, rows: Int, cols: Int) throws {
        // The first moment lives in the rotated basis: take it back before the basis moves (the
        // reference does this every step, so its rounding is part of the algorithm).
        if s.qLeft != nil || s.qRight != nil { s.expAvg = projectBack(s.expAvg, s) }
        let w = Scalar(1 - shampooBeta)
        let g2 = g.reshaped([rows, cols])
        if s.left != nil { lerpInPlace(&s.left!, matmul(g2, g2, transposeB: true), w) }
        if s.right != nil { lerpInPlace(&s.right!, matmul(g2, transposeA: true, g2), w) }
        if s.qLeft == nil && s.qRight == nil && (s.left != nil || s.right != nil) {
            if let l = s.left { s.qLeft = try Self.eigenbasis(l) }
            if let r = s.right { s.qRight = try Self.eigenbasis(r) }
        }
        if s.step > 0 && s.step % preconditionFrequency == 0 {
            if let l = s.left, let ql = s.qLeft {
                let (q, order) = try Self.refresh(l, ql)
                s.qLeft = q
                permuteRows(&s.expAvgSq, order, rows: rows, cols: cols)
            }
            if let r = s.right, let qr = s.qRight {
                let (q, order) = try Self.refresh(r, qr)
                s.qRight = q
                permuteColumns(&s.expAvgSq, order, rows: rows, cols: cols)
            }
        }
        if s.step > 0 { s.expAvg = project(s.expAvg, s) }
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func update(_ parameters: Parameters<Scalar>) {
        if states.count != parameters.count { states = ParameterStates(count: parameters.count) }
        step += 1
        for i in 0..<parameters.count {
            let shape = parameters.values[i].shape
            let (rows, cols, left, right) = sides(shape)
            let g = parameters.gradients[i].reshaped([rows, cols])
            guard var s = states[i] else {
                var s = State(
                    step: 0, expAvg: Tensor(zeros: [rows, cols]), expAvgSq: Tensor(zeros: [rows, cols]),
                    left: left ? Tensor(zeros: [rows, rows]) : nil, right: right ? Tensor(zeros: [cols, cols]) : nil, qLeft: nil, qRight: nil)
                try? updatePreconditioner(g, &s, rows: rows, cols: cols)
                states[i] = s
                continue  // the first step only initialises
            }
            let gp = project(g, s)
            s.step += 1
            let b1 = Scalar(beta1), b2 = Scalar(beta2), eps = Scalar(epsilon)
            var direction = Tensor<Scalar>(zeros: [rows, cols])
            for j in 0..<(rows * cols) {
                s.expAvg.storage[j] = s.expAvg.storage[j] * b1 + gp.storage[j] * (1 - b1)
                s.expAvgSq.storage[j] = s.expAvgSq.storage[j] * b2 + (gp.storage[j] * gp.storage[j]) * (1 - b2)
                direction.storage[j] = s.expAvg.storage[j] / (s.expAvgSq.storage[j].squareRoot() + eps)
            }
            var stepSize = learningRate
            if correctBias {
                let t = Double(s.step)
                stepSize = stepSize * (1 - Double.pow(beta2, t)).squareRoot() / (1 - Double.pow(beta1, t))
            }
            var normGrad = projectBack(direction, s)
            if normalizeGrads {
                let rms = (Double(normGrad.squaredNorm) / Double(normGrad.count)).squareRoot()
                let scale = Scalar(1 / (1e-30 + rms))
                for j in 0..<normGrad.count { normGrad.storage[j] *= scale }
            }
            let alpha = Scalar(-stepSize), decay = Scalar(-learningRate * weightDecay)
            parameters.values[i].storage.withUnsafeMutableBufferPointer { p in
                for j in 0..<p.count { p[j] += alpha * normGrad.storage[j] }
                if weightDecay > 0 { for j in 0..<p.count { p[j] += decay * p[j] } }
            }
            try? updatePreconditioner(g, &s, rows: rows, cols: cols)
            states[i] = s
        }
    }

    public func exportState(names: [String]) -> OptimizerState<Scalar> { states.exported(step: step, names: names) }

    public func importState(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws {
        step = try state.integer("step")
        states = try ParameterStates(whereSaved: state, parameters: parameters) { i in
            let (rows, cols, left, right) = sides(parameters.values[i].shape)
            func square(_ side: Bool, _ n: Int) -> Tensor<Scalar>? { side ? Tensor(zeros: [n, n]) : nil }
            return State(
                step: 0, expAvg: Tensor(zeros: [rows, cols]), expAvgSq: Tensor(zeros: [rows, cols]),
                left: square(left, rows), right: square(right, cols), qLeft: square(left, rows), qRight: square(right, cols))
        }
    }
}

/// `a ← a + w·(b − a)` element-wise, torch's `lerp_`.
func lerpInPlace<T: BLASScalar>(_ a: inout Tensor<T>, _ b: Tensor<T>, _ w: T) {
    for j in 0..<a.count { a.storage[j] = lerp(a.storage[j], b.storage[j], w) }
}

func permuteRows<T: BLASScalar>(_ x: inout Tensor<T>, _ order: [Int], rows: Int, cols: Int) {
    let old = x.storage
    for (k, r) in order.enumerated() { for c in 0..<cols { x.storage[k * cols + c] = old[r * cols + c] } }
}

func permuteColumns<T: BLASScalar>(_ x: inout Tensor<T>, _ order: [Int], rows: Int, cols: Int) {
    let old = x.storage
    for r in 0..<rows { for (k, c) in order.enumerated() { x.storage[r * cols + k] = old[r * cols + c] } }
}
