import Foundation
import Learning
import Linalg
import Testing

/// The fields of `new_zoo.json` and `adamw8bit.json` beyond `OptimizerFixture`'s (written by
/// `Fixtures/generate_new_zoo.py`).
struct NewZooExtras: Decodable {
    struct Case: Decodable {
        let name: String
        /// Sophia: the 1-based steps after which the authors' loop estimated the Hessian.
        let hessian_steps: [Int]?
        /// Schedule-free: the steps after which eval() was called, and x there.
        let evaluation_steps: [Int]?
        let evaluation: [String: [[Double]]]?
        /// 8-bit AdamW: the reference's state after the last step, and bitsandbytes' own run.
        let state: [String: [String: [Double]]]?
        let bnb: BitsAndBytes?
    }
    struct BitsAndBytes: Decodable {
        let parameters: [String: [Double]]
        let state: [String: [String: [Double]]]
    }
    let hessian_gradients: [String: [[Double]]]?
    let hessian_batch_sizes: [Int]?
    let signed_map: [Double]?
    let unsigned_map: [Double]?
    let cases: [Case]

    static func load(_ file: String) -> (OptimizerFixture, NewZooExtras) {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(file)")
        let data = try! Data(contentsOf: url)
        return (try! JSONDecoder().decode(OptimizerFixture.self, from: data), try! JSONDecoder().decode(NewZooExtras.self, from: data))
    }
}

/// A fixture and the loop that drives an optimizer through it as the reference's loop did:
/// Sophia's Hessian estimates after the steps it asks for (with the fixture's sampled-label
/// gradients and batch sizes), schedule-free's eval()/train() after the fixture's steps.
struct DrivenFixture {
    let fixture: OptimizerFixture
    let extras: NewZooExtras

    func find(_ name: String) -> (OptimizerFixture.Case, NewZooExtras.Case) {
        (fixture.cases.first { $0.name == name }!, extras.cases.first { $0.name == name }!)
    }

    func make<T: BLASScalar>(_ c: OptimizerFixture.Case, _: T.Type) throws -> any Optimizer<T> {
        let config = fixture.config(c)
        try config.validate()
        return try Builders.optimizer(config)
    }

    /// Steps `range` (0-based), calling `check(step, evaluationPoint)` after each with the
    /// parameters at the training point (and the evaluation point when the fixture has one there).
    func drive<T: BLASScalar>(
        _ optimizer: any Optimizer<T>, _ params: Parameters<T>, _ extra: NewZooExtras.Case, steps range: Range<Int>,
        check: (Int, [Tensor<T>]?) -> Void = { _, _ in }
    ) {
        for step in range {
            fixture.setGradients(params, step: step)
            optimizer.update(params)
            if let sophia = optimizer as? any HessianEstimating<T>, sophia.wantsHessianEstimate {
                for (i, name) in params.names.enumerated() { params.gradients[i].storage = extras.hessian_gradients![name]![step].map { T($0) } }
                sophia.updateHessian(params, batchSize: extras.hessian_batch_sizes![step])
            }
            var evaluation: [Tensor<T>]?
            if let swapping = optimizer as? any EvaluationPointSwapping<T>, extra.evaluation_steps?.contains(step + 1) == true {
                swapping.useEvaluationPoint(params)
                evaluation = params.values
                swapping.useTrainingPoint(params)
            }
            check(step, evaluation)
        }
    }
}

