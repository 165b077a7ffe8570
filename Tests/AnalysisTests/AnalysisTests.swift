import Analysis
import Foundation
import HDF5
import Learning
import Results
import Testing

/// Results directories written through the real path: configurations trained by `Trainer.run`,
/// committed by `SweepStore` in batch files, indexed by `writeIndex`, as the coordinator does.
struct Fixture: Sendable {
    struct Trained: Sendable {
        var id: String
        var config: TrialConfig
        var result: TrialResult
    }

    var directory: String
    var trained: [Trained]
    /// Rows in the index that have not finished (queued, running): no group, no link.
    var pendingIDs: [String]

    func result(_ id: String) -> TrialResult { trained.first { $0.id == id }!.result }

    static func temporaryDirectory(_ name: String) -> String {
        let path = NSTemporaryDirectory() + "analysis-\(name)-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Trains `configs`, commits them in two batches, and indexes them with `pending` configs
    /// listed as queued and running.
    static func build(name: String, objective: (String, String), configs: [String], pending: [String] = []) throws -> Fixture {
        let directory = temporaryDirectory(name)
        let store = try SweepStore(directory: directory)
        var trained: [Trained] = []
        for (i, yaml) in configs.enumerated() {
            let config = try TrialConfig.parse(yaml: yaml, source: "config \(i)")
            trained.append(Trained(id: TrialID.of(config), config: config, result: try Trainer.run(config)))
        }
        let finished = trained.enumerated().map { i, t in
            FinishedTrial(id: t.id, index: i, branch: t.config.optimizerName, result: t.result, attempts: 1, host: "test-host", worker: "local-1")
        }
        let half = finished.count / 2
        try store.commit(Array(finished[..<half]))
        try store.commit(Array(finished[half...]))
        var rows = trained.enumerated().map { i, t in
            IndexRow(id: t.id, index: i, branch: t.config.optimizerName, config: t.config, status: t.result.status.rawValue, committed: store.committed[t.id])
        }
        var pendingIDs: [String] = []
        for (k, yaml) in pending.enumerated() {
            let config = try TrialConfig.parse(yaml: yaml, source: "pending \(k)")
            pendingIDs.append(TrialID.of(config))
            rows.append(IndexRow(id: TrialID.of(config), index: rows.count, branch: config.optimizerName, config: config, status: k % 2 == 0 ? "queued" : "running", committed: nil))
        }
        let metadata = [
            "name": name, "description": "analysis test sweep", "source": "AnalysisTests", "seed": "0",
            "objective_metric": objective.0, "objective_mode": objective.1, "version": "1",
        ]
        try store.writeIndex(metadata: metadata, sweepText: "name: \(name)\n", rows: rows)
        return Fixture(directory: directory, trained: trained, pendingIDs: pendingIDs)
    }

    /// Rosenbrock with Adam and SGD at several learning rates (one diverges), plus two pending rows.
    static let toy: Fixture = try! build(
        name: "toy", objective: ("train_loss", "min"),
        configs: [
            "{model: rosenbrock, optimizer: adam, lr: 0.01, steps: 50}",
            "{model: rosenbrock, optimizer: adam, lr: 0.1, steps: 50}",
            "{model: rosenbrock, optimizer: adam, lr: 0.3, steps: 50}",
            "{model: rosenbrock, optimizer: sgd, lr: 0.0001, momentum: 0.9, steps: 50}",
            "{model: rosenbrock, optimizer: sgd, lr: 0.001, momentum: 0.9, steps: 50}",
            "{model: rosenbrock, optimizer: sgd, lr: 0.01, momentum: 0.9, steps: 50}",
        ],
        pending: ["{model: rosenbrock, optimizer: adam, lr: 1.0, steps: 50}", "{model: rosenbrock, optimizer: sgd, lr: 0.003, momentum: 0.9, steps: 50}"])

    /// The Fashion-MNIST MLP with two optimizers.
    static let mlp: Fixture = try! build(
        name: "mlp", objective: ("test_accuracy", "max"),
        configs: [
            "{model: mlp, optimizer: sgd, lr: 0.1, momentum: 0.9, hidden: [16], limit: 600, test_limit: 200, epochs: 2}",
            "{model: mlp, optimizer: adamw, lr: 0.003, hidden: [16], limit: 600, test_limit: 200, epochs: 2}",
        ])
}

/// The charts of a report: figure id → its markup.
func figures(_ html: String) -> [String: String] {
    var out: [String: String] = [:]
    var rest = Substring(html)
    while let start = rest.range(of: "<figure class=\"chart") {
        let end = rest.range(of: "</figure>", range: start.upperBound..<rest.endIndex)!
        let figure = String(rest[start.lowerBound..<end.upperBound])
        let idStart = figure.range(of: "id=\"chart-")!.upperBound
        let id = String(figure[idStart...].prefix { $0 != "\"" })
        out[id] = figure
        rest = rest[end.upperBound...]
    }
    return out
}

func count(_ needle: String, in s: String) -> Int { s.components(separatedBy: needle).count - 1 }

/// Attribute values (coordinates, sizes, colours) that are not finite numbers.
func nonFiniteAttributes(_ svg: String) -> [String] {
    let regex = try! NSRegularExpression(pattern: "\\s(x|y|x1|x2|y1|y2|cx|cy|r|width|height|d|points|transform|font-size|stroke-width)=\"([^\"]*)\"")
    let ns = svg as NSString
    return regex.matches(in: svg, range: NSRange(location: 0, length: ns.length)).compactMap { m in
        let value = ns.substring(with: m.range(at: 2)).lowercased()
        return value.contains("nan") || value.contains("inf") ? ns.substring(with: m.range) : nil
    }
}

/// A CSV parser for the test: quoted fields with doubled quotes.
func parseCSV(_ text: String) -> [[String]] {
    var rows: [[String]] = []
    var row: [String] = [], field = "", quoted = false
    var chars = Array(text)[...]
    while let c = chars.popFirst() {
        if quoted {
            if c == "\"" {
                if chars.first == "\"" { field.append("\""); chars.removeFirst() } else { quoted = false }
            } else {
                field.append(c)
            }
        } else if c == "\"" {
            quoted = true
        } else if c == "," {
            row.append(field); field = ""
        } else if c == "\n" {
            row.append(field); rows.append(row); row = []; field = ""
        } else {
            field.append(c)
        }
    }
    return rows
}

@Suite struct AnalysisTests {
    @Test func theIndexReadsBackWithStringsHyperparametersAndDetails() throws {
        let f = Fixture.toy
        let r = try SweepResults.load(f.directory)
        #expect(r.name == "toy")
        #expect(r.objectiveMetric == .trainLoss && r.objectiveMaximize == false)
        #expect(r.trials.count == f.trained.count + f.pendingIDs.count)
        #expect(r.trials.map(\.id) == f.trained.map(\.id) + f.pendingIDs)
        #expect(r.hparamKeys.contains("lr") && r.hparamKeys.contains("momentum") && r.hparamKeys.contains("optimizer"))
        for (t, trained) in zip(r.trials, f.trained) {
            #expect(t.optimizer == trained.config.optimizerName && t.model == "rosenbrock" && t.host == "test-host")
            #expect(t.status == trained.result.status.rawValue)
            #expect(t.hparams["lr"] == .number(try trained.config.double("lr", default: .nan)))
            #expect(t.hparams["optimizer"] == .text(trained.config.optimizerName))
            #expect(t.hparams["momentum"] == (trained.config.values["momentum"] == nil ? nil : .number(0.9)))
            let d = try #require(t.details)
            #expect(d.history.count == trained.result.history.count)
            #expect(d.history.seconds == trained.result.history.map(\.seconds))
            #expect(d.trajectory.count == trained.result.trajectory.count && d.trajectory.last == trained.result.trajectory.last)
            #expect(d.optimizerStateBytes == trained.result.optimizerStateBytes)
            #expect(d.config == trained.config)
        }
        // Queued and running rows: counted, never read.
        for t in r.trials.suffix(f.pendingIDs.count) {
            #expect(t.details == nil && t.detailsError == nil && t.file.isEmpty)
        }
        // The string readers agree with what the index holds.
        let file = try HDF5File("\(f.directory)/sweep.h5", mode: .readOnly)
        #expect(
            try file.readStrings("configs") == f.trained.map(\.config.canonicalJSON)
                + r.trials.suffix(2).map { _ in "" }.enumerated().map { i, _ in
                    try! TrialConfig.parse(
                        yaml: ["{model: rosenbrock, optimizer: adam, lr: 1.0, steps: 50}", "{model: rosenbrock, optimizer: sgd, lr: 0.003, momentum: 0.9, steps: 50}"][i], source: ""
                    ).canonicalJSON
                })
        #expect(try file.isStringDataset("hparams/optimizer") && !file.isStringDataset("hparams/lr"))
        #expect(try file.readTableStringColumn("trials", field: "status").prefix(f.trained.count) == ArraySlice(f.trained.map(\.result.status.rawValue)))
        #expect(throws: HDF5Error.self) { try file.readTableStringColumn("trials", field: "train_loss") }
        #expect(throws: HDF5Error.self) { try file.readStrings("hparams/lr") }
        // One-pass reads of several fields agree with field-by-field reads (through /by_id).
        let history = try file.group("by_id").group(f.trained[1].id)
        let columns = try history.readTableColumns("history", fields: ["train_loss", "seconds", "no_such_field"])
        #expect(columns["train_loss"] == (try history.readTableColumn("history", field: "train_loss")))
        #expect(columns["seconds"] == f.trained[1].result.history.map(\.seconds) && columns["no_such_field"] == nil)
        #expect(try history.tableFields("history") == EpochRecord.columns)
    }

