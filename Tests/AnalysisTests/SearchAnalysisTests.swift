import Analysis
import Foundation
import Testing

/// A sweep made in memory from the toy fixture's first (done) trial: one row per entry, with
/// the given hyperparameters and train loss (the toy objective's value) and status.
func syntheticResults(_ rows: [(hparams: [String: HParamValue], loss: Double, status: String)], keys: [String]) throws -> SweepResults {
    var r = try SweepResults.load(Fixture.toy.directory)
    let template = r.trials.first { $0.status == "done" }!
    r.trials = rows.enumerated().map { i, row in
        var t = template
        t.id = String(format: "%016x", i)
        t.index = i
        t.hparams = row.hparams
        t.trainLoss = row.loss
        t.status = row.status
        return t
    }
    r.hparamKeys = keys
    return r
}

@Suite struct SearchAnalysisTests {
    @Test func theParetoFrontKeepsTiesAndDropsDominatedPoints() throws {
        // Both minimised: (2, 3) twice is a tie (both kept); (3, 3), (5, 5) and (1, 6) are dominated.
        let points: [(Double, Double)] = [(1, 5), (2, 3), (3, 3), (2, 3), (4, 1), (5, 5), (1, 6)]
        #expect(SweepAnalysis.nonDominated(points, maximize: (false, false)) == [0, 1, 3, 4])
        // Minimising x, maximising y: (1, 6) beats every other point.
        #expect(SweepAnalysis.nonDominated(points, maximize: (false, true)) == [6])
        #expect(SweepAnalysis.nonDominated(points, maximize: (true, true)) == [5, 6])
        #expect(SweepAnalysis.nonDominated([], maximize: (false, false)).isEmpty)

        // Through a sweep: train loss against wall seconds; the diverged trial would dominate
        // everything but is not finished, and a NaN loss is left out.
        let losses: [(Double, Double, String)] = [(0.5, 10, "done"), (0.2, 30, "done"), (0.2, 30, "stopped"), (0.3, 40, "done"), (0.1, 50, "done"), (0.01, 1, "diverged"), (.nan, 1, "done")]
        var r = try syntheticResults(losses.enumerated().map { (["lr": .number(Double($0.offset))], $0.element.0, $0.element.2) }, keys: ["lr"])
        for i in r.trials.indices { r.trials[i].wallSeconds = losses[i].1 }
        let a = try SweepAnalysis(results: r)
        let front = a.paretoFront(.trainLoss, .wallSeconds)
        #expect(front.candidates.count == 5 && front.maximize == (false, false))
        #expect(front.front.map(\.trial.index) == [4, 1, 2, 0])  // by train loss, ties by trial number
        #expect(front.front.map(\.y) == [50, 30, 30, 10])
        let text = try TextReport.render(a, pareto: (.trainLoss, .wallSeconds))
        #expect(text.contains("Pareto front of train_loss (lower is better) and wall_seconds (lower is better): 4 of 5 finished trials"))
        let section = try #require(text.components(separatedBy: "Pareto front").last)
        #expect(section.contains(r.trials[4].id) && section.contains(r.trials[0].id) && !section.contains(r.trials[3].id) && !section.contains(r.trials[5].id))
        // Maximising the metric turns its direction round: the highest loss is also the fastest.
        #expect(try SweepAnalysis(results: r, maximize: true).paretoFront(.trainLoss, .wallSeconds).front.map(\.trial.index) == [0])
        let report = try HTMLReport.render(a, pareto: (.trainLoss, .wallSeconds))
        let scatter = try #require(figures(report.html)["pareto"])
        #expect(count("stroke=\"#111\" stroke-width=\"1.8\"", in: scatter) == 4 && count("<circle", in: scatter) == 5)
        #expect(nonFiniteAttributes(scatter).isEmpty)

        // The names: one list for the parser, the help and the charts.
        #expect(try TrialMeasure.pair(parsing: "test_accuracy, seconds_per_epoch") == (.testAccuracy, .secondsPerEpoch))
        #expect(throws: AnalysisError.self) { try TrialMeasure.pair(parsing: "test_loss") }
        #expect(throws: AnalysisError.self) { try TrialMeasure.pair(parsing: "test_loss,speed") }
        #expect(throws: AnalysisError.self) { try TrialMeasure.pair(parsing: "test_loss,test_loss") }
        #expect(TrialMeasure.testAccuracy.maximizedByDefault && !TrialMeasure.optimizerStateBytes.maximizedByDefault)
    }

