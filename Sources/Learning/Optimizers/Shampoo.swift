import Linalg

public enum ShampooGrafting: String, CaseIterable, Sendable { case none, sgd, adagrad, rmsprop, adam }

/// `Shampoo`'s hyperparameters besides the learning rate, with the reference's defaults.
public struct ShampooConfiguration: Sendable, Equatable {
    public var beta1 = 0.9
    /// 1: sum of outer products (AdaGrad-like); below 1: exponential moving average.
    public var beta2 = 1.0
    /// The filtered gradient's weight of the current gradient; negative means `beta1`.
    public var beta3 = -1.0
    public var epsilon = 1e-12
    public var weightDecay = 0.0
    public var decoupledWeightDecay = true
    public var maxPreconditionerDim = 1024
    public var preconditionFrequency = 1
    /// Negative means `preconditionFrequency`.
    public var startPreconditioningStep = -1
    public var useBiasCorrection = true
    /// Roots by tensor order: one value for all orders, or `[r0, r1, r2, …]`; 0 means the
    /// default 2·order.
    public var inverseRootOverride: [Double] = []
    public var grafting = ShampooGrafting.none
    /// Defaults: RMSprop 0.99, Adam 0.999; AdaGrad always 1.
    public var graftingBeta2: Double? = nil
    public var graftingEpsilon = 1e-10
    public var momentum = 0.0
    public var dampening = 0.0
    public var useNesterov = false

    public init() {}

    var resolvedBeta3: Double { beta3 < 0 ? beta1 : beta3 }
    var resolvedStart: Int { startPreconditioningStep < 0 ? preconditionFrequency : startPreconditioningStep }
    var resolvedGraftingBeta2: Double {
        switch grafting {
        case .adagrad, .none, .sgd: 1
        case .rmsprop: graftingBeta2 ?? 0.99
        case .adam: graftingBeta2 ?? 0.999
        }
    }

    /// The root r of a factor of a tensor of this order (the preconditioner is F^(−1/r)).
    func root(order: Int) -> Double {
        let o = inverseRootOverride
        if o.count == 1, o[0] != 0 { return o[0] }
        if o.count > 1, order < o.count, o[order] != 0 { return o[order] }
        return Double(2 * max(order, 1))
    }
}

/// Shampoo as Meta's reference implementation, `DistributedShampoo` (facebookresearch/optimizers,
/// `distributed_shampoo/`), on one device with its default root-inverse preconditioner
/// (eigendecomposition, epsilon added before the decomposition).
///
/// Parameters are first reshaped as the reference does: dimensions of size 1 are dropped and
/// adjacent dimensions are merged (from the last) while their product stays within
/// `max_preconditioner_dim` — so a 5×3 matrix is a vector of 15 unless the limit is below 15, and
/// a 1-D tensor is preconditioned by one full factor (full-matrix AdaGrad). Each dimension larger
/// than the limit is then split into blocks of at most `max_preconditioner_dim` (the last block
/// smaller), and every block is an independent Shampoo problem. Per step t and block with gradient
/// G of order k:
///
///     G ← G + λ·W                                   (L2 decay, use_decoupled_weight_decay false)
///     F_j ← β₂·F_j + w·G_(j)·G_(j)ᵀ  for each dim j  (w = 1 if β₂ = 1, else 1 − β₂; β₂ = 1 sums)
///     when t % precondition_frequency == 0 and t > start, or t == start:
///         P_j ← (F_j / (1 − β₂ᵗ) + ε·I)^(−1/r)     (eigendecomposition; eigenvalues shifted to ≥ ε;
///                                                    r = 2k, or inv_root_override; P_j = I before)
///     V ← β₂'·V + w'·G²                             (grafting statistics: AdaGrad, RMSprop, Adam)
///     M₁ ← lerp(M₁, G, 1 − β₁);  Ḡ = M₁ / (1 − β₃·β₁ᵗ⁻¹)   (filtered gradient, if β₁ > 0)
///     D = Ḡ ×₀ P₀ ×₁ P₁ …                            (L·Ḡ·R for a matrix)
///     D ← D · ‖graft(Ḡ)‖ / (‖D‖ + 1e-16)            (grafting; graft(Ḡ) alone while t < start)
///     D ← D + λ·W                                   (decoupled decay)
///     B ← μ·B + (1 − τ)·D;  D = (1 − τ)·D + μ·B (Nesterov) or B
///     W ← W − η·D
///
/// where graft(Ḡ) is Ḡ (SGD) or Ḡ / (√(V / bias correction) + ε_graft) (bias correction for Adam
/// only). Everything is per block; `step` is global, as the reference's group step.
///
/// Differences from the reference: a non-finite factor matrix or a failed eigendecomposition
/// keeps the previous inverse root instead of raising (the reference raises
/// `PreconditionerValueError` on NaN/Inf, and after 3 consecutive solver failures); the
/// reference's distributed, iterate-averaging, eigenvalue-corrected (SOAP), Newton-iteration and
/// trace-scaling options, and per-dimension exponent overrides, are not offered.
///
/// Cost: each refresh is one `syevd` per factor (at most `max_preconditioner_dim` square) plus a
/// GEMM to rebuild the root; the other steps cost two GEMMs per factor (statistics and
/// preconditioning). On the VAE 784-400-20 (one core) refreshing every step costs about 34× an
/// AdamW epoch with the default 1024 and 15× with blocks of 64, the eigendecompositions taking
/// most of it; `precondition_frequency` 10 with blocks of 128 is about 4×.
public final class Shampoo<Scalar: BLASScalar>: Optimizer {
    public typealias Grafting = ShampooGrafting
    public typealias Configuration = ShampooConfiguration

