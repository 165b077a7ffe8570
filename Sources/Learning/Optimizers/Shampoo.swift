import Dispatch
import Linalg

public enum ShampooGrafting: String, CaseIterable, Sendable { case none, sgd, adagrad, rmsprop, adam }

/// How the preconditioner is kept between refreshes: the reference's
/// `RootInvShampooPreconditionerConfig` (the inverse roots) or
/// `EigendecomposedShampooPreconditionerConfig` (each factor's eigenvectors and eigenvalues).
public enum ShampooPreconditionerKind: String, CaseIterable, Sendable {
    case rootInv = "root_inv"
    case eigendecomposed
}

/// The eigendecomposed preconditioner's amortized computation: `EighEigendecompositionConfig`
/// or `QREigendecompositionConfig`.
public enum ShampooEigendecomposition: String, CaseIterable, Sendable { case eigh, qr }

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
    public var preconditioner = ShampooPreconditionerKind.rootInv
    public var eigendecomposition = ShampooEigendecomposition.eigh
    /// The eigenbasis is kept while ‖QᵀFQ − diag‖_F ≤ tolerance·‖QᵀFQ‖_F; nil means the
    /// reference's defaults, 0 for `eigh` (always decompose) and 0.01 for `qr`.
    public var eigendecompositionTolerance: Double? = nil
    public var qrMaxIterations = 1

    public init() {}

    var resolvedTolerance: Double { eigendecompositionTolerance ?? (eigendecomposition == .qr ? 0.01 : 0) }

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
/// `distributed_shampoo/`), on one device, with its default root-inverse preconditioner
/// (eigendecomposition, epsilon added before the decomposition) or its eigendecomposed one.
///
/// Parameters are first reshaped as the reference does: dimensions of size 1 are dropped and
/// adjacent dimensions are merged (from the last) while their product stays within
/// `max_preconditioner_dim` — so a 5×3 matrix is a vector of 15 unless the limit is below 15, a
/// convolution kernel [8, 3, 3, 3] is a vector of 216 at the default 1024, [8, 27] at 32 and keeps
/// its four dimensions (order-4 factors) at 8, a 1×1 kernel [c, c', 1, 1] loses its unit
/// dimensions, and a 1-D tensor (bias, norm scale) is preconditioned by one full factor
/// (full-matrix AdaGrad); a 0-D tensor is a vector of 1. Each dimension larger
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
/// With `preconditioner: eigendecomposed` the block keeps, per factor, the eigenvectors Q and
/// eigenvalues λ of A = F_j / (1 − β₂ᵗ) + ε·I (Q = I, λ = 1 at first) and P_j = Q·diag(λ'^(−1/r))·Qᵀ
/// with λ' shifted as above. A refresh either re-decomposes A (`eigh`: `syevd`; `qr`: QR iterations
/// warm-started from Q) or — when Q still diagonalises A, ‖QᵀAQ − diag‖_F ≤ τ‖QᵀAQ‖_F with
/// τ = `eigendecomposition_tolerance` — keeps Q and takes λ = diag(QᵀAQ): the reference's adaptive
/// eigendecomposition, which makes refreshing every step affordable (see
/// `SymmetricEigenSolver.refreshEigenbasis`).
///
/// The eigendecomposed preconditioner is applied in its eigenbasis, D = (Ḡ ×ⱼ Qⱼᵀ ∘ ⊗ⱼ dⱼ) ×ⱼ Qⱼ with
/// dⱼ = λ'^(−1/r) (Q·D·Qᵀ applied on each side, without forming it), and works on the gradient in
/// the eigenbasis, Z = G ×ⱼ Qⱼᵀ, from which both diag(QⱼᵀFⱼQⱼ) (rᵢ ← β₂·rᵢ + w·Σ Z_(j)[i, ·]², the
/// other rotations leaving the sums unchanged) and the filtered gradient in the eigenbasis
/// (M̃ ← lerp(M̃, Z, 1 − β₁)) are kept current while the bases are kept; a new basis recomputes both
/// from F and M. A kept-basis refresh then costs no GEMM: per step and 2-D block, two GEMMs of
/// statistics, two into the eigenbasis and two back. r and M̃ are state of this implementation (not
/// the reference's), exported so that a resumed run is bit-identical; equal to the reference's
/// diag(QᵀFQ) and QᵀMQ up to rounding.
///
/// Differences from the reference: a non-finite factor matrix or a failed eigendecomposition
/// keeps the previous inverse root (or eigendecomposition) instead of raising (the reference raises
/// `PreconditionerValueError` on NaN/Inf, and after 3 consecutive solver failures); the
/// reference's distributed, iterate-averaging, eigenvalue-corrected (SOAP), Newton-iteration,
/// pseudo-inverse and trace-scaling options, and per-dimension exponent overrides, are not
/// offered.
///
/// Cost per step and block of size b: statistics and preconditioning one GEMM (2b³) each per
/// factor (root-inverse), two for the eigendecomposed preconditioner; a root-inverse refresh adds
/// one `syevd` per factor (~50× a GEMM of the same size on these CPUs), an eigendecomposed one with
/// a tolerance only where the basis no longer diagonalises the factor. README's Performance
/// section has the measured epochs.
public final class Shampoo<Scalar: BLASScalar>: Optimizer, WorkCounting {
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
        /// F_j, one per dimension, and (root-inverse) P_j = F_j^(−1/r).
        var factors: [Tensor<Scalar>]
        var inverseRoots: [Tensor<Scalar>]
        /// The eigendecomposed preconditioner's state (empty for root-inverse): per dimension the
        /// eigenvectors (columns) and eigenvalues of F_j / bias correction + ε·I, and r_j =
        /// diag(Q_jᵀ·F_j·Q_j); the filtered gradient in the eigenbasis (β₁ > 0).
        var eigenvectors: [Tensor<Scalar>]
        var eigenvalues: [Tensor<Scalar>]
        var eigenbasisDiagonals: [Tensor<Scalar>]
        var filteredInEigenbasis: Tensor<Scalar>?
        /// Derived from the above (rebuilt on import): ‖qᵢ‖² per column of Q_j, and the
        /// preconditioner's diagonal λ'^(−1/r) in the eigenbasis.
        var columnNorms: [Tensor<Scalar>]
        var scales: [Tensor<Scalar>]
        var root: Double
        var grafting: Tensor<Scalar>?
        var filtered: Tensor<Scalar>?
        var momentum: Tensor<Scalar>?
    }
    /// Per parameter (empty until the first update or an import).
    var blocks: [[Block]] = []
    /// Scratch, solver and counters of each thread stepping blocks (one per block worker).
    var workspaces = [ShampooWorkspace<Scalar>()]
    /// How many threads step a parameter's blocks at once: nil means as many as the BLAS threads
    /// the trial has. Blocks are independent, so the result is the same for any number.
    public var blockWorkers: Int? = nil
    /// Refreshes of a factor's preconditioner since this optimizer was made: by a decomposition
    /// (`syevd` or QR iterations) or, with a tolerance, by keeping an eigenbasis that still
    /// diagonalises the factor (eigenvalues updated). Not part of the state.
    public var eigendecompositionCounts: (computed: Int, kept: Int) {
        workspaces.reduce((0, 0)) { ($0.0 + $1.counts.computed, $0.1 + $1.counts.kept) }
    }
    public var workCounters: [String: Int] {
        configuration.preconditioner == .rootInv
            ? ["eigendecompositions": eigendecompositionCounts.computed]
            : ["eigendecompositions": eigendecompositionCounts.computed, "eigenbases_kept": eigendecompositionCounts.kept]
    }

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
            let c = configuration, eigen = c.preconditioner == .eigendecomposed
            func ones(_ n: Int) -> Tensor<Scalar> { Tensor(shape: [n], storage: Array(repeating: 1, count: n)) }
            return Block(
                dims: b.dims, runs: runs, runLength: b.dims[b.dims.count - 1],
                factors: b.dims.map { Tensor(zeros: [$0, $0]) }, inverseRoots: eigen ? [] : b.dims.map { Tensor.identity($0) },
                eigenvectors: eigen ? b.dims.map { Tensor.identity($0) } : [],
                eigenvalues: eigen ? b.dims.map(ones) : [],
                eigenbasisDiagonals: eigen ? b.dims.map { Tensor(zeros: [$0]) } : [],
                filteredInEigenbasis: eigen && c.beta1 != 0 ? Tensor(zeros: b.dims) : nil,
                columnNorms: eigen ? b.dims.map(ones) : [],
                scales: eigen ? b.dims.map(ones) : [],
                root: root,
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
        let blasThreads = BLASRuntime.threads
        let workers = max(1, blockWorkers ?? blasThreads)
        while workspaces.count < workers { workspaces.append(ShampooWorkspace()) }
        let spaces = workspaces
        // The threads go to blocks, not inside each block's small GEMMs and decompositions (where
        // OpenBLAS's own threads would only contend with them).
        if workers > 1 && blasThreads > 1 { BLASRuntime.setThreads(1) }
        defer { if workers > 1 && blasThreads > 1 { BLASRuntime.setThreads(blasThreads) } }
        for i in 0..<parameters.count where !blocks[i].isEmpty {
            parameters.gradients[i].storage.withUnsafeBufferPointer { grad in
                parameters.values[i].storage.withUnsafeMutableBufferPointer { value in
                    let (g, v) = (grad.baseAddress!, value.baseAddress!)
                    blocks[i].withUnsafeMutableBufferPointer { buffer in
                        let parameterBlocks = buffer, count = buffer.count, w = min(workers, count)
                        // Worker k steps blocks k, k + w, …; each block's arithmetic is the same
                        // whichever thread runs it.
                        let work = { (k: Int) in
                            for b in stride(from: k, to: count, by: w) {
                                self.stepBlock(
                                    &parameterBlocks[b], grad: g, value: v, workspace: spaces[k], refresh: refresh, useGraftingMethod: useGraftingMethod,
                                    bc2: bc2, graftBeta2: graftBeta2, graftBC2: graftBC2, beta3: beta3, bc1: bc1)
                            }
                        }
                        if w == 1 {
                            work(0)
                        } else {
                            // Each worker touches only its own blocks and workspace.
                            let disjoint = DisjointWork(work)
                            DispatchQueue.concurrentPerform(iterations: w) { disjoint.run($0) }
                        }
                    }
                }
            }
        }
    }

    func stepBlock(
        _ block: inout Block, grad: UnsafePointer<Scalar>, value: UnsafeMutablePointer<Scalar>, workspace: ShampooWorkspace<Scalar>,
        refresh: Bool, useGraftingMethod: Bool, bc2: Double, graftBeta2: Double, graftBC2: Double, beta3: Double, bc1: Double
    ) {
        let c = configuration
        let n = block.count, runLength = block.runLength, rows = block.runs.count
        let gbar = workspace.filtered.reserve(n), dir = workspace.direction.reserve(n)
        let wd = Scalar(c.weightDecay)
        let l2 = c.weightDecay != 0 && !c.decoupledWeightDecay
        // A block of order 1 or 2 is read and written where it lies in the parameter, its rows `ld`
        // apart (GEMMs take the stride); blocks of higher order, and L2 decay (which changes the
        // gradient), go through contiguous copies.
        let inPlace = block.dims.count <= 2 && !l2
        let ld = inPlace && rows > 1 ? block.runs[1] - block.runs[0] : runLength
        let g: UnsafePointer<Scalar>, p: UnsafeMutablePointer<Scalar>
        if inPlace {
            g = grad + block.runs[0]
            p = value + block.runs[0]
        } else {
            let gs = workspace.gradient.reserve(n), ps = workspace.values.reserve(n)
            for (r, start) in block.runs.enumerated() {
                (gs + r * runLength).update(from: grad + start, count: runLength)
                (ps + r * runLength).update(from: value + start, count: runLength)
            }
            if l2 { for j in 0..<n { gs[j] = gs[j] + wd * ps[j] } }
            (g, p) = (UnsafePointer(gs), ps)
        }
        stepBlock(
            &block, g: g, p: p, ld: ld, n: n, rows: rows, gbar: gbar, dir: dir, workspace: workspace, refresh: refresh,
            useGraftingMethod: useGraftingMethod, bc2: bc2, graftBeta2: graftBeta2, graftBC2: graftBC2, beta3: beta3, bc1: bc1)
        if !inPlace {
            for (r, start) in block.runs.enumerated() {
                (value + start).update(from: p + r * runLength, count: runLength)
            }
        }
    }

    /// One block's step on its gradient `g` and values `p` (rows of `block.runLength` elements,
    /// `ld` apart); the block's state, Ḡ (`gbar`) and D (`dir`) are contiguous.
    func stepBlock(
        _ block: inout Block, g: UnsafePointer<Scalar>, p: UnsafeMutablePointer<Scalar>, ld: Int, n: Int, rows: Int,
        gbar: UnsafeMutablePointer<Scalar>, dir: UnsafeMutablePointer<Scalar>, workspace: ShampooWorkspace<Scalar>, refresh: Bool,
        useGraftingMethod: Bool, bc2: Double,
        graftBeta2: Double, graftBC2: Double, beta3: Double, bc1: Double
    ) {
        let c = configuration
        let runLength = block.runLength
        let wd = Scalar(c.weightDecay)
        // Factor matrices: F ← β₂·F + w·G_(j)·G_(j)ᵀ, one `syrk` per slice (upper triangles).
        let weight = Scalar(c.beta2 == 1 ? 1 : 1 - c.beta2), decay = Scalar(c.beta2)
        let rowStride = block.dims.count == 2 ? ld : nil
        for d in block.dims.indices {
            block.factors[d].storage.withUnsafeMutableBufferPointer { f in
                accumulateModeGram(g, dims: block.dims, rowStride: rowStride, mode: d, weight: weight, decay: decay, into: f.baseAddress!)
            }
        }
        // Eigendecomposed: the gradient in the eigenbasis Z, and r_j = diag(QᵀFQ) updated from it.
        let eigenbasis = c.preconditioner == .eigendecomposed
        let z = workspace.rotated.reserve(n), scratch = workspace.product.reserve(n)
        if eigenbasis {
            modeProducts(g, dims: block.dims, rowStride: rowStride, block.eigenvectors, scratch: scratch, into: z)
            for d in block.dims.indices {
                block.eigenbasisDiagonals[d].storage.withUnsafeMutableBufferPointer { r in
                    accumulateModeSquares(z, dims: block.dims, mode: d, weight: weight, decay: decay, scratch: scratch, into: r.baseAddress!)
                }
            }
        }
        // Preconditioners, when due.
        var basisChanged = false
        if refresh {
            for d in block.dims.indices where refreshPreconditioner(&block, dimension: d, bc2: bc2, workspace: workspace) { basisChanged = true }
        }

        // Grafting statistics V and the filtered gradient Ḡ, in one pass (eight lanes at a time,
        // each lane the scalar formula).
        let b2 = Scalar(graftBeta2), w2 = Scalar(c.grafting == .adagrad ? 1 : 1 - graftBeta2), decayV = graftBeta2 != 1
        let w1 = Scalar(1 - c.beta1), w3 = Scalar(1 - beta3), scale1 = Scalar(bc1)
        let separate = beta3 != c.beta1, correct = c.useBiasCorrection
        /// M ← lerp(M, G, 1 − β₁); returns the new M and Ḡ (lerp(M, G, 1 − β₃) with a separate β₃,
        /// bias-corrected).
        @inline(__always) func filter(_ m: SIMD8<Scalar>, _ g: SIMD8<Scalar>) -> (m: SIMD8<Scalar>, gbar: SIMD8<Scalar>) {
            let updated = lerpLanes(m, g, w1)
            let value = separate ? lerpLanes(m, g, w3) : updated
            return (updated, correct ? value / scale1 : value)
        }
        // In the same pass, ‖graft(Ḡ)‖² when Shampoo's direction is grafted (padding lanes add 0).
        let graftNormNeeded = c.grafting != .none && !useGraftingMethod
        let graftEps = Scalar(c.graftingEpsilon), graftBC = Scalar(graftBC2)
        var graftSum = SIMD8<Scalar>(repeating: 0)
        withOptionalStorage(&block.grafting) { v in
            withOptionalStorage(&block.filtered) { f in
                for r in 0..<rows {
                    let gRow = g + r * ld, o = r * runLength
                    forEachLanes(runLength) { j, k in
                        let gj = loadLanes(gRow, j, k)
                        var vj = SIMD8<Scalar>(repeating: 0)
                        if let v {
                            vj = loadLanes(v, o + j, k)
                            if decayV { vj *= b2 }
                            vj = vj + w2 * gj * gj
                            storeLanes(vj, v, o + j, k)
                        }
                        var gbarj = gj
                        if let f {
                            let m: SIMD8<Scalar>
                            (m, gbarj) = filter(loadLanes(f, o + j, k), gj)
                            storeLanes(m, f, o + j, k)
                        }
                        storeLanes(gbarj, gbar, o + j, k)
                        if graftNormNeeded {
                            let x = v == nil ? gbarj : gbarj / (squareRootLanes(vj / graftBC) + graftEps)
                            graftSum += x * x
                        }
                    }
                }
            }
        }

        // Ḡ in the eigenbasis: filtered from Z while the bases are kept (M̃ when β₁ > 0), else
        // rotated anew (and M̃ with it).
        let gbarRotated = workspace.rotatedFiltered.reserve(n)
        if eigenbasis {
            if basisChanged {
                withOptionalStorage(&block.filtered) { m in
                    withOptionalStorage(&block.filteredInEigenbasis) { mt in
                        if let m, let mt { modeProducts(m, dims: block.dims, block.eigenvectors, scratch: scratch, into: mt) }
                    }
                }
                modeProducts(gbar, dims: block.dims, block.eigenvectors, scratch: scratch, into: gbarRotated)
            } else if block.filteredInEigenbasis != nil {
                withOptionalStorage(&block.filteredInEigenbasis) { mt in
                    let mt = mt!
                    forEachLanes(n) { j, k in
                        let (m, g) = filter(loadLanes(mt, j, k), loadLanes(z, j, k))
                        storeLanes(m, mt, j, k)
                        storeLanes(g, gbarRotated, j, k)
                    }
                }
            } else {
                gbarRotated.update(from: z, count: n)
            }
        }

        // Search direction D: Shampoo's, rescaled to the grafted method's norm (the grafted
        // direction itself is only needed for its norm), or the grafted method alone before start.
        var directionScale: Scalar? = nil
        if useGraftingMethod {
            graftDirection(block, gbar, n: n, bc2: graftBC2, into: dir)
        } else {
            if eigenbasis {
                scaleByOuterProduct(gbarRotated, dims: block.dims, block.scales)
                modeProducts(gbarRotated, dims: block.dims, block.eigenvectors, back: true, scratch: scratch, into: dir)
            } else {
                modeProducts(gbar, dims: block.dims, block.inverseRoots, scratch: scratch, into: dir)
            }
            if graftNormNeeded {
                let graftNorm2 = graftSum.sum()
                let shampooNorm = sumOfSquares(UnsafeBufferPointer(start: dir, count: n)).squareRoot()
                directionScale = graftNorm2.squareRoot() / (shampooNorm + Scalar(1e-16))
            }
        }

        // D ← D·scale (grafting), D + λ·W (decoupled decay), momentum, W ← W − η·D.
        let decoupled = c.weightDecay != 0 && c.decoupledWeightDecay
        let mu = Scalar(c.momentum), damp = Scalar(1 - c.dampening), nesterov = c.useNesterov
        let negLR = Scalar(-learningRate)
        withOptionalStorage(&block.momentum) { m in
            for r in 0..<rows {
                let pRow = p + r * ld, o = r * runLength
                forEachLanes(runLength) { j, k in
                    var dj = loadLanes(dir, o + j, k)
                    if let directionScale { dj *= directionScale }
                    let pj = loadLanes(pRow, j, k)
                    if decoupled { dj = dj + wd * pj }
                    if let m {
                        var mj = loadLanes(m, o + j, k) * mu
                        mj = mj + damp * dj
                        storeLanes(mj, m, o + j, k)
                        dj = nesterov ? damp * dj + mu * mj : mj
                    }
                    storeLanes(pj + dj * negLR, pRow, j, k)
                }
            }
        }
    }

    /// Recomputes P_j of one block from F_j: the inverse root directly, or through the
    /// eigendecomposition kept in the block. True when the eigenbasis changed.
    func refreshPreconditioner(_ block: inout Block, dimension d: Int, bc2: Double, workspace: ShampooWorkspace<Scalar>) -> Bool {
        let c = configuration
        let eigen = workspace.eigen
        let exponent = Scalar(-1 / block.root), epsilon = Scalar(c.epsilon)
        switch c.preconditioner {
        case .rootInv:
            eigen.inverseRoot(block.factors[d], divisor: Scalar(bc2), epsilon: epsilon, exponent: exponent, into: &block.inverseRoots[d])
            workspace.counts.computed += 1
            return false
        case .eigendecomposed:
            let outcome = eigen.refreshEigenbasis(
                block.factors[d], diagonal: block.eigenbasisDiagonals[d], columnNorms: block.columnNorms[d], divisor: Scalar(bc2), epsilon: epsilon,
                method: c.eigendecomposition, tolerance: Scalar(c.resolvedTolerance), maxIterations: c.qrMaxIterations,
                eigenvectors: &block.eigenvectors[d], eigenvalues: &block.eigenvalues[d])
            switch outcome {
            case .computed:
                workspace.counts.computed += 1
                eigen.eigenbasisDiagonal(block.factors[d], eigenvectors: block.eigenvectors[d], into: &block.eigenbasisDiagonals[d])
                eigen.columnNorms(block.eigenvectors[d], into: &block.columnNorms[d])
            case .kept: workspace.counts.kept += 1
            case .failed: return false
            }
            eigen.eigenbasisScales(eigenvalues: block.eigenvalues[d], epsilon: epsilon, exponent: exponent, into: &block.scales[d])
            return outcome == .computed
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
                    state.set("\(prefix)/\(f)", symmetricFromUpper(block.factors[d]))
                    if block.eigenvectors.isEmpty {
                        state.set("\(prefix)/\(f)_inv_root", block.inverseRoots[d])
                    } else {
                        state.set("\(prefix)/\(f)_eigenvectors", block.eigenvectors[d])
                        state.set("\(prefix)/\(f)_eigenvalues", block.eigenvalues[d])
                        state.set("\(prefix)/\(f)_eigenbasis_diagonal", block.eigenbasisDiagonals[d])
                    }
                }
                if let m = block.filteredInEigenbasis { state.set("\(prefix)/filtered_grad_eigenbasis", m) }
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
                        if block.eigenvectors.isEmpty {
                            block.inverseRoots[d] = try state.tensor("\(prefix)/\(f)_inv_root", shape: [m, m])
                        } else {
                            block.eigenvectors[d] = try state.tensor("\(prefix)/\(f)_eigenvectors", shape: [m, m])
                            block.eigenvalues[d] = try state.tensor("\(prefix)/\(f)_eigenvalues", shape: [m])
                            block.eigenbasisDiagonals[d] = try state.tensor("\(prefix)/\(f)_eigenbasis_diagonal", shape: [m])
                            // The same functions of the same values as at the refresh: the same bits.
                            let eigen = workspaces[0].eigen
                            eigen.columnNorms(block.eigenvectors[d], into: &block.columnNorms[d])
                            eigen.eigenbasisScales(
                                eigenvalues: block.eigenvalues[d], epsilon: Scalar(configuration.epsilon), exponent: Scalar(-1 / block.root),
                                into: &block.scales[d])
                        }
                    }
                    if block.filteredInEigenbasis != nil {
                        block.filteredInEigenbasis = try state.tensor("\(prefix)/filtered_grad_eigenbasis", shape: block.dims)
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
