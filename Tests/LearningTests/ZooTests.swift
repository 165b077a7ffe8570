import Foundation
import Learning
import Linalg
import Testing

/// Adagrad, RMSprop, NAdam, Lion, LAMB, LARS, Adafactor and the documents' SimpleLion and
/// Adafactor against their references (`Fixtures/generate_zoo.py`: torch.optim, transformers,
/// optax, and the Lion/document updates written out in torch).
///
/// Tolerances: Double 1e-9 relative at every step (floor 1e-3; all references run in float64,
/// and only the order of summations in norms and means differs); Float 1e-5 relative on the last
/// step (floor 1e-1). Export after 5 steps, import into a fresh optimizer and 5 more steps must
/// equal 10 straight steps bit for bit, in both precisions.
@Suite struct ZooTests {
    static let fixture = OptimizerFixture.load("zoo.json")
    static let caseNames = fixture.cases.map(\.name)
    static let optimizers = ["adagrad", "rmsprop", "nadam", "lion", "lion-simple", "lamb", "lars", "adafactor", "adafactor-simple"]

    static func find(_ name: String) -> OptimizerFixture.Case { fixture.cases.first { $0.name == name }! }

    static func make<T: BLASScalar>(_ c: OptimizerFixture.Case, _: T.Type) throws -> any Optimizer<T> {
        let config = fixture.config(c)
        try config.validate()
        return try Builders.optimizer(config)
    }

    @Test(arguments: caseNames)
    func matchesReferenceInDouble(name: String) throws {
        let c = Self.find(name), fixture = Self.fixture
        let optimizer = try Self.make(c, Double.self)
        #expect(optimizer.name == c.optimizer)
        let worst = fixture.expectTrajectory(c, optimizer, from: fixture.parameters(Double.self), Tolerance(1e-9, floor: 1e-3), everyStep: true)
        #expect(optimizer.step == fixture.steps)
        print("zoo fixture \(name): worst relative error in Double \(worst)")
    }

    @Test(arguments: caseNames)
    func matchesReferenceInFloat(name: String) throws {
        let c = Self.find(name), fixture = Self.fixture
        let worst = fixture.expectTrajectory(c, try Self.make(c, Float.self), from: fixture.parameters(Float.self), Tolerance(1e-5, floor: 1e-1), everyStep: false)
        print("zoo fixture \(name): worst relative error in Float \(worst)")
    }

    /// 5 steps, export, import into a fresh optimizer, 5 more = 10 straight, bit for bit.
    @Test(arguments: caseNames)
    func exportImportResumesExactly(name: String) throws {
        let c = Self.find(name), fixture = Self.fixture
        try fixture.expectResumesExactly(name, make: { try Self.make(c, Float.self) }, parameters: { fixture.parameters(Float.self) })
        try fixture.expectResumesExactly(name, make: { try Self.make(c, Double.self) }, parameters: { fixture.parameters(Double.self) })
    }

    @Test func everyOptimizerIsCatalogedAndHasFixtures() throws {
        for name in Self.optimizers {
            #expect(OptimizerCatalog.definition(name) != nil, "\(name) is not in the catalog")
            #expect(Self.fixture.cases.contains { $0.optimizer == name }, "\(name) has no fixture")
            // Defaults validate and build.
            let config = TrialConfig(values: ["model": .string("quadratic"), "optimizer": .string(name)])
            try config.validate()
            let optimizer: any Optimizer<Float> = try Builders.optimizer(config)
            #expect(optimizer.name == name)
        }
    }

    // MARK: Edge cases

    static func vectorAndMatrix<T: BLASScalar>(_: T.Type, vector: [T] = [0.5, -1, 2], matrix: [T] = [1, -2, 0.5, 0.25, -0.75, 3]) -> Parameters<T> {
        Parameters([(name: "b", value: Tensor(vector: vector)), (name: "w", value: Tensor(shape: [2, 3], storage: matrix))])
    }

    static func optimizer(_ name: String, _ extra: [String: ConfigValue] = [:]) throws -> any Optimizer<Double> {
        var values: [String: ConfigValue] = ["model": .string("quadratic"), "optimizer": .string(name)]
        for (k, v) in extra { values[k] = v }
        let config = TrialConfig(values: values)
        try config.validate()
        return try Builders.optimizer(config)
    }

    /// Zero gradients from the first step leave the parameters where they are (no weight decay),
    /// and never produce NaN — except the documents' Adafactor on a matrix, whose R / mean(R) is
    /// 0/0 there: it is reproduced exactly (NaN, so a trial would end diverged), see SimpleAdafactor.
    @Test(arguments: optimizers)
    func zeroGradientsLeaveParametersStill(name: String) throws {
        let optimizer = try Self.optimizer(name)
        let params = Self.vectorAndMatrix(Double.self)
        let start = params.values
        for _ in 0..<3 { params.zeroGradients(); optimizer.update(params) }
        #expect(params.values[0] == start[0], "\(name) moved a parameter without gradient")
        if name == "adafactor-simple" {
            #expect(params.values[1].storage.allSatisfy { $0.isNaN })
        } else {
            #expect(params.values[1] == start[1], "\(name) moved a parameter without gradient")
        }
        // After real gradients, a zero gradient is fine for every one of them.
        let later = try Self.optimizer(name)
        let p = Self.vectorAndMatrix(Double.self)
        p.gradients = [Tensor(vector: [0.1, -0.2, 0.3]), Tensor(shape: [2, 3], storage: [0.3, 0.1, -0.2, 0.4, -0.5, 0.6])]
        later.update(p)
        p.zeroGradients()
        later.update(p)
        #expect(p.valuesFinite, "\(name)")
    }

