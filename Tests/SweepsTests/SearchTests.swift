import Foundation
import Learning
import Linalg
import Sweeps
import Testing

/// `search:` sweeps: parsing, suggestions, and TPE's estimators against Optuna's
/// (`Fixtures/generate_tpe.py`).
@Suite struct SearchTests {
    func parse(_ text: String) throws -> Sweep { try SweepFile.parse(yaml: text, source: "s.yaml") }

    func parseError(_ text: String) -> ConfigError? {
        do {
            _ = try parse(text)
            return nil
        } catch let e as ConfigError {
            return e
        } catch {
            return nil
        }
    }

    static let branched = """
        name: s
        seed: 7
        objective: {metric: train_loss, mode: min}
        search:
          algorithm: tpe
          trials: 30
          params:
            lr: {loguniform: [1.0e-4, 1.0e-1]}
        base: {model: quadratic, steps: 20}
        optimizers:
          adam:
            search: {params: {beta1: {uniform: [0.5, 0.99]}}}
          sgd:
            base: {nesterov: false}
            search: {params: {momentum: {choice: [0.0, 0.5, 0.9]}}}
        """

    // MARK: Sweep files

    @Test func aSearchSweepHasNoTrialsUpFrontAndDescribesItsSpace() throws {
        let sweep = try parse(Self.branched)
        let search = try #require(sweep.search)
        #expect(sweep.trials.isEmpty)
        #expect(search.algorithm == .tpe && search.budget == 30 && search.parallel == nil)
        #expect(search.varied == ["beta1", "lr", "momentum", "optimizer"])
        #expect(sweep.planTable().contains("sgd: momentum: {choice: [0.0, 0.5, 0.9]}"))
    }

    @Test func searchSweepsSayWhatIsWrongAndWhere() throws {
        let withGrid = Self.branched.replacingOccurrences(of: "base: {model: quadratic, steps: 20}", with: "base: {model: quadratic, steps: 20}\ngrid: {steps: [10, 20]}")
        let e1 = try #require(parseError(withGrid))
        #expect(e1.location.line == 10 && e1.message.contains("has a grid too"))

        let pbt = Self.branched.replacingOccurrences(of: "algorithm: tpe", with: "algorithm: pbt").replacingOccurrences(of: "  trials: 30\n", with: "  population: 4\n  interval: 5\n")
        #expect(try #require(parseError(pbt)).message.contains("runs one optimizer entry"))
        let pbtBudget = Self.branched.replacingOccurrences(of: "algorithm: tpe", with: "algorithm: pbt")
        #expect(try #require(parseError(pbtBudget)).key == "population")

        let noBudget = Self.branched.replacingOccurrences(of: "  trials: 30\n", with: "")
        #expect(try #require(parseError(noBudget)).key == "trials")

        let branchAlgorithm = Self.branched.replacingOccurrences(of: "search: {params: {beta1", with: "search: {algorithm: tpe, params: {beta1")
        #expect(try #require(parseError(branchAlgorithm)).message.contains("has only 'params'"))

        // An end of a distribution outside the key's range is found before the sweep starts, at its line.
        let badRange = Self.branched.replacingOccurrences(of: "beta1: {uniform: [0.5, 0.99]}", with: "beta1: {uniform: [0.5, 1.5]}")
        let e5 = try #require(parseError(badRange))
        #expect(e5.location.line == 12 && e5.message.contains("beta1 = 1.5"))

        let twice = Self.branched.replacingOccurrences(of: "beta1: {uniform: [0.5, 0.99]}", with: "lr: {uniform: [0.01, 0.1]}")
        #expect(try #require(parseError(twice)).message.contains("sampled in one place only"))

        let pbtAsha =
            "name: p\nearly_stopping: {rule: asha}\nsearch: {algorithm: pbt, population: 2, interval: 5, params: {lr: {loguniform: [0.001, 0.1]}}}\nbase: {model: quadratic, steps: 20, optimizer: sgd}\n"
        #expect(try #require(parseError(pbtAsha)).message.contains("does its own stopping"))
    }

