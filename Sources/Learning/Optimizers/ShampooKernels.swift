import Linalg

// MARK: - Kernels shared by the Shampoo variants

/// What one thread stepping Shampoo blocks needs of its own: scratch, a solver, counters.
final class ShampooWorkspace<Scalar: BLASScalar> {
    let gradient = ShampooScratch<Scalar>(), values = ShampooScratch<Scalar>(), filtered = ShampooScratch<Scalar>()
    let direction = ShampooScratch<Scalar>(), product = ShampooScratch<Scalar>()
    /// The eigendecomposed preconditioner's: the gradient and the filtered gradient in the eigenbasis.
    let rotated = ShampooScratch<Scalar>(), rotatedFiltered = ShampooScratch<Scalar>()
    let eigen = SymmetricEigenSolver<Scalar>()
    var counts = (computed: 0, kept: 0)
}

/// Work split into parts that share no mutable state (distinct blocks, distinct workspaces), run
/// from several threads: the compiler cannot see the disjointness through the raw pointers.
struct DisjointWork: @unchecked Sendable {
    let run: (Int) -> Void
    init(_ run: @escaping (Int) -> Void) { self.run = run }
}

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

/// F ← decay·F + weight·(the mode-j Gram matrix of x): Σ over all other indices of
/// x[…, i, …]·x[…, k, …] (G·Gᵀ for j = 0 of a matrix, Gᵀ·G for j = 1), one `syrk` per slice of the
/// leading dimensions, on F's upper triangle only: factor matrices keep their upper triangle, the
/// strictly lower one is unspecified (`mirrorUpper` before reading F whole). x is contiguous, or for
/// a matrix its rows are `rowStride` apart.
func accumulateModeGram<T: BLASScalar>(
    _ x: UnsafePointer<T>, dims: [Int], rowStride: Int? = nil, mode j: Int, weight: T, decay: T, into f: UnsafeMutablePointer<T>
) {
    let a = dims[..<j].reduce(1, *), n = dims[j], b = dims[(j + 1)...].reduce(1, *)
    if b == 1 {
        // x is a×n: xᵀ·x.
        T.syrkUpper(trans: true, n: n, k: a, alpha: weight, a: x, lda: rowStride ?? n, beta: decay, c: f, ldc: n)
    } else {
        for s in 0..<a {
            let xs = x + s * n * b, lda = a == 1 ? rowStride ?? b : b
            T.syrkUpper(trans: false, n: n, k: b, alpha: weight, a: xs, lda: lda, beta: s == 0 ? decay : 1, c: f, ldc: n)
        }
    }
}

/// Copies the upper triangle of the row-major n×n matrix onto its lower triangle.
func mirrorUpper<T>(_ f: UnsafeMutablePointer<T>, n: Int) {
    for i in 1..<max(n, 1) { for j in 0..<i { f[i * n + j] = f[j * n + i] } }
}

/// A factor matrix whole: its upper triangle mirrored.
func symmetricFromUpper<T: BLASScalar>(_ factor: Tensor<T>) -> Tensor<T> {
    var full = factor
    full.storage.withUnsafeMutableBufferPointer { mirrorUpper($0.baseAddress!, n: factor.rows) }
    return full
}

/// ‖F‖²_F and tr(F) of a symmetric matrix from its upper triangle.
func upperNormAndTrace<T: BLASScalar>(_ f: UnsafePointer<T>, n: Int) -> (norm2: T, trace: T) {
    var diagonal2: T = 0, trace: T = 0, off = SIMD8<T>(repeating: 0)
    for i in 0..<n {
        let fii = f[i * n + i]
        diagonal2 += fii * fii
        trace += fii
        let row = f + i * n + i + 1
        forEachLanes(n - i - 1) { j, k in
            let v = loadLanes(row, j, k)
            off += v * v
        }
    }
    return (diagonal2 + 2 * off.sum(), trace)
}

/// Runs `body` on the tensor's storage, or on nil when there is no tensor.
func withOptionalStorage<T, R>(_ tensor: inout Tensor<T>?, _ body: (UnsafeMutablePointer<T>?) -> R) -> R {
    if tensor == nil { return body(nil) }
    return tensor!.storage.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
}