    /// A NaN in a gradient must not crash any optimizer, and must surface in the parameters, so
    /// the training loop's finiteness checks report the trial diverged.
    @Test(arguments: optimizers)
    func nanGradientPropagatesWithoutCrashing(name: String) throws {
        func check<T: BLASScalar>(_: T.Type) throws {
            let config = TrialConfig(values: ["model": .string("quadratic"), "optimizer": .string(name)])
            let optimizer: any Optimizer<T> = try Builders.optimizer(config)
            let p = Self.vectorAndMatrix(T.self)
            p.gradients = [Tensor(vector: [0.1, -0.2, 0.3]), Tensor(shape: [2, 3], storage: [0.3, 0.1, -0.2, 0.4, -0.5, 0.6])]
            optimizer.update(p)
            p.gradients[0].storage[1] = .nan
            p.gradients[1].storage[2] = .nan
            optimizer.update(p)
            #expect(!p.values[0].storage.allSatisfy { $0.isFinite }, "\(name) in \(T.self) hid a NaN gradient of the vector")
            #expect(!p.values[1].storage.allSatisfy { $0.isFinite }, "\(name) in \(T.self) hid a NaN gradient of the matrix")
            #expect(!p.valuesFinite)
        }
        try check(Float.self)
        try check(Double.self)
    }

    /// A zero parameter (a zero-initialised layer) has trust ratio 1 rather than 0, so it moves.
    @Test func zeroNormParametersTakeTrustRatioOne() throws {
        let g: [Double] = [0.3, 0.1, -0.2, 0.4, -0.5, 0.6]
        // LARS without momentum: p ← −η·(g + λ·0)·1.
        let lars = try Self.optimizer("lars", ["lr": .double(0.5), "momentum": .double(0), "weight_decay": .double(0.1)])
        let p = Parameters<Double>([(name: "w", value: Tensor(zeros: [2, 3]))])
        p.gradients[0].storage = g
        lars.update(p)
        #expect(p.values[0].storage == g.map { 0 + ($0 * 1) * -0.5 })
        // LAMB's first step: u = (m/(1−β₁)) / (√(v/(1−β₂)) + ε), ratio 1.
        let lamb = try Self.optimizer("lamb", ["lr": .double(0.01)])
        let q = Parameters<Double>([(name: "w", value: Tensor(zeros: [2, 3]))])
        q.gradients[0].storage = g
        lamb.update(q)
        let bc1 = 1 - 0.9, bc2 = 1 - 0.999
        let expected = g.map { gj -> Double in
            let m = (1 - 0.9) * gj + 0.9 * 0, v = (1 - 0.999) * (gj * gj) + 0.999 * 0
            return 0 + ((m / bc1) / ((v / bc2).squareRoot() + 1e-6) * 1) * -0.01
        }
        #expect(q.values[0].storage == expected)
        // A zero update (zero gradient, no decay) also takes ratio 1 and leaves p still.
        let still = Parameters<Double>([(name: "w", value: Tensor(shape: [2, 3], storage: g))])
        try Self.optimizer("lars").update(still)
        try Self.optimizer("lamb").update(still)
        #expect(still.values[0].storage == g)
    }

    /// With `exclude_1d` (default) biases take neither weight decay nor the trust ratio: their
    /// trajectory does not depend on the decay or on their own norm; without it, it does.
    @Test(arguments: ["lamb", "lars"])
    func oneDimensionalParametersAreExcluded(name: String) throws {
        func run(_ extra: [String: ConfigValue], bias: [Double]) throws -> Parameters<Double> {
            let o = try Self.optimizer(name, extra.merging(["lr": .double(0.1)]) { a, _ in a })
            let p = Self.vectorAndMatrix(Double.self, vector: bias)
            for step in 0..<3 {
                p.gradients = [Tensor(vector: [0.1, -0.2, 0.3 * Double(step + 1)]), Tensor(shape: [2, 3], storage: [0.3, 0.1, -0.2, 0.4, -0.5, 0.6])]
                o.update(p)
            }
            return p
        }
        let plain = try run([:], bias: [0.5, -1, 2])
        let decayed = try run(["weight_decay": .double(0.5)], bias: [0.5, -1, 2])
        #expect(plain.values[0] == decayed.values[0])
        #expect(plain.values[1] != decayed.values[1])
        // The bias's displacement is independent of where it starts (no trust ratio).
        let shifted = try run([:], bias: [5, -10, 20])
        for j in 0..<3 {
            #expect(abs((shifted.values[0].storage[j] - [5, -10, 20][j]) - (plain.values[0].storage[j] - [0.5, -1, 2][j])) < 1e-12)
        }
        let included = try run(["exclude_1d": .bool(false), "weight_decay": .double(0.5)], bias: [0.5, -1, 2])
        #expect(included.values[0] != decayed.values[0])
    }

