import Linalg

/// SOAP (Vyas et al., 2024) as the authors' implementation (`soap.py`, nikhilvyas/SOAP): Adam run
/// in the eigenbasis of Shampoo's statistics.
///
/// A tensor of order k with gradient G keeps, for each dimension j it rotates, the statistics
/// GG_j = EMA(G_(j)·G_(j)ᵀ) of its mode-j unfolding (β = `shampoo_beta`, or β₂ when negative) and
/// their eigenbasis Q_j — for a matrix L = EMA(GGᵀ) and R = EMA(GᵀG) with Q_L, Q_R. The first step
/// only initialises (statistics from the first gradient, bases by eigendecomposition) and leaves
/// the parameter alone. Each later step projects the gradient, G' = G ×₀ Q₀ᵀ ×₁ Q₁ᵀ … (Q_Lᵀ·G·Q_R),
/// runs Adam on it (moments kept in the rotated basis, bias correction folded into the step
/// size, ε added to √v), rotates the direction back, D ×₀ Q₀ ×₁ Q₁ …, applies decoupled weight
/// decay after the step, then updates the statistics; every `precondition_frequency` steps the
/// bases are refreshed by one power iteration and a QR decomposition (eigenvalue estimates sorted,
/// second moments permuted along that dimension to match), the first-moment buffer moving with
/// the basis.
///
/// Which dimensions, as the reference decides them:
/// - a tensor of rank ≥ 2 is preconditioned along each of its dimensions (a convolution kernel
///   [out, in, kh, kw] has four factors), or with `merge_dims` along the dimensions of its
///   reference `merge_dims` shape (adjacent dimensions merged from the first while their product
///   stays within `max_precond_dim`: [64, 64, 3, 3] → [4096, 9] at the default 10 000;
///   [8, 3, 3, 3] → [216]);
/// - a dimension larger than `max_precond_dim` is left unrotated;
/// - a 1-D tensor (bias, norm scale) runs plain Adam unless `precondition_1d` (one full factor
///   then); a tensor merged to one dimension is preconditioned by one full factor regardless.
///
/// Not supported from the reference: its `data_format: channels_last` (the engine's kernels are
/// [out, in, kh, kw], the reference's default `channels_first`).
public final class SOAP<Scalar: BLASScalar>: Optimizer {
    public let name = "soap"
    public var learningRate: Double
    public let beta1: Double, beta2: Double
    public let shampooBeta: Double
    public let epsilon: Double
    public let weightDecay: Double
    public let preconditionFrequency: Int
    public let maxPreconditionDim: Int
    public let mergeDims: Bool
    public let precondition1D: Bool
    public let normalizeGrads: Bool
    public let correctBias: Bool
    public private(set) var step = 0

    /// Per parameter (nil until its first gradient). Tensors have the shape SOAP preconditions
    /// the parameter as (`layout`); per dimension, nil where that dimension is not rotated.
    struct State {
        var step: Int
        var expAvg: Tensor<Scalar>  // in the rotated basis once step > 0
        var expAvgSq: Tensor<Scalar>
        var statistics: [Tensor<Scalar>?]  // GG_j
        var bases: [Tensor<Scalar>?]  // Q_j, nil until the first step
    }
    var states: [State?] = []

