import Foundation
import Linalg
import Testing

/// The single-precision GELU kernels against the definition evaluated in Double with libm's erf
/// (the vectorised path uses a rational approximation of erfc, see CKernels/activations.c).
@Suite struct ActivationKernelTests {
    /// x from −12 to 12 in steps of 1/64, plus the values around 0 and a length that leaves a
    /// partial vector at the end.
    static let inputs: [Float] = (-768...768).map { Float($0) / 64 } + [1e-30, -1e-30, 0, 3e-8, -3e-8]

    static func cdf(_ x: Double) -> Double { 0.5 * erfc(-x / 2.0.squareRoot()) }
    static func pdf(_ x: Double) -> Double { exp(-0.5 * x * x) / (2 * Double.pi).squareRoot() }

    @Test func forwardMatchesTheDefinition() {
        let x = Self.inputs
        var y = [Float](repeating: .nan, count: x.count)
        x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { geluForward(xp.baseAddress!, into: $0.baseAddress!, count: x.count) } }
        for (v, out) in zip(x, y) {
            let exact = Double(v) * Self.cdf(Double(v))
            // Φ to 2e-7 absolute, and the product's own float rounding.
            #expect(abs(Double(out) - exact) <= 2e-7 * abs(Double(v)) + 1.2e-7 * abs(exact) + 1e-38, "GELU(\(v)) = \(out), exact \(exact)")
        }
    }

    @Test func backwardMatchesTheDefinitionInPlace() {
        let x = Self.inputs
        var g = x.indices.map { Float(1 + $0 % 3) }
        let upstream = g
        x.withUnsafeBufferPointer { xp in
            g.withUnsafeMutableBufferPointer { geluBackward(xp.baseAddress!, UnsafePointer($0.baseAddress!), into: $0.baseAddress!, count: x.count) }
        }
        for i in x.indices {
            let v = Double(x[i])
            let exact = Double(upstream[i]) * (Self.cdf(v) + v * Self.pdf(v))
            #expect(abs(Double(g[i]) - exact) <= 5e-7 * Double(upstream[i]) * (1 + abs(v)), "GELU′(\(v)) · \(upstream[i]) = \(g[i]), exact \(exact)")
        }
    }

    @Test func leftTailKeepsItsRelativeAccuracy() {
        // Where Φ(x) is tiny, 1 − erf would lose every digit; erfc does not.
        let x: [Float] = [-3, -4, -5, -6]
        var y = [Float](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { geluForward(xp.baseAddress!, into: $0.baseAddress!, count: x.count) } }
        for (v, out) in zip(x, y) {
            let exact = Double(v) * Self.cdf(Double(v))
            #expect(abs(Double(out) - exact) <= 1e-2 * abs(exact), "GELU(\(v)) = \(out), exact \(exact)")
        }
    }
}
