import Foundation
import Linalg
import Testing

func randomTensor<T: BLASScalar>(_ shape: [Int], seed: UInt64, _: T.Type = T.self) -> Tensor<T> {
    var rng = Xoshiro256(seed: seed)
    var t = Tensor<T>(zeros: shape)
    t.storage.withUnsafeMutableBufferPointer { rng.fillNormal($0) }
    return t
}

/// Reference product by the definition, in Double.
func naiveProduct(_ a: Tensor<Double>, _ ta: Bool, _ b: Tensor<Double>, _ tb: Bool) -> Tensor<Double> {
    let a2 = ta ? a.transposed : a, b2 = tb ? b.transposed : b
    var c = Tensor<Double>(zeros: [a2.rows, b2.cols])
    for i in 0..<a2.rows { for j in 0..<b2.cols { for k in 0..<a2.cols { c[i, j] += a2[i, k] * b2[k, j] } } }
    return c
}

@Suite struct ProductTests {
    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func gemmMatchesDefinitionInEveryTransposeMode(ta: Bool, tb: Bool) {
        let (m, k, n) = (5, 7, 3)
        let a = randomTensor(ta ? [k, m] : [m, k], seed: 1, Double.self)
        let b = randomTensor(tb ? [n, k] : [k, n], seed: 2, Double.self)
        let expected = naiveProduct(a, ta, b, tb)
        let c = matmul(a, transposeA: ta, b, transposeB: tb)
        #expect(c.shape == [m, n])
        #expect(c.maxAbsDifference(expected) < 1e-12)
        let cf = matmul(a.converted(to: Float.self), transposeA: ta, b.converted(to: Float.self), transposeB: tb)
        #expect(cf.converted(to: Double.self).maxAbsDifference(expected) < 1e-5)
    }

    /// Float products of order ≤ 96 run on the small-matrix kernel where the CPU has AVX2: every
    /// transpose mode, sizes across its 6-row and 8/16-column tiles, strided operands, alpha and
    /// beta, and a C full of NaN that beta = 0 must not read.
    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func smallFloatProductsMatchDefinition(ta: Bool, tb: Bool) {
        for (m, n, k) in [(1, 1, 1), (5, 7, 3), (6, 16, 64), (7, 17, 9), (13, 8, 20), (64, 64, 64), (20, 64, 64), (96, 96, 96), (64, 23, 1)] {
            let a = randomTensor(ta ? [k, m + 2] : [m, k + 2], seed: UInt64(m * 1000 + k), Double.self)
            let b = randomTensor(tb ? [n, k + 3] : [k, n + 3], seed: UInt64(n * 1000 + k), Double.self)
            let (lda, ldb) = (a.cols, b.cols)
            var expected = Tensor<Double>(zeros: [m, n])
            for i in 0..<m {
                for j in 0..<n {
                    for p in 0..<k { expected[i, j] += (ta ? a[p, i] : a[i, p]) * (tb ? b[j, p] : b[p, j]) }
                }
            }
            let af = a.converted(to: Float.self), bf = b.converted(to: Float.self)
            let c0 = randomTensor([m, n + 1], seed: 9, Double.self)
            for (alpha, beta) in [(1.0, 0.0), (0.5, 2.0)] {
                var c = beta == 0 ? Tensor<Float>(shape: [m, n + 1], storage: Array(repeating: .nan, count: m * (n + 1))) : c0.converted(to: Float.self)
                af.storage.withUnsafeBufferPointer { pa in
                    bf.storage.withUnsafeBufferPointer { pb in
                        c.storage.withUnsafeMutableBufferPointer { pc in
                            Float.gemm(
                                transA: ta, transB: tb, m: m, n: n, k: k, alpha: Float(alpha), a: pa.baseAddress!, lda: lda, b: pb.baseAddress!, ldb: ldb,
                                beta: Float(beta), c: pc.baseAddress!, ldc: n + 1)
                        }
                    }
                }
                var worst = 0.0
                for i in 0..<m {
                    for j in 0..<n { worst = max(worst, abs(Double(c[i, j]) - (alpha * expected[i, j] + beta * c0[i, j]))) }
                    // The column past n is not C's: untouched.
                    #expect(beta == 0 ? c[i, n].isNaN : Double(c[i, n]) == Double(Float(c0[i, n])))
                }
                #expect(worst < 1e-5 * Double(k + 1), "\(m)×\(n)×\(k) alpha \(alpha) beta \(beta): \(worst)")
            }
        }
    }

