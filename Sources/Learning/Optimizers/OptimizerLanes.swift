import Linalg

// Eight-lane element-wise loops for the optimizers' updates (Adagrad, RMSprop, NAdam, Lion,
// LAMB, LARS, Adafactor). Each update is written once, over `SIMD8` lanes; the last, partial
// block runs the same code on a zero-padded vector and stores only its live lanes. Every lane
// computes exactly the scalar formula (no reassociation, no FMA contraction), so results do not
// depend on a tensor's length or alignment, and vectorise whatever LLVM proves about aliasing.

/// Calls `body(j, k)` for j = 0, 8, 16, … with k = 8 live lanes, and once more for the tail
/// (k = n − j < 8) if there is one.
@inline(__always)
func forEachLanes(_ n: Int, _ body: (_ j: Int, _ k: Int) -> Void) {
    var j = 0
    while j + 8 <= n {
        body(j, 8)
        j += 8
    }
    if j < n { body(j, n - j) }
}

/// `p[j..<j+k]` as eight lanes (zeros beyond k).
@inline(__always)
func loadLanes<T: BLASScalar>(_ p: UnsafePointer<T>, _ j: Int, _ k: Int = 8) -> SIMD8<T> {
    if k == 8 { return UnsafeRawPointer(p + j).loadUnaligned(as: SIMD8<T>.self) }
    var v = SIMD8<T>(repeating: 0)
    for l in 0..<k { v[l] = p[j + l] }
    return v
}

@inline(__always)
func loadLanes<T: BLASScalar>(_ p: UnsafeMutablePointer<T>, _ j: Int, _ k: Int = 8) -> SIMD8<T> {
    loadLanes(UnsafePointer(p), j, k)
}

/// Stores the first k lanes of `v` at `p + j`.
@inline(__always)
func storeLanes<T: BLASScalar>(_ v: SIMD8<T>, _ p: UnsafeMutablePointer<T>, _ j: Int, _ k: Int = 8) {
    if k == 8 {
        UnsafeMutableRawPointer(p + j).storeBytes(of: v, as: SIMD8<T>.self)
        return
    }
    for l in 0..<k { p[j + l] = v[l] }
}

/// torch's `lerp` lane-wise: `a + w·(b − a)` for |w| < 0.5, else `b − (b − a)·(1 − w)`.
@inline(__always)
func lerpLanes<T: BLASScalar>(_ a: SIMD8<T>, _ b: SIMD8<T>, _ w: T) -> SIMD8<T> {
    Swift.abs(w) < 0.5 ? a + w * (b - a) : b - (b - a) * (1 - w)
}

// Lane masks (comparisons, `replacing`) compile to vector selects only on concrete SIMD types;
// through a generic scalar, even a specialised one, they run lane by lane (some 40× slower). The
// helpers below therefore switch to the concrete type, a test the specialiser folds away.

/// 1, −1 or ±0 by the sign of each lane, NaN for NaN (torch's `sign` gives 0 there).
@inline(__always)
func signLanes<T: BLASScalar>(_ x: SIMD8<T>) -> SIMD8<T> {
    if T.self == Float.self { return unsafeBitCast(signLanes(unsafeBitCast(x, to: SIMD8<Float>.self)), to: SIMD8<T>.self) }
    if T.self == Double.self { return unsafeBitCast(signLanes(unsafeBitCast(x, to: SIMD8<Double>.self)), to: SIMD8<T>.self) }
    var s = x * 0
    s.replace(with: 1, where: x .> 0)
    s.replace(with: -1, where: x .< 0)
    return s
}

@inline(__always)
func signLanes(_ x: SIMD8<Float>) -> SIMD8<Float> {
    var s = x * 0
    s.replace(with: 1, where: x .> 0)
    s.replace(with: -1, where: x .< 0)
    return s
}

@inline(__always)
func signLanes(_ x: SIMD8<Double>) -> SIMD8<Double> {
    var s = x * 0
    s.replace(with: 1, where: x .> 0)
    s.replace(with: -1, where: x .< 0)
    return s
}

/// max(x, floor) lane-wise, keeping NaN (torch's `clamp(min:)`).
@inline(__always)
func atLeastLanes<T: BLASScalar>(_ x: SIMD8<T>, _ floor: T) -> SIMD8<T> {
    if T.self == Float.self {
        let xf = unsafeBitCast(x, to: SIMD8<Float>.self), f = SIMD8<Float>(repeating: Float(floor))
        return unsafeBitCast(xf.replacing(with: f, where: xf .< f), to: SIMD8<T>.self)
    }
    if T.self == Double.self {
        let xd = unsafeBitCast(x, to: SIMD8<Double>.self), f = SIMD8<Double>(repeating: Double(floor))
        return unsafeBitCast(xd.replacing(with: f, where: xd .< f), to: SIMD8<T>.self)
    }
    let f = SIMD8<T>(repeating: floor)
    return x.replacing(with: f, where: x .< f)
}

/// Σ xᵢ² in Double: eight-lane partial sums in the tensor's precision over blocks of 512
/// elements, each block added in Double — accurate for large Float tensors (torch, too, reduces
/// float32 in double on the CPU) at the speed of a vectorised loop.
@inline(__always)
func wideSumOfSquares<T: BLASScalar>(_ x: UnsafeBufferPointer<T>) -> Double {
    guard let base = x.baseAddress else { return 0 }
    return wideSumOfSquares(x.count) { loadLanes(base, $0, $1) }
}

@inline(__always)
func wideSumOfSquares<T: BLASScalar>(_ x: UnsafeMutableBufferPointer<T>) -> Double {
    wideSumOfSquares(UnsafeBufferPointer(x))
}

/// Σ f² over 0..<n, as above: `lanes(j, k)` gives the values j…j+k−1 (lanes beyond k are ignored).
@inline(__always)
func wideSumOfSquares<T: BLASScalar>(_ n: Int, _ lanes: (_ j: Int, _ k: Int) -> SIMD8<T>) -> Double {
    var total = 0.0
    var j = 0
    while j + 8 <= n {
        var acc = SIMD8<T>(repeating: 0)
        let end = Swift.min(n, j + 512)
        while j + 8 <= end {
            let v = lanes(j, 8)
            acc += v * v
            j += 8
        }
        total += Double(acc.sum())
    }
    if j < n {
        let v = lanes(j, n - j)
        for l in 0..<(n - j) {
            let x = Double(v[l])
            total += x * x
        }
    }
    return total
}
