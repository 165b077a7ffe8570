// The toy objectives' formulas, defined once: the trainer optimizes them (Learning) and the
// report draws their contour lines under the trajectories (Analysis).

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
    /// The trial keys' defaults (`curvatures`).
    public static let defaultCurvatures = [10, 0.1]

    public let curvatures: [Double]
    public let start: [Double]
    public var name: String { "quadratic" }

    public init(curvatures: [Double], start: [Double]) {
        precondition(curvatures.count == start.count)
        self.curvatures = curvatures
        self.start = start
    }

    /// `½ Σ hᵢ·xᵢ²` at `x` (as many coordinates as curvatures).
    public static func value(_ x: [Double], curvatures h: [Double]) -> Double {
        var v = 0.0
        for i in x.indices { v += 0.5 * h[i] * x[i] * x[i] }
        return v
    }

    public func evaluate(_ x: [Double]) -> (value: Double, gradient: [Double]) {
        (Self.value(x, curvatures: curvatures), x.indices.map { curvatures[$0] * x[$0] })
    }
}

/// `(a − x)² + b·(y − x²)²`, minimum 0 at (a, a²).
public struct Rosenbrock: Objective {
    /// The trial keys' defaults (`a`, `b`, `start`).
    public static let defaultA = 1.0
    public static let defaultB = 100.0
    public static let defaultStart = [-1.5, 2.0]

    public let a: Double
    public let b: Double
    public let start: [Double]
    public var name: String { "rosenbrock" }

    public init(a: Double = defaultA, b: Double = defaultB, start: [Double] = defaultStart) {
        self.a = a
        self.b = b
        self.start = start
    }

    /// `(a − x)² + b·(y − x²)²`.
    public static func value(_ x: Double, _ y: Double, a: Double, b: Double) -> Double {
        let r = y - x * x
        return (a - x) * (a - x) + b * r * r
    }

    /// The minimum, (a, a²).
    public static func minimum(a: Double) -> (x: Double, y: Double) { (a, a * a) }

    public func evaluate(_ p: [Double]) -> (value: Double, gradient: [Double]) {
        let (x, y) = (p[0], p[1])
        let r = y - x * x
        return (Self.value(x, y, a: a, b: b), [-2 * (a - x) - 4 * b * x * r, 2 * b * r])
    }
}