    /// `syrkUpper` (the small-matrix kernel for Float up to 96, OpenBLAS beyond and for Double)
    /// updates the upper triangle of alpha·op(A)·op(A)ᵀ + beta·C.
    @Test(arguments: [false, true])
    func syrkUpdatesTheUpperTriangle(trans: Bool) {
        for (n, k) in [(1, 1), (5, 3), (17, 9), (64, 64), (64, 16), (100, 20)] {
            let a = randomTensor(trans ? [k, n] : [n, k], seed: UInt64(n * 100 + k), Double.self)
            let product = naiveProduct(a, trans, a, !trans)
            let c0 = randomTensor([n, n], seed: 11, Double.self)
            func check<T: BLASScalar>(_: T.Type, tolerance: Double) {
                let at = a.converted(to: T.self)
                var c = c0.converted(to: T.self)
                at.storage.withUnsafeBufferPointer { pa in
                    c.storage.withUnsafeMutableBufferPointer { pc in
                        T.syrkUpper(trans: trans, n: n, k: k, alpha: 0.5, a: pa.baseAddress!, lda: at.cols, beta: 2, c: pc.baseAddress!, ldc: n)
                    }
                }
                var worst = 0.0
                for i in 0..<n { for j in i..<n { worst = max(worst, abs(Double(c[i, j]) - (0.5 * product[i, j] + 2 * c0[i, j]))) } }
                #expect(worst < tolerance * Double(k + 1), "\(T.self) n \(n) k \(k): \(worst)")
            }
            check(Float.self, tolerance: 1e-5)
            check(Double.self, tolerance: 1e-13)
        }
    }

    @Test func gemmAccumulatesWithBeta() {
        let a = randomTensor([4, 3], seed: 3, Double.self), b = randomTensor([3, 2], seed: 4, Double.self)
        var c = randomTensor([4, 2], seed: 5, Double.self)
        let c0 = c
        gemm(a, b, into: &c, alpha: 2, beta: 0.5)
        let expected = naiveProduct(a, false, b, false)
        for i in 0..<c.count { #expect(abs(c.storage[i] - (2 * expected.storage[i] + 0.5 * c0.storage[i])) < 1e-12) }
    }
}

@Suite struct DecompositionTests {
    func symmetric(_ n: Int, seed: UInt64) -> Tensor<Double> {
        let a = randomTensor([n, n], seed: seed, Double.self)
        return matmul(a, a, transposeB: true)  // PSD
    }

