import Foundation

/// The terminal summary: counts, leaderboard, best per group, sensitivity, costs.
public enum TextReport {
    /// `reach`: also show when each trial's metric first reached this value (the epoch, or the
    /// step for toy objectives), e.g. the 001 notes' iterations to a Rosenbrock loss below 0.01.
    /// `compare`: other sweeps (same metric and direction) whose best-so-far rows are shown
    /// under this one's. `pareto`: also list the Pareto front over these two measures.
    public static func render(
        _ a: SweepAnalysis, top: Int = 10, groupBy: String = "optimizer", reach: Double? = nil, compare: [SweepAnalysis] = [],
        pareto: (TrialMeasure, TrialMeasure)? = nil
    ) throws -> String {
        var out = ""
        let r = a.results
        let total = a.trials.count
        let counts = a.statusCounts.map { "\($0.count) \($0.status)" }.joined(separator: ", ")
        out +=
            "sweep \(r.name.isEmpty ? "(unnamed)" : r.name): \(total) trial\(total == 1 ? "" : "s")\(a.filters.isEmpty ? "" : " of \(r.trials.count) (filters: \(a.filters.map(\.description).joined(separator: " ")))")\(counts.isEmpty ? "" : " — \(counts)")\n"
        out += "results: \(r.indexPath)\n"
        let direction = a.maximize ? "higher is better" : "lower is better"
        let fromSweep = a.metric == r.objectiveMetric && a.maximize == r.objectiveMaximize
        out += "metric: \(a.metric.rawValue), \(direction)\(fromSweep ? " (the sweep's objective)" : "")\n"
        let unreadable = a.trials.filter { $0.detailsError != nil }
        if !unreadable.isEmpty {
            out += "warning: \(unreadable.count) committed trial(s) could not be read: \(unreadable.prefix(3).map { "\($0.id): \($0.detailsError!)" }.joined(separator: "; "))\n"
        }

        // Leaderboard.
        let board = a.leaderboard()
        let shownKeys = a.variedKeys.filter { $0 != "optimizer" && $0 != "model" }
        out += "\nLeaderboard by \(a.metric.rawValue) (\(direction)), top \(min(top, board.count)) of \(board.count) ranked\n"
        if board.isEmpty {
            out += "  no trial has finished with a finite \(a.metric.rawValue) yet\n"
        } else {
            let reachColumn = reach.map { ["\(a.metric.rawValue) \(a.maximize ? "≥" : "≤") \(formatMetric($0)) at"] } ?? []
            var rows = [["#", "trial", "optimizer", "status", a.metric.rawValue] + shownKeys + ["epochs", "s/epoch"] + reachColumn]
            for e in board.prefix(top) {
                let t = e.trial
                var row =
                    [String(e.rank), t.id, t.branch.contains("/") ? t.branch : t.optimizer, t.status, formatMetric(e.value)] + shownKeys.map { t.hparams[$0]?.description ?? "-" }
                    + [String(t.epochs), t.details.map { formatSeconds($0.secondsPerEpoch) } ?? "-"]
                if let reach { row.append(a.firstReaching(t, reach).map(String.init) ?? "never") }
                rows.append(row)
            }
            out += table(rows, rightAligned: [0, 4] + Array(5..<(5 + shownKeys.count + 2 + reachColumn.count)))
        }
        let unranked = a.unranked()
        if !unranked.isEmpty {
            let byStatus = Dictionary(grouping: unranked, by: \.status).sorted { $0.key < $1.key }
            out +=
                "not ranked: "
                + byStatus.map { status, ts in
                    "\(ts.count) \(status) (\(ts.prefix(4).map(\.id).joined(separator: ", "))\(ts.count > 4 ? ", …" : ""))"
                }.joined(separator: "; ") + "\n"
        }
        let pending = a.trials.filter { $0.isPending }.count
        if pending > 0 { out += "still to come: \(pending) trial(s) queued or running\n" }

        // Best per group.
        let groups = try a.bestPerGroup(by: groupBy)
        out += "\nBest per \(groupBy)\n"
        var rows = [[groupBy, "trials", "ranked", "best \(a.metric.rawValue)", "trial"] + shownKeys.filter { $0 != groupBy }]
        for g in groups {
            rows.append(
                [g.group, String(g.trials), String(g.ranked), g.best.map { formatMetric($0.value) } ?? "-", g.best?.trial.id ?? "-"]
                    + shownKeys.filter { $0 != groupBy }.map { g.best?.trial.hparams[$0]?.description ?? "-" })
        }
        out += table(rows, rightAligned: [1, 2, 3])

        // Sensitivity.
        let sensitivity = a.sensitivity()
        out += "\nSensitivity of \(a.metric.rawValue) (spread = best − worst of the per-value means over ranked trials)\n"
        if sensitivity.isEmpty {
            out += "  no hyperparameter takes two or more values among ranked trials\n"
        } else {
            var rows = [["hparam", "spread", "best", "per-value mean (trials)"]]
            for s in sensitivity {
                let means = s.means.map { "\($0.value)=\(formatMetric($0.mean)) (\($0.count))" }.joined(separator: "  ")
                rows.append([s.key, formatMetric(s.spread), s.bestValue.description, means])
            }
            out += table(rows, rightAligned: [1])
        }

        out += bestSoFarSection([a] + compare)
        out += importanceSection(a)

        // Costs.
        let costs = a.costs()
        if !costs.isEmpty {
            out += "\nCost per optimizer (committed trials)\n"
            var rows = [["optimizer", "trials", costs.allSatisfy(\.toy) ? "time/step" : "time/epoch", "optimizer state"]]
            for c in costs {
                rows.append([c.optimizer, String(c.trials), formatSeconds(c.secondsPerEpoch), c.stateBytesRange])
            }
            out += table(rows, rightAligned: [1, 2, 3])
        }
        if let pareto { out += paretoSection(a, pareto) }
        return out
    }

    /// The best value after the first 10, 25, 50, 100 and all trials (by trial number), one row
    /// per sweep.
    static func bestSoFarSection(_ sweeps: [SweepAnalysis]) -> String {
        let a = sweeps[0]
        let curves = sweeps.map { $0.bestSoFar() }
        guard curves.contains(where: { $0.contains { $0.best.isFinite } }) else { return "" }
        let longest = curves.map { $0.last?.number ?? 0 }.max() ?? 0
        let checkpoints = SweepAnalysis.bestSoFarCheckpoints.filter { $0 < longest }
        let out = "\nBest \(a.metric.rawValue) so far by trial number\n"
        var rows = [(sweeps.count > 1 ? ["sweep"] : []) + checkpoints.map { "after \($0)" } + ["all", "trials", "best at"]]
        for (label, curve) in zip(sweepLabels(sweeps), curves) {
            let all = curve.last?.best ?? .nan
            let bestAt = curve.first { $0.value == all && all.isFinite }
            var row = sweeps.count > 1 ? [label] : []
            row += checkpoints.map { n in curve.last { $0.number <= n }.map { formatMetric($0.best) } ?? "-" }
            row += [formatMetric(all), String(curve.count), bestAt.map { "#\($0.number) \($0.trial.id)" } ?? "-"]
            rows.append(row)
        }
        let first = sweeps.count > 1 ? 1 : 0
        return out + table(rows, rightAligned: Array(first..<(first + checkpoints.count + 2)))
    }

    /// PED-ANOVA importance of each varied hyperparameter, or why it is not computed.
    static func importanceSection(_ a: SweepAnalysis) -> String {
        let quantile = Int((PEDANOVA.defaultQuantile * 100).rounded())
        guard let result = PEDANOVA.evaluate(a) else {
            let n = a.trials.filter(a.isRanked).count
            return "\nParameter importance (PED-ANOVA): not computed, \(n) ranked trial\(n == 1 ? "" : "s") (needs at least \(PEDANOVA.minimumTrials))\n"
        }
        let out = "\nParameter importance (PED-ANOVA, top \(quantile)% = \(result.top) of \(result.ranked) ranked trials)\n"
        if result.importances.isEmpty { return out + "  no hyperparameter takes two or more values among ranked trials\n" }
        var rows = [["hparam", "importance", "divergence", "top \(quantile)% values"]]
        for i in result.importances {
            rows.append([i.key, String(format: "%.1f%%", i.share * 100), formatMetric(i.divergence), i.topValues])
        }
        return out + table(rows, rightAligned: [1, 2])
    }

    /// The non-dominated trials over two measures.
    static func paretoSection(_ a: SweepAnalysis, _ measures: (TrialMeasure, TrialMeasure)) -> String {
        let p = a.paretoFront(measures.0, measures.1)
        func direction(_ max: Bool) -> String { max ? "higher is better" : "lower is better" }
        var out = "\nPareto front of \(measures.0.rawValue) (\(direction(p.maximize.0))) and \(measures.1.rawValue) (\(direction(p.maximize.1)))"
        out += ": \(p.front.count) of \(p.candidates.count) finished trials with both are not dominated\n"
        guard !p.front.isEmpty else { return out + "  no finished trial has finite values of both\n" }
        let shownKeys = a.variedKeys.filter { $0 != "optimizer" && $0 != "model" }
        var rows = [["trial", "optimizer", measures.0.rawValue, measures.1.rawValue] + shownKeys]
        for e in p.front {
            rows.append([e.trial.id, e.trial.optimizer, measures.0.format(e.x), measures.1.format(e.y)] + shownKeys.map { e.trial.hparams[$0]?.description ?? "-" })
        }
        return out + table(rows, rightAligned: [2, 3])
    }

    /// One name per sweep: its name, with its directory when names repeat or are empty.
    static func sweepLabels(_ sweeps: [SweepAnalysis]) -> [String] {
        let names = sweeps.map(\.results.name)
        return sweeps.map { s in
            let name = s.results.name, directory = (s.results.directory as NSString).lastPathComponent
            return name.isEmpty ? directory : names.filter { $0 == name }.count > 1 ? "\(name) (\(directory))" : name
        }
    }

    /// Left-aligned columns (right-aligned where asked), two spaces apart, a rule under the header.
    static func table(_ rows: [[String]], rightAligned: [Int] = []) -> String {
        let widths = (0..<(rows.map(\.count).max() ?? 0)).map { c in rows.map { c < $0.count ? $0[c].count : 0 }.max() ?? 0 }
        var out = ""
        for (i, row) in rows.enumerated() {
            let cells = row.enumerated().map { c, s in
                let pad = String(repeating: " ", count: widths[c] - s.count)
                return rightAligned.contains(c) ? pad + s : (c == row.count - 1 ? s : s + pad)
            }
            out += "  " + cells.joined(separator: "  ") + "\n"
            if i == 0 { out += "  " + widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n" }
        }
        return out
    }
}

/// Metric values: 4 significant digits for readable tables (`0.8715`, `242.1`, `3.1e-07`).
public func formatMetric(_ x: Double) -> String {
    if x.isNaN { return "nan" }
    if x.isInfinite { return x > 0 ? "inf" : "-inf" }
    return String(format: "%.4g", x)
}

/// `1.23 s`, `45.6 ms`, `12 µs`.
public func formatSeconds(_ s: Double) -> String {
    if !s.isFinite { return "-" }
    if s >= 1 { return String(format: "%.3g s", s) }
    if s >= 1e-3 { return String(format: "%.3g ms", s * 1e3) }
    return String(format: "%.3g µs", s * 1e6)
}

/// `812 B`, `3.1 KiB`, `2.49 MiB`.
public func formatBytes(_ b: Double) -> String {
    if !b.isFinite { return "-" }
    if b < 1024 { return "\(Int(b)) B" }
    if b < 1024 * 1024 { return String(format: "%.3g KiB", b / 1024) }
    if b < 1024 * 1024 * 1024 { return String(format: "%.3g MiB", b / 1024 / 1024) }
    return String(format: "%.3g GiB", b / 1024 / 1024 / 1024)
}
