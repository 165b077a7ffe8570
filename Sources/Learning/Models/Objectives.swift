import Linalg

/// A deterministic 2-D (or n-D) test function for optimizer trajectories: no data, the
/// parameter is the point itself (named `x`), and training records where it goes.
public protocol Objective: Sendable {
    var name: String { get }
    var start: [Double] { get }
    /// Value and gradient at `x`.
    func evaluate(_ x: [Double]) -> (value: Double, gradient: [Double])
}

/// `½ Σ hᵢ·xᵢ²`: the ill-conditioned valley of the adaptive-methods notes (κ = max h / min h).
public struct Quadratic: Objective {
    public let curvatures: [Double]
    public let start: [Double]
    public var name: String { "quadratic" }

    public init(curvatures: [Double], start: [Double]) {
        precondition(curvatures.count == start.count)
        self.curvatures = curvatures
        self.start = start
    }

    public func evaluate(_ x: [Double]) -> (value: Double, gradient: [Double]) {
        var v = 0.0
        var g = [Double](repeating: 0, count: x.count)
        for i in x.indices {
            v += 0.5 * curvatures[i] * x[i] * x[i]
            g[i] = curvatures[i] * x[i]
        }
        return (v, g)
    }
}

/// `(a − x)² + b·(y − x²)²`, minimum 0 at (a, a²).
public struct Rosenbrock: Objective {
    public let a: Double
    public let b: Double
    public let start: [Double]
    public var name: String { "rosenbrock" }

    public init(a: Double = 1, b: Double = 100, start: [Double] = [-1.5, 2]) {
        self.a = a
        self.b = b
        self.start = start
    }

    public func evaluate(_ p: [Double]) -> (value: Double, gradient: [Double]) {
        let (x, y) = (p[0], p[1])
        let r = y - x * x
        return ((a - x) * (a - x) + b * r * r, [-2 * (a - x) - 4 * b * x * r, 2 * b * r])
    }
}