/// y = x ×_j Qᵀ, x expressed in the basis of Q's columns along dimension j (y[…, m, …] =
/// Σ_i x[…, i, …]·Q[i, m], the reference's `tensordot(x, Q, [[0], [0]])` with axes kept in place),
/// or with `back` x ×_j Q, the inverse for an orthogonal Q (y[…, i, …] = Σ_m x[…, m, …]·Q[i, m]).
/// For a symmetric P either is x ×_j P. x is contiguous, or for a matrix its rows `rowStride` apart.
func modeProduct<T: BLASScalar>(
    _ x: UnsafePointer<T>, dims: [Int], rowStride: Int? = nil, mode j: Int, _ q: UnsafePointer<T>, back: Bool = false, into y: UnsafeMutablePointer<T>
) {
    let a = dims[..<j].reduce(1, *), n = dims[j], b = dims[(j + 1)...].reduce(1, *)
    if b == 1 {
        T.gemm(transA: false, transB: back, m: a, n: n, k: n, alpha: 1, a: x, lda: rowStride ?? n, b: q, ldb: n, beta: 0, c: y, ldc: n)
    } else {
        let ldx = a == 1 ? rowStride ?? b : b
        for s in 0..<a {
            T.gemm(
                transA: !back, transB: false, m: n, n: b, k: n, alpha: 1, a: q, lda: n, b: x + s * n * b, ldb: ldx, beta: 0, c: y + s * n * b,
                ldc: b)
        }
    }
}

/// y = x ×₀ Q₀ ×₁ Q₁ … with `modeProduct` along every dimension in turn (`back` as there),
/// alternating between `scratch` and `y` so that the last product lands in `y`.
func modeProducts<T: BLASScalar>(
    _ x: UnsafePointer<T>, dims: [Int], rowStride: Int? = nil, _ qs: [Tensor<T>], back: Bool = false, scratch: UnsafeMutablePointer<T>,
    into y: UnsafeMutablePointer<T>
) {
    let k = dims.count
    var source = x
    for d in 0..<k {
        let target = (k - d) % 2 == 1 ? y : scratch
        qs[d].storage.withUnsafeBufferPointer { q in
            modeProduct(source, dims: dims, rowStride: d == 0 ? rowStride : nil, mode: d, q.baseAddress!, back: back, into: target)
        }
        source = UnsafePointer(target)
    }
}

/// r ← decay·r + weight·(Σ over all other indices of x[…, i, …]²): the diagonal of the mode-j Gram
/// matrix, which for x in a factor's eigenbasis is diag(Qᵀ·G_(j)·G_(j)ᵀ·Q) (the other dimensions'
/// rotations leave the sums unchanged). x is contiguous.
func accumulateModeSquares<T: BLASScalar>(
    _ x: UnsafePointer<T>, dims: [Int], mode j: Int, weight: T, decay: T, scratch: UnsafeMutablePointer<T>, into r: UnsafeMutablePointer<T>
) {
    let a = dims[..<j].reduce(1, *), n = dims[j], b = dims[(j + 1)...].reduce(1, *)
    if b == 1 {
        forEachLanes(n) { i, lanes in
            var sum = SIMD8<T>(repeating: 0)
            for s in 0..<a {
                let v = loadLanes(x + s * n, i, lanes)
                sum += v * v
            }
            storeLanes(sum, scratch, i, lanes)
        }
    } else {
        for i in 0..<n {
            var sum = SIMD8<T>(repeating: 0)
            for s in 0..<a {
                let row = x + (s * n + i) * b
                forEachLanes(b) { t, lanes in
                    let v = loadLanes(row, t, lanes)
                    sum += v * v
                }
            }
            scratch[i] = sum.sum()
        }
    }
    for i in 0..<n { r[i] = decay * r[i] + weight * scratch[i] }
}