    public let name = "shampoo"
    public var learningRate: Double
    public let configuration: Configuration
    public private(set) var step = 0

    /// One block of one parameter: where it lives in the parameter, and its state.
    struct Block {
        /// Shape of the block (order k = dims.count).
        var dims: [Int]
        /// Offsets in the parameter's storage of the block's contiguous runs (rows of its last dim).
        var runs: [Int]
        var runLength: Int
        var count: Int { runs.count * runLength }
        /// F_j and P_j = F_j^(−1/r), one per dimension.
        var factors: [Tensor<Scalar>]
        var inverseRoots: [Tensor<Scalar>]
        var root: Double
        var grafting: Tensor<Scalar>?
        var filtered: Tensor<Scalar>?
        var momentum: Tensor<Scalar>?
    }
    /// Per parameter (empty until the first update or an import).
    var blocks: [[Block]] = []
    let eigen = SymmetricEigenSolver<Scalar>()

    public init(learningRate: Double = 1e-2, configuration: Configuration = Configuration()) {
        precondition(configuration.maxPreconditionerDim >= 1 && configuration.preconditionFrequency >= 1)
        self.learningRate = learningRate
        self.configuration = configuration
    }

    // MARK: Blocking

    /// The reference's `merge_small_dims` with target dimensionality 1: squeeze size-1 dims, then
    /// merge neighbours from the last dimension while the product stays within `threshold`.
    static func mergeSmallDims(_ shape: [Int], threshold: Int) -> [Int] {
        if shape.contains(0) { return [0] }
        let squeezed = shape.reversed().filter { $0 != 1 }
        guard let first = squeezed.first else { return [1] }
        var merged = [first]
        for (processed, next) in squeezed.dropFirst().enumerated().map({ ($0.offset + 1, $0.element) }) {
            let potential = merged.count + (squeezed.count - processed)
            if potential > 1, merged[merged.count - 1] * next <= threshold {
                merged[merged.count - 1] *= next
            } else {
                merged.append(next)
            }
        }
        return merged.reversed()
    }

    /// The reference's `multi_dim_split`: blocks in row-major order of the block grid, each
    /// dimension cut into pieces of `size` (the last one smaller).
    static func splitBlocks(_ shape: [Int], size: Int) -> [(offsets: [Int], dims: [Int])] {
        var result: [(offsets: [Int], dims: [Int])] = [([], [])]
        for d in shape {
            var next: [(offsets: [Int], dims: [Int])] = []
            for block in result {
                var start = 0
                repeat {
                    let len = min(size, d - start)
                    next.append((block.offsets + [start], block.dims + [len]))
                    start += len
                } while start < d
            }
            result = next
        }
        return result
    }