    @Test func measuresReadTheCommittedTrialsCosts() throws {
        let f = Fixture.toy
        let a = try SweepAnalysis(results: try SweepResults.load(f.directory))
        for (t, trained) in zip(a.trials, f.trained) {
            #expect(TrialMeasure.optimizerStateBytes.value(t) == Double(trained.result.optimizerStateBytes))
            #expect(TrialMeasure.parameterCount.value(t) == Double(trained.result.parameterCount))
            #expect(TrialMeasure.secondsPerEpoch.value(t) == t.details!.secondsPerEpoch)
            #expect(TrialMeasure.trainLoss.value(t) == t.value(.trainLoss))
        }
        #expect(TrialMeasure.parameterCount.value(a.trials[0]) == 2)  // Rosenbrock: x and y
        #expect(TrialMeasure.optimizerStateBytes.value(a.trials.last!).isNaN)  // pending
    }

    @Test func bestSoFarFollowsTrialNumbers() throws {
        let f = Fixture.toy
        let a = try SweepAnalysis(results: try SweepResults.load(f.directory))
        let curve = a.bestSoFar()
        // Committed trials only (the two pending ones are left out), numbered from 1.
        #expect(curve.map(\.number) == Array(1...f.trained.count))
        var best = Double.nan
        for (p, t) in zip(curve, f.trained) {
            let v = t.result.status == .done ? t.result.history.last!.trainLoss : Double.nan
            if v < best || best.isNaN { best = v.isNaN ? best : v }
            #expect(p.trial.id == t.id)
            #expect(p.value.isNaN == v.isNaN && (v.isNaN || p.value == v))
            #expect(p.best == best)
        }
        #expect(curve.last!.value.isNaN && curve.last!.trial.status == "diverged")  // keeps the best before it
        #expect(a.best(afterTrials: 1) == f.trained[0].result.history.last!.trainLoss)
        #expect(a.best(afterTrials: 100) == a.leaderboard()[0].value)
        #expect(a.best(afterTrials: 0).isNaN)

        // A hand-made order: 3, 5 (worse), diverged, 1, 2 (worse) → 3, 3, 3, 1, 1.
        let r = try syntheticResults(
            [3, 5, .nan, 1, 2].enumerated().map { (["lr": .number(Double($0.offset))], $0.element, $0.element.isNaN ? "diverged" : "done") }, keys: ["lr"])
        let b = try SweepAnalysis(results: r)
        #expect(b.bestSoFar().map(\.best) == [3, 3, 3, 1, 1])
        #expect(try SweepAnalysis(results: r, maximize: true).bestSoFar().map(\.best) == [3, 5, 5, 5, 5])

        // The text table, and a second sweep compared line by line.
        var other = r
        other.name = "other"
        let text = try TextReport.render(b, compare: [try SweepAnalysis(results: other)])
        #expect(text.contains("Best train_loss so far by trial number"))
        let lines = text.components(separatedBy: "\n")
        let header = try #require(lines.firstIndex { $0.contains("Best train_loss so far") })
        #expect(lines[header + 1].contains("sweep") && lines[header + 1].contains("all") && !lines[header + 1].contains("after 10"))
        #expect(lines[header + 3].hasPrefix("  toy ") && lines[header + 3].contains("#4 0000000000000003"))
        #expect(lines[header + 4].hasPrefix("  other "))
        let report = try HTMLReport.render(b, compare: [try SweepAnalysis(results: other)])
        let chart = try #require(figures(report.html)["best-so-far"])
        #expect(count("best so far</title>", in: chart) == 2)  // one step line per sweep
        #expect(count("<circle", in: chart) == 8)  // every finite trial value
        #expect(count(": diverged</title>", in: chart) == 2)  // a cross per sweep
        #expect(nonFiniteAttributes(chart).isEmpty)
    }