/// x[i₀, i₁, …] ← x[i₀, i₁, …]·d₀[i₀]·d₁[i₁]·…: a preconditioner diagonal in its eigenbasis.
func scaleByOuterProduct<T: BLASScalar>(_ x: UnsafeMutablePointer<T>, dims: [Int], _ scales: [Tensor<T>]) {
    let last = dims[dims.count - 1], rows = dims.dropLast().reduce(1, *)
    var index = [Int](repeating: 0, count: dims.count - 1)
    scales[dims.count - 1].storage.withUnsafeBufferPointer { dl in
        let dl = dl.baseAddress!
        for r in 0..<rows {
            var lead: T = 1
            for (d, i) in index.enumerated() { lead = lead * scales[d].storage[i] }
            let row = x + r * last
            forEachLanes(last) { j, lanes in storeLanes(loadLanes(row, j, lanes) * lead * loadLanes(dl, j, lanes), row, j, lanes) }
            var d = index.count - 1
            while d >= 0 {
                index[d] += 1
                if index[d] < dims[d] { break }
                index[d] = 0
                d -= 1
            }
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

    /// A = F / divisor + ε·I into `matrix` (where `decompose` works; F's upper triangle mirrored), or
    /// nil if F is not finite.
    private func loadShifted(_ factor: Tensor<T>, divisor: T, epsilon: T) -> UnsafeMutablePointer<T>? {
        let n = factor.rows
        let a = matrix.reserve(n * n)
        factor.storage.withUnsafeBufferPointer { f in
            if divisor == 1 {
                a.update(from: f.baseAddress!, count: n * n)
            } else {
                for j in 0..<(n * n) { a[j] = f[j] / divisor }
            }
        }
        mirrorUpper(a, n: n)
        guard allFinite(UnsafeBufferPointer(start: a, count: n * n)) else { return nil }
        for j in 0..<n { a[j * n + j] += epsilon }
        return a
    }

    /// Writes Q·diag(f(λ))·Qᵀ from the last decomposition into `target` when every entry is finite
    /// (the reference's `(Q * f) @ Q.T`); false otherwise. f must be positive.
    private func reconstruct(n: Int, into target: inout Tensor<T>, _ f: (T) -> T) -> Bool {
        let w = values.reserve(n)
        for k in 0..<n { w[k] = f(w[k]) }
        return symmetricProduct(vectors: matrix.reserve(n * n), asRows: true, weights: w, n: n, into: &target)
    }

    /// Σ_k w_k·q_k·q_kᵀ, as the reference's `(Q * w) @ Q.T`; the q_k are the rows (`asRows`) or
    /// the columns of the row-major n×n `vectors`. Leaves `target` alone and returns false unless
    /// every entry is finite.
    func symmetricProduct(vectors q: UnsafePointer<T>, asRows: Bool, weights w: UnsafePointer<T>, n: Int, into target: inout Tensor<T>) -> Bool {
        let s = scaled.reserve(n * n), x = result.reserve(n * n)
        for i in 0..<n {
            let row = q + i * n, out = s + i * n
            if asRows {
                let wi = w[i]
                forEachLanes(n) { j, k in storeLanes(wi * loadLanes(row, j, k), out, j, k) }
            } else {
                forEachLanes(n) { j, k in storeLanes(loadLanes(w, j, k) * loadLanes(row, j, k), out, j, k) }
            }
        }
        // Rows: Sᵀ·Q with S = diag(w)·Q; columns: S·Qᵀ with S = Q·diag(w).
        T.gemm(transA: asRows, transB: !asRows, m: n, n: n, k: n, alpha: 1, a: s, lda: n, b: q, ldb: n, beta: 0, c: x, ldc: n)
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
        guard loadShifted(factor, divisor: divisor, epsilon: epsilon) != nil, decompose(n: n) else { return false }
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

// MARK: - Eigendecomposed Shampoo's amortized computation

/// What an eigenbasis refresh did.
enum EigenbasisRefresh { case computed, kept, failed }

extension SymmetricEigenSolver {
    /// rᵢ = qᵢᵀ·F·qᵢ for the columns qᵢ of Q (one GEMM, F·Q, then column dots; F from its upper
    /// triangle).
    func eigenbasisDiagonal(_ factor: Tensor<T>, eigenvectors: Tensor<T>, into r: inout Tensor<T>) {
        let n = factor.rows
        let fq = scaled.reserve(n * n), f = result.reserve(n * n)
        factor.storage.withUnsafeBufferPointer { f.update(from: $0.baseAddress!, count: n * n) }
        mirrorUpper(f, n: n)
        eigenvectors.storage.withUnsafeBufferPointer { q in
            let q = q.baseAddress!
            T.gemm(transA: false, transB: false, m: n, n: n, k: n, alpha: 1, a: f, lda: n, b: q, ldb: n, beta: 0, c: fq, ldc: n)
            r.storage.withUnsafeMutableBufferPointer { r in
                // Eight columns at a time down the rows.
                forEachLanes(n) { i, lanes in
                    var dot = SIMD8<T>(repeating: 0)
                    for k in 0..<n { dot += loadLanes(q + k * n, i, lanes) * loadLanes(fq + k * n, i, lanes) }
                    storeLanes(dot, r.baseAddress!, i, lanes)
                }
            }
        }
    }

    /// ‖qᵢ‖² for the columns qᵢ of Q.
    func columnNorms(_ eigenvectors: Tensor<T>, into norms: inout Tensor<T>) {
        let n = eigenvectors.rows
        eigenvectors.storage.withUnsafeBufferPointer { q in
            norms.storage.withUnsafeMutableBufferPointer { qq in
                forEachLanes(n) { i, lanes in
                    var norm = SIMD8<T>(repeating: 0)
                    for k in 0..<n {
                        let qk = loadLanes(q.baseAddress! + k * n, i, lanes)
                        norm += qk * qk
                    }
                    storeLanes(norm, qq.baseAddress!, i, lanes)
                }
            }
        }
    }

    /// Meta's `matrix_eigendecomposition` for `EigendecomposedShampooPreconditionerConfig`, on
    /// A = F / divisor + ε·I with the stored eigenvectors Q (columns of the row-major `eigenvectors`) as
    /// the estimate:
    ///
    /// - `eigh` with tolerance τ > 0: B = QᵀAQ; if ‖B − diag B‖_F ≤ τ·‖B‖_F the basis is kept and
    ///   the eigenvalues become diag(B) (`kept`); otherwise, and always when τ = 0, `syevd`.
    /// - `qr`: B = QᵀAQ, then up to `maxIterations` times while the same criterion fails:
    ///   B = Q'·R, B ← R·Q', Q ← Q·Q' (simultaneous iteration warm-started from the last basis);
    ///   eigenvalues diag(B), sorted ascending with the eigenvectors (stable).
    ///
    /// The `eigh` check needs only diag(B) and ‖B‖_F: diag(B)ᵢ = rᵢ/divisor + ε‖qᵢ‖² from the
    /// caller's `diagonal` r = diag(QᵀFQ) (kept current from the gradient in the eigenbasis, see
    /// `Shampoo`) and `columnNorms` ‖qᵢ‖², and ‖B‖_F = ‖A‖_F for an orthogonal Q, from F's upper triangle:
    /// ‖A‖² = ‖F‖²/c² + 2ε·tr(F)/c + nε². As in the reference, a negative ‖B‖² − ‖diag B‖²
    /// (rounding) counts as not converged. Leaves the state alone and returns `failed` when A is
    /// not finite or LAPACK fails.
    func refreshEigenbasis(
        _ factor: Tensor<T>, diagonal r: Tensor<T>, columnNorms qq: Tensor<T>, divisor: T, epsilon: T, method: ShampooEigendecomposition,
        tolerance: T, maxIterations: Int, eigenvectors: inout Tensor<T>, eigenvalues: inout Tensor<T>
    ) -> EigenbasisRefresh {
        let n = factor.rows
        func converged(norm2: T, diagonal2: T) -> Bool {
            let off2 = norm2 - diagonal2
            return off2 >= 0 && off2.squareRoot() <= tolerance * norm2.squareRoot()
        }

        if method == .eigh && tolerance > 0 {
            let d = values.reserve(n)
            var diagonal2: T = 0
            for i in 0..<n {
                d[i] = r.storage[i] / divisor + epsilon * qq.storage[i]
                diagonal2 += d[i] * d[i]
            }
            let norm2 = factor.storage.withUnsafeBufferPointer { f in
                let (fNorm2, trace) = upperNormAndTrace(f.baseAddress!, n: n)
                return fNorm2 / (divisor * divisor) + 2 * epsilon * trace / divisor + T(n) * epsilon * epsilon
            }
            if norm2.isFinite && diagonal2.isFinite && converged(norm2: norm2, diagonal2: diagonal2) {
                eigenvalues.storage.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: d, count: n) }
                return .kept
            }
        }

        guard let a = loadShifted(factor, divisor: divisor, epsilon: epsilon) else { return .failed }

        switch method {
        case .eigh:
            guard decompose(n: n) else { return .failed }
            // `matrix` now holds the eigenvectors as rows: transpose into columns.
            let q = matrix.reserve(n * n), w = values.reserve(n)
            guard allFinite(UnsafeBufferPointer(start: q, count: n * n)), allFinite(UnsafeBufferPointer(start: w, count: n)) else { return .failed }
            eigenvectors.storage.withUnsafeMutableBufferPointer { v in
                for i in 0..<n { for k in 0..<n { v[i * n + k] = q[k * n + i] } }
            }
            eigenvalues.storage.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: w, count: n) }
            return .computed

        case .qr:
            let aq = scaled.reserve(n * n)
            var v = eigenvectors
            let b = result.reserve(n * n)
            v.storage.withUnsafeBufferPointer { q in
                T.gemm(transA: false, transB: false, m: n, n: n, k: n, alpha: 1, a: a, lda: n, b: q.baseAddress!, ldb: n, beta: 0, c: aq, ldc: n)
                T.gemm(transA: true, transB: false, m: n, n: n, k: n, alpha: 1, a: q.baseAddress!, lda: n, b: aq, ldb: n, beta: 0, c: b, ldc: n)
            }
            var iterations = 0
            while iterations < maxIterations {
                let bb = UnsafeBufferPointer(start: b, count: n * n)
                var diagonal2: T = 0
                for i in 0..<n { diagonal2 += b[i * n + i] * b[i * n + i] }
                if converged(norm2: sumOfSquares(bb), diagonal2: diagonal2) { break }
                guard allFinite(bb), let (qr, r) = try? Linalg.qr(Tensor(shape: [n, n], storage: Array(bb))) else { return .failed }
                let rq = matmul(r, qr)
                rq.storage.withUnsafeBufferPointer { b.update(from: $0.baseAddress!, count: n * n) }
                v = matmul(v, qr)
                iterations += 1
            }
            // Eigenvalues ascending (stable), eigenvectors permuted with them.
            let diagonal = (0..<n).map { b[$0 * n + $0] }
            let order = diagonal.indices.sorted { (diagonal[$0], $0) < (diagonal[$1], $1) }
            guard allFinite(UnsafeBufferPointer(start: b, count: n * n)), v.storage.allSatisfy(\.isFinite) else { return .failed }
            eigenvectors.storage.withUnsafeMutableBufferPointer { out in
                for i in 0..<n { for (k, from) in order.enumerated() { out[i * n + k] = v.storage[i * n + from] } }
            }
            eigenvalues.storage = order.map { diagonal[$0] }
            return iterations == 0 ? .kept : .computed
        }
    }

    /// The preconditioner's diagonal in the eigenbasis, as the reference's
    /// `matrix_inverse_root_from_eigendecomposition` with its default perturbation: λ ← λ − λ_min + ε
    /// when λ_min < ε, then λ^exponent into `scales` (P = Q·diag(scales)·Qᵀ).
    func eigenbasisScales(eigenvalues: Tensor<T>, epsilon: T, exponent: T, into scales: inout Tensor<T>) {
        let n = eigenvalues.count
        eigenvalues.storage.withUnsafeBufferPointer { w in
            scales.storage.withUnsafeMutableBufferPointer { f in
                let f = f.baseAddress!
                let lambdaMin = w.min() ?? 0, shift = lambdaMin < epsilon
                if exponent == -0.25 {
                    // A matrix's default root, refreshed every step: λ^(−¼) as 1/√√λ in lanes (within
                    // 2 ulp of `pow`, a tenth of its time).
                    forEachLanes(n) { k, lanes in
                        let x = loadLanes(w.baseAddress!, k, lanes)
                        storeLanes(1 / squareRootLanes(squareRootLanes(shift ? (x + -lambdaMin) + epsilon : x)), f, k, lanes)
                    }
                } else {
                    for k in 0..<n { f[k] = T.pow(shift ? (w[k] + -lambdaMin) + epsilon : w[k], exponent) }
                }
            }
        }
    }
}
