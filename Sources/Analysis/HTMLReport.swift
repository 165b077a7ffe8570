import Foundation
import SweepCore

/// The self-contained HTML report: the summary tables and every chart as inline SVG drawn here
/// (no JavaScript, no fonts or files fetched), so one file can be mailed or archived.
public struct HTMLReport: Sendable {
    public var html: String
    /// Ids of the charts drawn, in page order (`<figure id="chart-ID">`, one `<svg>` each).
    public var charts: [String]
    /// Charts left out and why (no data of that kind in these results).
    public var omitted: [String]

    /// Builds the report. `heatmap` names the two hyperparameters of the heatmap (x, y); nil
    /// picks the two varied numeric ones with the most distinct values.
    /// `compare`: other sweeps drawn in the best-so-far chart. `pareto`: the two measures of the
    /// Pareto scatter (nil: the metric and seconds per epoch, when three or more trials have both).
    public static func render(
        _ a: SweepAnalysis, groupBy: String = "optimizer", heatmap: (String, String)? = nil, top: Int = 10, compare: [SweepAnalysis] = [],
        pareto: (TrialMeasure, TrialMeasure)? = nil
    ) throws -> HTMLReport {
        let builder = try draw(a, groupBy: groupBy, heatmap: heatmap, compare: compare, pareto: pareto)
        let html = page(a, builder: builder, top: top)
        return HTMLReport(html: html, charts: builder.figures.map(\.id), omitted: builder.omitted)
    }

    /// Every chart the results allow (and why the others are left out), as `render` and the
    /// dashboard show them.
    static func draw(
        _ a: SweepAnalysis, groupBy: String, heatmap: (String, String)?, compare: [SweepAnalysis], pareto: (TrialMeasure, TrialMeasure)?
    ) throws -> Builder {
        var builder = Builder(a: a, groupBy: groupBy, groups: try a.bestPerGroup(by: groupBy), board: a.leaderboard())
        builder.lossCurves()
        builder.groupBars()
        try builder.heatmap(keys: heatmap)
        builder.parallelCoordinates()
        builder.bestSoFar(compare: compare)
        builder.importance()
        builder.pareto(pareto)
        builder.populationBasedTraining()
        builder.trajectories()
        builder.lrRangeTests()
        builder.layerDiagnostics()
        return builder
    }

    struct Figure {
        var id: String
        var svg: String
        var wide: Bool
        var caption: String
    }

    struct Builder {
        let a: SweepAnalysis
        let groupBy: String
        let groups: [GroupSummary]
        let board: [LeaderboardEntry]
        var figures: [Figure] = []
        var omitted: [String] = []

        init(a: SweepAnalysis, groupBy: String, groups: [GroupSummary], board: [LeaderboardEntry]) {
            self.a = a
            self.groupBy = groupBy
            self.groups = groups
            self.board = board
        }

        var metricName: String { a.metric.rawValue }
        var toyOnly: Bool { a.trials.allSatisfy(\.isToyObjective) }
        var stepWord: String { toyOnly ? "step" : "epoch" }

        func color(_ group: String) -> String { Palette.color(groups.firstIndex { $0.group == group } ?? 0) }

        /// "adamw · lr=0.001": the group and the best trial's other varied keys (two at most).
        func name(_ t: TrialRow) -> String {
            let keys = a.variedKeys.filter { ![groupBy, "seed", "model", "optimizer"].contains($0) && t.hparams[$0] != nil }.prefix(2)
            return ([a.groupValue(t, by: groupBy)] + keys.map { "\($0)=\(t.hparams[$0]!)" }).joined(separator: " · ")
        }

        mutating func add(_ id: String, _ svg: String?, wide: Bool = false, caption: String = "", else reason: String) {
            if let svg { figures.append(Figure(id: id, svg: svg, wide: wide, caption: caption)) } else { omitted.append(reason) }
        }