/// Sophia (the authors' SophiaG), Schedule-Free AdamW (schedulefree.AdamWScheduleFree) and
/// 8-bit AdamW (bitsandbytes' AdamW8bit) against their references.
///
/// Tolerances, for Sophia and Schedule-Free: Double 1e-9 relative at every step (floor 1e-3; the
/// references run in float64, the same operations in the same order), Float 1e-5 relative on the
/// last step (floor 1e-1), the evaluation points likewise.
///
/// 8-bit AdamW in Double against the float64 reference: 1e-9 at every step too, and every code
/// equal after the last step. That is possible because both compute the same operations in
/// float64, so a code could only differ where a moment lies within rounding (1e-16) of a midpoint
/// between two codes. In Float the moments differ from float64 by ~1e-7 relative, enough to tip
/// an occasional value across a midpoint; a code that moves by one changes that element's moment
/// by one step of the code book (≤ 1.4% of the block maximum) and its update by up to that
/// fraction of lr. So in Float: ≥ 99.9% of the codes equal to the reference's, every parameter
/// within 1e-5 relative (floor 1e-1) except elements whose codes moved, which stay within
/// lr × 0.1 (measured worst and counts are printed). Against bitsandbytes' own CPU run (float32,
/// table quantiser, see `AdamW8bit`) the codes agree in ≥ 98% and parameters within lr·0.25.
///
/// Everywhere: export after 5 steps, import into a fresh optimizer and 5 more steps equal 10
/// straight steps bit for bit, in both precisions.
@Suite struct NewZooTests {
    static let zoo: DrivenFixture = {
        let (f, e) = NewZooExtras.load("new_zoo.json")
        return DrivenFixture(fixture: f, extras: e)
    }()
    static let eightBit: DrivenFixture = {
        let (f, e) = NewZooExtras.load("adamw8bit.json")
        return DrivenFixture(fixture: f, extras: e)
    }()
    static let zooCases = zoo.fixture.cases.map(\.name)
    static let eightBitCases = eightBit.fixture.cases.map(\.name)
    static let optimizers = ["sophia", "adamw8bit", "schedule-free-adamw"]

    static func relative(_ got: Double, _ want: Double, floor: Double) -> Double { abs(got - want) / max(abs(want), floor) }

    // MARK: Sophia and Schedule-Free against their references