    func makeBlocks(_ shape: [Int]) -> [Block] {
        let count = shape.reduce(1, *)
        if count == 0 { return [] }
        let merged = Self.mergeSmallDims(shape, threshold: configuration.maxPreconditionerDim)
        var strides = [Int](repeating: 1, count: merged.count)
        for d in stride(from: merged.count - 2, through: 0, by: -1) { strides[d] = strides[d + 1] * merged[d + 1] }
        let root = configuration.root(order: merged.count)
        return Self.splitBlocks(merged, size: configuration.maxPreconditionerDim).map { b in
            // Runs: every index of the leading dims, the last dim contiguous.
            var runs: [Int] = []
            let lead = b.dims.dropLast()
            var index = [Int](repeating: 0, count: lead.count)
            let leadCount = lead.reduce(1, *)
            runs.reserveCapacity(leadCount)
            for _ in 0..<leadCount {
                var offset = b.offsets[merged.count - 1]
                for d in 0..<lead.count { offset += (b.offsets[d] + index[d]) * strides[d] }
                runs.append(offset)
                var d = lead.count - 1
                while d >= 0 {
                    index[d] += 1
                    if index[d] < lead[lead.startIndex + d] { break }
                    index[d] = 0
                    d -= 1
                }
            }
            let c = configuration
            return Block(
                dims: b.dims, runs: runs, runLength: b.dims[b.dims.count - 1],
                factors: b.dims.map { Tensor(zeros: [$0, $0]) }, inverseRoots: b.dims.map { Tensor.identity($0) }, root: root,
                grafting: [.adagrad, .rmsprop, .adam].contains(c.grafting) ? Tensor(zeros: b.dims) : nil,
                filtered: c.beta1 != 0 ? Tensor(zeros: b.dims) : nil,
                momentum: c.momentum != 0 ? Tensor(zeros: b.dims) : nil)
        }
    }

    // MARK: Step

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func update(_ parameters: Parameters<Scalar>) {
        if blocks.count != parameters.count { blocks = parameters.values.map { makeBlocks($0.shape) } }
        step += 1
        let c = configuration
        let t = step
        let start = c.resolvedStart
        let refresh = (t % c.preconditionFrequency == 0 && t > start) || t == start
        let useGraftingMethod = t < start && c.grafting != .none
        let bc2 = c.useBiasCorrection && c.beta2 < 1 ? 1 - Double.pow(c.beta2, Double(t)) : 1
        let graftBeta2 = c.resolvedGraftingBeta2
        let graftBC2 = c.grafting == .adam && graftBeta2 < 1 ? 1 - Double.pow(graftBeta2, Double(t)) : 1
        let beta3 = c.resolvedBeta3
        let bc1 = c.useBiasCorrection ? 1 - beta3 * Double.pow(c.beta1, Double(t - 1)) : 1
        for i in 0..<parameters.count {
            for b in blocks[i].indices {
                stepBlock(
                    &blocks[i][b], parameters, i, refresh: refresh, useGraftingMethod: useGraftingMethod, bc2: bc2, graftBeta2: graftBeta2,
                    graftBC2: graftBC2, beta3: beta3, bc1: bc1)
            }
        }
    }

    // Scratch, reused across blocks and steps.
    let gradScratch = ShampooScratch<Scalar>(), paramScratch = ShampooScratch<Scalar>(), filteredScratch = ShampooScratch<Scalar>()
    let directionScratch = ShampooScratch<Scalar>(), graftScratch = ShampooScratch<Scalar>(), productScratch = ShampooScratch<Scalar>()
    let outerScratch = ShampooScratch<Scalar>()