        /// Training and test loss (and accuracy for classifiers) of each group's best trial.
        mutating func lossCurves() {
            let best = groups.compactMap(\.best).map(\.trial).filter { $0.details != nil }
            guard !best.isEmpty else {
                omitted.append("Loss curves: no group has a ranked trial yet.")
                return
            }
            for metric in Metric.allCases {
                let series = best.map { t in
                    let h = t.details!.history
                    return Series(name: name(t), color: color(a.groupValue(t, by: groupBy)), points: downsample(Array(zip(h.epoch, h.column(metric))), 800))
                }
                let titles: [Metric: String] = [.trainLoss: toyOnly ? "Objective value" : "Training loss", .testLoss: "Test loss", .testAccuracy: "Test accuracy"]
                let svg = Charts.lines(
                    title: "\(titles[metric]!) of the best trial per \(groupBy)", subtitle: "best by \(metricName); one line per \(groupBy)",
                    xLabel: stepWord, yLabel: metric == .trainLoss && toyOnly ? "f(x)" : metric.label, series: series,
                    logY: metric == .testAccuracy ? false : nil)
                add(
                    metric.rawValue.replacingOccurrences(of: "_", with: "-"), svg,
                    else:
                        "\(titles[metric]!) curves: no finite \(metric.rawValue) in the best trials' histories\(metric == .testAccuracy ? " (not a classifier)" : toyOnly && metric == .testLoss ? " (toy objectives have no test set)" : "")."
                )
            }
        }

        /// Mean time per epoch of each group, and each group's best final metric.
        mutating func groupBars() {
            let perGroup = groups.map { g -> Double in
                let s = a.trials.filter { a.groupValue($0, by: groupBy) == g.group }.compactMap { $0.details?.secondsPerEpoch }.filter(\.isFinite)
                return mean(s)
            }
            let largest = perGroup.filter(\.isFinite).max() ?? 1
            let (scale, unit) = largest < 1e-3 ? (1e6, "µs") : largest < 1 ? (1e3, "ms") : (1.0, "s")
            let timeBars = zip(groups, perGroup).map { Bar(label: $0.group, value: $1 * scale, color: color($0.group), note: "no timing") }
            add(
                "time-per-epoch",
                Charts.bars(
                    title: "Time per \(stepWord) per \(groupBy)", subtitle: "mean over committed trials of their mean training time per \(stepWord)",
                    yLabel: "\(unit) per \(stepWord)", bars: timeBars, format: { String(format: "%.3g", $0) }),
                else: "Time per \(stepWord): no committed trial has a history yet.")
            let metricBars = groups.map { g in
                let allDiverged = a.trials.filter { a.groupValue($0, by: groupBy) == g.group }.allSatisfy { $0.status == TrialStatus.diverged.rawValue }
                return Bar(label: g.group, value: g.best?.value ?? .nan, color: color(g.group), note: allDiverged ? "diverged" : "no ranked trial")
            }
            add(
                "final-metric",
                Charts.bars(
                    title: "Final \(a.metric.label) per \(groupBy)", subtitle: "best trial of each \(groupBy) (\(a.maximize ? "higher" : "lower") is better)",
                    yLabel: a.metric.label, bars: metricBars, format: formatMetric),
                else: "Final \(metricName) bars: no ranked trial yet.")
        }

        /// The metric over two hyperparameters: the mean over the ranked trials of each cell.
        mutating func heatmap(keys: (String, String)?) throws {
            let pair: (String, String)
            if let keys {
                for k in [keys.0, keys.1] where !a.results.hparamKeys.contains(k) {
                    throw AnalysisError("--heatmap: unknown hyperparameter '\(k)'; known: \(a.results.hparamKeys.joined(separator: ", "))")
                }
                pair = keys
            } else {
                let candidates = a.variedNumericKeys.filter { $0 != "seed" }.sorted { a.values(of: $0).count != a.values(of: $1).count ? a.values(of: $0).count > a.values(of: $1).count : $0 < $1 }
                guard candidates.count >= 2 else {
                    omitted.append("Heatmap: fewer than two varied numeric hyperparameters (name two with --heatmap KEY1,KEY2).")
                    return
                }
                pair = (candidates[0], candidates[1])
            }
            // Only values that occur together with a value of the other key (lr of AdamW trials
            // has no column in an lr × momentum heatmap).
            let members = a.trials.filter { $0.hparams[pair.0] != nil && $0.hparams[pair.1] != nil && !$0.isPending }
            let xs = Array(Set(members.map { $0.hparams[pair.0]! })).sorted(), ys = Array(Set(members.map { $0.hparams[pair.1]! })).sorted()
            var cells = [[HeatCell?]](repeating: [HeatCell?](repeating: nil, count: xs.count), count: ys.count)
            var most = 0
            for (j, y) in ys.enumerated() {
                for (i, x) in xs.enumerated() {
                    let ts = members.filter { $0.hparams[pair.0] == x && $0.hparams[pair.1] == y }
                    guard !ts.isEmpty else { continue }
                    let ranked = ts.filter(a.isRanked)
                    most = max(most, ranked.count)
                    cells[j][i] = HeatCell(mean: mean(ranked.map(a.value)), trials: ts.count, ranked: ranked.count)
                }
            }
            let svg = Charts.heatmap(
                title: "\(a.metric.label.capitalizedFirst) over \(pair.0) × \(pair.1)",
                subtitle: most > 1
                    ? "mean over the ranked trials of each cell (up to \(most)); hatched: none finished with a finite value" : "one trial per cell; hatched: diverged or no finite value",
                xKey: pair.0, yKey: pair.1, xs: xs.map(\.description), ys: ys.map(\.description), cells: cells, metric: metricName, maximize: a.maximize)
            add("heatmap", svg, else: "Heatmap over \(pair.0) × \(pair.1): no trial sets both with a finite \(metricName).")
        }