    @Test func theLeaderboardRanksFinalMetricsAndNeverADivergedTrial() throws {
        let f = Fixture.toy
        let diverged = f.trained.filter { $0.result.status == .diverged }
        #expect(diverged.count == 1, "sgd with lr 0.01 and momentum 0.9 diverges on the Rosenbrock function")
        let a = try SweepAnalysis(results: try SweepResults.load(f.directory))
        #expect(a.metric == .trainLoss && !a.maximize)
        let board = a.leaderboard()
        let expected = f.trained.filter { $0.result.status == .done }.map { ($0.id, $0.result.history.last!.trainLoss) }.sorted { $0.1 < $1.1 }
        #expect(board.map(\.trial.id) == expected.map(\.0))
        #expect(board.map(\.value) == expected.map(\.1))
        #expect(board.map(\.rank) == Array(1...expected.count))
        #expect(a.unranked().map(\.id) == diverged.map(\.id) && a.unranked()[0].status == "diverged")
        #expect(a.statusCounts.map { "\($0.count) \($0.status)" } == ["5 done", "1 diverged", "1 running", "1 queued"])
        // Maximising turns the order round, and NaN still never wins.
        let reversed = try SweepAnalysis(results: a.results, metric: .trainLoss, maximize: true)
        #expect(reversed.leaderboard().map(\.trial.id) == expected.reversed().map(\.0))
        // Toy objectives have no test set: test_loss ranks their objective value.
        #expect(try SweepAnalysis(results: a.results, metric: .testLoss).leaderboard().map(\.value) == expected.map(\.1))
        // Accuracy does not exist here: nothing is ranked, nothing crashes.
        let accuracy = try SweepAnalysis(results: a.results, metric: .testAccuracy)
        #expect(accuracy.leaderboard().isEmpty && accuracy.maximize)
        let text = try TextReport.render(accuracy)
        #expect(text.contains("no trial has finished with a finite test_accuracy"))
        #expect(try accuracy.bestPerGroup().allSatisfy { $0.best == nil })
        _ = try HTMLReport.render(accuracy)

        let summary = try TextReport.render(a, top: 3)
        #expect(summary.contains("sweep toy: 8 trials — 5 done, 1 diverged, 1 running, 1 queued"))
        #expect(summary.contains("top 3 of 5 ranked"))
        #expect(summary.contains("not ranked: 1 diverged (\(diverged[0].id))"))
        #expect(summary.contains("still to come: 2 trial(s) queued or running"))
        #expect(summary.contains(formatMetric(expected[0].1)) && summary.contains(expected[0].0))
        #expect(!summary.contains(expected[3].0) || summary.range(of: expected[3].0)!.lowerBound > summary.range(of: "Best per optimizer")!.lowerBound)
    }