    /// A tensor of rank 3 factors as a batch of matrices over its last two dimensions, and its
    /// state round-trips.
    @Test(arguments: ["adafactor", "adafactor-simple"])
    func higherRankTensorsFactorOverTheLastTwoDimensions(name: String) throws {
        let o = try Self.optimizer(name)
        let p = Parameters<Double>([(name: "k", value: Tensor(shape: [2, 3, 4], storage: (0..<24).map { Double($0) / 10 - 1 }))])
        p.gradients[0].storage = (0..<24).map { sin(Double($0)) }
        o.update(p)
        #expect(p.valuesFinite)
        let state = o.exportState(names: p.names)
        guard case .real(let rows)? = state["k/exp_avg_sq_row"], case .real(let cols)? = state["k/exp_avg_sq_col"] else {
            Issue.record("no factored statistics")
            return
        }
        #expect(rows.shape == [2, 3])
        #expect(cols.shape == [2, 4])
        // Row statistics of the first matrix: (1 − ρ₁)·mean(g²) over its rows (ρ₁ = 0).
        let eps = name == "adafactor" ? 1e-30 : 0
        for r in 0..<3 {
            let mean = (0..<4).map { sin(Double(r * 4 + $0)) }.map { $0 * $0 + eps }.reduce(0, +) / 4
            #expect(abs(rows.storage[r] - mean) <= 1e-15)
        }
        let fresh = try Self.optimizer(name)
        try fresh.importState(state, parameters: p)
        #expect(fresh.exportState(names: p.names) == state)
    }

    /// Adafactor keeps O(rows + cols) second-moment state for a matrix.
    @Test func adafactorStateIsFactored() throws {
        let p = Parameters<Float>([(name: "w", value: Tensor(zeros: [100, 50])), (name: "b", value: Tensor(zeros: [50]))])
        let config = TrialConfig(values: ["model": .string("quadratic"), "optimizer": .string("adafactor")])
        let adafactor: any Optimizer<Float> = try Builders.optimizer(config)
        adafactor.update(p)
        #expect(adafactor.stateBytes(names: p.names) == (100 + 50 + 50) * 4 + 8)
        let withMomentum: any Optimizer<Float> = try Builders.optimizer(config.setting("beta1", .double(0.9)))
        withMomentum.update(p)
        #expect(withMomentum.stateBytes(names: p.names) == (100 + 50 + 50 + 5050) * 4 + 8)
    }

    @Test func importRejectsMismatchedState() throws {
        let p = Self.vectorAndMatrix(Double.self)
        p.gradients = [Tensor(vector: [0.1, -0.2, 0.3]), Tensor(shape: [2, 3], storage: [0.3, 0.1, -0.2, 0.4, -0.5, 0.6])]
        for name in Self.optimizers {
            let o = try Self.optimizer(name)
            o.update(p)
            let state = o.exportState(names: p.names)
            let other = Parameters<Double>([(name: "b", value: Tensor(zeros: [4])), (name: "w", value: Tensor(zeros: [3, 2]))])
            #expect(throws: OptimizerStateError.self, "\(name)") { try Self.optimizer(name).importState(state, parameters: other) }
        }
    }

    @Test func invalidHyperparametersAreRejected() {
        let bad: [(String, [String: ConfigValue], String)] = [
            ("adagrad", ["lr_decay": .double(-1)], "lr_decay"),
            ("adagrad", ["initial_accumulator_value": .double(-0.1)], "initial_accumulator_value"),
            ("rmsprop", ["alpha": .double(1.5)], "alpha"),
            ("rmsprop", ["momentum": .double(-0.5)], "momentum"),
            ("rmsprop", ["centered": .string("yes")], "centered"),
            ("nadam", ["momentum_decay": .double(-1)], "momentum_decay"),
            ("nadam", ["betas": .list([.double(0.9), .double(1.0)])], "betas"),
            ("lion", ["beta2": .double(1)], "beta2"),
            ("lion-simple", ["beta1": .double(1)], "beta1"),
            ("lamb", ["exclude_1d": .double(1)], "exclude_1d"),
            ("lars", ["trust_coefficient": .double(0)], "trust_coefficient"),
            ("adafactor", ["lr": .double(0.01), "relative_step": .bool(true)], "relative_step"),
            ("adafactor", ["relative_step": .bool(false)], "relative_step"),
            ("adafactor", ["lr": .double(0.01), "warmup_init": .bool(true)], "warmup_init"),
            ("adafactor", ["decay_rate": .double(0.5)], "decay_rate"),
            ("adafactor", ["beta1": .double(1)], "beta1"),
            ("adafactor-simple", ["clip_threshold": .double(0)], "clip_threshold"),
            ("adafactor-simple", ["warmup_init": .bool(true)], "warmup_init"),
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
}
