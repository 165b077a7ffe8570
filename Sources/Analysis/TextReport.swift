import Foundation

/// The terminal summary: counts, leaderboard, best per group, sensitivity, costs.
public enum TextReport {
    /// `reach`: also show when each trial's metric first reached this value (the epoch, or the
    /// step for toy objectives), e.g. the 001 notes' iterations to a Rosenbrock loss below 0.01.
    public static func render(_ a: SweepAnalysis, top: Int = 10, groupBy: String = "optimizer", reach: Double? = nil) throws -> String {
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
        return out
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