        /// Every committed trial across its varied hyperparameters and the metric.
        mutating func parallelCoordinates() {
            let committed = a.trials.filter { !$0.isPending }
            let keys = a.variedKeys.filter { $0 != "seed" && $0 != "model" }
            var axes: [ParallelAxis] = []
            var columns: [[Double?]] = []
            for key in keys {
                let values = a.values(of: key)
                if values.allSatisfy({ $0.number != nil }) {
                    let numbers = values.compactMap(\.number)
                    axes.append(ParallelAxis(name: key, numeric: Axis.fit(numbers, nice: false)))
                    columns.append(committed.map { $0.hparams[key]?.number })
                } else if values.count <= 20 {
                    let names = values.map(\.description)
                    axes.append(ParallelAxis(name: key, numeric: nil, categories: names))
                    columns.append(committed.map { t in t.hparams[key].flatMap { v in names.firstIndex(of: v.description).map(Double.init) } })
                }
            }
            guard !axes.isEmpty else {
                omitted.append("Parallel coordinates: no varied hyperparameter (other than seed).")
                return
            }
            let metricValues = committed.map(a.value)
            let finite = committed.filter(a.isRanked).map(a.value)
            guard !finite.isEmpty else {
                omitted.append("Parallel coordinates: no ranked trial yet.")
                return
            }
            axes.append(ParallelAxis(name: metricName, numeric: Axis.fit(finite, nice: false)))
            let bestID = board.first?.trial.id
            let lines = committed.enumerated().map { i, t in
                ParallelLine(
                    values: columns.map { $0[i] } + [a.isRanked(t) ? metricValues[i] : nil], metric: a.isRanked(t) ? metricValues[i] : .nan,
                    title: "\(t.id) \(t.optimizer) \(t.status): \(metricName) \(formatMetric(metricValues[i]))", highlight: t.id == bestID)
            }
            add(
                "parallel-coordinates",
                Charts.parallel(
                    title: "Parallel coordinates: \(committed.count) trials",
                    subtitle: "one line per trial, coloured by \(metricName) (bright = better); the best in black; dashed grey: no finite value",
                    axes: axes, lines: lines, metric: metricName, maximize: a.maximize), wide: true, else: "Parallel coordinates: nothing to draw.")
        }

