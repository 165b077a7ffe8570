import Foundation
import Learning
import Linalg
import Sweeps
import Testing

/// `algorithm: gp`: the Gaussian process against a dense solve written out here, the likelihood's
/// gradient against finite differences, log EI against its formula and in the far tail, and the
/// sampler on a smooth problem, a conditional space and running trials.
@Suite struct GPTests {
    // MARK: Reference by the definitions

    /// x solving a·x = b by Gaussian elimination with partial pivoting, and log |det a|.
    static func denseSolve(_ a: [[Double]], _ b: [Double]) -> (x: [Double], logDet: Double) {
        var m = a, x = b, logDet = 0.0
        let n = b.count
        for col in 0..<n {
            let p = (col..<n).max { abs(m[$0][col]) < abs(m[$1][col]) }!
            m.swapAt(col, p)
            x.swapAt(col, p)
            logDet += log(abs(m[col][col]))
            for r in (col + 1)..<n {
                let f = m[r][col] / m[col][col]
                for c in col..<n { m[r][c] -= f * m[col][c] }
                x[r] -= f * x[col]
            }
        }
        for r in stride(from: n - 1, through: 0, by: -1) {
            for c in (r + 1)..<n { x[r] -= m[r][c] * x[c] }
            x[r] /= m[r][r]
        }
        return (x, logDet)
    }

    /// Matérn 5/2 written from its textbook form: s·(1 + √5·r + 5r²/3)·exp(−√5·r).
    static func kernel(_ a: [Double], _ b: [Double], _ categorical: [Bool], _ h: GP.Hyperparameters) -> Double {
        var r2 = 0.0
        for d in a.indices {
            let diff = categorical[d] ? (a[d] == b[d] ? 0 : 1) : a[d] - b[d]
            r2 += diff * diff * h.inverseSquaredLengthscales[d]
        }
        let r = r2.squareRoot()
        return h.signalVariance * (1 + 5.0.squareRoot() * r + 5 * r2 / 3) * exp(-5.0.squareRoot() * r)
    }

    /// 12 points in 3 dimensions (the last categorical, 3 choices) and a smooth value.
    static func data() -> GP.Data {
        var rng = Xoshiro256(seed: 11, stream: "gp-test")
        var x: [[Double]] = [], y: [Double] = []
        for _ in 0..<12 {
            let p = [rng.nextUnit(), rng.nextUnit(), Double(Int(rng.nextUnit() * 3))]
            x.append(p)
            y.append(sin(6 * p[0]) + (p[1] - 0.3) * (p[1] - 0.3) + 0.5 * p[2] - 0.7)
        }
        return GP.Data(x: x, y: y, categorical: [false, false, true])
    }

    static let hyper = GP.Hyperparameters(inverseSquaredLengthscales: [4, 0.5, 2], signalVariance: 1.3, noiseVariance: 0.01)

    @Test func posteriorEqualsADenseSolve() throws {
        let data = Self.data(), h = Self.hyper
        let model = try GP.Model(data, h)
        let n = data.y.count
        var c = (0..<n).map { i in (0..<n).map { j in Self.kernel(data.x[i], data.x[j], data.categorical, h) } }
        for i in 0..<n { c[i][i] += h.noiseVariance }
        let alpha = Self.denseSolve(c, data.y).x
        let points = [[0.1, 0.9, 0], [0.5, 0.5, 2], [0.77, 0.01, 1], data.x[3]]
        for (p, (mean, variance)) in zip(points, model.posterior(points)) {
            let k = data.x.map { Self.kernel(p, $0, data.categorical, h) }
            let expectedMean = zip(k, alpha).reduce(0) { $0 + $1.0 * $1.1 }
            let ck = Self.denseSolve(c, k).x
            let expectedVariance = h.signalVariance - zip(k, ck).reduce(0) { $0 + $1.0 * $1.1 }
            #expect(abs(mean - expectedMean) <= 1e-10, "mean at \(p): \(mean) vs \(expectedMean)")
            #expect(abs(variance - expectedVariance) <= 1e-10, "variance at \(p): \(variance) vs \(expectedVariance)")
        }
        // At a training point the variance is about the noise's, far below the prior's.
        #expect(model.posterior([data.x[3]])[0].variance < 2 * h.noiseVariance)
    }

