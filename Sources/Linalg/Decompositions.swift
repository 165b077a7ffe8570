/// LAPACK factorizations on row-major tensors: symmetric eigendecomposition, SVD and QR, plus
/// the matrix functions built on them (inverse roots for Shampoo), and a double-precision
/// Cholesky factorization (Gaussian-process search).

import COpenBLAS
import Glibc

public struct LAPACKError: Error, CustomStringConvertible {
    public let routine: String
    public let info: Int32
    public var description: String {
        info < 0
            ? "\(routine): argument \(-info) had an illegal value"
            : "\(routine): failed to converge (info = \(info))"
    }
}

@inline(__always)
func checkInfo(_ routine: String, _ info: Int32) throws {
    if info != 0 { throw LAPACKError(routine: routine, info: info) }
}

/// Eigenvalues (ascending) and eigenvectors (as the columns of `vectors`) of a symmetric matrix.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func symmetricEigen<T: BLASScalar>(_ a: Tensor<T>) throws -> (values: [T], vectors: Tensor<T>) {
    let n = a.rows
    precondition(a.rank == 2 && a.cols == n, "symmetricEigen needs a square matrix, got \(a.shape)")
    if n == 0 { return ([], a) }
    // Row-major and column-major views of a symmetric matrix agree, so `a` goes in as is; the
    // eigenvectors come back as columns of a column-major array, i.e. as rows here.
    var work = a.storage
    var w = [T](repeating: 0, count: n)
    var info: Int32 = 0
    var n32 = Int32(n)
    var lwork: Int32 = -1
    var liwork: Int32 = -1
    var wq: T = 0
    var iwq: Int32 = 0
    "V".withCString { jobz in
        "U".withCString { uplo in
            T.lapackSyevd(jobz, uplo, &n32, &work, &n32, &w, &wq, &lwork, &iwq, &liwork, &info)
        }
    }
    try checkInfo("syevd (workspace query)", info)
    lwork = Int32(wq)
    liwork = iwq
    var buf = [T](repeating: 0, count: Int(lwork))
    var ibuf = [Int32](repeating: 0, count: Int(liwork))
    "V".withCString { jobz in
        "U".withCString { uplo in
            T.lapackSyevd(jobz, uplo, &n32, &work, &n32, &w, &buf, &lwork, &ibuf, &liwork, &info)
        }
    }
    try checkInfo("syevd", info)
    return (w, Tensor(shape: [n, n], storage: work).transposed)
}

/// Thin singular value decomposition `a = u · diag(s) · vt`, singular values descending.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func svd<T: BLASScalar>(_ a: Tensor<T>) throws -> (u: Tensor<T>, s: [T], vt: Tensor<T>) {
    let (m, n) = (a.rows, a.cols)
    let k = min(m, n)
    if k == 0 { return (Tensor(zeros: [m, 0]), [], Tensor(zeros: [0, n])) }
    // LAPACK sees the row-major m×n matrix as its transpose (n×m, column-major). Factoring that,
    // Aᵀ = U'·S·V'ᵀ, gives A = V'·S·U'ᵀ: LAPACK's `vt` buffer read row-major is our u (m×k),
    // and its `u` buffer read row-major is our vt (k×n). No copies needed.
    var work = a.storage
    var s = [T](repeating: 0, count: k)
    var lu = [T](repeating: 0, count: n * k)  // LAPACK's U: n×k, column-major
    var lvt = [T](repeating: 0, count: k * m)  // LAPACK's Vᵀ: k×m, column-major
    var (m32, n32, k32) = (Int32(n), Int32(m), Int32(k))
    var iwork = [Int32](repeating: 0, count: 8 * k)
    var info: Int32 = 0
    var lwork: Int32 = -1
    var wq: T = 0
    "S".withCString { jobz in
        T.lapackGesdd(jobz, &m32, &n32, &work, &m32, &s, &lu, &m32, &lvt, &k32, &wq, &lwork, &iwork, &info)
    }
    try checkInfo("gesdd (workspace query)", info)
    lwork = Int32(wq)
    var buf = [T](repeating: 0, count: Int(lwork))
    "S".withCString { jobz in
        T.lapackGesdd(jobz, &m32, &n32, &work, &m32, &s, &lu, &m32, &lvt, &k32, &buf, &lwork, &iwork, &info)
    }
    try checkInfo("gesdd", info)
    return (Tensor(shape: [m, k], storage: lvt), s, Tensor(shape: [k, n], storage: lu))
}