    @Test(arguments: zooCases)
    func matchesReferenceInDouble(name: String) throws {
        let driven = Self.zoo
        let (c, extra) = driven.find(name)
        let optimizer = try driven.make(c, Double.self)
        #expect(optimizer.name == c.optimizer)
        let params = driven.fixture.parameters(Double.self)
        var worst = 0.0, estimates: [Int] = [], evaluations = 0
        driven.drive(optimizer, params, extra, steps: 0..<driven.fixture.steps) { step, evaluation in
            if let sophia = optimizer as? any HessianEstimating<Double>, sophia.wantsHessianEstimate { estimates.append(step + 1) }
            let tolerance = Tolerance(1e-9, floor: 1e-3)
            worst = max(worst, expectClose(params.values, names: params.names, to: { c.trajectory[$0]![step] }, tolerance, "\(name) step \(step + 1)"))
            if let evaluation {
                let k = extra.evaluation_steps!.firstIndex(of: step + 1)!
                worst = max(worst, expectClose(evaluation, names: params.names, to: { extra.evaluation![$0]![k] }, tolerance, "\(name) x after step \(step + 1)"))
                evaluations += 1
            }
        }
        #expect(optimizer.step == driven.fixture.steps)
        if c.optimizer == "sophia" { #expect(estimates == extra.hessian_steps!, "\(name): the authors' loop estimated after \(extra.hessian_steps!)") }
        if c.optimizer == "schedule-free-adamw" { #expect(evaluations == extra.evaluation_steps!.count) }
        print("new zoo fixture \(name): worst relative error in Double \(worst)")
    }

    @Test(arguments: zooCases)
    func matchesReferenceInFloat(name: String) throws {
        let driven = Self.zoo
        let (c, extra) = driven.find(name)
        let optimizer = try driven.make(c, Float.self)
        let params = driven.fixture.parameters(Float.self)
        var lastEvaluation: [Tensor<Float>]?
        driven.drive(optimizer, params, extra, steps: 0..<driven.fixture.steps) { _, evaluation in lastEvaluation = evaluation ?? lastEvaluation }
        let tolerance = Tolerance(1e-5, floor: 1e-1)
        var worst = expectClose(params.values, names: params.names, to: { c.trajectory[$0]!.last! }, tolerance, name)
        if let x = extra.evaluation {
            worst = max(worst, expectClose(lastEvaluation!, names: params.names, to: { x[$0]!.last! }, tolerance, "\(name) x"))
        }
        print("new zoo fixture \(name): worst relative error in Float \(worst)")
    }

    // MARK: 8-bit AdamW against its references

    /// The code books are bitsandbytes' `create_dynamic_map` bit for bit, and the dynamic map's
    /// formula to within two float32 ulps (bitsandbytes rounds three times in float32: the
    /// linspace, the mean of neighbours, the power of ten).
    @Test func codebooksAreBitsAndBytesDynamicMaps() {
        let extras = Self.eightBit.extras
        #expect(DynamicCodebook.signed.map(Double.init) == extras.signed_map!)
        #expect(DynamicCodebook.unsigned.map(Double.init) == extras.unsigned_map!)
        func formula(signed: Bool) -> [Double] {
            var data: [Double] = [0, 1]
            for i in 0..<7 {
                let n = signed ? (1 << i) + 1 : (1 << (i + 1)) + 1
                let boundaries = (0..<n).map { 0.1 + 0.9 * Double($0) / Double(n - 1) }
                for j in 0..<(n - 1) {
                    let value = Double.pow(10, Double(i - 6)) * (boundaries[j] + boundaries[j + 1]) / 2
                    data.append(value)
                    if signed { data.append(-value) }
                }
            }
            return data.sorted()
        }
        for (table, signed) in [(DynamicCodebook.signed, true), (DynamicCodebook.unsigned, false)] {
            let exact = formula(signed: signed)
            #expect(exact.count == 256)
            for (entry, value) in zip(table, exact) { #expect(abs(Double(entry) - value) <= 2 * Double(entry.ulp), "\(entry) vs \(value)") }
        }
        #expect(DynamicCodebook.signed[127] == 0 && DynamicCodebook.unsigned[0] == 0)
    }

    /// The nearest-code search, against a linear scan over both maps, in both precisions.
    @Test func nearestCodeIsTheNearest() {
        var rng = Xoshiro256(seed: 3, stream: "codes")
        for isSigned in [true, false] {
            let code = (isSigned ? DynamicCodebook.signed : DynamicCodebook.unsigned).map(Double.init)
            // Uniform on [−1.1, 1.1], log-uniform magnitudes down to 1e-8, the codes, their
            // midpoints and the doubles next to them.
            let uniform = (0..<3000).map { _ in rng.nextUnit() * 2.2 - 1.1 }
            let small = (0..<3000).map { i in (i % 2 == 0 ? 1.0 : -1.0) * Double.pow(10, -8 * rng.nextUnit()) }
            let midpoints = (0..<255).map { (code[$0] + code[$0 + 1]) / 2 }
            let neighbours = (code + midpoints).flatMap { [$0.nextDown, $0.nextUp] }
            for x in uniform + small + code + midpoints + neighbours + [-1, 0, 1, 1e-9, -1e-9] {
                let clamped = min(max(x, -1), 1)
                let best = code.indices.min { abs(code[$0] - clamped) < abs(code[$1] - clamped) }!
                // `best` is the lowest index at the least distance: ties go to the lower code.
                #expect(Int(DynamicCodebook.nearestIndex(x, signed: isSigned)) == best, "\(x)")
                let f = Float(x), cf = Int(DynamicCodebook.nearestIndex(f, signed: isSigned))
                let fc = (isSigned ? DynamicCodebook.signed : DynamicCodebook.unsigned), fClamped = min(max(f, -1), 1)
                let bestF = fc.indices.min { abs(fc[$0] - fClamped) < abs(fc[$1] - fClamped) }!
                #expect(cf == bestF, "Float \(f)")
            }
            #expect(DynamicCodebook.nearestIndex(Double.nan, signed: isSigned) == 0)
        }
    }

    static func codes(_ state: OptimizerState<some BLASScalar>, _ name: String) -> [UInt8]? {
        guard case .uint8(let v, _)? = state[name] else { return nil }
        return v
    }

    static func reals<T: BLASScalar>(_ state: OptimizerState<T>, _ name: String) -> [Double]? {
        guard case .real(let t)? = state[name] else { return nil }
        return t.storage.map { Double($0) }
    }

    @Test(arguments: eightBitCases)
    func eightBitMatchesReferenceInDouble(name: String) throws {
        let driven = Self.eightBit
        let (c, extra) = driven.find(name)
        let optimizer = try driven.make(c, Double.self)
        let params = driven.fixture.parameters(Double.self)
        var worst = 0.0
        driven.drive(optimizer, params, extra, steps: 0..<driven.fixture.steps) { step, _ in
            let error = expectClose(params.values, names: params.names, to: { c.trajectory[$0]![step] }, Tolerance(1e-9, floor: 1e-3), "\(name) step \(step + 1)")
            worst = max(worst, error)
        }
        // The state after the last step: every code equal, maxima and 32-bit moments to 1e-9.
        let state = optimizer.exportState(names: params.names)
        var quantized = 0
        for pname in params.names {
            for (key, want) in extra.state![pname]! {
                if key.hasPrefix("state"), let got = Self.codes(state, "\(pname)/\(key)") {
                    quantized += 1
                    #expect(got.map(Double.init) == want, "\(name) \(pname)/\(key): codes differ")
                } else {
                    let got = try #require(Self.reals(state, "\(pname)/\(key)"), "\(name) \(pname)/\(key) missing")
                    #expect(got.count == want.count)
                    for (a, b) in zip(got, want) { #expect(abs(a - b) <= 1e-9 * max(abs(b), 1e-12), "\(name) \(pname)/\(key): \(a) vs \(b)") }
                }
            }
        }
        let minimum = try driven.fixture.config(c).int("min_8bit_size", default: 4096)
        #expect(quantized == 2 * params.values.filter { $0.count >= minimum }.count)
        print("adamw8bit fixture \(name): worst relative error in Double \(worst), \(quantized) quantised moments with every code equal")
    }

    /// Float against the float64 reference and against bitsandbytes itself (see the suite's
    /// comment for the tolerances).
    @Test(arguments: eightBitCases)
    func eightBitMatchesReferenceInFloat(name: String) throws {
        let driven = Self.eightBit
        let (c, extra) = driven.find(name)
        let optimizer = try driven.make(c, Float.self)
        let params = driven.fixture.parameters(Float.self)
        driven.drive(optimizer, params, extra, steps: 0..<driven.fixture.steps)
        let lr = try driven.fixture.config(c).double("lr", default: 1e-3)
        let state = optimizer.exportState(names: params.names)
        // Codes against the reference and against bitsandbytes.
        var (equal, equalBnb, total) = (0, 0, 0)
        var moved: [String: Set<Int>] = [:]
        for pname in params.names {
            for key in ["state1", "state2"] {
                guard let got = Self.codes(state, "\(pname)/\(key)") else { continue }
                let want = extra.state![pname]![key]!, bnb = extra.bnb!.state[pname]![key]!
                for j in got.indices {
                    total += 1
                    if Double(got[j]) == want[j] { equal += 1 } else { moved[pname, default: []].insert(j) }
                    if Double(got[j]) == bnb[j] { equalBnb += 1 }
                }
            }
        }
        if total > 0 {
            #expect(Double(equal) >= 0.999 * Double(total), "\(name): \(equal) of \(total) codes equal to the reference's")
            #expect(Double(equalBnb) >= 0.98 * Double(total), "\(name): \(equalBnb) of \(total) codes equal to bitsandbytes'")
        }
        var (worst, worstMoved, worstBnb) = (0.0, 0.0, 0.0)
        for (i, pname) in params.names.enumerated() {
            let want = c.trajectory[pname]!.last!, bnb = extra.bnb!.parameters[pname]!
            for (j, got) in params.values[i].storage.enumerated() {
                let error = Self.relative(Double(got), want[j], floor: 1e-1)
                if moved[pname]?.contains(j) == true {
                    worstMoved = max(worstMoved, abs(Double(got) - want[j]))
                    #expect(abs(Double(got) - want[j]) <= 0.1 * lr, "\(name) \(pname)[\(j)] (code moved): \(got) vs \(want[j])")
                } else {
                    worst = max(worst, error)
                    #expect(error <= 1e-5, "\(name) \(pname)[\(j)]: \(got) vs \(want[j])")
                }
                worstBnb = max(worstBnb, abs(Double(got) - bnb[j]))
                #expect(abs(Double(got) - bnb[j]) <= 0.25 * lr, "\(name) \(pname)[\(j)] vs bitsandbytes: \(got) vs \(bnb[j])")
            }
        }
        print(
            "adamw8bit fixture \(name) in Float: codes \(equal)/\(total) equal to the reference (\(equalBnb) to bitsandbytes'); "
                + "worst relative error \(worst) (elements with unmoved codes), \(worstMoved) absolute where a code moved, \(worstBnb) absolute against bitsandbytes")
    }

    // MARK: Exact resume

    func resumesExactly<T: BLASScalar>(_ driven: DrivenFixture, _ name: String, _: T.Type) throws {
        let (c, extra) = driven.find(name)
        try expectExactResume(name, make: { try driven.make(c, T.self) }, parameters: { driven.fixture.parameters(T.self) }) { optimizer, p, k in
            driven.drive(optimizer, p, extra, steps: k..<(k + 1))
        }
    }

    /// 5 steps, export, import into a fresh optimizer, 5 more = 10 straight, bit for bit (with the
    /// Hessian estimates and evaluation swaps of the fixture's loop).
    @Test(arguments: zooCases + eightBitCases)
    func exportImportResumesExactly(name: String) throws {
        let driven = Self.zooCases.contains(name) ? Self.zoo : Self.eightBit
        try resumesExactly(driven, name, Float.self)
        try resumesExactly(driven, name, Double.self)
    }

    // MARK: Catalog and validation

    @Test func everyOptimizerIsCatalogedAndHasFixtures() throws {
        for name in Self.optimizers {
            #expect(OptimizerCatalog.definition(name) != nil, "\(name) is not in the catalog")
            #expect((Self.zoo.fixture.cases + Self.eightBit.fixture.cases).contains { $0.optimizer == name }, "\(name) has no fixture")
            let config = TrialConfig(values: ["model": .string("quadratic"), "optimizer": .string(name)])
            try config.validate()
            let optimizer: any Optimizer<Float> = try Builders.optimizer(config)
            #expect(optimizer.name == name)
        }
        let sophia: any Optimizer<Double> = try Self.optimizer("sophia")
        #expect(sophia is any HessianEstimating<Double>)
        let scheduleFree: any Optimizer<Double> = try Self.optimizer("schedule-free-adamw")
        #expect(scheduleFree is any EvaluationPointSwapping<Double>)
    }

    static func optimizer<T: BLASScalar>(_ name: String, _ extra: [String: ConfigValue] = [:], _: T.Type = Double.self) throws -> any Optimizer<T> {
        var values: [String: ConfigValue] = ["model": .string("quadratic"), "optimizer": .string(name)]
        for (k, v) in extra { values[k] = v }
        let config = TrialConfig(values: values)
        try config.validate()
        return try Builders.optimizer(config)
    }

    @Test func invalidHyperparametersAreRejected() {
        let bad: [(String, [String: ConfigValue], String)] = [
            ("sophia", ["hessian_interval": .int(0)], "hessian_interval"),
            ("sophia", ["bs": .int(0)], "bs"),
            ("sophia", ["bs": .double(1.5)], "bs"),
            ("sophia", ["rho": .double(-0.1)], "rho"),
            ("sophia", ["maximize": .string("yes")], "maximize"),
            ("sophia", ["beta2": .double(1)], "beta2"),
            ("adamw8bit", ["min_8bit_size": .int(0)], "min_8bit_size"),
            ("adamw8bit", ["eps": .double(-1)], "eps"),
            ("adamw8bit", ["weight_decay": .double(-0.1)], "weight_decay"),
            ("schedule-free-adamw", ["sf_warmup_steps": .int(-1)], "sf_warmup_steps"),
            ("schedule-free-adamw", ["beta1": .double(0)], "beta1"),
            ("schedule-free-adamw", ["betas": .list([.double(0), .double(0.9)])], "betas"),
            ("schedule-free-adamw", ["weight_lr_power": .double(-1)], "weight_lr_power"),
            ("schedule-free-adamw", ["warmup_step": .int(3)], "warmup_step"),
        ]
        for (optimizer, extra, key) in bad {
            var values: [String: ConfigValue] = ["model": .string("quadratic"), "optimizer": .string(optimizer)]
            for (k, v) in extra { values[k] = v }
            do {
                try TrialConfig(values: values).validate()
                Issue.record("\(optimizer) \(extra) was accepted")
            } catch let error as ConfigError {
                #expect(error.key == key, "\(optimizer) \(extra): \(error)")
            } catch {
                Issue.record("\(optimizer) \(extra): \(error)")
            }
        }
    }

    // MARK: Sophia's hooks

    /// The authors' loop estimates after iteration iter_num when iter_num % k == k − 1; with our
    /// 1-based step counter that is after steps k, 2k, ….
    @Test func sophiaAsksForEstimatesAfterEveryKthStep() throws {
        let sophia = try #require(try Self.optimizer("sophia", ["hessian_interval": .int(3)]) as? any HessianEstimating<Double>)
        let p = ZooTests.vectorAndMatrix(Double.self)
        #expect(!sophia.wantsHessianEstimate)
        var asked: [Int] = []
        for step in 1...10 {
            p.gradients = [Tensor(vector: [0.1, -0.2, 0.3]), Tensor(shape: [2, 3], storage: [0.3, 0.1, -0.2, 0.4, -0.5, 0.6])]
            sophia.update(p)
            if sophia.wantsHessianEstimate { asked.append(step) }
        }
        #expect(asked == [3, 6, 9])
        let everyStep = try #require(try Self.optimizer("sophia", ["hessian_interval": .int(1)]) as? any HessianEstimating<Double>)
        everyStep.update(p)
        #expect(everyStep.wantsHessianEstimate)
    }

    /// The `bs` of the update is the latest estimate's batch size (or the trial's fixed `bs`), and
    /// is part of the state; it scales the clipping threshold ρ·bs·h exactly as the authors' step.
    @Test func sophiaKeepsTheEstimatesBatchSize() throws {
        let g: [Double] = [0.3, 0.1, -0.2, 0.4, -0.5, 0.6], hg: [Double] = [2, -1, 0.5, 0.05, 3, -0.4]
        for fixed in [nil, 5120] as [Int?] {
            let extra: [String: ConfigValue] = fixed.map { ["bs": .int($0)] } ?? [:]
            let sophia = try #require(
                try Self.optimizer("sophia", extra.merging(["lr": .double(0.1), "weight_decay": .double(0), "rho": .double(0.05)]) { a, _ in a }) as? any HessianEstimating<Double>)
            let p = Parameters<Double>([(name: "w", value: Tensor(zeros: [2, 3]))])
            p.gradients[0].storage = hg
            sophia.updateHessian(p, batchSize: 40)
            #expect(try sophia.exportState(names: p.names).integer("bs") == (fixed ?? 40))
            p.gradients[0].storage = g
            sophia.update(p)
            // m = (1 − β₁)·g, h = (1 − β₂)·ĝ², ratio = min(|m| / (ρ·bs·h + 1e-15), 1).
            let bs = Double(fixed ?? 40)
            let expected = zip(g, hg).map { gj, hj -> Double in
                let m = 0.965 * 0 + (1 - 0.965) * gj, h = 0.99 * 0 + (1 - 0.99) * hj * hj
                let ratio = min(abs(m) / (0.05 * bs * h + 1e-15), 1)
                return 0 * (1 - 0.1 * 0) + -0.1 * (m > 0 ? 1 : -1) * ratio
            }
            #expect(p.values[0].storage == expected, "bs \(bs)")
            let below = zip(g, hg).filter { abs((1 - 0.965) * $0) < 0.05 * bs * (1 - 0.99) * $1 * $1 }.count
            #expect(below > 0 && (fixed != nil || below < g.count), "bs \(bs): \(below) of \(g.count) ratios below 1")
        }
    }

    // MARK: Schedule-Free's evaluation point

    /// eval()/train() move only when needed; an update at the evaluation point first returns to
    /// the training point; the mode is part of the state.
    @Test func scheduleFreeSwapsAreIdempotentAndUpdatesReturnToTraining() throws {
        let make = { try #require(try Self.optimizer("schedule-free-adamw", ["lr": .double(0.05)]) as? any EvaluationPointSwapping<Double>) }
        let a = try make(), b = try make()
        let p = ZooTests.vectorAndMatrix(Double.self), q = ZooTests.vectorAndMatrix(Double.self)
        let grads = [Tensor<Double>(vector: [0.1, -0.2, 0.3]), Tensor(shape: [2, 3], storage: [0.3, 0.1, -0.2, 0.4, -0.5, 0.6])]
        // Before any step there is no z: eval is a no-op on the values.
        a.useEvaluationPoint(p)
        #expect(p.values == q.values)
        a.useTrainingPoint(p)
        for o in [a, b] {
            let params = o === a ? p : q
            params.gradients = grads
            o.update(params)
            params.gradients = grads
            o.update(params)
        }
        a.useEvaluationPoint(p)
        let x = p.values
        a.useEvaluationPoint(p)
        #expect(p.values == x, "a second eval moved the parameters")
        #expect(p.values != q.values, "eval did not move the parameters")
        #expect(try a.exportState(names: p.names).integer("train_mode") == 0)
        // Updating at x: a first returns to y (as b does explicitly).
        b.useEvaluationPoint(q)
        b.useTrainingPoint(q)
        p.gradients = grads
        a.update(p)
        q.gradients = grads
        b.update(q)
        #expect(p.values == q.values)
        #expect(a.exportState(names: p.names) == b.exportState(names: q.names))
    }

    // MARK: Edge cases

    /// Zero gradients from the first step leave the parameters where they are (no weight decay),
    /// 8-bit states included (an all-zero block keeps absmax 0), and a zero gradient after real
    /// ones keeps them finite.
    @Test(arguments: optimizers)
    func zeroGradientsLeaveParametersStill(name: String) throws {
        let extra: [String: ConfigValue] = ["weight_decay": .double(0), "lr": .double(0.01)].merging(name == "adamw8bit" ? ["min_8bit_size": .int(4)] : [:]) { a, _ in a }
        let optimizer = try Self.optimizer(name, extra)
        let params = ZooTests.vectorAndMatrix(Double.self)
        let start = params.values
        for _ in 0..<3 {
            params.zeroGradients()
            optimizer.update(params)
            (optimizer as? any HessianEstimating<Double>)?.updateHessian(params, batchSize: 8)
        }
        #expect(params.values == start, "\(name) moved a parameter without gradient")
        let later = try Self.optimizer(name, extra)
        let p = ZooTests.vectorAndMatrix(Double.self)
        p.gradients = [Tensor(vector: [0.1, -0.2, 0.3]), Tensor(shape: [2, 3], storage: [0.3, 0.1, -0.2, 0.4, -0.5, 0.6])]
        later.update(p)
        (later as? any HessianEstimating<Double>)?.updateHessian(p, batchSize: 8)
        p.zeroGradients()
        later.update(p)
        #expect(p.valuesFinite, "\(name)")
    }

    /// A NaN in a gradient (or in Sophia's sampled-label gradient) does not crash and surfaces in
    /// the parameters, so the training loop reports the trial diverged — for 8-bit and 32-bit
    /// moments alike.
    @Test(arguments: optimizers + ["adamw8bit-quantized"])
    func nanGradientPropagatesWithoutCrashing(name: String) throws {
        func check<T: BLASScalar>(_: T.Type) throws {
            let extra: [String: ConfigValue] = name == "adamw8bit-quantized" ? ["min_8bit_size": .int(1)] : [:]
            let optimizer: any Optimizer<T> = try Self.optimizer(name == "adamw8bit-quantized" ? "adamw8bit" : name, extra, T.self)
            let p = ZooTests.vectorAndMatrix(T.self)
            p.gradients = [Tensor(vector: [0.1, -0.2, 0.3]), Tensor(shape: [2, 3], storage: [0.3, 0.1, -0.2, 0.4, -0.5, 0.6])]
            optimizer.update(p)
            p.gradients[0].storage[1] = .nan
            p.gradients[1].storage[2] = .nan
            optimizer.update(p)
            #expect(!p.values[0].storage.allSatisfy { $0.isFinite }, "\(name) in \(T.self) hid a NaN gradient of the vector")
            #expect(!p.values[1].storage.allSatisfy { $0.isFinite }, "\(name) in \(T.self) hid a NaN gradient of the matrix")
            optimizer.update(p)  // and once more with the NaN in the state
            if let sophia = optimizer as? any HessianEstimating<T> {
                let q = ZooTests.vectorAndMatrix(T.self)
                let fresh: any Optimizer<T> = try Self.optimizer(name, [:], T.self)
                q.gradients = [Tensor(vector: [0.1, -0.2, 0.3]), Tensor(shape: [2, 3], storage: [.nan, 0.1, -0.2, 0.4, -0.5, 0.6])]
                (fresh as! any HessianEstimating<T>).updateHessian(q, batchSize: 4)
                q.gradients = [Tensor(vector: [0.1, -0.2, 0.3]), Tensor(shape: [2, 3], storage: [0.3, 0.1, -0.2, 0.4, -0.5, 0.6])]
                fresh.update(q)
                #expect(!q.values[1].storage[0].isFinite, "a NaN Hessian estimate was hidden")
                _ = sophia
            }
            _ = optimizer.exportState(names: p.names)
        }
        try check(Float.self)
        try check(Double.self)
    }

    /// 8-bit state is one byte per element plus a maximum per 256, for tensors of at least
    /// `min_8bit_size` (4096 by default) elements; smaller ones keep two full moments.
    @Test func eightBitStateIsQuarterOfAdamW() throws {
        let p = Parameters<Float>([(name: "w", value: Tensor(zeros: [64, 65])), (name: "b", value: Tensor(zeros: [100]))])
        p.gradients = [Tensor(shape: [64, 65], storage: (0..<4160).map { Float(sin(Double($0))) }), Tensor(shape: [100], storage: (0..<100).map { Float(cos(Double($0))) })]
        let optimizer: any Optimizer<Float> = try Self.optimizer("adamw8bit", [:], Float.self)
        optimizer.update(p)
        let blocks = (4160 + 255) / 256
        #expect(optimizer.stateBytes(names: p.names) == 2 * 4160 + 2 * blocks * 4 + 2 * 100 * 4 + 8)
        let state = optimizer.exportState(names: p.names)
        guard case .uint8(let codes, let shape)? = state["w/state1"], case .real(let small)? = state["b/state1"] else {
            Issue.record("unexpected state kinds: \(state.names)")
            return
        }
        #expect(shape == [64, 65] && codes.count == 4160 && small.shape == [100])
        let adamw: any Optimizer<Float> = try Self.optimizer("adamw", [:], Float.self)
        adamw.update(p)
        #expect(Double(optimizer.stateBytes(names: p.names) - 800) < 0.26 * Double(adamw.stateBytes(names: p.names) - 800))
    }

    /// The sharp edge of 8-bit moments, as in bitsandbytes' CUDA kernel: v spans the square of
    /// m's range, so an element whose v is below half the smallest unsigned code (1.6e-7 of its
    /// block's maximum) is stored as 0 while its m is not; if its next gradient is 0, its step is
    /// lr/(1 − β₁²)·β₁·m/ε. (This is why the VAE, whose rarely lit border pixels have tiny and then
    /// zero gradients, diverges at eps 1e-8 and trains at eps 1e-4.)
    @Test func aMomentBelowTheSmallestCodeIsStoredAsZero() throws {
        let optimizer = try Self.optimizer("adamw8bit", ["min_8bit_size": .int(1), "weight_decay": .double(0), "lr": .double(1e-3)])
        let p = Parameters<Double>([(name: "w", value: Tensor(zeros: [256]))])
        p.gradients[0].storage[0] = 1
        p.gradients[0].storage[1] = 1e-4
        optimizer.update(p)
        let state = optimizer.exportState(names: p.names)
        let m = try #require(Self.codes(state, "w/state1")), v = try #require(Self.codes(state, "w/state2"))
        let absmax1 = try #require(Self.reals(state, "w/absmax1"))[0]
        #expect(v[1] == 0 && DynamicCodebook.unsigned[0] == 0, "v/absmax = 1e-8 should be stored as 0")
        #expect(m[1] > 127, "m/absmax = 1e-4 should keep a positive code")
        let start = p.values[0].storage[1]
        p.gradients[0].storage[1] = 0
        optimizer.update(p)
        let mDequantized = Double(DynamicCodebook.signed[Int(m[1])]) * absmax1
        let expected = start + (-1e-3 / (1 - 0.9 * 0.9)) * ((mDequantized * 0.9 + 0.1 * 0) / (0 / (1 - 0.999 * 0.999).squareRoot() + 1e-8))
        #expect(p.values[0].storage[1] == expected)
        #expect(abs(p.values[0].storage[1] - start) > 1, "a step of lr·m/ε")
    }

    @Test func importRejectsMismatchedState() throws {
        let p = ZooTests.vectorAndMatrix(Double.self)
        p.gradients = [Tensor(vector: [0.1, -0.2, 0.3]), Tensor(shape: [2, 3], storage: [0.3, 0.1, -0.2, 0.4, -0.5, 0.6])]
        for (name, extra) in [("sophia", [:]), ("adamw8bit", [:]), ("adamw8bit", ["min_8bit_size": ConfigValue.int(1)]), ("schedule-free-adamw", [:])] {
            let o = try Self.optimizer(name, extra)
            o.update(p)
            let state = o.exportState(names: p.names)
            let other = Parameters<Double>([(name: "b", value: Tensor(zeros: [4])), (name: "w", value: Tensor(zeros: [3, 2]))])
            #expect(throws: OptimizerStateError.self, "\(name)") { try Self.optimizer(name, extra).importState(state, parameters: other) }
        }
        // Codes where a 32-bit moment is expected (and the reverse) are refused.
        let quantized = try Self.optimizer("adamw8bit", ["min_8bit_size": .int(1)])
        quantized.update(p)
        #expect(throws: OptimizerStateError.self) { try Self.optimizer("adamw8bit").importState(quantized.exportState(names: p.names), parameters: p) }
        let full = try Self.optimizer("adamw8bit")
        full.update(p)
        #expect(throws: OptimizerStateError.self) { try Self.optimizer("adamw8bit", ["min_8bit_size": .int(1)]).importState(full.exportState(names: p.names), parameters: p) }
    }
}