    @Test func logMarginalLikelihoodAndItsGradientAreRight() throws {
        let data = Self.data(), h = Self.hyper
        let n = data.y.count
        var c = (0..<n).map { i in (0..<n).map { j in Self.kernel(data.x[i], data.x[j], data.categorical, h) } }
        for i in 0..<n { c[i][i] += h.noiseVariance }
        let (alpha, logDet) = Self.denseSolve(c, data.y)
        let expected = -0.5 * zip(data.y, alpha).reduce(0) { $0 + $1.0 * $1.1 } - 0.5 * logDet - 0.5 * Double(n) * log(2 * Double.pi)
        let (value, gradient) = try GP.logMarginalLikelihood(data, h)
        #expect(abs(value - expected) <= 1e-9 * abs(expected), "\(value) vs \(expected)")
        // Central differences in the raw (log) parameters.
        let raw = h.raw
        for k in raw.indices {
            let eps = 1e-5
            var plus = raw, minus = raw
            plus[k] += eps
            minus[k] -= eps
            let fd = (try GP.logMarginalLikelihood(data, GP.Hyperparameters(raw: plus)).value - GP.logMarginalLikelihood(data, GP.Hyperparameters(raw: minus)).value) / (2 * eps)
            #expect(abs(gradient[k] - fd) <= 1e-6 * max(1, abs(fd)), "∂/∂raw[\(k)]: \(gradient[k]) vs \(fd)")
            let pfd = (GP.logPrior(GP.Hyperparameters(raw: plus)).value - GP.logPrior(GP.Hyperparameters(raw: minus)).value) / (2 * eps)
            #expect(abs(GP.logPrior(h).gradient[k] - pfd) <= 1e-6 * max(1, abs(pfd)), "prior ∂/∂raw[\(k)]")
        }
        // Fitting raises likelihood + prior above both of its starts'.
        let fitted = GP.fitHyperparameters(data)
        func objective(_ h: GP.Hyperparameters) throws -> Double { try GP.logMarginalLikelihood(data, h).value + GP.logPrior(h).value }
        let ones = GP.Hyperparameters(inverseSquaredLengthscales: [1, 1, 1], signalVariance: 1, noiseVariance: 1)
        #expect(try objective(fitted) > objective(ones) && objective(fitted) > objective(h))
    }

    @Test func logExpectedImprovementIsRightAndFiniteInTheFarTail() {
        func direct(_ z: Double) -> Double {
            let cdf = 0.5 * erfc(-z / 2.0.squareRoot()), pdf = exp(-0.5 * z * z) / (2 * Double.pi).squareRoot()
            return log(z * cdf + pdf)
        }
        for z in [-20.0, -5, -1.5, -0.3, 0, 0.4, 2, 7, 40] {
            #expect(abs(GP.standardLogEI(z) - direct(z)) <= 1e-12 * max(1, abs(direct(z))), "z = \(z)")
        }
        // Beyond −25 the series takes over; the closed form still holds (with cancellation) there.
        for z in [-25.5, -28.0, -33.0] {
            #expect(abs(GP.standardLogEI(z) - direct(z)) <= 1e-9 * abs(direct(z)), "z = \(z): \(GP.standardLogEI(z)) vs \(direct(z))")
        }
        // Far out: finite, increasing, and log φ(z) − 2·log|z| to leading order.
        var previous = -Double.infinity
        for z in [-1e150, -1e100, -1e10, -1e6, -1e3, -100, -40, -25.0000001, -25] {
            let v = GP.standardLogEI(z)
            #expect(v.isFinite && v > previous, "z = \(z): \(v)")
            previous = v
        }
        let z = -1e3
        #expect(abs(GP.standardLogEI(z) - (-0.5 * z * z - 0.5 * log(2 * Double.pi) - 2 * log(-z))) < 1e-5)
        // With a posterior: log EI(μ, σ², best) = log σ + log EI((μ − best)/σ).
        #expect(abs(GP.logEI(mean: 1, variance: 4, best: 2) - (log(2) + direct(-0.5))) < 1e-12)
        #expect(GP.logEI(mean: -3, variance: 0, best: 2).isFinite)
    }

    // MARK: The sampler

    func parse(_ text: String) throws -> Sweep { try SweepFile.parse(yaml: text, source: "s.yaml") }

    static func smooth(seed: Int, algorithm: String, trials: Int) -> String {
        """
        name: s
        seed: \(seed)
        search:
          algorithm: \(algorithm)
          trials: \(trials)
          params: {lr: {loguniform: [1.0e-5, 1.0]}, momentum: {uniform: [0.0, 0.99]}}
        base: {model: quadratic, steps: 20, optimizer: sgd}
        """
    }

    /// Best near lr = 1e-2, momentum = 0.6.
    static func value(_ t: Trial) -> Double {
        let lr = t.config.values["lr"]!.asDouble!, m = t.config.values["momentum"]!.asDouble!
        return pow(log10(lr) + 2, 2) + 4 * pow(m - 0.6, 2)
    }

    static func run(_ search: Search, trials: Int, _ f: (Trial) -> Double) throws -> [Search.Record] {
        var history: [Search.Record] = []
        for n in 0..<trials {
            let t = try search.suggest(number: n, history: history) { id in history.contains { $0.trial.id == id } }
            history.append(Search.Record(trial: t, outcome: .complete(f(t))))
        }
        return history
    }

    static func best(_ history: [Search.Record]) -> Double {
        history.compactMap { if case .complete(let v) = $0.outcome { v } else { nil } }.min()!
    }