        /// Toy objectives: the paths over the objective's contour lines, one chart per objective.
        mutating func trajectories() {
            let toy = a.trials.filter { $0.isToyObjective && ($0.details?.trajectory.first?.count ?? 0) == 2 }
            guard !toy.isEmpty else {
                if a.trials.contains(where: \.isToyObjective) { omitted.append("Trajectories: no committed 2-D toy trial yet.") }
                return
            }
            var byObjective: [ToyObjective: [TrialRow]] = [:]
            var order: [ToyObjective] = []
            for t in toy {
                guard let o = ToyObjective(model: t.model, config: t.details?.config, hparams: t.hparams) else { continue }
                if byObjective[o] == nil { order.append(o) }
                byObjective[o, default: []].append(t)
            }
            for (n, objective) in order.prefix(4).enumerated() {
                let trials = byObjective[objective]!
                var series: [Series] = []
                // Every ranked trial faintly, each group's best on top.
                let ranked = trials.filter(a.isRanked)
                for t in ranked.prefix(60) {
                    series.append(Series(name: t.id, color: color(a.groupValue(t, by: groupBy)), points: downsample(points(t), 600), width: 1, opacity: 0.3, inLegend: false))
                }
                for g in groups {
                    guard let best = ranked.filter({ a.groupValue($0, by: groupBy) == g.group }).min(by: { a.better(a.value($0), a.value($1)) }) else { continue }
                    series.append(Series(name: "\(name(best)): f=\(formatMetric(best.trainLoss))", color: color(g.group), points: downsample(points(best), 1500), width: 2.5))
                }
                guard series.contains(where: \.inLegend) else { continue }
                let svg = Charts.trajectories(
                    title: "Trajectories: \(objective.formula)", subtitle: "best per \(groupBy) bold, other ranked trials faint; ○ start, ✕ minimum",
                    objective: objective, paths: series)
                add("trajectory-\(n + 1)", svg, else: "Trajectories (\(objective.formula)): no finite path.")
            }
        }

        func points(_ t: TrialRow) -> [(x: Double, y: Double)] { t.details!.trajectory.map { (x: $0[0], y: $0[1]) } }

        /// The running best of the metric over trial number, one line per sweep.
        mutating func bestSoFar(compare: [SweepAnalysis]) {
            let sweeps = [a] + compare
            let series = zip(TextReport.sweepLabels(sweeps), sweeps).enumerated().map { i, pair in
                let (label, s) = pair
                return ProgressSeries(
                    name: label, color: Palette.color(i),
                    points: s.bestSoFar().map { p in
                        let value = p.value.isFinite ? "\(metricName) \(formatMetric(p.value))" : p.trial.status
                        return (Double(p.number), p.value, p.best, "\(label) #\(p.number) \(p.trial.id) \(p.trial.optimizer): \(value)")
                    })
            }
            add(
                "best-so-far",
                Charts.progress(
                    title: "Best \(a.metric.label) so far",
                    subtitle: "running best by trial number\(sweeps.count > 1 ? ", one line per sweep" : ""); points: each trial's own value",
                    yLabel: a.metric.label, series: series),
                else: "Best so far: no ranked trial yet.")
        }

        /// Population-based training: each member's objective along its ancestry (its last trial's
        /// history, which holds the copied epochs of the members it exploited), and each explored
        /// hyperparameter's schedule per member (a step at every generation; a jump where it
        /// exploited). Drawn only for a PBT sweep.
        mutating func populationBasedTraining() {
            let trials = a.trials.filter { $0.details?.lineage != nil }
            guard !trials.isEmpty else { return }
            var byMember: [Int: [TrialRow]] = [:]
            for t in trials { byMember[t.details!.lineage!.member, default: []].append(t) }
            let members = byMember.keys.sorted()
            for m in members { byMember[m]!.sort { $0.details!.lineage!.generation < $1.details!.lineage!.generation } }
            let curves = members.map { m -> Series in
                let h = byMember[m]!.last!.details!.history
                return Series(name: "member \(m)", color: Palette.color(m), points: downsample(Array(zip(h.epoch, h.column(a.metric))), 800))
            }
            let exploits = trials.filter { $0.details!.lineage!.exploited }.count
            add(
                "pbt-lineage",
                Charts.lines(
                    title: "Population-based training: \(a.metric.label) along each member's ancestry",
                    subtitle: "each member's latest trial; \(exploits) exploit\(exploits == 1 ? "" : "s") (a member continuing another's checkpoint jumps to its curve)",
                    xLabel: stepWord, yLabel: a.metric.label, series: curves, logY: a.metric == .testAccuracy ? false : nil),
                else: "Population-based training: no member has a history yet.")
            let keys = a.variedNumericKeys.filter { key in key != "epochs" && key != "steps" && trials.contains { $0.details?.config?.values[key]?.asDouble != nil } }.prefix(3)
            for key in keys {
                let series = members.map { m -> Series in
                    var points: [(x: Double, y: Double)] = []
                    for t in byMember[m]! {
                        guard let v = t.details?.config?.values[key]?.asDouble, let end = t.details?.history.epoch.last else { continue }
                        points.append((Double(t.details!.lineage!.parentEpoch), v))
                        points.append((end, v))
                    }
                    return Series(name: "member \(m)", color: Palette.color(m), points: points)
                }
                add(
                    "pbt-\(key)",
                    Charts.lines(
                        title: "Population-based training: \(key) per member", subtitle: "its value in each generation (explored after every exploit)",
                        xLabel: stepWord, yLabel: key, series: series),
                    else: "Population-based training: no value of \(key) to draw.")
            }
        }

