import Glibc
import Linalg

/// Double descent by polynomial fitting (the `002` notes' "Double Descent: Polynomial Fitting"):
/// `points` noisy samples of sin(πx) at x uniform in [−1, 1] (drawn from the trial's seed) are
/// fitted by a polynomial of `degree` in the Legendre basis, by the minimum-norm least-squares
/// solution (as `numpy.linalg.lstsq`: the pseudo-inverse from an SVD, singular values below
/// 1e-12·s_max dropped). Below the interpolation threshold (degree + 1 < points) it is ordinary
/// least squares; above, the interpolant of smallest coefficient norm. The test risk is the mean
/// squared error against the noiseless function on 1000 evenly spaced points.
public struct PolynomialFit: Sendable {
    public let degree: Int
    public let points: Int
    public let noise: Double
    public let seed: UInt64

    public init(degree: Int, points: Int, noise: Double, seed: UInt64) {
        (self.degree, self.points, self.noise, self.seed) = (degree, points, noise, seed)
    }

    static func target(_ x: Double) -> Double { Glibc.sin(Double.pi * x) }

    /// Legendre polynomials P_0 … P_degree at x (Bonnet's recursion).
    func features(_ x: Double) -> [Double] {
        var p = [1.0]
        if degree >= 1 { p.append(x) }
        if degree >= 2 {
            for n in 1..<degree { p.append((Double(2 * n + 1) * x * p[n] - Double(n) * p[n - 1]) / Double(n + 1)) }
        }
        return p
    }

    /// (train MSE, test MSE, coefficient norm).
    public func fit() throws -> (train: Double, test: Double, norm: Double) {
        var rng = Xoshiro256(seed: seed, stream: "polyfit")
        let xs = (0..<points).map { _ in 2 * rng.nextUnit() - 1 }
        var noiseValues = [Double](repeating: 0, count: points)
        noiseValues.withUnsafeMutableBufferPointer { rng.fillNormal($0) }
        let ys = zip(xs, noiseValues).map { Self.target($0) + noise * $1 }
        let k = degree + 1
        let phi = Tensor<Double>(shape: [points, k], storage: xs.flatMap(features))
        let (u, s, vt) = try svd(phi)
        let cutoff = 1e-12 * (s.first ?? 0)
        var w = [Double](repeating: 0, count: k)
        for (r, sr) in s.enumerated() where sr > cutoff {
            var uy = 0.0
            for i in 0..<points { uy += u.storage[i * s.count + r] * ys[i] }
            for j in 0..<k { w[j] += vt.storage[r * k + j] * uy / sr }
        }
        func predict(_ x: Double) -> Double { zip(features(x), w).reduce(0) { $0 + $1.0 * $1.1 } }
        let train = zip(xs, ys).reduce(0.0) { $0 + (predict($1.0) - $1.1) * (predict($1.0) - $1.1) } / Double(points)
        let grid = (0..<1000).map { -1 + 2 * Double($0) / 999 }
        let test = grid.reduce(0.0) { $0 + (predict($1) - Self.target($1)) * (predict($1) - Self.target($1)) } / 1000
        return (train, test, w.reduce(0) { $0 + $1 * $1 }.squareRoot())
    }
}