    public init(
        learningRate: Double = 3e-3, beta1: Double = 0.95, beta2: Double = 0.95, shampooBeta: Double = -1, epsilon: Double = 1e-8,
        weightDecay: Double = 0.01, preconditionFrequency: Int = 10, maxPreconditionDim: Int = 10_000, mergeDims: Bool = false,
        precondition1D: Bool = false, normalizeGrads: Bool = false, correctBias: Bool = true
    ) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.shampooBeta = shampooBeta >= 0 ? shampooBeta : beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.preconditionFrequency = preconditionFrequency
        self.maxPreconditionDim = maxPreconditionDim
        self.mergeDims = mergeDims
        self.precondition1D = precondition1D
        self.normalizeGrads = normalizeGrads
        self.correctBias = correctBias
    }

    /// The reference's `merge_dims`: from the first dimension, merge while the product stays
    /// within `threshold`; a dimension above it stands alone.
    public static func mergedDims(_ shape: [Int], threshold: Int) -> [Int] {
        var merged: [Int] = []
        var current = 1
        for d in shape {
            if current * d > threshold {
                if current > 1 {
                    merged.append(current)
                    current = d
                } else {
                    merged.append(d)
                }
            } else {
                current *= d
            }
        }
        if current > 1 || merged.isEmpty { merged.append(current) }
        return merged
    }

    /// The shape a tensor is preconditioned as (at least two dimensions: a vector is [1, n] with
    /// its first dimension never rotated) and which of its dimensions are rotated.
    public func layout(_ shape: [Int]) -> (dims: [Int], rotated: [Bool]) {
        if shape.count <= 1 {
            let n = shape.first ?? 1
            return ([1, n], [false, precondition1D && n <= maxPreconditionDim])
        }
        let dims = mergeDims ? Self.mergedDims(shape, threshold: maxPreconditionDim) : shape
        if dims.count == 1 { return ([1, dims[0]], [false, dims[0] <= maxPreconditionDim]) }
        return (dims, dims.map { $0 <= maxPreconditionDim })
    }

    /// A new state: zero moments and statistics, no bases yet.
    func newState(_ shape: [Int]) -> State {
        let (dims, rotated) = layout(shape)
        return State(
            step: 0, expAvg: Tensor(zeros: dims), expAvgSq: Tensor(zeros: dims),
            statistics: zip(dims, rotated).map { $1 ? Tensor(zeros: [$0, $0]) : nil }, bases: dims.map { _ in nil })
    }

    /// X ×ⱼ Qⱼᵀ along every rotated dimension (Q_Lᵀ·X·Q_R), or with `back` X ×ⱼ Qⱼ (Q_L·X·Q_Rᵀ).
    static func rotated(_ x: Tensor<Scalar>, _ bases: [Tensor<Scalar>?], back: Bool = false) -> Tensor<Scalar> {
        var y = x, scratch = Tensor<Scalar>(zeros: x.shape)
        for (j, q) in bases.enumerated() {
            guard let q else { continue }
            y.storage.withUnsafeBufferPointer { src in
                q.storage.withUnsafeBufferPointer { q in
                    scratch.storage.withUnsafeMutableBufferPointer { dst in
                        modeProduct(src.baseAddress!, dims: x.shape, mode: j, q.baseAddress!, back: back, into: dst.baseAddress!)
                    }
                }
            }
            swap(&y, &scratch)
        }
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
        // M·Q with Q's columns sorted is M·Q's columns sorted: no second product.
        var power = Tensor<Scalar>(zeros: [n, n])
        power.storage.withUnsafeMutableBufferPointer { p in
            mq.storage.withUnsafeBufferPointer { mq in
                for i in 0..<n { for (k, j) in order.enumerated() { p[i * n + k] = mq[i * n + j] } }
            }
        }
        let (basis, _) = try qr(power)
        return (basis, order)
    }

    func updatePreconditioner(_ g: Tensor<Scalar>, _ s: inout State) throws {
        let dims = g.shape
        let initialised = s.bases.contains { $0 != nil }
        // The first moment lives in the rotated basis: it is taken back before the basis moves and
        // rotated into the new one after. The reference does this round trip every step; between
        // refreshes the basis does not move and the round trip is the identity (up to rounding),
        // so it is made only when the basis changes: two of the five products a step would cost.
        let refreshing = initialised && s.step > 0 && s.step % preconditionFrequency == 0
        if refreshing { s.expAvg = Self.rotated(s.expAvg, s.bases, back: true) }
        let w = Scalar(1 - shampooBeta)
        for j in dims.indices where s.statistics[j] != nil {
            lerpInPlace(&s.statistics[j]!, modeGram(g, mode: j), w)
        }
        if !initialised {
            for j in dims.indices { if let m = s.statistics[j] { s.bases[j] = try Self.eigenbasis(m) } }
        }
        if refreshing {
            for j in dims.indices {
                guard let m = s.statistics[j], let q = s.bases[j] else { continue }
                let (basis, order) = try Self.refresh(m, q)
                s.bases[j] = basis
                permuteMode(&s.expAvgSq, mode: j, order)
            }
            s.expAvg = Self.rotated(s.expAvg, s.bases)
        }
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func update(_ parameters: Parameters<Scalar>) {
        if states.count != parameters.count { states = Array(repeating: nil, count: parameters.count) }
        step += 1
        for i in 0..<parameters.count {
            let dims = layout(parameters.values[i].shape).dims
            let g = parameters.gradients[i].reshaped(dims)
            guard var s = states[i] else {
                var s = newState(parameters.values[i].shape)
                try? updatePreconditioner(g, &s)
                states[i] = s
                continue  // the first step only initialises
            }
            let gp = Self.rotated(g, s.bases)
            s.step += 1
            let b1 = Scalar(beta1), b2 = Scalar(beta2), eps = Scalar(epsilon)
            var direction = Tensor<Scalar>(zeros: dims)
            for j in 0..<g.count {
                s.expAvg.storage[j] = s.expAvg.storage[j] * b1 + gp.storage[j] * (1 - b1)
                s.expAvgSq.storage[j] = s.expAvgSq.storage[j] * b2 + (gp.storage[j] * gp.storage[j]) * (1 - b2)
                direction.storage[j] = s.expAvg.storage[j] / (s.expAvgSq.storage[j].squareRoot() + eps)
            }
            var stepSize = learningRate
            if correctBias {
                let t = Double(s.step)
                stepSize = stepSize * (1 - Double.pow(beta2, t)).squareRoot() / (1 - Double.pow(beta1, t))
            }
            var normGrad = Self.rotated(direction, s.bases, back: true)
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
            try? updatePreconditioner(g, &s)
            states[i] = s
        }
    }

    // MARK: State

    /// The checkpoint names of dimension j's statistics and basis: `L`, `R`, `Q_L`, `Q_R` for a
    /// matrix (and a vector, [1, n]), `GG_j` and `Q_j` (the reference's `GG` and `Q` lists) for
    /// higher orders.
    static func factorNames(_ j: Int, order: Int) -> (statistics: String, basis: String) {
        if order == 2 { return j == 0 ? ("L", "Q_L") : ("R", "Q_R") }
        return ("GG_\(j)", "Q_\(j)")
    }

    public func exportState(names: [String]) -> OptimizerState<Scalar> {
        var state = OptimizerState<Scalar>()
        state.set("step", integer: step)
        for (i, s) in states.enumerated() {
            guard let s else { continue }
            let prefix = names[i], order = s.expAvg.rank
            state.set("\(prefix)/step", integer: s.step)
            state.set("\(prefix)/exp_avg", s.expAvg)
            state.set("\(prefix)/exp_avg_sq", s.expAvgSq)
            for j in 0..<order { if let m = s.statistics[j] { state.set("\(prefix)/\(Self.factorNames(j, order: order).statistics)", m) } }
            for j in 0..<order { if let q = s.bases[j] { state.set("\(prefix)/\(Self.factorNames(j, order: order).basis)", q) } }
        }
        return state
    }

    public func importState(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws {
        let imported = try state.integer("step")
        let loaded: [State?] = try parameters.names.indices.map { i in
            let prefix = parameters.names[i]
            guard state["\(prefix)/step"] != nil else { return nil }
            var s = newState(parameters.values[i].shape)
            let dims = s.expAvg.shape
            s.step = try state.integer("\(prefix)/step")
            s.expAvg = try state.tensor("\(prefix)/exp_avg", shape: dims)
            s.expAvgSq = try state.tensor("\(prefix)/exp_avg_sq", shape: dims)
            for j in dims.indices where s.statistics[j] != nil {
                let (statistics, basis) = Self.factorNames(j, order: dims.count)
                s.statistics[j] = try state.tensor("\(prefix)/\(statistics)", shape: [dims[j], dims[j]])
                s.bases[j] = try state.tensor("\(prefix)/\(basis)", shape: [dims[j], dims[j]])
            }
            return s
        }
        step = imported
        states = loaded
    }
}

/// The mode-j Gram matrix of x (shape `x.shape`): Σ over all other indices of
/// x[…, i, …]·x[…, k, …] — G·Gᵀ for j = 0 of a matrix, Gᵀ·G for j = 1; the reference's
/// `tensordot(x, x, dims=[all but j] * 2)`.
@_specialize(where T == Float)
@_specialize(where T == Double)
func modeGram<T: BLASScalar>(_ x: Tensor<T>, mode j: Int) -> Tensor<T> {
    let dims = x.shape
    let a = dims[..<j].reduce(1, *), n = dims[j], b = dims[(j + 1)...].reduce(1, *)
    var f = Tensor<T>(zeros: [n, n])
    x.storage.withUnsafeBufferPointer { px in
        f.storage.withUnsafeMutableBufferPointer { pf in
            if b == 1 || a == 1 {
                // Gᵀ·G or G·Gᵀ: a rank-k update of the upper triangle (half a GEMM), mirrored.
                T.syrkUpper(trans: b == 1, n: n, k: b == 1 ? a : b, alpha: 1, a: px.baseAddress!, lda: b == 1 ? n : b, beta: 0, c: pf.baseAddress!, ldc: n)
                for r in 0..<n { for c in 0..<r { pf[r * n + c] = pf[c * n + r] } }
                return
            }
            for s in 0..<a {
                let xs = px.baseAddress! + s * n * b
                T.gemm(
                    transA: false, transB: true, m: n, n: n, k: b, alpha: 1, a: xs, lda: b, b: xs, ldb: b, beta: s == 0 ? 0 : 1,
                    c: pf.baseAddress!, ldc: n)
            }
        }
    }
    return f
}

/// Reorders x along dimension j: index k of the result is index `order[k]` of x (torch's
/// `index_select(j, order)`).
func permuteMode<T: BLASScalar>(_ x: inout Tensor<T>, mode j: Int, _ order: [Int]) {
    let dims = x.shape
    let a = dims[..<j].reduce(1, *), n = dims[j], b = dims[(j + 1)...].reduce(1, *)
    let old = x.storage
    for s in 0..<a {
        for (k, source) in order.enumerated() {
            for c in 0..<b { x.storage[(s * n + k) * b + c] = old[(s * n + source) * b + c] }
        }
    }
}

/// `a ← a + w·(b − a)` element-wise, torch's `lerp_`.
@_specialize(where T == Float)
@_specialize(where T == Double)
func lerpInPlace<T: BLASScalar>(_ a: inout Tensor<T>, _ b: Tensor<T>, _ w: T) {
    a.storage.withUnsafeMutableBufferPointer { a in
        b.storage.withUnsafeBufferPointer { b in for j in 0..<a.count { a[j] = lerp(a[j], b[j], w) } }
    }
}