    func stepBlock(
        _ block: inout Block, _ parameters: Parameters<Scalar>, _ i: Int, refresh: Bool, useGraftingMethod: Bool, bc2: Double,
        graftBeta2: Double, graftBC2: Double, beta3: Double, bc1: Double
    ) {
        let c = configuration
        let n = block.count
        let g = gradScratch.reserve(n), p = paramScratch.reserve(n), gbar = filteredScratch.reserve(n)
        let dir = directionScratch.reserve(n)
        // Gather the block's gradient and values.
        let runLength = block.runLength
        parameters.gradients[i].storage.withUnsafeBufferPointer { grad in
            parameters.values[i].storage.withUnsafeBufferPointer { value in
                for (r, start) in block.runs.enumerated() {
                    (g + r * runLength).update(from: grad.baseAddress! + start, count: runLength)
                    (p + r * runLength).update(from: value.baseAddress! + start, count: runLength)
                }
            }
        }
        let wd = Scalar(c.weightDecay)
        if c.weightDecay != 0 && !c.decoupledWeightDecay {
            for j in 0..<n { g[j] = g[j] + wd * p[j] }
        }

        // Factor matrices, and their inverse roots when due.
        let beta2 = Scalar(c.beta2), weight = Scalar(c.beta2 == 1 ? 1 : 1 - c.beta2)
        for d in block.dims.indices {
            let m = block.dims[d]
            let o = outerScratch.reserve(m * m)
            modeGram(g, dims: block.dims, mode: d, into: o)
            block.factors[d].storage.withUnsafeMutableBufferPointer { f in
                if c.beta2 != 1 { for j in 0..<(m * m) { f[j] *= beta2 } }
                if weight == 1 {
                    for j in 0..<(m * m) { f[j] += o[j] }
                } else {
                    for j in 0..<(m * m) { f[j] += weight * o[j] }
                }
            }
            if refresh {
                eigen.inverseRoot(
                    block.factors[d], divisor: Scalar(bc2), epsilon: Scalar(c.epsilon), exponent: Scalar(-1 / block.root), into: &block.inverseRoots[d])
            }
        }

        // Grafting statistics.
        if block.grafting != nil {
            let b2 = Scalar(graftBeta2), w = Scalar(c.grafting == .adagrad ? 1 : 1 - graftBeta2)
            block.grafting!.storage.withUnsafeMutableBufferPointer { v in
                if graftBeta2 != 1 { for j in 0..<n { v[j] *= b2 } }
                for j in 0..<n { v[j] = v[j] + w * g[j] * g[j] }
            }
        }

        // Filtered gradient Ḡ.
        if block.filtered != nil {
            let w1 = Scalar(1 - c.beta1), w3 = Scalar(1 - beta3), scale = Scalar(bc1)
            let separate = beta3 != c.beta1, correct = c.useBiasCorrection
            block.filtered!.storage.withUnsafeMutableBufferPointer { f in
                for j in 0..<n {
                    let ahead = separate ? lerp(f[j], g[j], w3) : Scalar(0)
                    f[j] = lerp(f[j], g[j], w1)
                    let value = separate ? ahead : f[j]
                    gbar[j] = correct ? value / scale : value
                }
            }
        } else {
            gbar.update(from: g, count: n)
        }

        // Search direction D.
        if useGraftingMethod {
            graftDirection(block, gbar, n: n, bc2: graftBC2, into: dir)
        } else {
            shampooDirection(block, gbar, into: dir)
            if c.grafting != .none {
                let graft = graftScratch.reserve(n)
                graftDirection(block, gbar, n: n, bc2: graftBC2, into: graft)
                let graftNorm = sumOfSquares(UnsafeBufferPointer(start: graft, count: n)).squareRoot()
                let shampooNorm = sumOfSquares(UnsafeBufferPointer(start: dir, count: n)).squareRoot()
                let scale = graftNorm / (shampooNorm + Scalar(1e-16))
                for j in 0..<n { dir[j] *= scale }
            }
        }
        if c.weightDecay != 0 && c.decoupledWeightDecay {
            for j in 0..<n { dir[j] = dir[j] + wd * p[j] }
        }
        if block.momentum != nil {
            let mu = Scalar(c.momentum), damp = Scalar(1 - c.dampening)
            let nesterov = c.useNesterov
            block.momentum!.storage.withUnsafeMutableBufferPointer { m in
                for j in 0..<n {
                    m[j] *= mu
                    m[j] = m[j] + damp * dir[j]
                    if nesterov {
                        dir[j] *= damp
                        dir[j] = dir[j] + mu * m[j]
                    } else {
                        dir[j] = m[j]
                    }
                }
            }
        }
        // W ← W + (−η)·D, scattered back.
        let negLR = Scalar(-learningRate)
        for j in 0..<n { p[j] = p[j] + dir[j] * negLR }
        parameters.values[i].storage.withUnsafeMutableBufferPointer { value in
            for (r, start) in block.runs.enumerated() {
                (value.baseAddress! + start).update(from: p + r * runLength, count: runLength)
            }
        }
    }

