import Foundation
import SweepCore

/// `--filter key=value`: keeps trials whose column (status, optimizer, model, branch, id) or
/// hyperparameter equals the value. Numbers compare as numbers (`lr=1e-3` matches 0.001).
/// Filters on different keys must all hold; several on the same key mean any of its values.
public struct TrialFilter: Sendable, CustomStringConvertible {
    public var key: String
    public var value: String

    public static let columns = ["status", "optimizer", "model", "branch", "id"]

    public init(key: String, value: String) {
        self.key = key
        self.value = value
    }

    public init(parsing text: String) throws {
        guard let eq = text.firstIndex(of: "="), eq != text.startIndex else {
            throw AnalysisError("--filter '\(text)': expected key=value, e.g. optimizer=adamw, status=done or lr=0.001")
        }
        self.init(key: String(text[..<eq]), value: String(text[text.index(after: eq)...]))
    }

    public var description: String { "\(key)=\(value)" }

    public func matches(_ t: TrialRow) -> Bool {
        switch key {
        case "status": return t.status == value
        case "optimizer": return t.optimizer == value
        case "model": return t.model == value
        case "branch": return t.branch == value
        case "id": return t.id == value || (value.count >= 4 && t.id.hasPrefix(value))
        default:
            switch t.hparams[key] {
            case .number(let x)?:
                guard let y = Double(value) else { return false }
                return x == y || abs(x - y) <= 1e-12 * max(abs(x), abs(y))
            case .text(let s)?: return s == value
            case nil: return false
            }
        }
    }
}

/// A ranked trial.
public struct LeaderboardEntry: Sendable {
    public var rank: Int
    public var trial: TrialRow
    public var value: Double
}

/// The best trial of one group (one optimizer, one value of a hyperparameter, …).
public struct GroupSummary: Sendable {
    public var group: String
    public var trials: Int
    /// Trials with a finite metric that finished (done or stopped): the ones that can win.
    public var ranked: Int
    public var best: LeaderboardEntry?
}

/// How much the metric moves with one hyperparameter.
public struct Sensitivity: Sendable {
    public var key: String
    /// Per value: the mean of the metric over the ranked trials that set it, and their count.
    public var means: [(value: HParamValue, mean: Double, count: Int)]
    /// max − min of the per-value means (the absolute difference between best and worst value).
    public var spread: Double
    public var bestValue: HParamValue
    public var worstValue: HParamValue
}

/// Time and memory of one optimizer.
public struct OptimizerCost: Sendable {
    public var optimizer: String
    /// Committed trials measured.
    public var trials: Int
    /// Mean over trials of each trial's mean training seconds per epoch (per step for toy objectives).
    public var secondsPerEpoch: Double
    public var minStateBytes: Int?
    public var maxStateBytes: Int?
    public var meanStateBytes: Double?
    public var toy: Bool

    /// `398 KiB`, or `8 B–199 KiB` when trials differ (SGD with and without momentum).
    public var stateBytesRange: String {
        guard let lo = minStateBytes, let hi = maxStateBytes else { return "-" }
        return lo == hi ? formatBytes(Double(lo)) : "\(formatBytes(Double(lo)))–\(formatBytes(Double(hi)))"
    }
}

/// A sweep's results, filtered, with the metric to rank on: the numbers behind every output.
public struct SweepAnalysis: Sendable {
    public let results: SweepResults
    /// The trials that pass the filters, in index order.
    public let trials: [TrialRow]
    public let metric: Metric
    public let maximize: Bool
    public let filters: [TrialFilter]

    /// `metric`/`maximize` default to the sweep's objective, then to test loss (minimised).
    public init(results: SweepResults, metric: Metric? = nil, maximize: Bool? = nil, filters: [TrialFilter] = []) throws {
        self.results = results
        let metric = metric ?? results.objectiveMetric ?? .testLoss
        self.metric = metric
        self.maximize = maximize ?? (metric == results.objectiveMetric ? results.objectiveMaximize : nil) ?? metric.maximizedByDefault
        self.filters = filters
        let known = Set(TrialFilter.columns + results.hparamKeys)
        for f in filters where !known.contains(f.key) {
            throw AnalysisError("--filter \(f): unknown key '\(f.key)'; known keys: \(known.sorted().joined(separator: ", "))")
        }
        let byKey = Dictionary(grouping: filters, by: \.key)
        trials = results.trials.filter { t in byKey.values.allSatisfy { alternatives in alternatives.contains { $0.matches(t) } } }
    }

    public func value(_ t: TrialRow) -> Double { t.value(metric) }

    /// The first epoch (step for toy objectives) at which the trial's metric reached `target`.
    public func firstReaching(_ t: TrialRow, _ target: Double) -> Int? {
        guard let h = t.details?.history else { return nil }
        let values = h.column(metric)
        guard let i = values.firstIndex(where: { maximize ? $0 >= target : $0 <= target }) else { return nil }
        return Int(h.epoch[i])
    }

    /// Finished (done or stopped early) with a finite metric: diverged, failed, unfinished and
    /// NaN trials never win.
    public func isRanked(_ t: TrialRow) -> Bool { (t.status == TrialStatus.done.rawValue || t.status == TrialStatus.stopped.rawValue) && value(t).isFinite }

    /// Whether `a` is better than `b` on the metric.
    public func better(_ a: Double, _ b: Double) -> Bool { maximize ? a > b : a < b }

    /// Counts per status over the filtered trials, in lifecycle order.
    public var statusCounts: [(status: String, count: Int)] {
        let order = TrialStatus.allCases.map(\.rawValue) + [ResultsLayout.Index.running, ResultsLayout.Index.queued]
        let counts = Dictionary(grouping: trials, by: \.status).mapValues(\.count)
        return (order + counts.keys.filter { !order.contains($0) }.sorted()).compactMap { s in counts[s].map { (s, $0) } }
    }

