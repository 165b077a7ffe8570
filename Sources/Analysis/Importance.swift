import Foundation

/// How much one hyperparameter matters for reaching the best trials, by PED-ANOVA.
public struct ParameterImportance: Sendable {
    public var key: String
    /// The weighted Pearson divergence between the key's density over the top trials and over
    /// all ranked trials (0: the top trials are spread like all of them).
    public var divergence: Double
    /// `divergence` as a share of the sum over all keys (0–1).
    public var share: Double
    /// Where the top trials are: `0.001–0.003` for numbers, `adamw×5 sgd×1` for the rest.
    public var topValues: String
    /// Numbers with many values: density over the [0, 1]-scaled range (log10 when the values
    /// look log-uniform); otherwise one cell per value.
    public var continuous: Bool
    public var logScale: Bool
}

/// PED-ANOVA (Watanabe, Bansal and Hutter, "PED-ANOVA: Efficiently Quantifying Hyperparameter
/// Importance in Arbitrary Subspaces", IJCAI 2023): a hyperparameter matters for reaching the
/// top quantile of trials as much as its distribution among those trials differs from its
/// distribution among all of them. The difference is the Pearson divergence
/// Σ p_all · (p_top / p_all − 1)², closed-form on a grid, of two kernel density estimates.
///
/// The choices made here, where the paper leaves room:
/// - the trials are the ranked ones (finished, finite metric); the top set is every trial at
///   least as good as the ⌈γ·n⌉-th best (γ = 0.1: ties at the cut-off are all in);
/// - numeric keys with more than `maxCategories` values are scaled to [0, 1] (log10 when they
///   look log-uniform, see `looksLogUniform`), binned on `gridSize` points, and smoothed by Gaussian
///   kernels whose width follows Scott's rule (at least one grid step), each truncated and
///   normalised on the grid; other keys (text, or few numbers as from a grid sweep) count per
///   value;
/// - both densities are a mixture of one kernel per trial and one uniform prior kernel, so no
///   cell has zero density;
/// - a key that only some trials set (momentum of SGD trials) is measured over those trials,
///   weighted by (share of top trials that set it)² / (share of all trials that set it), as the
///   conditional form of the method does; it is 1 for keys every trial sets.
public enum PEDANOVA {
    public static let defaultQuantile = 0.1
    /// Fewer ranked trials than this: no importance (the top 10% would be a single trial).
    public static let minimumTrials = 10
    public static let gridSize = 50
    public static let maxCategories = 10

    /// The importance of every key that takes two or more values among the ranked trials,
    /// most important first; nil when there are fewer than `minimumTrials` ranked trials.
    public static func evaluate(_ a: SweepAnalysis, quantile: Double = defaultQuantile) -> (top: Int, ranked: Int, importances: [ParameterImportance])? {
        let ranked = a.trials.filter(a.isRanked)
        guard ranked.count >= minimumTrials else { return nil }
        let values = ranked.map(a.value)
        let top = topIndices(values, quantile: quantile, maximize: a.maximize)
        var out: [ParameterImportance] = []
        for key in a.results.hparamKeys {
            let setting = ranked.indices.filter { ranked[$0].hparams[key] != nil }
            let distinct = Set(setting.map { ranked[$0].hparams[key]! })
            guard distinct.count >= 2 else { continue }
            let topSetting = setting.filter(top.contains)
            let observed = setting.map { ranked[$0].hparams[key]! }, observedTop = topSetting.map { ranked[$0].hparams[key]! }
            let numbers = distinct.compactMap(\.number)
            let continuous = numbers.count == distinct.count && distinct.count > maxCategories
            var divergence = 0.0
            var logScale = false
            if !topSetting.isEmpty {
                let all: [Double], best: [Double]
                if continuous {
                    let (lo, hi) = (numbers.min()!, numbers.max()!)
                    logScale = looksLogUniform(numbers)
                    let scale = { (x: Double) in logScale ? (log10(x) - log10(lo)) / (log10(hi) - log10(lo)) : (x - lo) / (hi - lo) }
                    all = gridDensity(observed.map { scale($0.number!) })
                    best = gridDensity(observedTop.map { scale($0.number!) })
                } else {
                    let categories = distinct.sorted()
                    all = categoricalDensity(observed.map { categories.firstIndex(of: $0)! }, categories: categories.count)
                    best = categoricalDensity(observedTop.map { categories.firstIndex(of: $0)! }, categories: categories.count)
                }
                let alpha = Double(topSetting.count) / Double(top.count), beta = Double(setting.count) / Double(ranked.count)
                divergence = alpha * alpha / beta * pearsonDivergence(best, all)
            }
            out.append(
                ParameterImportance(
                    key: key, divergence: divergence, share: 0, topValues: describe(observedTop, continuous: continuous), continuous: continuous, logScale: logScale))
        }
        let total = out.map(\.divergence).reduce(0, +)
        for i in out.indices { out[i].share = total > 0 ? out[i].divergence / total : 0 }
        return (top.count, ranked.count, out.sorted { $0.divergence != $1.divergence ? $0.divergence > $1.divergence : $0.key < $1.key })
    }

