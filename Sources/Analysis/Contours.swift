import Foundation
import SweepCore

/// A 2-D toy objective of the trainer, rebuilt from a trial's configuration so its contour
/// lines can be drawn under the trajectories: the formulas are SweepCore's, the ones the
/// trainer optimizes.
struct ToyObjective: Hashable {
    enum Kind: Hashable {
        /// `(a − x)² + b (y − x²)²`
        case rosenbrock(a: Double, b: Double)
        /// `½ Σ hᵢ xᵢ²` in two dimensions
        case quadratic(h0: Double, h1: Double)
    }

    var kind: Kind

    /// The objective of a toy trial, with the trainer's defaults; nil for other models and for
    /// quadratics that are not 2-D (there is no plane to draw them on).
    init?(model: String, config: TrialConfig?, hparams: [String: HParamValue]) {
        func number(_ key: String, _ d: Double) -> Double {
            if let config, let x = try? config.double(key, default: d) { return x }
            return hparams[key]?.number ?? d
        }
        switch model {
        case "rosenbrock":
            kind = .rosenbrock(a: number("a", Rosenbrock.defaultA), b: number("b", Rosenbrock.defaultB))
        case "quadratic":
            let d = Quadratic.defaultCurvatures
            guard let h = (try? config?.doubleList("curvatures", default: d)) ?? (config == nil ? nil : d), h.count == 2 else { return nil }
            kind = .quadratic(h0: h[0], h1: h[1])
        default:
            return nil
        }
    }

    func value(_ x: Double, _ y: Double) -> Double {
        switch kind {
        case .rosenbrock(let a, let b): Rosenbrock.value(x, y, a: a, b: b)
        case .quadratic(let h0, let h1): Quadratic.value([x, y], curvatures: [h0, h1])
        }
    }

    var minimum: (Double, Double) {
        switch kind {
        case .rosenbrock(let a, _): Rosenbrock.minimum(a: a)
        case .quadratic: (0, 0)
        }
    }

    var formula: String {
        switch kind {
        case .rosenbrock(let a, let b): "Rosenbrock, f = (\(formatNumber(a)) − x)² + \(formatNumber(b))·(y − x²)²"
        case .quadratic(let h0, let h1): "quadratic, f = ½(\(formatNumber(h0))·x² + \(formatNumber(h1))·y²), κ = \(formatNumber(max(h0, h1) / min(h0, h1), digits: 3))"
        }
    }
}

/// Iso-lines by marching squares over a sampled grid.
enum Contours {
    struct Level {
        var value: Double
        var segments: [((Double, Double), (Double, Double))]
    }

    /// Log-spaced levels (every half decade, every decade when that gives more than 16) between
    /// the smallest positive value on the grid (at least 10⁻⁴ of the largest) and the largest.
    static func levels(min lo: Double, max hi: Double) -> [Double] {
        guard hi > 0, hi.isFinite else { return [] }
        // Levels far below the grid's maximum are thin slivers along a valley floor: four decades suffice.
        let floor = max(lo, hi * 1e-4)
        for step in [0.5, 1.0, 2.0] {
            let a = (log10(floor) / step).rounded(.up), b = (log10(hi) / step).rounded(.down)
            guard b >= a else { return [] }
            if b - a + 1 <= 16 { return stride(from: a, through: b, by: 1).map { pow(10, $0 * step) } }
        }
        return []
    }

    static func lines(_ f: (Double, Double) -> Double, x: (Double, Double), y: (Double, Double), resolution n: Int) -> [Level] {
        let xs = (0...n).map { x.0 + (x.1 - x.0) * Double($0) / Double(n) }
        let ys = (0...n).map { y.0 + (y.1 - y.0) * Double($0) / Double(n) }
        var grid = [Double](repeating: 0, count: (n + 1) * (n + 1))
        for j in 0...n { for i in 0...n { grid[j * (n + 1) + i] = f(xs[i], ys[j]) } }
        let finite = grid.filter(\.isFinite)
        let positive = finite.filter { $0 > 0 }
        return levels(min: positive.min() ?? 0, max: finite.max() ?? 0).map { level in
            Level(value: level, segments: march(grid, n: n, xs: xs, ys: ys, level: level))
        }
    }

    static func march(_ v: [Double], n: Int, xs: [Double], ys: [Double], level L: Double) -> [((Double, Double), (Double, Double))] {
        var out: [((Double, Double), (Double, Double))] = []
        func at(_ i: Int, _ j: Int) -> Double { v[j * (n + 1) + i] }
        func lerp(_ a: Double, _ b: Double, _ va: Double, _ vb: Double) -> Double {
            let t = vb == va ? 0.5 : (L - va) / (vb - va)
            return a + (b - a) * min(max(t, 0), 1)
        }
        for j in 0..<n {
            for i in 0..<n {
                let v00 = at(i, j), v10 = at(i + 1, j), v11 = at(i + 1, j + 1), v01 = at(i, j + 1)
                guard v00.isFinite, v10.isFinite, v11.isFinite, v01.isFinite else { continue }
                let index = (v00 > L ? 1 : 0) | (v10 > L ? 2 : 0) | (v11 > L ? 4 : 0) | (v01 > L ? 8 : 0)
                if index == 0 || index == 15 { continue }
                // Crossing points on the four edges: bottom, right, top, left.
                let e0 = (lerp(xs[i], xs[i + 1], v00, v10), ys[j])
                let e1 = (xs[i + 1], lerp(ys[j], ys[j + 1], v10, v11))
                let e2 = (lerp(xs[i], xs[i + 1], v01, v11), ys[j + 1])
                let e3 = (xs[i], lerp(ys[j], ys[j + 1], v00, v01))
                let centerAbove = (v00 + v10 + v11 + v01) / 4 > L
                switch index {
                case 1, 14: out.append((e3, e0))
                case 2, 13: out.append((e0, e1))
                case 3, 12: out.append((e3, e1))
                case 4, 11: out.append((e1, e2))
                case 6, 9: out.append((e0, e2))
                case 7, 8: out.append((e3, e2))
                case 5:
                    if centerAbove { out.append((e0, e1)); out.append((e2, e3)) } else { out.append((e3, e0)); out.append((e1, e2)) }
                case 10:
                    if centerAbove { out.append((e3, e0)); out.append((e1, e2)) } else { out.append((e0, e1)); out.append((e2, e3)) }
                default: break
                }
            }
        }
        return out
    }
}