    /// D = Ḡ ×₀ P₀ ×₁ P₁ …
    func shampooDirection(_ block: Block, _ gbar: UnsafePointer<Scalar>, into dir: UnsafeMutablePointer<Scalar>) {
        let k = block.dims.count
        let tmp = productScratch.reserve(block.count)
        // Alternate so that the last product lands in `dir`.
        var source = gbar
        for d in 0..<k {
            let target = (k - d) % 2 == 1 ? dir : tmp
            block.inverseRoots[d].storage.withUnsafeBufferPointer { p in
                modeProduct(source, dims: block.dims, mode: d, p.baseAddress!, into: target)
            }
            source = UnsafePointer(target)
        }
    }

    /// graft(Ḡ): Ḡ for SGD, Ḡ / (√(V / bc) + ε) for the diagonal methods.
    func graftDirection(_ block: Block, _ gbar: UnsafePointer<Scalar>, n: Int, bc2: Double, into out: UnsafeMutablePointer<Scalar>) {
        guard let v = block.grafting else {
            out.update(from: gbar, count: n)
            return
        }
        let eps = Scalar(configuration.graftingEpsilon), bc = Scalar(bc2)
        v.storage.withUnsafeBufferPointer { v in
            for j in 0..<n { out[j] = gbar[j] / ((v[j] / bc).squareRoot() + eps) }
        }
    }

    // MARK: State

    static func factorName(_ d: Int, order: Int) -> String {
        order <= 2 ? (d == 0 ? "L" : "R") : "factor_\(d)"
    }

    public func exportState(names: [String]) -> OptimizerState<Scalar> {
        var state = OptimizerState<Scalar>()
        state.set("step", integer: step)
        for (i, parameterBlocks) in blocks.enumerated() {
            for (b, block) in parameterBlocks.enumerated() {
                let prefix = "\(names[i])/block_\(b)"
                for d in block.dims.indices {
                    let f = Self.factorName(d, order: block.dims.count)
                    state.set("\(prefix)/\(f)", block.factors[d])
                    state.set("\(prefix)/\(f)_inv_root", block.inverseRoots[d])
                }
                if let g = block.grafting { state.set("\(prefix)/grafting_second_moment", g) }
                if let f = block.filtered { state.set("\(prefix)/filtered_grad", f) }
                if let m = block.momentum { state.set("\(prefix)/momentum_buffer", m) }
            }
        }
        return state
    }

    public func importState(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws {
        let imported = try state.integer("step")
        var loaded = parameters.values.map { makeBlocks($0.shape) }
        if imported > 0 {
            for i in loaded.indices {
                for b in loaded[i].indices {
                    let prefix = "\(parameters.names[i])/block_\(b)"
                    var block = loaded[i][b]
                    for d in block.dims.indices {
                        let f = Self.factorName(d, order: block.dims.count), m = block.dims[d]
                        block.factors[d] = try state.tensor("\(prefix)/\(f)", shape: [m, m])
                        block.inverseRoots[d] = try state.tensor("\(prefix)/\(f)_inv_root", shape: [m, m])
                    }
                    if block.grafting != nil { block.grafting = try state.tensor("\(prefix)/grafting_second_moment", shape: block.dims) }
                    if block.filtered != nil { block.filtered = try state.tensor("\(prefix)/filtered_grad", shape: block.dims) }
                    if block.momentum != nil { block.momentum = try state.tensor("\(prefix)/momentum_buffer", shape: block.dims) }
                    loaded[i][b] = block
                }
            }
        }
        step = imported
        blocks = imported > 0 ? loaded : []
    }
}

// MARK: - Kernels shared by the Shampoo variants

/// A growable scratch buffer with a stable address (no exclusivity checks or copy-on-write in
/// the hot loops).
final class ShampooScratch<T: Numeric> {
    private var pointer = UnsafeMutablePointer<T>.allocate(capacity: 1)
    private var capacity = 1