    @Test func symmetricEigenReconstructs() throws {
        let a = symmetric(6, seed: 7)
        let (values, v) = try symmetricEigen(a)
        #expect(values == values.sorted())
        // V·diag(λ)·Vᵀ = A and VᵀV = I.
        var scaled = v
        for i in 0..<6 { for j in 0..<6 { scaled[i, j] *= values[j] } }
        #expect(matmul(scaled, v, transposeB: true).maxAbsDifference(a) < 1e-10)
        #expect(matmul(v, transposeA: true, v).maxAbsDifference(.identity(6)) < 1e-12)
        // Each column is an eigenvector: A·v = λ·v.
        let av = matmul(a, v)
        for j in 0..<6 { for i in 0..<6 { #expect(abs(av[i, j] - values[j] * v[i, j]) < 1e-10) } }
    }

    @Test(arguments: [[4, 6], [6, 4], [5, 5]])
    func svdReconstructs(shape: [Int]) throws {
        let a = randomTensor(shape, seed: 11, Double.self)
        let (u, s, vt) = try svd(a)
        let k = shape.min()!
        #expect(u.shape == [shape[0], k] && vt.shape == [k, shape[1]])
        #expect(s == s.sorted(by: >))
        var us = u
        for i in 0..<u.rows { for j in 0..<k { us[i, j] *= s[j] } }
        #expect(matmul(us, vt).maxAbsDifference(a) < 1e-12)
        #expect(matmul(u, transposeA: true, u).maxAbsDifference(.identity(k)) < 1e-12)
        #expect(matmul(vt, vt, transposeB: true).maxAbsDifference(.identity(k)) < 1e-12)
        let (uf, sf, vtf) = try svd(a.converted(to: Float.self))
        var usf = uf
        for i in 0..<uf.rows { for j in 0..<k { usf[i, j] *= sf[j] } }
        #expect(matmul(usf, vtf).converted(to: Double.self).maxAbsDifference(a) < 1e-4)
    }

    @Test(arguments: [[6, 4], [4, 4], [3, 5]])
    func qrReconstructs(shape: [Int]) throws {
        let a = randomTensor(shape, seed: 13, Double.self)
        let (q, r) = try qr(a)
        let k = shape.min()!
        #expect(q.shape == [shape[0], k] && r.shape == [k, shape[1]])
        for i in 0..<k { for j in 0..<min(i, shape[1]) { #expect(r[i, j] == 0) } }
        #expect(matmul(q, r).maxAbsDifference(a) < 1e-12)
        #expect(matmul(q, transposeA: true, q).maxAbsDifference(.identity(k)) < 1e-12)
    }

    @Test func inverseFourthRoot() throws {
        let a = symmetric(5, seed: 17)
        let root = try symmetricMatrixPower(a, -0.25)
        // (A^(-1/4))⁴ · A = I
        let r2 = matmul(root, root)
        let r4 = matmul(r2, r2)
        #expect(matmul(r4, a).maxAbsDifference(.identity(5)) < 1e-8)
        // epsilon shifts the spectrum: (A + εI)^1 = A + εI
        let shifted = try symmetricMatrixPower(a, 1, epsilon: 0.5)
        #expect(shifted.maxAbsDifference(a + 0.5 * .identity(5)) < 1e-10)
    }

    @Test func lapackReportsIllegalArguments() {
        // A NaN matrix makes syevd fail to converge or return NaNs; either way no crash.
        let a = Tensor<Double>(repeating: .nan, shape: [3, 3])
        if let result = try? symmetricEigen(a) { #expect(result.values.contains { $0.isNaN }) }
    }
}

@Suite struct RuntimeTests {
    @Test func reportsKernelAndThreads() {
        #expect(!BLASRuntime.coreName.isEmpty)
        BLASRuntime.setThreads(1)
        #expect(BLASRuntime.threads == 1)
        #expect(BLASRuntime.summary.contains(BLASRuntime.coreName))
    }

    @Test func generatorIsReproducibleAndStreamsDiffer() {
        var a = Xoshiro256(seed: 42), b = Xoshiro256(seed: 42)
        #expect((0..<5).map { _ in a.next() } == (0..<5).map { _ in b.next() })
        var s1 = Xoshiro256(seed: 1, stream: "init"), s2 = Xoshiro256(seed: 1, stream: "shuffle")
        #expect(s1.next() != s2.next())
        var p = Xoshiro256(seed: 3)
        let perm = p.permutation(100)
        #expect(perm.sorted() == Array(0..<100) && perm != Array(0..<100))
        var n = Xoshiro256(seed: 5)
        var draws = [Double](repeating: 0, count: 20000)
        draws.withUnsafeMutableBufferPointer { n.fillNormal($0) }
        let mean = draws.reduce(0, +) / 20000
        let variance = draws.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 20000
        #expect(abs(mean) < 0.03 && abs(variance - 1) < 0.05)
    }
}

@Suite struct CholeskyTests {
    @Test func factorSolvesAndInverseMatchTheDefinition() throws {
        let n = 6
        let b = randomTensor([n, n], seed: 5, Double.self)
        // a = b·bᵀ + n·I is symmetric positive definite.
        var a = naiveProduct(b, false, b, true)
        for i in 0..<n { a[i, i] += Double(n) }
        let c = try Cholesky(a.storage, n: n)
        let l = Tensor(shape: [n, n], storage: c.lower)
        #expect(naiveProduct(l, false, l, true).maxAbsDifference(a) < 1e-12)
        #expect((0..<n).allSatisfy { i in (i + 1..<n).allSatisfy { l[i, $0] == 0 } })
        let rhs = (0..<n).map { Double($0) - 2.5 }
        let x = c.solve(rhs)
        for i in 0..<n { #expect(abs((0..<n).reduce(0) { $0 + a[i, $1] * x[$1] } - rhs[i]) < 1e-12) }
        let inverse = Tensor(shape: [n, n], storage: try c.inverse())
        var identity = Tensor<Double>(zeros: [n, n])
        for i in 0..<n { identity[i, i] = 1 }
        #expect(naiveProduct(a, false, inverse, false).maxAbsDifference(identity) < 1e-12)
        // Rows solved against L at once equal one at a time; log det = log det of L·Lᵀ.
        var rows = rhs + rhs.reversed()
        c.solveLower(rows: &rows, count: 2)
        #expect(zip(rows.prefix(n), c.solveLower(rhs)).allSatisfy { abs($0 - $1) < 1e-14 })
        #expect(zip(rows.suffix(n), c.solveLower(rhs.reversed())).allSatisfy { abs($0 - $1) < 1e-14 })
        #expect(abs(c.logDeterminant - (0..<n).reduce(0.0) { $0 + 2 * log(l[$1, $1]) }) < 1e-12)
        // Not positive definite: an error, not a wrong factor.
        #expect(throws: LAPACKError.self) { try Cholesky([1, 2, 2, 1], n: 2) }
    }
}