    /// Positive values spanning two decades or more whose median is nearer their geometric
    /// midpoint than their arithmetic one, as log-uniform draws are (the search space itself is
    /// not in the results).
    static func looksLogUniform(_ values: [Double]) -> Bool {
        guard let lo = values.min(), let hi = values.max(), lo > 0, hi / lo >= 100 else { return false }
        let median = log10(values.sorted()[values.count / 2])
        return abs(median - (log10(lo) + log10(hi)) / 2) < abs(median - log10((lo + hi) / 2))
    }

    /// The positions of the top-quantile values: all at least as good as the ⌈q·n⌉-th best.
    public static func topIndices(_ values: [Double], quantile: Double, maximize: Bool) -> Set<Int> {
        let sorted = values.sorted { maximize ? $0 > $1 : $0 < $1 }
        let cutoff = sorted[max(0, min(sorted.count - 1, Int((quantile * Double(values.count)).rounded(.up)) - 1))]
        return Set(values.indices.filter { maximize ? values[$0] >= cutoff : values[$0] <= cutoff })
    }

    /// The density over `categories` cells of one kernel per observation (all its mass on its
    /// cell) and one uniform prior kernel: (count + 1/K) / (n + 1).
    public static func categoricalDensity(_ observations: [Int], categories k: Int) -> [Double] {
        var p = [Double](repeating: 1 / Double(k), count: k)
        for c in observations { p[c] += 1 }
        return p.map { $0 / Double(observations.count + 1) }
    }

    /// The density on `gridSize` points of [0, 1] of one Gaussian kernel per observation (at
    /// its nearest grid point, Scott's-rule width, truncated to the grid) and one uniform prior.
    public static func gridDensity(_ observations: [Double], gridSize n: Int = gridSize) -> [Double] {
        let bins = observations.map { min(n - 1, max(0, Int(($0 * Double(n - 1)).rounded()))) }
        let width = scottBandwidth(bins.map(Double.init))
        var p = [Double](repeating: 1 / Double(n), count: n)
        // Kernels at the same bin are the same: one per occupied bin, weighted by its count.
        for (b, count) in Dictionary(grouping: bins, by: { $0 }).mapValues(\.count) {
            let kernel = (0..<n).map { g in exp(-0.5 * pow(Double(g - b) / width, 2)) }
            let sum = kernel.reduce(0, +)
            for g in 0..<n { p[g] += Double(count) * kernel[g] / sum }
        }
        return p.map { $0 / Double(observations.count + 1) }
    }

    /// Scott's rule, 1.06 · min(sd, IQR / 1.34) · n^(−1/5) (the sd alone when the IQR is 0),
    /// in grid steps, at least one step.
    static func scottBandwidth(_ x: [Double]) -> Double {
        guard x.count >= 2 else { return 1 }
        let m = x.reduce(0, +) / Double(x.count)
        let sd = (x.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(x.count - 1)).squareRoot()
        let s = x.sorted()
        func quantile(_ q: Double) -> Double {
            let h = q * Double(s.count - 1)
            let (i, f) = (Int(h), h - h.rounded(.down))
            return i + 1 < s.count ? s[i] + f * (s[i + 1] - s[i]) : s[i]
        }
        let iqr = quantile(0.75) - quantile(0.25)
        let spread = iqr > 0 ? min(sd, iqr / 1.34) : sd
        return max(1, 1.06 * spread * pow(Double(x.count), -0.2))
    }

    /// Σ p · (q / p − 1)² = Σ (q − p)² / p: how far `q` (top trials) is from `p` (all trials).
    public static func pearsonDivergence(_ q: [Double], _ p: [Double]) -> Double {
        zip(q, p).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) / $1.1 }
    }

    static func describe(_ values: [HParamValue], continuous: Bool) -> String {
        guard !values.isEmpty else { return "(unset)" }
        let numbers = values.compactMap(\.number)
        if continuous || (numbers.count == values.count && Set(values).count > 3) {
            let (lo, hi) = (numbers.min()!, numbers.max()!)
            return lo == hi ? formatNumber(lo, digits: 3) : "\(formatNumber(lo, digits: 3))–\(formatNumber(hi, digits: 3))"
        }
        let counts = Dictionary(grouping: values, by: { $0 }).mapValues(\.count)
        return counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { "\($0.key)×\($0.value)" }.joined(separator: " ")
    }
}
