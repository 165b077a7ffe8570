import Foundation
import SweepCore

/// One committed trial in trial-number order, with the best value found up to it.
public struct BestSoFarPoint: Sendable {
    /// The trial's number, 1-based: its `index` + 1 (adaptive searches number trials in the order
    /// they were suggested).
    public var number: Int
    public var trial: TrialRow
    /// The trial's metric, NaN when it cannot be ranked (diverged, failed, no finite value).
    public var value: Double
    /// The best ranked value among trials numbered up to this one (NaN before the first).
    public var best: Double
}

/// A Pareto front over two measures.
public struct ParetoFront: Sendable {
    public var measures: (TrialMeasure, TrialMeasure)
    public var maximize: (Bool, Bool)
    /// Finished trials (done or stopped) with finite values of both, in index order.
    public var candidates: [(trial: TrialRow, x: Double, y: Double)]
    /// The non-dominated candidates, by the first measure (best first), ties by trial number.
    public var front: [(trial: TrialRow, x: Double, y: Double)]
}

extension SweepAnalysis {
    /// The checkpoints of the text report's best-so-far table.
    public static let bestSoFarCheckpoints = [10, 25, 50, 100]

    /// Committed trials in trial-number order with the running best of the metric. Queued and
    /// running trials are left out; a trial that cannot be ranked keeps the best as it was.
    public func bestSoFar() -> [BestSoFarPoint] {
        var best = Double.nan
        return trials.filter { !$0.isPending }.sorted { $0.index < $1.index }.map { t in
            let v = isRanked(t) ? value(t) : .nan
            if v.isFinite, best.isNaN || better(v, best) { best = v }
            return BestSoFarPoint(number: t.index + 1, trial: t, value: v, best: best)
        }
    }

    /// The best value among trials numbered up to `n` (NaN when none of them is ranked).
    public func best(afterTrials n: Int) -> Double {
        bestSoFar().last { $0.number <= n }?.best ?? .nan
    }

    /// The direction of a measure here: the analysis's own for its metric (so `--maximize`
    /// holds), the measure's default otherwise.
    public func maximizes(_ m: TrialMeasure) -> Bool { m.metric == metric ? maximize : m.maximizedByDefault }

    /// The trials no other finished trial beats on both measures at once (at least as good on
    /// both and strictly better on one). Equal points do not dominate each other: both stay.
    public func paretoFront(_ m1: TrialMeasure, _ m2: TrialMeasure) -> ParetoFront {
        let maximize = (maximizes(m1), maximizes(m2))
        let candidates = trials.filter { ($0.status == TrialStatus.done.rawValue || $0.status == TrialStatus.stopped.rawValue) }
            .map { (trial: $0, x: m1.value($0), y: m2.value($0)) }.filter { $0.x.isFinite && $0.y.isFinite }
        let keep = Self.nonDominated(candidates.map { ($0.x, $0.y) }, maximize: maximize)
        func before(_ a: (trial: TrialRow, x: Double, y: Double), _ b: (trial: TrialRow, x: Double, y: Double)) -> Bool {
            if a.x != b.x { return maximize.0 ? a.x > b.x : a.x < b.x }
            if a.y != b.y { return maximize.1 ? a.y > b.y : a.y < b.y }
            return a.trial.index < b.trial.index
        }
        let front = keep.map { candidates[$0] }.sorted(by: before)
        return ParetoFront(measures: (m1, m2), maximize: maximize, candidates: candidates, front: front)
    }

    /// The indices (ascending) of the points that no other point dominates.
    public static func nonDominated(_ points: [(Double, Double)], maximize: (Bool, Bool)) -> [Int] {
        // Minimise both after flipping the maximised ones.
        let p = points.map { (maximize.0 ? -$0.0 : $0.0, maximize.1 ? -$0.1 : $0.1) }
        // By x then y: a point is dominated exactly when an earlier one (strictly smaller x, or
        // equal x and smaller y) has y no larger, unless the two are equal.
        let order = p.indices.sorted { p[$0].0 != p[$1].0 ? p[$0].0 < p[$1].0 : p[$0].1 < p[$1].1 }
        var keep: [Int] = []
        var bestY = Double.infinity
        var last: (Double, Double)?
        for i in order {
            if let l = last, l == p[i] {
                keep.append(i)  // equal to a kept point
                continue
            }
            if p[i].1 < bestY {
                keep.append(i)
                bestY = p[i].1
                last = p[i]
            }
        }
        return keep.sorted()
    }
}