    @Test func gpBeatsRandomDrawsOnASmoothProblem() throws {
        let seeds = 0..<7
        let gp = try seeds.map { s in Self.best(try Self.run(try #require(try parse(Self.smooth(seed: s, algorithm: "gp", trials: 30)).search), trials: 30, Self.value)) }.sorted()
        let random = try seeds.map { s in Self.best(try Self.run(try #require(try parse(Self.smooth(seed: s, algorithm: "random", trials: 30)).search), trials: 30, Self.value)) }
            .sorted()
        print("median best after 30 trials over \(seeds.count) seeds: GP \(gp[3]), random \(random[3])")
        #expect(gp[3] < random[3] / 10, "median best: GP \(gp[3]) vs random \(random[3])")
    }

    @Test func suggestionsAreDeterministicAndRunningTrialsAreBelieved() throws {
        let search = try #require(try parse(Self.smooth(seed: 3, algorithm: "gp", trials: 20)).search)
        let history = try Self.run(search, trials: 12, Self.value)
        let a = try search.suggest(number: 12, history: history) { _ in false }
        let b = try search.suggest(number: 12, history: history) { _ in false }
        #expect(a.id == b.id)
        // The same suggestion once `a` runs would be next to it: the believer steers elsewhere.
        let withRunning = history + [Search.Record(trial: a, outcome: .running)]
        let c = try search.suggest(number: 13, history: withRunning) { _ in false }
        let lrA = log10(a.config.values["lr"]!.asDouble!), lrC = log10(c.config.values["lr"]!.asDouble!)
        let mA = a.config.values["momentum"]!.asDouble!, mC = c.config.values["momentum"]!.asDouble!
        #expect(abs(lrA - lrC) / 5 + abs(mA - mC) / 0.99 > 0.01, "a: \(a.config.canonicalJSON), c: \(c.config.canonicalJSON)")
        // A pruned or failed trial is not modelled; a divergence is (at the worst value), and the
        // sampler goes on.
        let noisy = history + [Search.Record(trial: a, outcome: .complete(.nan))]
        _ = try search.suggest(number: 13, history: noisy) { _ in false }
    }

    @Test func aConditionalSpaceChoosesAnEntryAndSamplesItsOwnKeys() throws {
        let text = """
            name: s
            seed: 5
            objective: {metric: train_loss, mode: min}
            search:
              algorithm: gp
              trials: 30
              startup_trials: 6
              params:
                lr: {loguniform: [1.0e-4, 1.0e-1]}
            base: {model: quadratic, steps: 20}
            optimizers:
              adam:
                search: {params: {beta1: {uniform: [0.5, 0.99]}}}
              sgd:
                base: {nesterov: false}
                search: {params: {momentum: {choice: [0.0, 0.5, 0.9]}, warmup_steps: {randint: [1, 19]}}}
            """
        let search = try #require(try parse(text).search)
        // sgd is better everywhere, best at lr = 1e-2, momentum 0.9.
        let history = try Self.run(search, trials: 30) { t in
            let lr = log10(t.config.values["lr"]!.asDouble!)
            if t.branch == "adam" { return 3 + pow(lr + 2, 2) }
            return pow(lr + 2, 2) + (0.9 - t.config.values["momentum"]!.asDouble!)
        }
        for r in history {
            let keys = Set(r.trial.config.values.keys)
            #expect(keys.contains(r.trial.branch == "adam" ? "beta1" : "momentum"))
            #expect(!keys.contains(r.trial.branch == "adam" ? "momentum" : "beta1"))
            try r.trial.config.validate()
        }
        let later = history.dropFirst(10)
        #expect(later.filter { $0.trial.branch == "sgd" }.count >= 15, "\(later.map(\.trial.branch))")
        #expect(Self.best(history) < 0.05, "best \(Self.best(history))")
    }

    @Test func gpSettingsParse() throws {
        let ok = try #require(try parse(Self.smooth(seed: 1, algorithm: "gp", trials: 10).replacingOccurrences(of: "  trials: 10", with: "  trials: 10\n  startup_trials: 4")).search)
        #expect(ok.algorithm == .gp)
        do {
            _ = try parse(Self.smooth(seed: 1, algorithm: "gp", trials: 10).replacingOccurrences(of: "  trials: 10", with: "  trials: 10\n  candidates: 4"))
            Issue.record("candidates accepted with gp")
        } catch let e as ConfigError {
            #expect(e.message.contains("algorithm tpe") && e.location.line == 6)
        }
        do {
            _ = try parse(Self.smooth(seed: 1, algorithm: "random", trials: 10).replacingOccurrences(of: "  trials: 10", with: "  trials: 10\n  startup_trials: 4"))
            Issue.record("startup_trials accepted with random")
        } catch let e as ConfigError {
            #expect(e.key == "startup_trials")
        }
    }
}