/// Thin QR decomposition `a = q · r` with `q` m×k orthonormal columns, `r` k×n upper triangular.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func qr<T: BLASScalar>(_ a: Tensor<T>) throws -> (q: Tensor<T>, r: Tensor<T>) {
    let (m, n) = (a.rows, a.cols)
    let k = min(m, n)
    var colMajor = a.transposed.storage  // column-major m×n, lda = m
    var tau = [T](repeating: 0, count: max(k, 1))
    var (m32, n32, k32) = (Int32(m), Int32(n), Int32(k))
    var info: Int32 = 0
    var lwork: Int32 = -1
    var wq: T = 0
    T.lapackGeqrf(&m32, &n32, &colMajor, &m32, &tau, &wq, &lwork, &info)
    try checkInfo("geqrf (workspace query)", info)
    lwork = max(Int32(wq), 1)
    var buf = [T](repeating: 0, count: Int(lwork))
    T.lapackGeqrf(&m32, &n32, &colMajor, &m32, &tau, &buf, &lwork, &info)
    try checkInfo("geqrf", info)
    var r = Tensor<T>(zeros: [k, n])
    for i in 0..<k { for j in i..<n { r.storage[i * n + j] = colMajor[j * m + i] } }
    // Form the first k columns of Q in place.
    lwork = -1
    T.lapackOrgqr(&m32, &k32, &k32, &colMajor, &m32, &tau, &wq, &lwork, &info)
    try checkInfo("orgqr (workspace query)", info)
    lwork = max(Int32(wq), 1)
    buf = [T](repeating: 0, count: Int(lwork))
    T.lapackOrgqr(&m32, &k32, &k32, &colMajor, &m32, &tau, &buf, &lwork, &info)
    try checkInfo("orgqr", info)
    let q = Tensor(shape: [k, m], storage: Array(colMajor.prefix(m * k))).transposed
    return (q, r)
}

/// `(a + epsilon·I)^p` for a symmetric positive semi-definite matrix, through its
/// eigendecomposition; eigenvalues are floored at `epsilon` before the power so that negative
/// rounding noise never produces NaN.
@_specialize(where T == Float)
@_specialize(where T == Double)
public func symmetricMatrixPower<T: BLASScalar>(_ a: Tensor<T>, _ p: T, epsilon: T = 0) throws -> Tensor<T> {
    var shifted = a
    let n = a.rows
    if epsilon != 0 { for i in 0..<n { shifted.storage[i * n + i] += epsilon } }
    let (values, vectors) = try symmetricEigen(shifted)
    var scaled = vectors
    for j in 0..<n {
        let f = T.pow(max(values[j], epsilon > 0 ? epsilon : T.leastNormalMagnitude), p)
        for i in 0..<n { scaled.storage[i * n + j] *= f }
    }
    return matmul(scaled, vectors, transposeB: true)
}

/// The quintic Newton–Schulz iteration of Muon (Jordan et al.), which maps G = U·S·Vᵀ to
/// approximately U·S'·Vᵀ with S' near 1: X ← X/(‖X‖_F + 1e-7), then `steps` times
/// A = X·Xᵀ, B = b·A + c·A·A, X = a·X + B·X, on the wide orientation (transposed when tall).
@_specialize(where T == Float)
@_specialize(where T == Double)
public func newtonSchulzOrthogonalize<T: BLASScalar>(
    _ g: Tensor<T>, steps: Int, coefficients: (a: Double, b: Double, c: Double) = (3.4445, -4.7750, 2.0315)
) -> Tensor<T> {
    let tall = g.rows > g.cols
    var x = tall ? g.transposed : g.reshaped([g.rows, g.cols])
    let (m, n) = (x.rows, x.cols)
    let scale = 1 / (T(Double(x.norm)) + T(1e-7))
    x.storage.withUnsafeMutableBufferPointer { p in for i in 0..<p.count { p[i] *= scale } }
    let (a, b, c) = (T(coefficients.a), T(coefficients.b), T(coefficients.c))
    // A = X·Xᵀ by a rank-k update of its upper triangle (half a GEMM), mirrored; B = b·A + c·A·A;
    // X ← a·X + B·X as one GEMM accumulating into a copy of X scaled by a.
    var gram = Tensor<T>(zeros: [m, m]), square = Tensor<T>(zeros: [m, m]), next = Tensor<T>(zeros: [m, n])
    for _ in 0..<steps {
        x.storage.withUnsafeBufferPointer { px in
            gram.storage.withUnsafeMutableBufferPointer { pa in
                T.syrkUpper(trans: false, n: m, k: n, alpha: 1, a: px.baseAddress!, lda: n, beta: 0, c: pa.baseAddress!, ldc: m)
                for i in 0..<m { for j in 0..<i { pa[i * m + j] = pa[j * m + i] } }
            }
        }
        gemm(gram, gram, into: &square)
        square.storage.withUnsafeMutableBufferPointer { s in
            gram.storage.withUnsafeBufferPointer { g in for i in 0..<s.count { s[i] = b * g[i] + c * s[i] } }
        }
        next.storage.withUnsafeMutableBufferPointer { d in
            x.storage.withUnsafeBufferPointer { s in d.baseAddress!.update(from: s.baseAddress!, count: s.count) }
        }
        gemm(square, x, into: &next, alpha: 1, beta: a)
        swap(&x, &next)
    }
    return tall ? x.transposed : x
}

