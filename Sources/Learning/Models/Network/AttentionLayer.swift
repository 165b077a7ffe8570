import Linalg

/// Causal multi-head self-attention on sequences `[N·T, E]`: `qkv = x·W_qkvᵀ + b` (queries,
/// keys and values side by side, each head a slice of E/heads columns), per example and head
/// `P = softmax(QKᵀ/√d)` over the positions up to each query's, `O = P·V`, and the heads'
/// outputs through `proj`. Dropout on P, when set, draws from the trial's noise stream.
final class AttentionLayer<T: BLASScalar>: Layer<T> {
    let qkvWeight: Int, qkvBias: Int, projWeight: Int, projBias: Int
    let heads: Int
    let dropout: Double
    /// The projections' outputs and the attention weights of the last forward pass.
    var qkv = Tensor<T>(zeros: [0])
    var context = Tensor<T>(zeros: [0])
    /// Per example and head, `T × T`: the softmax, and (with dropout) the mask (0 or 1/(1 − p)).
    var probabilities: [T] = []
    var mask: [T] = []
    /// One head's dropped-out weights P ⊙ mask.
    var scratch: [T] = []
    var dropped = false
    // Backward workspace.
    var dQKV = Tensor<T>(zeros: [0])
    var dContext = Tensor<T>(zeros: [0])
    var dP: [T] = []

    init(shape: FeatureShape, name: String, qkvWeight: Int, qkvBias: Int, projWeight: Int, projBias: Int, heads: Int, dropout: Double) {
        (self.qkvWeight, self.qkvBias, self.projWeight, self.projBias) = (qkvWeight, qkvBias, projWeight, projBias)
        (self.heads, self.dropout) = (heads, dropout)
        super.init(input: shape, output: shape, name: name)
    }

    var dims: (t: Int, e: Int, d: Int) {
        guard case .sequence(let t, let e) = input else { preconditionFailure("attention on \(input)") }
        return (t, e, e / heads)
    }

    override var macs: Int {
        let (t, e, _) = dims
        return t * (4 * e * e) + 2 * t * t * e
    }

    override var hasWeights: Bool { true }

    override func forward(_ x: Tensor<T>, into y: inout Tensor<T>, _ p: Parameters<T>, _ pass: ForwardPass, rng: inout Xoshiro256) {
        attend(x, into: &y, p, pass, rng: &rng)
    }

    override func backward(_ x: Tensor<T>, _ y: Tensor<T>, _ dy: Tensor<T>, into dx: inout Tensor<T>, wantsInput: Bool, _ p: Parameters<T>) {
        attentionBackward(x, dy, into: &dx, wantsInput: wantsInput, p)
    }

    /// The passes, reached through their specialisations' entry points (the overriding methods
    /// run unspecialised).
    @inline(never)
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func attend(_ x: Tensor<T>, into y: inout Tensor<T>, _ p: Parameters<T>, _ pass: ForwardPass, rng: inout Xoshiro256) {
        let (t, e, d) = dims, n = pass.batch
        gemm(x, p.values[qkvWeight], transposeB: true, into: &qkv)
        addRowVector(p.values[qkvBias], to: &qkv)
        if context.shape != [n * t, e] { context.resize([n * t, e]) }
        let block = t * t
        if probabilities.count != n * heads * block { probabilities = [T](repeating: 0, count: n * heads * block) }
        dropped = pass.training && dropout > 0
        if dropped && mask.count != probabilities.count { mask = [T](repeating: 0, count: probabilities.count) }
        if dropped && scratch.count != block { scratch = [T](repeating: 0, count: block) }
        let scale = T(1 / Double(d).squareRoot()), keep = T(1 / (1 - dropout))
        qkv.storage.withUnsafeBufferPointer { qkv in
            context.storage.withUnsafeMutableBufferPointer { ctx in
                probabilities.withUnsafeMutableBufferPointer { probs in
                    mask.withUnsafeMutableBufferPointer { mask in
                        scratch.withUnsafeMutableBufferPointer { scratch in
                            for ex in 0..<n {
                                for h in 0..<heads {
                                    let q = qkv.baseAddress! + ex * t * 3 * e + h * d
                                    let k = q + e, v = q + 2 * e
                                    let s = probs.baseAddress! + (ex * heads + h) * block
                                    // S = Q·Kᵀ/√d, then a causal softmax per row.
                                    T.gemm(transA: false, transB: true, m: t, n: t, k: d, alpha: scale, a: q, lda: 3 * e, b: k, ldb: 3 * e, beta: 0, c: s, ldc: t)
                                    for i in 0..<t {
                                        let row = s + i * t
                                        var top = row[0]
                                        for j in 0...i where row[j] > top { top = row[j] }
                                        let inv = 1 / exponentiateShifted(row, count: i + 1, shift: top)
                                        for j in 0...i { row[j] *= inv }
                                        for j in (i + 1)..<t { row[j] = 0 }
                                    }
                                    var weights = UnsafePointer(s)
                                    if dropped {
                                        let m = mask.baseAddress! + (ex * heads + h) * block
                                        for i in 0..<block {
                                            m[i] = rng.nextUnit() < dropout ? 0 : keep
                                            scratch[i] = s[i] * m[i]
                                        }
                                        weights = UnsafePointer(scratch.baseAddress!)
                                    }
                                    // O = P·V into this head's columns of the context.
                                    let o = ctx.baseAddress! + ex * t * e + h * d
                                    T.gemm(transA: false, transB: false, m: t, n: d, k: t, alpha: 1, a: weights, lda: t, b: v, ldb: 3 * e, beta: 0, c: o, ldc: e)
                                }
                            }
                        }
                    }
                }
            }
        }
        gemm(context, p.values[projWeight], transposeB: true, into: &y)
        addRowVector(p.values[projBias], to: &y)
    }