        /// PED-ANOVA importance of each varied hyperparameter, as bars.
        mutating func importance() {
            let quantile = Int((PEDANOVA.defaultQuantile * 100).rounded())
            guard let result = PEDANOVA.evaluate(a) else {
                omitted.append("Parameter importance: fewer than \(PEDANOVA.minimumTrials) ranked trials.")
                return
            }
            let bars = result.importances.enumerated().map { Bar(label: $0.element.key, value: $0.element.share * 100, color: Palette.color($0.offset)) }
            add(
                "importance",
                bars.isEmpty
                    ? nil
                    : Charts.bars(
                        title: "Parameter importance (PED-ANOVA, top \(quantile)%)",
                        subtitle: "share of the divergence between the top \(result.top) and all \(result.ranked) ranked trials",
                        yLabel: "importance (%)", bars: bars, logY: false, format: { String(format: "%.1f", $0) }),
                else: "Parameter importance: no hyperparameter takes two or more values among ranked trials.")
        }

        /// Two measures of every finished trial, the Pareto front highlighted.
        mutating func pareto(_ measures: (TrialMeasure, TrialMeasure)?) {
            let pair = measures ?? (TrialMeasure(rawValue: a.metric.rawValue)!, .secondsPerEpoch)
            let p = a.paretoFront(pair.0, pair.1)
            guard measures != nil || p.candidates.count >= 3 else {
                omitted.append("Pareto front: fewer than three finished trials with \(pair.0.rawValue) and \(pair.1.rawValue) (choose two with --pareto M1,M2).")
                return
            }
            let onFront = Set(p.front.map(\.trial.id))
            let points = p.candidates.map { c in
                ScatterPoint(
                    x: c.x, y: c.y, color: color(a.groupValue(c.trial, by: groupBy)),
                    title: "\(c.trial.id) \(name(c.trial)): \(pair.0.rawValue) \(pair.0.format(c.x)), \(pair.1.rawValue) \(pair.1.format(c.y))\(onFront.contains(c.trial.id) ? " (Pareto front)" : "")",
                    highlight: onFront.contains(c.trial.id))
            }
            add(
                "pareto",
                Charts.scatter(
                    title: "Pareto front: \(pair.0.label) vs \(pair.1.label)",
                    subtitle: "\(p.front.count) of \(p.candidates.count) finished trials not dominated (outlined); colour: \(groupBy)",
                    xLabel: pair.0.label, yLabel: pair.1.label, points: points, front: p.front.map { ($0.x, $0.y) }, maximize: p.maximize),
                else: "Pareto front over \(pair.0.rawValue) and \(pair.1.rawValue): no finished trial has both.")
        }

        /// LR range tests (optional data, see `OptionalData`): loss against learning rate.
        mutating func lrRangeTests() {
            let trials = a.trials.filter { $0.details?.lrRange != nil }
            guard !trials.isEmpty else {
                omitted.append("LR range test: these results hold no `\(OptionalData.lrRangeTable)` data.")
                return
            }
            let series = trials.prefix(12).map { t in
                Series(name: "\(t.id.prefix(8)) \(name(t))", color: color(a.groupValue(t, by: groupBy)), points: Array(zip(t.details!.lrRange!.lr, t.details!.lrRange!.loss)))
            }
            add(
                "lr-range-test",
                Charts.lines(title: "LR range test", subtitle: "loss while the learning rate grows exponentially", xLabel: "learning rate", yLabel: "loss", series: Array(series), logX: true),
                else: "LR range test: no finite point.")
        }