    @Test func bestPerGroupSensitivityAndCosts() throws {
        let f = Fixture.toy
        let a = try SweepAnalysis(results: try SweepResults.load(f.directory))
        let groups = try a.bestPerGroup(by: "optimizer")
        #expect(groups.map(\.group) == ["adam", "sgd"])
        for g in groups {
            let done = f.trained.filter { $0.config.optimizerName == g.group && $0.result.status == .done }
            let best = done.min { $0.result.history.last!.trainLoss < $1.result.history.last!.trainLoss }!
            #expect(g.best?.trial.id == best.id && g.best?.value == best.result.history.last!.trainLoss)
            #expect(g.ranked == done.count)
            #expect(g.trials == f.trained.filter { $0.config.optimizerName == g.group }.count + 1)  // one pending each
        }
        let byLR = try a.bestPerGroup(by: "lr")
        #expect(byLR.map(\.group) == ["0.0001", "0.001", "0.003", "0.01", "0.1", "0.3", "1"])
        #expect(byLR.first { $0.group == "0.003" }!.best == nil)  // only a running trial
        #expect(throws: AnalysisError.self) { try a.bestPerGroup(by: "no_such_key") }

        // Sensitivity: per-value means over ranked trials, spread = max − min.
        let s = a.sensitivity()
        let lr = try #require(s.first { $0.key == "lr" })
        let done = f.trained.filter { $0.result.status == .done }
        for m in lr.means {
            let values = done.filter { (try? $0.config.double("lr", default: .nan)) == m.value.number }.map { $0.result.history.last!.trainLoss }
            #expect(m.count == values.count && abs(m.mean - values.reduce(0, +) / Double(values.count)) <= 1e-12 * abs(m.mean))
        }
        #expect(lr.spread == lr.means.map(\.mean).max()! - lr.means.map(\.mean).min()!)
        #expect(lr.bestValue == lr.means.min { $0.mean < $1.mean }!.value)
        let optimizer = try #require(s.first { $0.key == "optimizer" })
        let adamMean = done.filter { $0.config.optimizerName == "adam" }.map { $0.result.history.last!.trainLoss }.reduce(0, +) / 3
        let sgdMean = done.filter { $0.config.optimizerName == "sgd" }.map { $0.result.history.last!.trainLoss }.reduce(0, +) / 2
        #expect(abs(optimizer.spread - abs(adamMean - sgdMean)) <= 1e-12 * optimizer.spread)
        #expect(s.map(\.spread) == s.map(\.spread).sorted(by: >))
        #expect(!s.contains { $0.key == "momentum" })  // one value only

        // Time per step and optimizer state per optimizer.
        for c in a.costs() {
            let ts = f.trained.filter { $0.config.optimizerName == c.optimizer }
            let perTrial = ts.map { t in t.result.history.map(\.seconds).reduce(0, +) / Double(t.result.history.count) }
            #expect(abs(c.secondsPerEpoch - perTrial.reduce(0, +) / Double(perTrial.count)) <= 1e-12 * c.secondsPerEpoch)
            #expect(c.minStateBytes == ts.map(\.result.optimizerStateBytes).min() && c.maxStateBytes == ts.map(\.result.optimizerStateBytes).max())
            #expect(c.trials == ts.count && c.toy)
        }
    }