    @Test func pedAnovaOnAHandComputableCase() throws {
        // Ten trials, the best (loss 0) first. c: a for the best five, b for the rest; n: i mod 5;
        // m: set only in the b trials.
        let rows = (0..<10).map { i in
            var h: [String: HParamValue] = ["c": .text(i < 5 ? "a" : "b"), "n": .number(Double(i % 5)), "same": .number(1)]
            if i >= 5 { h["m"] = .number(Double(i)) }
            return (hparams: h, loss: Double(i), status: "done")
        }
        let a = try SweepAnalysis(results: try syntheticResults(rows, keys: ["c", "m", "n", "same"]))
        let result = try #require(PEDANOVA.evaluate(a))
        #expect(result.top == 1 && result.ranked == 10)
        // c: top (1 + 1/2)/2 = (0.75, 0.25), all (5.5, 5.5)/11 = (0.5, 0.5): divergence 2 · 0.25²/0.5 = 0.25.
        // n: top (0.6, 0.1, 0.1, 0.1, 0.1), all 0.2 each: 0.4²/0.2 + 4 · 0.1²/0.2 = 1.
        // m: no top trial sets it: 0. same: one value, not listed.
        let by = Dictionary(uniqueKeysWithValues: result.importances.map { ($0.key, $0) })
        #expect(result.importances.map(\.key) == ["n", "c", "m"])
        #expect(abs(by["c"]!.divergence - 0.25) < 1e-12 && abs(by["n"]!.divergence - 1) < 1e-12 && by["m"]!.divergence == 0)
        #expect(abs(by["n"]!.share - 0.8) < 1e-12 && abs(by["c"]!.share - 0.2) < 1e-12)
        #expect(by["c"]!.topValues == "a×1" && by["m"]!.topValues == "(unset)")
        // The pieces.
        #expect(PEDANOVA.categoricalDensity([0], categories: 2) == [0.75, 0.25])
        #expect(PEDANOVA.pearsonDivergence([0.75, 0.25], [0.5, 0.5]) == 0.25)
        #expect(PEDANOVA.topIndices([5, 1, 3, 1, 9], quantile: 0.1, maximize: false) == [1, 3])  // ties at the cut-off
        #expect(PEDANOVA.topIndices([5, 1, 3, 1, 9], quantile: 0.5, maximize: true) == [0, 2, 4])
        let density = PEDANOVA.gridDensity([0.1, 0.12, 0.5, 0.9])
        #expect(abs(density.reduce(0, +) - 1) < 1e-12 && density.allSatisfy { $0 > 0 })
        #expect(PEDANOVA.pearsonDivergence(density, density) == 0)

        // Fewer than ten ranked trials: not computed, and the report says so.
        let few = try SweepAnalysis(results: try syntheticResults(Array(rows.prefix(9)), keys: ["c", "m", "n"]))
        #expect(PEDANOVA.evaluate(few) == nil)
        #expect(try TextReport.render(few).contains("Parameter importance (PED-ANOVA): not computed, 9 ranked trials (needs at least 10)"))
        #expect(try HTMLReport.render(few).omitted.contains { $0.hasPrefix("Parameter importance") })
    }

    @Test func pedAnovaFindsTheParameterTheValueDependsOn() throws {
        // 80 trials, x and noise spread over [0, 1] (van der Corput sequences in bases 2 and 3),
        // and a log-uniform lr that does not matter either; the loss depends on x alone.
        func radicalInverse(_ i: Int, _ base: Int) -> Double {
            var (i, f, r) = (i, 1.0, 0.0)
            while i > 0 {
                f /= Double(base)
                r += f * Double(i % base)
                i /= base
            }
            return r
        }
        let rows = (1...80).map { i in
            let (x, noise) = (radicalInverse(i, 2), radicalInverse(i, 3))
            let lr = pow(10, -5 + 4 * radicalInverse(i, 5))
            let opt = ["adam", "sgd"][i % 2]
            return (hparams: ["x": HParamValue.number(x), "noise": .number(noise), "lr": .number(lr), "optimizer": .text(opt)], loss: (x - 0.3) * (x - 0.3), status: "done")
        }
        let a = try SweepAnalysis(results: try syntheticResults(rows, keys: ["lr", "noise", "optimizer", "x"]))
        let result = try #require(PEDANOVA.evaluate(a))
        #expect(result.top == 8)
        let by = Dictionary(uniqueKeysWithValues: result.importances.map { ($0.key, $0) })
        #expect(result.importances.first?.key == "x")
        #expect(by["x"]!.share > 0.7, "\(result.importances.map { ($0.key, $0.share) })")
        for key in ["noise", "lr", "optimizer"] {
            #expect(by["x"]!.divergence > 5 * by[key]!.divergence, "\(key): \(by[key]!.divergence) vs x \(by["x"]!.divergence)")
        }
        #expect(by["x"]!.continuous && !by["x"]!.logScale && by["lr"]!.logScale && !by["optimizer"]!.continuous)
        // The top trials' x sit around 0.3.
        let range = by["x"]!.topValues.split(separator: "–").compactMap { Double($0) }
        #expect(range.count == 2 && range[0] > 0.2 && range[1] < 0.4)
        let text = try TextReport.render(a)
        #expect(text.contains("Parameter importance (PED-ANOVA, top 10% = 8 of 80 ranked trials)"))
        let report = try HTMLReport.render(a)
        let bars = try #require(figures(report.html)["importance"])
        #expect(count("<rect", in: bars) == 1 + 4 && bars.contains("<title>x: "))
    }
}