    /// At least `n` elements; contents are unspecified after growing.
    func reserve(_ n: Int) -> UnsafeMutablePointer<T> {
        if n > capacity {
            pointer.deallocate()
            pointer = .allocate(capacity: n)
            pointer.initialize(repeating: 0, count: n)
            capacity = n
        }
        return pointer
    }

    deinit { pointer.deallocate() }
}

/// The mode-j Gram matrix of a row-major tensor with shape `dims`: Σ over all other indices of
/// x[…, i, …]·x[…, k, …] (G·Gᵀ for j = 0 of a matrix, Gᵀ·G for j = 1), into `out` (n×n).
func modeGram<T: BLASScalar>(_ x: UnsafePointer<T>, dims: [Int], mode j: Int, into out: UnsafeMutablePointer<T>) {
    let a = dims[..<j].reduce(1, *), n = dims[j], b = dims[(j + 1)...].reduce(1, *)
    if b == 1 {
        // x is a×n: xᵀ·x.
        T.gemm(transA: true, transB: false, m: n, n: n, k: a, alpha: 1, a: x, lda: n, b: x, ldb: n, beta: 0, c: out, ldc: n)
    } else {
        for s in 0..<a {
            let xs = x + s * n * b
            T.gemm(transA: false, transB: true, m: n, n: n, k: b, alpha: 1, a: xs, lda: b, b: xs, ldb: b, beta: s == 0 ? 0 : 1, c: out, ldc: n)
        }
    }
}

/// y = x ×_j pᵀ: y[…, m, …] = Σ_i x[…, i, …]·p[i, m] (the reference's `tensordot(x, p, [[0], [0]])`
/// applied along dimension j, axes kept in place).
func modeProduct<T: BLASScalar>(_ x: UnsafePointer<T>, dims: [Int], mode j: Int, _ p: UnsafePointer<T>, into y: UnsafeMutablePointer<T>) {
    let a = dims[..<j].reduce(1, *), n = dims[j], b = dims[(j + 1)...].reduce(1, *)
    if b == 1 {
        T.gemm(transA: false, transB: false, m: a, n: n, k: n, alpha: 1, a: x, lda: n, b: p, ldb: n, beta: 0, c: y, ldc: n)
    } else {
        for s in 0..<a {
            T.gemm(
                transA: true, transB: false, m: n, n: b, k: n, alpha: 1, a: p, lda: n, b: x + s * n * b, ldb: b, beta: 0, c: y + s * n * b,
                ldc: b)
        }
    }
}

/// Symmetric eigendecompositions (LAPACK `syevd`) with workspaces kept between calls, and the
/// matrix functions Shampoo builds from them.
final class SymmetricEigenSolver<T: BLASScalar> {
    private var workspaceSizes: [Int: (lwork: Int32, liwork: Int32)] = [:]
    private let work = ShampooScratch<T>()
    private let iwork = ShampooScratch<Int32>()
    private let matrix = ShampooScratch<T>(), values = ShampooScratch<T>(), scaled = ShampooScratch<T>(), result = ShampooScratch<T>()

