/// Matrix products over BLAS. Shapes are checked here, once, so that a wrong shape is a clear
/// precondition failure instead of BLAS reading past a buffer.

/// `c ← alpha·op(a)·op(b) + beta·c`, every transpose combination. `c` is resized when `beta == 0`.
@inlinable
public func gemm<T: BLASScalar>(
    _ a: Tensor<T>, transposeA: Bool = false, _ b: Tensor<T>, transposeB: Bool = false,
    into c: inout Tensor<T>, alpha: T = 1, beta: T = 0
) {
    let (m, k) = transposeA ? (a.cols, a.rows) : (a.rows, a.cols)
    let (kb, n) = transposeB ? (b.cols, b.rows) : (b.rows, b.cols)
    precondition(k == kb, "gemm: inner dimensions differ (\(a.shape)\(transposeA ? "ᵀ" : "") · \(b.shape)\(transposeB ? "ᵀ" : ""))")
    if beta == 0 {
        if c.rows != m || c.cols != n { c.resize([m, n]) }
    } else {
        precondition(c.rows == m && c.cols == n, "gemm: output is \(c.shape), expected [\(m), \(n)]")
    }
    if m == 0 || n == 0 { return }
    if k == 0 {
        for i in 0..<c.count { c.storage[i] *= beta }
        return
    }
    a.storage.withUnsafeBufferPointer { pa in
        b.storage.withUnsafeBufferPointer { pb in
            c.storage.withUnsafeMutableBufferPointer { pc in
                T.gemm(
                    transA: transposeA, transB: transposeB, m: m, n: n, k: k, alpha: alpha,
                    a: pa.baseAddress!, lda: a.cols, b: pb.baseAddress!, ldb: b.cols,
                    beta: beta, c: pc.baseAddress!, ldc: n)
            }
        }
    }
}

/// `op(a)·op(b)` as a new tensor.
@inlinable
public func matmul<T: BLASScalar>(
    _ a: Tensor<T>, transposeA: Bool = false, _ b: Tensor<T>, transposeB: Bool = false
) -> Tensor<T> {
    var c = Tensor<T>(zeros: [0, 0])
    gemm(a, transposeA: transposeA, b, transposeB: transposeB, into: &c)
    return c
}