    @Test func continuousHyperparametersAreBinnedForSensitivity() throws {
        // Random search: 18 trials with distinct learning rates, the metric equal to the rate.
        var r = try SweepResults.load(Fixture.toy.directory)
        let template = r.trials[0]
        r.trials = (0..<18).map { i in
            var t = template
            t.id = String(format: "%016x", i)
            t.index = i
            t.hparams["lr"] = .number(Double(i + 1) * 1e-3)
            t.trainLoss = Double(i + 1) * 1e-3
            return t
        }
        let s = try #require(try SweepAnalysis(results: r).sensitivity().first { $0.key == "lr" })
        #expect(s.means.count == SweepAnalysis.sensitivityBins && s.means.allSatisfy { $0.count == 3 })
        #expect(s.means.map(\.value.description) == ["0.001–0.003", "0.004–0.006", "0.007–0.009", "0.01–0.012", "0.013–0.015", "0.016–0.018"])
        #expect(abs(s.means[0].mean - 0.002) < 1e-15 && abs(s.spread - 0.015) < 1e-15 && s.bestValue == .text("0.001–0.003"))
    }

    @Test func filtersSelectByHyperparameterOptimizerAndStatus() throws {
        let r = try SweepResults.load(Fixture.toy.directory)
        func ids(_ filters: [String]) throws -> [String] { try SweepAnalysis(results: r, filters: filters.map(TrialFilter.init(parsing:))).trials.map(\.id) }
        let t = Fixture.toy.trained
        #expect(try ids(["optimizer=adam"]).count == 4)  // three done, one queued
        #expect(try ids(["optimizer=adam", "status=done"]) == t.filter { $0.config.optimizerName == "adam" }.map(\.id))
        #expect(try ids(["lr=1e-3"]) == [t[4].id])  // numbers compare as numbers
        #expect(try ids(["lr=0.001", "lr=0.1"]) == [t[1].id, t[4].id])  // one key: any of its values
        #expect(try ids(["status=diverged"]) == [t[5].id])
        #expect(try ids(["momentum=0.9", "status=done"]) == [t[3].id, t[4].id])
        #expect(try ids(["id=\(t[2].id)"]) == [t[2].id])
        #expect(try ids(["optimizer=lion"]).isEmpty)
        #expect(throws: AnalysisError.self) { try ids(["momentun=0.9"]) }
        #expect(throws: AnalysisError.self) { try TrialFilter(parsing: "lr") }
        let a = try SweepAnalysis(results: r, filters: [TrialFilter(key: "optimizer", value: "sgd")])
        #expect(try TextReport.render(a).contains("sweep toy: 4 trials of 8 (filters: optimizer=sgd)"))
    }