/// The Cholesky factorization `a = L·Lᵀ` of a symmetric positive definite matrix in double
/// precision (LAPACK `dpotrf`), with the solves and the inverse built on it.
public struct Cholesky: Sendable {
    public let n: Int
    /// L, row-major n×n, lower triangular (zeros above the diagonal).
    public let lower: [Double]

    /// Factors `a` (row-major n×n, symmetric; only its lower triangle is read). Throws a
    /// `LAPACKError` (info > 0: the leading minor of that order is not positive definite).
    public init(_ a: [Double], n: Int) throws {
        precondition(a.count == n * n, "Cholesky needs an n×n matrix, got \(a.count) entries for n = \(n)")
        self.n = n
        var work = a
        if n > 0 {
            // Row-major lower is column-major upper: LAPACK factors it as Uᵀ·U with U = Lᵀ.
            var n32 = Int32(n), info: Int32 = 0
            "U".withCString { dpotrf_($0, &n32, &work, &n32, &info, 1) }
            try checkInfo("potrf", info)
            for i in 0..<n { for j in (i + 1)..<n { work[i * n + j] = 0 } }
        }
        lower = work
    }

    /// log det a = 2 Σ log Lᵢᵢ.
    public var logDeterminant: Double { (0..<n).reduce(0.0) { $0 + 2 * Glibc.log(lower[$1 * n + $1]) } }

    /// Replaces each row r of `b` (row-major, `count` rows of n) by L⁻¹·r.
    public func solveLower(rows b: inout [Double], count m: Int) {
        precondition(b.count == m * n)
        guard m > 0, n > 0 else { return }
        // Row vector r ↦ L⁻¹r is X = B·L⁻ᵀ: the right-side triangular solve X·Lᵀ = B.
        cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, blasint(m), blasint(n), 1, lower, blasint(n), &b, blasint(n))
    }

    /// L⁻¹·b.
    public func solveLower(_ b: [Double]) -> [Double] {
        var x = b
        guard n > 0 else { return x }
        cblas_dtrsv(CblasRowMajor, CblasLower, CblasNoTrans, CblasNonUnit, blasint(n), lower, blasint(n), &x, 1)
        return x
    }

    /// a⁻¹·b (two triangular solves).
    public func solve(_ b: [Double]) -> [Double] {
        var x = solveLower(b)
        guard n > 0 else { return x }
        cblas_dtrsv(CblasRowMajor, CblasLower, CblasTrans, CblasNonUnit, blasint(n), lower, blasint(n), &x, 1)
        return x
    }

    /// a⁻¹ (LAPACK `dpotri`), row-major and symmetric.
    public func inverse() throws -> [Double] {
        var work = lower
        guard n > 0 else { return work }
        var n32 = Int32(n), info: Int32 = 0
        "U".withCString { dpotri_($0, &n32, &work, &n32, &info, 1) }
        try checkInfo("potri", info)
        for i in 0..<n { for j in (i + 1)..<n { work[i * n + j] = work[j * n + i] } }
        return work
    }
}