    // MARK: Suggestions

    func record(_ trial: Trial, _ outcome: Search.Outcome) -> Search.Record { Search.Record(trial: trial, outcome: outcome) }

    @Test func suggestionsAreReproducibleValidAndNeverRepeatATakenConfiguration() throws {
        let search = try #require(try parse(Self.branched).search)
        let a = try search.suggest(number: 3, history: []) { _ in false }
        let b = try search.suggest(number: 3, history: []) { _ in false }
        #expect(a.id == b.id && a.index == 3)
        #expect(try search.suggest(number: 4, history: []) { _ in false }.id != a.id)
        // A taken configuration is drawn again from another stream.
        let c = try search.suggest(number: 3, history: []) { $0 == a.id }
        #expect(c.id != a.id)
        // Every draw belongs to its entry: adam trials sample beta1, sgd trials momentum.
        for n in 0..<40 {
            let t = try search.suggest(number: n, history: []) { _ in false }
            let keys = Set(t.config.values.keys)
            #expect(keys.contains(t.branch == "adam" ? "beta1" : "momentum"))
            #expect(!keys.contains(t.branch == "adam" ? "momentum" : "beta1"))
            try t.config.validate()
        }
        // A journaled trial is checked against the space.
        #expect(try search.trial(branch: a.branch, configJSON: a.config.canonicalJSON, index: 3).id == a.id)
        #expect(throws: (any Error).self) { try search.trial(branch: "sgd", configJSON: "{\"model\":\"quadratic\",\"optimizer\":\"sgd\",\"lr\":5,\"steps\":20}", index: 0) }
    }

    @Test func theSplitRanksCompleteThenPrunedTrialsAndKeepsRunningOnesAbove() throws {
        let search = try #require(try parse(Self.branched).search)
        let trials = try (0..<6).map { n in try search.suggest(number: n, history: []) { _ in false } }
        let records = [
            record(trials[0], .complete(3)), record(trials[1], .running), record(trials[2], .pruned(epoch: 4, value: 0.5)),
            record(trials[3], .complete(1)), record(trials[4], .pruned(epoch: 9, value: 7)), record(trials[5], .complete(.nan)),
        ]
        let (below, above) = Search.split(records, below: 3, maximize: false)
        // The two complete trials by value (1, 3), then the pruned trial that got furthest (epoch 9);
        // a complete trial without a finite value (a divergence) ranks after every pruned one.
        #expect(below.map(\.trial.index) == [0, 3, 4])
        #expect(above.map(\.trial.index) == [1, 2, 5])
        let (maxBelow, _) = Search.split(records, below: 1, maximize: true)
        #expect(maxBelow.map(\.trial.index) == [0])
    }

    // MARK: TPE against Optuna

    struct Fixture: Decodable {
        struct Case: Decodable {
            var name: String
            var dimensions: [[Value]]
            var observations: [[Double]]
            var points: [[Double]]
            var log_density: [Double]
        }
        enum Value: Decodable {
            case text(String), number(Double)
            init(from decoder: any Decoder) throws {
                let c = try decoder.singleValueContainer()
                if let s = try? c.decode(String.self) { self = .text(s) } else { self = .number(try c.decode(Double.self)) }
            }
            var number: Double {
                if case .number(let x) = self { return x }
                return .nan
            }
        }
        var gamma: [String: Int]
        var weights: [String: [Double]]
        var cases: [Case]
    }