    /// Eigen-decomposes the n×n symmetric matrix in `matrix`; on success
    /// `matrix` holds the eigenvectors as rows (LAPACK's column-major Z read row-major) and
    /// `values` the eigenvalues, ascending.
    private func decompose(n: Int) -> Bool {
        var n32 = Int32(n), info: Int32 = 0
        let a = matrix.reserve(n * n), w = values.reserve(n)
        if workspaceSizes[n] == nil {
            var lwork: Int32 = -1, liwork: Int32 = -1, wq: T = 0, iwq: Int32 = 0
            "V".withCString { jobz in "U".withCString { uplo in T.lapackSyevd(jobz, uplo, &n32, a, &n32, w, &wq, &lwork, &iwq, &liwork, &info) } }
            if info != 0 { return false }
            workspaceSizes[n] = (Int32(wq), iwq)
        }
        var (lwork, liwork) = workspaceSizes[n]!
        let wk = work.reserve(Int(lwork))
        let iwk = iwork.reserve(Int(liwork))
        "V".withCString { jobz in "U".withCString { uplo in T.lapackSyevd(jobz, uplo, &n32, a, &n32, w, wk, &lwork, iwk, &liwork, &info) } }
        return info == 0
    }

    /// Writes Q·diag(f(λ))·Qᵀ from the last decomposition into `target` when every entry is finite
    /// (the reference's `(Q * f) @ Q.T`); false otherwise.
    private func reconstruct(n: Int, into target: inout Tensor<T>, _ f: (T) -> T) -> Bool {
        let q = matrix.reserve(n * n), w = values.reserve(n), s = scaled.reserve(n * n), x = result.reserve(n * n)
        for k in 0..<n {
            let fk = f(w[k])
            let row = q + k * n, out = s + k * n
            for i in 0..<n { out[i] = fk * row[i] }
        }
        T.gemm(transA: true, transB: false, m: n, n: n, k: n, alpha: 1, a: s, lda: n, b: q, ldb: n, beta: 0, c: x, ldc: n)
        guard allFinite(UnsafeBufferPointer(start: x, count: n * n)) else { return false }
        target.storage.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: x, count: n * n) }
        return true
    }

    /// The reference's root inverse (`matrix_inverse_root`, eigendecomposition with perturbation
    /// before computation): A = F / divisor + ε·I, A = Q·diag(λ)·Qᵀ; if λ_min < ε, λ ← λ − λ_min + ε;
    /// then Q·diag(λ^exponent)·Qᵀ into `target`. Leaves `target` alone (the previous root) and
    /// returns false when F is not finite or LAPACK fails.
    @discardableResult
    func inverseRoot(_ factor: Tensor<T>, divisor: T, epsilon: T, exponent: T, into target: inout Tensor<T>) -> Bool {
        let n = factor.rows
        let a = matrix.reserve(n * n)
        factor.storage.withUnsafeBufferPointer { f in
            if divisor == 1 {
                a.update(from: f.baseAddress!, count: n * n)
            } else {
                for j in 0..<(n * n) { a[j] = f[j] / divisor }
            }
        }
        guard allFinite(UnsafeBufferPointer(start: a, count: n * n)) else { return false }
        for j in 0..<n { a[j * n + j] += epsilon }
        guard decompose(n: n) else { return false }
        let w = values.reserve(n)
        var lambdaMin = w[0]
        for k in 0..<n { lambdaMin = min(lambdaMin, w[k]) }
        if lambdaMin < epsilon {
            for k in 0..<n { w[k] = (w[k] + -lambdaMin) + epsilon }
        }
        return reconstruct(n: n, into: &target) { T.pow($0, exponent) }
    }

    /// The source document's `matrix_power_solution(M, p, ε)`: eigh of M, eigenvalues clamped at
    /// ε, V·diag(λᵖ)·Vᵀ into `target` (left alone, returning false, if M is not finite).
    @discardableResult
    func clampedPower(_ m: Tensor<T>, _ p: T, epsilon: T, into target: inout Tensor<T>) -> Bool {
        let n = m.rows
        let a = matrix.reserve(n * n)
        m.storage.withUnsafeBufferPointer { a.update(from: $0.baseAddress!, count: n * n) }
        guard allFinite(UnsafeBufferPointer(start: a, count: n * n)), decompose(n: n) else { return false }
        return reconstruct(n: n, into: &target) { T.pow(Swift.max($0, epsilon), p) }
    }
}
