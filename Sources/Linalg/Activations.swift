import CKernels

/// GELU, `y = x·Φ(x)` with Φ the standard normal CDF (PyTorch's default, erf-based form).
/// Single precision runs the vectorised kernel (CKernels/activations.c: one exponential per
/// element, |Φ error| < 2e-7 against libm); double precision uses libm's `erf`.
@inlinable
public func geluForward<T: BLASScalar>(_ x: UnsafePointer<T>, into y: UnsafeMutablePointer<T>, count: Int) {
    if T.self == Float.self {
        gelu_forward_f32(UnsafeRawPointer(x).assumingMemoryBound(to: Float.self), UnsafeMutableRawPointer(y).assumingMemoryBound(to: Float.self), count)
        return
    }
    for i in 0..<count { y[i] = x[i] * (0.5 + 0.5 * T.erf(x[i] * T(0.7071067811865476))) }
}

/// GELU's backward pass from its input `x`: `dx = dy·(Φ(x) + x·φ(x))`. `dx` may be `dy`.
@inlinable
public func geluBackward<T: BLASScalar>(_ x: UnsafePointer<T>, _ dy: UnsafePointer<T>, into dx: UnsafeMutablePointer<T>, count: Int) {
    if T.self == Float.self {
        gelu_backward_f32(
            UnsafeRawPointer(x).assumingMemoryBound(to: Float.self), UnsafeRawPointer(dy).assumingMemoryBound(to: Float.self),
            UnsafeMutableRawPointer(dx).assumingMemoryBound(to: Float.self), count)
        return
    }
    let invSqrt2 = T(0.7071067811865476), invSqrt2Pi = T(0.3989422804014327)
    for i in 0..<count {
        let v = x[i]
        dx[i] = dy[i] * (0.5 + 0.5 * T.erf(v * invSqrt2) + v * invSqrt2Pi * T.exp(-0.5 * v * v))
    }
}

/// ReLU's backward pass from its output: `dx = y > 0 ? dy : 0`, branch-free (CKernels: as a
/// Swift loop it kept a branch per element, mispredicted on half of them). `dx` may be `dy`.
@inlinable
public func reluBackward<T: BLASScalar>(_ y: UnsafePointer<T>, _ dy: UnsafePointer<T>, into dx: UnsafeMutablePointer<T>, count: Int) {
    if T.self == Float.self {
        relu_backward_f32(
            UnsafeRawPointer(y).assumingMemoryBound(to: Float.self), UnsafeRawPointer(dy).assumingMemoryBound(to: Float.self),
            UnsafeMutableRawPointer(dx).assumingMemoryBound(to: Float.self), count)
    } else if T.self == Double.self {
        relu_backward_f64(
            UnsafeRawPointer(y).assumingMemoryBound(to: Double.self), UnsafeRawPointer(dy).assumingMemoryBound(to: Double.self),
            UnsafeMutableRawPointer(dx).assumingMemoryBound(to: Double.self), count)
    } else {
        for i in 0..<count { dx[i] = y[i] > 0 ? dy[i] : 0 }
    }
}