    static func fixture() throws -> Fixture {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/tpe.json")
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    @Test func gammaAndWeightsAreOptunas() throws {
        let f = try Self.fixture()
        for (n, g) in f.gamma { #expect(TPE.gamma(Int(n)!) == g, "gamma(\(n))") }
        for (n, w) in f.weights {
            let ours = TPE.weights(Int(n)!)
            #expect(ours.count == w.count)
            for (a, b) in zip(ours, w) { #expect(abs(a - b) <= 1e-15, "weights(\(n))") }
        }
    }

    @Test func parzenEstimatorDensitiesAreOptunas() throws {
        for c in try Self.fixture().cases {
            let dims: [TPE.Dimension] = c.dimensions.map { d in
                guard case .text(let kind) = d[0] else { return .categorical(count: 0) }
                switch kind {
                case "uniform": return .continuous(low: d[1].number, high: d[2].number, log: false)
                case "loguniform": return .continuous(low: d[1].number, high: d[2].number, log: true)
                case "randint": return .integer(low: d[1].number, high: d[2].number)
                default: return .categorical(count: Int(d[1].number))
                }
            }
            let estimator = TPE.ParzenEstimator(observations: c.observations, dimensions: dims, settings: TPE.Settings())
            for (x, expected) in zip(c.points, c.log_density) {
                let ours = estimator.logDensity(x)
                #expect(abs(ours - expected) <= 1e-9 * max(1, abs(expected)), "\(c.name) at \(x): \(ours) vs Optuna \(expected)")
            }
        }
    }

    @Test func bandwidthsFollowTheNeighbourRule() {
        // Centres 0.2, 0.5, 0.6 on [0, 1] with 4 kernels: gaps 0.2 | 0.3 | 0.1 | 0.4. The outermost
        // centres take their inner gap (0.3, 0.1), the middle one the larger of its two (0.3);
        // all are clipped below at 1 / min(100, 1 + 4) = 0.2.
        #expect(TPE.ParzenEstimator.bandwidths([0.5, 0.2, 0.6], low: 0, high: 1, kernels: 4) == [0.3, 0.3, 0.2])
    }

    @Test func samplesFromAnEstimatorStayInTheSpaceAndFollowItsKernels() {
        var rng = Xoshiro256(seed: 1, stream: "test")
        let dims: [TPE.Dimension] = [.continuous(low: 1e-4, high: 1, log: true), .integer(low: 1, high: 5), .categorical(count: 3)]
        let estimator = TPE.ParzenEstimator(observations: [[1e-3, 2, 1], [2e-3, 2, 1], [1.5e-3, 3, 1]], dimensions: dims, settings: TPE.Settings())
        let draws = estimator.sample(2000, &rng)
        #expect(draws.allSatisfy { $0[0] >= 1e-4 && $0[0] <= 1 && [1, 2, 3, 4, 5].contains($0[1]) && [0, 1, 2].contains($0[2]) })
        // Three of four kernels put (1 + 1/4) / (1 + 3/4) on choice 1, the prior 1/3: (3 · 5/7 + 1/3) / 4 ≈ 0.619.
        let share = Double(draws.filter { $0[2] == 1 }.count) / Double(draws.count)
        #expect(abs(share - 0.619) < 0.03)
        // …and near lr = 1e-3 (within a factor of 10 far more often than the prior alone would be).
        let near = Double(draws.filter { $0[0] > 1e-4 * 1.0001 && $0[0] < 1e-2 }.count) / Double(draws.count)
        #expect(near > 0.6)
    }

    /// On a smooth problem TPE must find better points than random draws with the same budget.
    @Test func tpeBeatsRandomDrawsOnASmoothProblem() throws {
        // The smooth problem and loop GPTests uses too.
        func run(_ algorithm: String, seed: Int) throws -> Double {
            let search = try #require(try parse(GPTests.smooth(seed: seed, algorithm: algorithm, trials: 40)).search)
            return GPTests.best(try GPTests.run(search, trials: 40, GPTests.value))
        }
        let seeds = 0..<9
        let tpe = try seeds.map { try run("tpe", seed: $0) }.sorted()
        let random = try seeds.map { try run("random", seed: $0) }.sorted()
        #expect(tpe[4] < random[4], "median best: TPE \(tpe[4]) vs random \(random[4])")
    }
}