    @inline(never)
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func attentionBackward(_ x: Tensor<T>, _ dy: Tensor<T>, into dx: inout Tensor<T>, wantsInput: Bool, _ p: Parameters<T>) {
        let (t, e, d) = dims, n = x.count / e / t
        gemm(dy, transposeA: true, context, into: &p.gradients[projWeight], beta: 1)
        addColumnSums(dy, to: &p.gradients[projBias])
        gemm(dy, p.values[projWeight], into: &dContext)
        if dQKV.shape != qkv.shape { dQKV.resize(qkv.shape) }
        let block = t * t
        if dP.count != block { dP = [T](repeating: 0, count: block) }
        if dropped && scratch.count != block { scratch = [T](repeating: 0, count: block) }
        let scale = T(1 / Double(d).squareRoot())
        qkv.storage.withUnsafeBufferPointer { qkv in
            dQKV.storage.withUnsafeMutableBufferPointer { dqkv in
                dContext.storage.withUnsafeBufferPointer { dctx in
                    probabilities.withUnsafeBufferPointer { probs in
                        mask.withUnsafeBufferPointer { mask in
                            dP.withUnsafeMutableBufferPointer { dp in
                                scratch.withUnsafeMutableBufferPointer { scratch in
                                    for ex in 0..<n {
                                        for h in 0..<heads {
                                            let q = qkv.baseAddress! + ex * t * 3 * e + h * d
                                            let k = q + e, v = q + 2 * e
                                            let dq = dqkv.baseAddress! + ex * t * 3 * e + h * d
                                            let dk = dq + e, dv = dq + 2 * e
                                            let s = probs.baseAddress! + (ex * heads + h) * block
                                            let m = mask.baseAddress.map { $0 + (ex * heads + h) * block }
                                            var weights = s
                                            if dropped, let m {
                                                for i in 0..<block { scratch[i] = s[i] * m[i] }
                                                weights = UnsafePointer(scratch.baseAddress!)
                                            }
                                            let dO = dctx.baseAddress! + ex * t * e + h * d
                                            // dV = P'ᵀ·dO; dP' = dO·Vᵀ.
                                            T.gemm(transA: true, transB: false, m: t, n: d, k: t, alpha: 1, a: weights, lda: t, b: dO, ldb: e, beta: 0, c: dv, ldc: 3 * e)
                                            T.gemm(transA: false, transB: true, m: t, n: t, k: d, alpha: 1, a: dO, lda: e, b: v, ldb: 3 * e, beta: 0, c: dp.baseAddress!, ldc: t)
                                            // Through the dropout mask (P' = P·m/(1−p)), then the softmax:
                                            // dS = P ⊙ (dP − Σ_j dP·P), zero above the diagonal since P is.
                                            for i in 0..<t {
                                                let row = s + i * t, g = dp.baseAddress! + i * t
                                                if dropped, let m {
                                                    for j in 0...i { g[j] *= m[i * t + j] }
                                                }
                                                var dot = T(0)
                                                for j in 0...i { dot += g[j] * row[j] }
                                                for j in 0...i { g[j] = row[j] * (g[j] - dot) }
                                                for j in (i + 1)..<t { g[j] = 0 }
                                            }
                                            // dQ = dS·K/√d; dK = dSᵀ·Q/√d.
                                            T.gemm(transA: false, transB: false, m: t, n: d, k: t, alpha: scale, a: dp.baseAddress!, lda: t, b: k, ldb: 3 * e, beta: 0, c: dq, ldc: 3 * e)
                                            T.gemm(transA: true, transB: false, m: t, n: d, k: t, alpha: scale, a: dp.baseAddress!, lda: t, b: q, ldb: 3 * e, beta: 0, c: dk, ldc: 3 * e)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        gemm(dQKV, transposeA: true, x, into: &p.gradients[qkvWeight], beta: 1)
        addColumnSums(dQKV, to: &p.gradients[qkvBias])
        if wantsInput { gemm(dQKV, p.values[qkvWeight], into: &dx) }
    }
}