        /// Per-layer diagnostics (optional data, see `OptionalData`) of the overall best trial that has them.
        mutating func layerDiagnostics() {
            guard let t = board.map(\.trial).first(where: { $0.details?.layers != nil }) ?? a.trials.first(where: { $0.details?.layers != nil }) else {
                omitted.append("Per-layer diagnostics: these results hold no `\(OptionalData.layerTable)` data.")
                return
            }
            for quantity in OptionalData.layerQuantities {
                guard let layers = t.details!.layers!.series[quantity] else { continue }
                let series = layers.keys.sorted().enumerated().map { i, layer in Series(name: layer, color: Palette.color(i), points: layers[layer]!) }
                add(
                    "layers-\(quantity.replacingOccurrences(of: "_", with: "-"))",
                    Charts.lines(
                        title: "Per-layer \(quantity.replacingOccurrences(of: "_", with: " "))", subtitle: "trial \(t.id) (\(name(t)))", xLabel: "epoch", yLabel: quantity, series: series),
                    else: "Per-layer \(quantity): no finite value.")
            }
        }
    }

    static func page(_ a: SweepAnalysis, builder: Builder, top: Int) -> String {
        let r = a.results
        var h = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        h += "<title>Sweep \(escapeXML(r.name)) — report</title><style>\(css)</style></head><body>\n"
        h += "<header><h1>Sweep <code>\(escapeXML(r.name.isEmpty ? "(unnamed)" : r.name))</code></h1>"
        if !r.description.isEmpty { h += "<p class=\"desc\">\(escapeXML(r.description))</p>" }
        let counts = a.statusCounts.map { "<span class=\"status \($0.status)\">\($0.count) \($0.status)</span>" }.joined(separator: " ")
        h += "<p class=\"meta\">\(a.trials.count) trials \(counts) · ranked by <b>\(a.metric.rawValue)</b> (\(a.maximize ? "higher" : "lower") is better)"
        if !a.filters.isEmpty { h += " · filters: \(escapeXML(a.filters.map(\.description).joined(separator: " ")))" }
        h += " · <code>\(escapeXML(r.indexPath))</code></p></header>\n"

        h += tablesSection(a, builder: builder, top: top)
        h += chartsSection(builder)
        h += "</body></html>\n"
        return h
    }

    /// The tables: leaderboard, best per group, sensitivity, importance and costs.
    static func tablesSection(_ a: SweepAnalysis, builder: Builder, top: Int) -> String {
        var h = "<section class=\"tables\">"
        let shownKeys = a.variedKeys.filter { $0 != "optimizer" && $0 != "model" }
        var rows = builder.board.prefix(top).map { e in
            [String(e.rank), "<code>\(e.trial.id)</code>", escapeXML(e.trial.optimizer), formatMetric(e.value)] + shownKeys.map { escapeXML(e.trial.hparams[$0]?.description ?? "–") }
        }
        for t in a.unranked().prefix(max(0, 5)) {
            rows.append(
                ["–", "<code>\(t.id)</code>", escapeXML(t.optimizer), "<span class=\"status \(t.status)\">\(t.status)</span>"] + shownKeys.map { escapeXML(t.hparams[$0]?.description ?? "–") })
        }
        h += htmlTable("Leaderboard (top \(min(top, builder.board.count)) of \(builder.board.count) ranked)", ["#", "trial", "optimizer", a.metric.rawValue] + shownKeys, rows, numeric: [0, 3])
        h += htmlTable(
            "Best per \(builder.groupBy)", [builder.groupBy, "trials", "ranked", "best \(a.metric.rawValue)", "trial"],
            builder.groups.map { g in
                [escapeXML(g.group), String(g.trials), String(g.ranked), g.best.map { formatMetric($0.value) } ?? "–", g.best.map { "<code>\($0.trial.id)</code>" } ?? "–"]
            }, numeric: [1, 2, 3])
        let sensitivity = a.sensitivity()
        if !sensitivity.isEmpty {
            h += htmlTable(
                "Sensitivity (spread of per-value means)", ["hparam", "spread", "best value", "per-value mean (trials)"],
                sensitivity.map { s in
                    [
                        escapeXML(s.key), formatMetric(s.spread), escapeXML(s.bestValue.description),
                        s.means.map { "\(escapeXML($0.value.description)): \(formatMetric($0.mean)) (\($0.count))" }.joined(separator: " · "),
                    ]
                }, numeric: [1])
        }
        if let importance = PEDANOVA.evaluate(a), !importance.importances.isEmpty {
            h += htmlTable(
                "Parameter importance (PED-ANOVA, top \(Int((PEDANOVA.defaultQuantile * 100).rounded()))% = \(importance.top) of \(importance.ranked))",
                ["hparam", "importance", "divergence", "top values"],
                importance.importances.map { i in
                    [escapeXML(i.key), String(format: "%.1f%%", i.share * 100), formatMetric(i.divergence), escapeXML(i.topValues)]
                }, numeric: [1, 2])
        }
        let costs = a.costs()
        if !costs.isEmpty {
            h += htmlTable(
                "Cost per optimizer", ["optimizer", "trials", "time per \(builder.stepWord)", "optimizer state"],
                costs.map { c in
                    [escapeXML(c.optimizer), String(c.trials), formatSeconds(c.secondsPerEpoch), c.stateBytesRange]
                }, numeric: [1, 2, 3])
        }
        return h + "</section>\n"
    }

