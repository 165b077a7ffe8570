/// Fused element-wise kernels for the hot loops of training, written over 8-wide SIMD vectors so
/// they vectorise regardless of what the auto-vectoriser proves about aliasing. Each lane
/// computes exactly what the scalar formula computes (no reassociation, no FMA contraction), so
/// results are bit-identical to the scalar tail and to a scalar reference.

import CKernels

public typealias Vector8<T: SIMDScalar> = SIMD8<T>

/// √x lane-wise as vector instructions (`SIMD8.squareRoot()` takes one lane at a time, with a
/// libm call per lane); the same correctly rounded roots.
@inlinable @inline(__always)
public func squareRootLanes<T: BLASScalar>(_ x: SIMD8<T>) -> SIMD8<T> {
    if T.self == Float.self { return unsafeBitCast(ck_sqrt_float8(unsafeBitCast(x, to: SIMD8<Float>.self)), to: SIMD8<T>.self) }
    if T.self == Double.self { return unsafeBitCast(ck_sqrt_double8(unsafeBitCast(x, to: SIMD8<Double>.self)), to: SIMD8<T>.self) }
    return x.squareRoot()
}

@inlinable @inline(__always)
func load8<T: BLASScalar>(_ p: UnsafePointer<T>, _ i: Int) -> SIMD8<T> {
    UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<T>.self)
}

@inlinable @inline(__always)
func store8<T: BLASScalar>(_ v: SIMD8<T>, _ p: UnsafeMutablePointer<T>, _ i: Int) {
    UnsafeMutableRawPointer(p + i).storeBytes(of: v, as: SIMD8<T>.self)
}

/// Σ xᵢ² with eight partial sums (the order differs from a sequential sum; fine for norms).
@inlinable
public func sumOfSquares<T: BLASScalar>(_ x: UnsafeBufferPointer<T>) -> T {
    let n = x.count
    guard let base = x.baseAddress else { return 0 }
    var acc = SIMD8<T>(repeating: 0)
    var i = 0
    while i + 8 <= n {
        let v = load8(base, i)
        acc += v * v
        i += 8
    }
    var s = acc.sum()
    while i < n {
        s += base[i] * base[i]
        i += 1
    }
    return s
}

/// Whether every element is finite, vectorised (a NaN or ±∞ anywhere makes `0·x` non-zero-NaN).
@inlinable
public func allFinite<T: BLASScalar>(_ x: UnsafeBufferPointer<T>) -> Bool {
    let n = x.count
    guard let base = x.baseAddress else { return true }
    var acc = SIMD8<T>(repeating: 0)
    var i = 0
    while i + 8 <= n {
        acc += load8(base, i) * 0
        i += 8
    }
    var s = acc.sum()
    while i < n {
        s += base[i] * 0
        i += 1
    }
    return s == 0
}

/// The Adam/AdamW update of one tensor, torch's formulas:
///
///     p ← p·decay                                (decay = 1 − lr·λ for AdamW, 1 otherwise)
///     m ← lerp(m, g, 1 − β₁);  v ← β₂·v + (1 − β₂)·g²
///     p ← p − stepSize · m / (√v / √bc₂ + ε)
@inlinable
public func adamUpdate<T: BLASScalar>(
    p: UnsafeMutablePointer<T>, g: UnsafePointer<T>, m: UnsafeMutablePointer<T>, v: UnsafeMutablePointer<T>, count n: Int,
    decay: T, oneMinusBeta1 w: T, beta2: T, oneMinusBeta2: T, stepSize: T, bias2Sqrt: T, epsilon: T
) {
    let lowWeight = w < 0.5
    var i = 0
    let vw = SIMD8<T>(repeating: w), vw1 = SIMD8<T>(repeating: 1 - w)
    let vb2 = SIMD8<T>(repeating: beta2), vb2c = SIMD8<T>(repeating: oneMinusBeta2)
    let vss = SIMD8<T>(repeating: stepSize), vbc = SIMD8<T>(repeating: bias2Sqrt), veps = SIMD8<T>(repeating: epsilon)
    let vdecay = SIMD8<T>(repeating: decay)
    while i + 8 <= n {
        let gv = load8(g, i)
        var pv = load8(p, i)
        if decay != 1 { pv *= vdecay }
        let mv0 = load8(m, i)
        let mv = lowWeight ? mv0 + vw * (gv - mv0) : gv - (gv - mv0) * vw1
        let vv = vb2 * load8(v, i) + vb2c * (gv * gv)
        pv -= vss * (mv / (squareRootLanes(vv) / vbc + veps))
        store8(mv, m, i)
        store8(vv, v, i)
        store8(pv, p, i)
        i += 8
    }
    while i < n {
        let gi = g[i]
        var pi = p[i]
        if decay != 1 { pi *= decay }
        let mi = lowWeight ? m[i] + w * (gi - m[i]) : gi - (gi - m[i]) * (1 - w)
        let vi = beta2 * v[i] + oneMinusBeta2 * (gi * gi)
        pi -= stepSize * (mi / (vi.squareRoot() / bias2Sqrt + epsilon))
        m[i] = mi
        v[i] = vi
        p[i] = pi
        i += 1
    }
}