    /// Ranked trials, best first (ties in index order).
    public func leaderboard() -> [LeaderboardEntry] {
        let ranked = trials.filter(isRanked).sorted { a, b in
            let (x, y) = (value(a), value(b))
            return x != y ? better(x, y) : a.index < b.index
        }
        return ranked.enumerated().map { LeaderboardEntry(rank: $0.offset + 1, trial: $0.element, value: value($0.element)) }
    }

    /// Committed trials that cannot be ranked (diverged, failed, NaN metric), in index order.
    public func unranked() -> [TrialRow] {
        trials.filter { !isRanked($0) && !$0.isPending }
    }

    /// A trial's group for `key`: a column (optimizer, model, branch, status) or a hyperparameter.
    public func groupValue(_ t: TrialRow, by key: String) -> String {
        switch key {
        case "optimizer": t.optimizer
        case "model": t.model
        case "branch": t.branch
        case "status": t.status
        default: t.hparams[key]?.description ?? "(unset)"
        }
    }

    /// The best trial per group, groups in their values' natural order.
    public func bestPerGroup(by key: String = "optimizer") throws -> [GroupSummary] {
        guard ["optimizer", "model", "branch", "status"].contains(key) || results.hparamKeys.contains(key) else {
            throw AnalysisError("--group-by \(key): unknown key; use optimizer, model, branch, status or a hyperparameter: \(results.hparamKeys.joined(separator: ", "))")
        }
        let board = leaderboard()
        var order: [(sortKey: HParamValue, name: String)] = []
        var seen = Set<String>()
        for t in trials {
            let g = groupValue(t, by: key)
            if seen.insert(g).inserted { order.append((t.hparams[key] ?? .text(g), g)) }
        }
        return order.sorted { $0.sortKey < $1.sortKey }.map { _, g in
            let members = trials.filter { groupValue($0, by: key) == g }
            let best = board.first { groupValue($0.trial, by: key) == g }
            return GroupSummary(group: g, trials: members.count, ranked: members.filter(isRanked).count, best: best)
        }
    }

    /// Distinct values of each key among the filtered trials.
    public func values(of key: String) -> [HParamValue] { Array(Set(trials.compactMap { $0.hparams[key] })).sorted() }

    /// Keys with at least two distinct values among the filtered trials.
    public var variedKeys: [String] { results.hparamKeys.filter { values(of: $0).count >= 2 } }

    /// Varied keys whose values are all numbers.
    public var variedNumericKeys: [String] { variedKeys.filter { values(of: $0).allSatisfy { $0.number != nil } } }

    /// Numeric keys with more distinct values than this (random search) are split into
    /// `sensitivityBins` ranges of equal trial counts instead of one mean per value.
    public static let maxSensitivityValues = 10
    public static let sensitivityBins = 6

    /// For every varied key: the per-value means of the metric over ranked trials that set the
    /// key (per range of values for continuous keys), and their spread; most influential first.
    public func sensitivity() -> [Sensitivity] {
        let ranked = trials.filter(isRanked)
        var out: [Sensitivity] = []
        for key in variedKeys {
            let setting = ranked.filter { $0.hparams[key] != nil }
            let distinct = Set(setting.map { $0.hparams[key]! })
            var groups: [(value: HParamValue, trials: [TrialRow])]
            if distinct.count > Self.maxSensitivityValues, distinct.allSatisfy({ $0.number != nil }) {
                let sorted = setting.sorted { $0.hparams[key]!.number! < $1.hparams[key]!.number! }
                let k = Self.sensitivityBins
                groups = (0..<k).compactMap { b in
                    let slice = Array(sorted[(b * sorted.count / k)..<((b + 1) * sorted.count / k)])
                    guard let lo = slice.first?.hparams[key]?.number, let hi = slice.last?.hparams[key]?.number else { return nil }
                    return (.text("\(formatNumber(lo, digits: 3))–\(formatNumber(hi, digits: 3))"), slice)
                }
            } else {
                groups = Dictionary(grouping: setting, by: { $0.hparams[key]! }).map { ($0.key, $0.value) }.sorted { $0.value < $1.value }
            }
            guard groups.count >= 2 else { continue }
            let means = groups.map { (value: $0.value, mean: mean($0.trials.map(value)), count: $0.trials.count) }
            let best = means.min { better($0.mean, $1.mean) }!, worst = means.min { better($1.mean, $0.mean) }!
            out.append(Sensitivity(key: key, means: means, spread: abs(best.mean - worst.mean), bestValue: best.value, worstValue: worst.value))
        }
        return out.sorted { $0.spread != $1.spread ? $0.spread > $1.spread : $0.key < $1.key }
    }

    /// Time per epoch and optimizer-state memory per optimizer, over committed trials.
    public func costs() -> [OptimizerCost] {
        let committed = trials.filter { $0.details != nil }
        return Dictionary(grouping: committed, by: \.optimizer).map { name, ts in
            let seconds = ts.map { $0.details!.secondsPerEpoch }.filter(\.isFinite)
            let bytes = ts.compactMap { $0.details!.optimizerStateBytes }
            return OptimizerCost(
                optimizer: name, trials: ts.count, secondsPerEpoch: mean(seconds), minStateBytes: bytes.min(), maxStateBytes: bytes.max(),
                meanStateBytes: bytes.isEmpty ? nil : bytes.reduce(0.0) { $0 + Double($1) } / Double(bytes.count), toy: ts.allSatisfy(\.isToyObjective))
        }.sorted { $0.optimizer < $1.optimizer }
    }
}