    /// The charts, one `<figure id="chart-ID">` each, and the list of those not drawn.
    static func chartsSection(_ builder: Builder) -> String {
        var h = "<section class=\"charts\">\n"
        for f in builder.figures {
            h += "<figure class=\"chart\(f.wide ? " wide" : "")\" id=\"chart-\(f.id)\">\(f.svg)</figure>\n"
        }
        h += "</section>\n"
        if !builder.omitted.isEmpty {
            h += "<footer><h2>Not drawn</h2><ul>" + builder.omitted.map { "<li>\(escapeXML($0))</li>" }.joined() + "</ul></footer>\n"
        }
        return h
    }

    static func htmlTable(_ caption: String, _ header: [String], _ rows: [[String]], numeric: [Int]) -> String {
        var h = "<div class=\"table\"><h2>\(escapeXML(caption))</h2><table><thead><tr>"
        h += header.enumerated().map { "<th\(numeric.contains($0.offset) ? " class=\"num\"" : "")>\(escapeXML($0.element))</th>" }.joined()
        h += "</tr></thead><tbody>"
        for row in rows {
            h += "<tr>" + row.enumerated().map { "<td\(numeric.contains($0.offset) ? " class=\"num\"" : "")>\($0.element)</td>" }.joined() + "</tr>"
        }
        return h + "</tbody></table></div>"
    }

    static let css = """
        body{margin:0;padding:18px 20px;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;color:#222;background:#f4f5f7}
        header h1{margin:0 0 4px;font-size:22px}header h1 code{font-size:inherit}header .desc{margin:0 0 4px;color:#444}header .meta{margin:0 0 14px;color:#555;font-size:13px}
        code{font-family:'DejaVu Sans Mono',Menlo,monospace;font-size:12.5px}
        .status{display:inline-block;padding:0 7px;border-radius:9px;background:#e4e7eb;font-size:12px;margin-right:2px}
        .status.done{background:#dcefdc}.status.diverged{background:#f6d6d6}.status.failed{background:#f3c4c4}.status.running{background:#dbe8f6}.status.queued{background:#eee}.status.stopped{background:#f6ecd0}
        .tables{display:flex;flex-wrap:wrap;gap:14px;margin-bottom:16px}
        .table{background:#fff;border:1px solid #dde0e4;border-radius:6px;padding:8px 12px;flex:0 1 auto;max-width:100%;overflow-x:auto}
        .table h2,footer h2{font-size:14px;margin:2px 0 6px}
        table{border-collapse:collapse;font-size:12.5px}th,td{padding:2px 9px;text-align:left;white-space:nowrap}th{border-bottom:1px solid #bbb;font-weight:600}
        td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}tbody tr:nth-child(odd){background:#f7f8fa}
        .charts{display:flex;flex-wrap:wrap;gap:14px}
        figure.chart{margin:0;background:#fff;border:1px solid #dde0e4;border-radius:6px;padding:4px}
        figure.chart svg{display:block;max-width:100%;height:auto}
        footer{margin-top:16px;color:#555;font-size:12.5px}footer ul{margin:4px 0;padding-left:20px}
        """
}

/// Keeps at most `n` points (every k-th, always the last), so long step-by-step histories stay light.
func downsample<T>(_ points: [T], _ n: Int) -> [T] {
    guard points.count > n, n > 1 else { return points }
    let k = (points.count + n - 1) / n
    var out = stride(from: 0, to: points.count, by: k).map { points[$0] }
    if (points.count - 1) % k != 0 { out.append(points[points.count - 1]) }
    return out
}

extension String {
    var capitalizedFirst: String { prefix(1).uppercased() + dropFirst() }
}