    @Test func csvHasOneRowPerTrialAndOneColumnPerHyperparameter() throws {
        let r = try SweepResults.load(Fixture.toy.directory)
        let a = try SweepAnalysis(results: r)
        let rows = parseCSV(CSVExport.render(a))
        #expect(rows.count == 1 + 8)
        let header = rows[0]
        #expect(header == CSVExport.header(for: a))
        #expect(header.prefix(CSVExport.columns.count) == ArraySlice(CSVExport.columns))
        for key in ["lr", "momentum", "steps"] { #expect(header.contains(key)) }
        #expect(rows.allSatisfy { $0.count == header.count })
        func column(_ name: String) -> [String] { rows.dropFirst().map { $0[header.firstIndex(of: name)!] } }
        #expect(column("id") == r.trials.map(\.id))
        #expect(column("train_loss").prefix(6) == ArraySlice(Fixture.toy.trained.map { "\($0.result.history.last!.trainLoss)" }))
        #expect(column("test_loss").allSatisfy { $0 == "nan" })
        #expect(column("momentum") == ["", "", "", "0.9", "0.9", "0.9", "", "0.9"])
        #expect(column("status").suffix(2) == ["queued", "running"])
        #expect(column("optimizer_state_bytes").suffix(2) == ["", ""])
        // The MLP's `epochs` key clashes with the table's epochs-run column.
        let mlp = parseCSV(CSVExport.render(try SweepAnalysis(results: try SweepResults.load(Fixture.mlp.directory))))
        #expect(mlp[0].contains("config_epochs") && mlp[0].contains("hidden") && mlp.count == 3)
        #expect(mlp[1][mlp[0].firstIndex(of: "hidden")!] == "[16]")
    }

    @Test func theToyReportDrawsCurvesBarsParallelCoordinatesAndTrajectories() throws {
        let a = try SweepAnalysis(results: try SweepResults.load(Fixture.toy.directory))
        let report = try HTMLReport.render(a)
        #expect(report.charts == ["train-loss", "time-per-epoch", "final-metric", "parallel-coordinates", "best-so-far", "pareto", "trajectory-1"])
        let figs = figures(report.html)
        #expect(Set(figs.keys) == Set(report.charts))
        for (id, fig) in figs {
            #expect(count("<svg", in: fig) == 1, "\(id)")
            #expect(count("<text", in: fig) > 4, "\(id): axes and titles")
            #expect(nonFiniteAttributes(fig).isEmpty, "\(id): \(nonFiniteAttributes(fig).prefix(3))")
        }
        #expect(count("<path", in: figs["train-loss"]!) >= 2)
        #expect(count("<rect", in: figs["time-per-epoch"]!) >= 3)  // frame + one bar per optimizer
        #expect(count("<path", in: figs["parallel-coordinates"]!) == 6)  // every committed trial, the diverged one too
        #expect(count("stroke-dasharray", in: figs["parallel-coordinates"]!) == 1)
        // Contours (one path per level) under five ranked trials and two best paths.
        #expect(count("<path", in: figs["trajectory-1"]!) > 5 + 2 + 5)
        #expect(figs["trajectory-1"]!.contains("Rosenbrock, f = (1 − x)² + 100·(y − x²)²"))
        #expect(report.omitted.contains { $0.hasPrefix("Heatmap") } && report.omitted.contains { $0.hasPrefix("LR range test") })
        #expect(!report.html.contains("<script") && !report.html.contains("http://") || report.html.components(separatedBy: "http://").dropFirst().allSatisfy { $0.hasPrefix("www.w3.org/2000/svg") })
    }

    @Test func theClassifierReportDrawsAccuracyAHeatmapAndOptionalDataWhenPresent() throws {
        let f = Fixture.mlp
        let a = try SweepAnalysis(results: try SweepResults.load(f.directory))
        #expect(a.metric == .testAccuracy && a.maximize)
        #expect(a.leaderboard().map(\.value) == f.trained.map { $0.result.history.last!.testAccuracy }.sorted(by: >))
        let report = try HTMLReport.render(a, heatmap: ("lr", "optimizer"))
        #expect(report.charts == ["train-loss", "test-loss", "test-accuracy", "time-per-epoch", "final-metric", "heatmap", "parallel-coordinates", "best-so-far"])
        let figs = figures(report.html)
        #expect(count("<path", in: figs["test-accuracy"]!) == 2)
        let heat = figs["heatmap"]!
        // 2 × 2 cells, 2 filled (one trial each) with their values written in.
        for t in f.trained { #expect(heat.contains(">\(formatMetric(t.result.history.last!.testAccuracy))</text>")) }
        for (_, fig) in figs { #expect(nonFiniteAttributes(fig).isEmpty) }
        #expect(throws: AnalysisError.self) { try HTMLReport.render(a, heatmap: ("lr", "nope")) }

        // The optional data sets no trainer writes yet: drawn when a trial has them. A copy of
        // the results with them added to one trial's group.
        let copy = Fixture.temporaryDirectory("optional")
        try FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: f.directory, toPath: copy)
        let results = try SweepResults.load(copy)
        let first = results.trials[0]
        do {
            let batch = try HDF5File("\(copy)/\(first.file)", mode: .readWrite)
            let g = try batch.group(first.id)
            let lrs = (0..<50).map { 1e-5 * pow(10, Double($0) / 10) }
            try g.writeTable(OptionalData.lrRangeTable, [.float64("lr", lrs), .float64("loss", lrs.map { 2.3 - 0.3 * log10($0 / 1e-5) + ($0 > 0.1 ? 5 : 0) })])
            try g.writeTable(
                OptionalData.layerTable,
                [
                    .string("layer", ["fc1", "fc2", "fc1", "fc2"], width: 8), .float64("epoch", [1, 1, 2, 2]),
                    .float64("update_norm", [0.5, 0.2, 0.4, 0.1]),
                ])
            try batch.flush()
        }
        let withOptional = try HTMLReport.render(try SweepAnalysis(results: try SweepResults.load(copy)))
        #expect(withOptional.charts.contains("lr-range-test") && withOptional.charts.contains("layers-update-norm"))
        #expect(!withOptional.charts.contains("layers-activation-delta"))
        #expect(!report.charts.contains("lr-range-test"))
        let lrFigure = figures(withOptional.html)["lr-range-test"]!
        #expect(lrFigure.contains("learning rate (log)") && count("<path", in: lrFigure) == 1)
    }

    /// Results files are read as untrusted: absurd (but representable) values from a damaged or
    /// forged file are summarised without trapping (the mean of two 2^62-byte states overflowed).
    @Test func absurdValuesInAResultsFileDoNotTrapTheAnalysis() throws {
        let directory = Fixture.temporaryDirectory("absurd")
        let store = try SweepStore(directory: directory)
        var rows: [IndexRow] = []
        for (i, lr) in [0.01, 0.02].enumerated() {
            let config = try TrialConfig.parse(yaml: "{model: quadratic, steps: 3, optimizer: sgd, lr: \(lr)}", source: "absurd")
            var result = try Trainer.run(config)
            result.optimizerStateBytes = 1 << 62
            let id = TrialID.of(config)
            try store.commit([FinishedTrial(id: id, index: i, branch: "main", result: result, attempts: 1, host: "h", worker: "w")])
            rows.append(IndexRow(id: id, index: i, branch: "main", config: config, status: "done", committed: store.committed[id]))
        }
        try store.writeIndex(metadata: ["name": "absurd", "objective_metric": "train_loss", "objective_mode": "min", "version": "2"], sweepText: "name: absurd\n", rows: rows)
        let costs = try SweepAnalysis(results: try SweepResults.load(directory)).costs()
        #expect(costs.count == 1 && costs[0].meanStateBytes == Double(1 << 62) && costs[0].maxStateBytes == 1 << 62)
    }

    @Test func badPathsAreErrorsThatSayWhatToDo() throws {
        #expect(throws: AnalysisError.self) { try SweepResults.load("/nonexistent/results") }
        let empty = Fixture.temporaryDirectory("empty")
        do {
            _ = try SweepResults.load(empty)
            Issue.record("an empty directory loaded")
        } catch let e as AnalysisError {
            #expect(e.description.contains("has no sweep.h5"))
        }
        // The sweep.h5 file itself is as good as its directory.
        #expect(try SweepResults.load("\(Fixture.toy.directory)/sweep.h5").trials.count == 8)
    }

    @Test func numbersAreFormattedForReading() {
        #expect(formatNumber(0.001) == "0.001" && formatNumber(64) == "64" && formatNumber(3e-5) == "3e-05")
        #expect(formatMetric(.nan) == "nan" && formatSeconds(0.0123) == "12.3 ms" && formatBytes(2048) == "2 KiB")
    }
}