// MARK: - Vectorised exp and log for Float (Cephes-style, ≈1 ulp on the ranges used here)

@inlinable @inline(__always)
func expSIMD(_ x0: SIMD8<Float>) -> SIMD8<Float> {
    // exp(x) = 2^n · exp(r), x = n·ln2 + r, |r| ≤ ln2/2; degree-6 polynomial for exp(r).
    let x1 = x0.replacing(with: -87.3, where: x0 .< -87.3).replacing(with: 88.3, where: x0 .> 88.3)
    // Round x·log2(e) to the nearest integer n with the 1.5·2²³ trick: adding it leaves n in the
    // low mantissa bits, which also gives 2ⁿ's exponent field without a float→int conversion.
    let shifted = x1 * 1.442_695_04 + 12_582_912
    let n = shifted - 12_582_912
    var r = x1 - n * 0.693_359_375
    r = r - n * -2.121_944_4e-4
    var y = SIMD8<Float>(repeating: 1.987_569_15e-4)
    y = y * r + 1.398_199_95e-3
    y = y * r + 8.333_451_9e-3
    y = y * r + 4.166_579_59e-2
    y = y * r + 1.666_666_55e-1
    y = y * r + 5.000_000_12e-1
    y = y * (r * r) + r + 1
    let nBits = unsafeBitCast(shifted, to: SIMD8<UInt32>.self) &- 0x4B40_0000
    let scale = (nBits &+ 127) &<< 23
    return y * unsafeBitCast(scale, to: SIMD8<Float>.self)
}

/// log(u) for u in [1, 2] (all this kernel needs), Cephes logf's polynomial.
@inlinable @inline(__always)
func logOnePlusSIMD(_ e: SIMD8<Float>) -> SIMD8<Float> {
    let u = 1 + e
    // Split u = 2^k·m with m in [√½, √2): k ∈ {0, 1} because u ∈ [1, 2].
    let big = u .>= 1.414_213_56
    let m = u.replacing(with: u * 0.5, where: big)
    let k = SIMD8<Float>(repeating: 0).replacing(with: 1, where: big)
    let x = m - 1
    let z = x * x
    var y = SIMD8<Float>(repeating: 7.037_683_629_2e-2)
    y = y * x - 1.151_461_031_0e-1
    y = y * x + 1.167_699_874_0e-1
    y = y * x - 1.242_014_084_6e-1
    y = y * x + 1.424_932_278_7e-1
    y = y * x - 1.666_805_766_5e-1
    y = y * x + 2.000_071_476_5e-1
    y = y * x - 2.499_999_399_3e-1
    y = y * x + 3.333_333_117_4e-1
    y = y * x * z
    y = y + k * -2.121_944_40e-4
    y = y - 0.5 * z
    var r = x + y + k * 0.693_359_375
    // u = 1 + e rounds e away; put the rounding error back: log1p(e) ≈ log(u) − ((u − 1) − e)/u.
    r = r - ((u - 1) - e) / u
    return r
}

/// Binary cross-entropy with logits summed over `count` elements, `Σ softplus(a) − x·a`, and
/// optionally its gradient `sigmoid(a) − x`. Float runs 8 lanes with the polynomial exp/log1p
/// above; Double (tests) uses libm.
@inlinable
public func binaryCrossEntropyWithLogits<T: BLASScalar>(
    logits a: UnsafePointer<T>, targets x: UnsafePointer<T>, count n: Int, gradient d: UnsafeMutablePointer<T>?
) -> Double {
    var i = 0
    var total = 0.0
    if T.self == Float.self {
        let af = UnsafeRawPointer(a).assumingMemoryBound(to: Float.self)
        let xf = UnsafeRawPointer(x).assumingMemoryBound(to: Float.self)
        let df = d.map { UnsafeMutableRawPointer($0).assumingMemoryBound(to: Float.self) }
        var acc = SIMD8<Float>(repeating: 0)
        while i + 8 <= n {
            let av = load8(af, i), xv = load8(xf, i)
            let absA = unsafeBitCast(unsafeBitCast(av, to: SIMD8<UInt32>.self) & 0x7FFF_FFFF, to: SIMD8<Float>.self)
            let e = expSIMD(-absA)
            let positivePart = av.replacing(with: 0, where: av .< 0)
            let softplus = positivePart + logOnePlusSIMD(e)
            acc += softplus - xv * av
            if let df {
                let inv = SIMD8<Float>(repeating: 1) / (1 + e)
                let sig = inv.replacing(with: e * inv, where: av .< 0)
                store8(sig - xv, df, i)
            }
            i += 8
        }
        total = Double(acc.sum())
    }
    var s: T = 0
    while i < n {
        let ai = a[i]
        let e = T.exp(-abs(ai))
        s += Swift.max(ai, 0) + T.log1p(e) - x[i] * ai
        if let d { d[i] = (ai >= 0 ? 1 / (1 + e) : e / (1 + e)) - x[i] }
        i += 1
    }
    return total + Double(s)
}
