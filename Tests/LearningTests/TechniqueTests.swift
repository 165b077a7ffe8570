import Foundation
import Learning
import Linalg
import Testing

/// SAM/ASAM, Lookahead and gradient clipping against their references
/// (`Fixtures/generate_techniques.py`: the authors' SAM algorithm around torch.optim, optax's
/// lookahead, torch's clip_grad_norm_/clip_grad_value_), on a problem whose gradient depends on
/// the point (so SAM's second gradient matters). Double to 1e-9 relative (floor 1e-3).
@Suite struct TechniqueTests {
    struct Fixture: Decodable {
        struct Case: Decodable {
            var name: String
            var config: [String: JSONValue]
            var trajectory: [String: [[Double]]]
        }
        var steps: Int
        var shapes: [String: [Int]]
        var start: [String: [Double]]
        var curvature: [String: [Double]]
        var drift: [String: [[Double]]]
        var cases: [Case]
    }

    enum JSONValue: Decodable {
        case number(Double), string(String), bool(Bool)
        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let b = try? c.decode(Bool.self) { self = .bool(b) } else if let x = try? c.decode(Double.self) { self = .number(x) } else { self = .string(try c.decode(String.self)) }
        }
        var config: ConfigValue {
            switch self {
            case .number(let x): x == x.rounded() && abs(x) < 1e6 && x >= 1 ? .int(Int(x)) : .double(x)
            case .string(let s): .string(s)
            case .bool(let b): .bool(b)
            }
        }
    }

    static let fixture: Fixture = try! JSONDecoder().decode(
        Fixture.self, from: Data(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/techniques.json")))
    static let names = ["vector", "matrix"]

    func config(_ c: Fixture.Case) -> TrialConfig {
        var values = c.config.mapValues(\.config)
        values["model"] = .string("quadratic")
        return TrialConfig(values: values)
    }

    /// ∇L_t(p) = c ⊙ p + d_t into the gradients.
    func setGradients(_ params: Parameters<Double>, step t: Int) {
        let f = Self.fixture
        for (i, name) in Self.names.enumerated() {
            for j in 0..<params.values[i].count {
                params.gradients[i].storage[j] = f.curvature[name]![j] * params.values[i].storage[j] + f.drift[name]![t][j]
            }
        }
    }

    @Test(arguments: fixture.cases.map(\.name))
    func matchesReference(name: String) throws {
        let f = Self.fixture, c = f.cases.first { $0.name == name }!
        let config = self.config(c)
        try config.validate()
        let optimizer: any Optimizer<Double> = try Builders.optimizer(config)
        let gradients = try GradientProcessing<Double>(config)
        let params = Parameters<Double>(Self.names.map { (name: $0, value: Tensor(shape: f.shapes[$0]!, storage: f.start[$0]!)) })
        var worst = 0.0
        for t in 0..<f.steps {
            setGradients(params, step: t)
            gradients.clip(params, norm: params.gradientNorm)
            if let sam = optimizer as? any SharpnessAware<Double> {
                sam.perturb(params)
                setGradients(params, step: t)
            }
            optimizer.update(params)
            for (i, pname) in Self.names.enumerated() {
                for (got, want) in zip(params.values[i].storage, c.trajectory[pname]![t]) {
                    worst = max(worst, abs(got - want) / max(abs(want), 1e-3))
                    #expect(abs(got - want) <= 1e-9 * max(abs(want), 1e-3), "\(name) \(pname) step \(t + 1): \(got) vs \(want)")
                }
            }
        }
        print("technique fixture \(name): worst relative error \(worst)")
    }

    // MARK: Parameter groups

    static let mlp: [String: ConfigValue] = [
        "model": .string("mlp"), "hidden": .list([.int(16)]), "epochs": .int(1), "batch_size": .int(50), "limit": .int(500),
        "test_limit": .int(200), "precision": .string("float64"),
    ]

    /// With zero gradients AdamW only decays: weights, embeddings and the head shrink by
    /// (1 − lr·λ), biases and norm parameters do not, unless `bias_weight_decay: true`. Roles, not
    /// names, decide (`bn1.weight` is a norm scale).
    @Test func biasesAndNormsAreNotDecayedByDefault() throws {
        let roles: [(String, ParameterRole)] = [
            ("wte.weight", .embedding), ("fc1.weight", .weight), ("fc1.bias", .bias), ("bn1.weight", .norm), ("bn1.bias", .norm),
            ("head.weight", .head),
        ]
        for decayBiases in [false, true] {
            let config = TrialConfig(values: Self.mlp.merging(["optimizer": .string("adamw"), "lr": .double(0.1), "weight_decay": .double(0.5), "bias_weight_decay": .bool(decayBiases)]) { $1 })
            let params = Parameters<Double>(roles.map { (name: $0.0, value: Tensor(shape: [3], storage: [1, -2, 4]), role: $0.1) })
            let optimizer: any Optimizer<Double> = try Builders.optimizer(config, parameters: params)
            optimizer.update(params)
            for (i, (name, role)) in roles.enumerated() {
                let factor = [.bias, .norm].contains(role) && !decayBiases ? 1.0 : 1 - 0.1 * 0.5
                #expect(params.values[i].storage == [1, -2, 4].map { $0 * factor }, "\(name), bias_weight_decay \(decayBiases)")
            }
        }
    }

    /// Muon's AdamW has its own decay (`aux_weight_decay`): the group without weight decay zeroes
    /// it too, so biases and norms stay undecayed while the embedding (also AdamW's) is decayed.
    @Test func muonAuxiliaryDecaySkipsBiasesAndNorms() throws {
        let config = TrialConfig(values: Self.mlp.merging(["optimizer": .string("muon"), "aux_lr": .double(0.1), "aux_weight_decay": .double(0.5)]) { $1 })
        let roles: [(String, ParameterRole)] = [("wte.weight", .embedding), ("bn1.weight", .norm), ("fc1.bias", .bias)]
        let params = Parameters<Double>(roles.map { (name: $0.0, value: Tensor(shape: [3], storage: [1, -2, 4]), role: $0.1) })
        let optimizer: any Optimizer<Double> = try Builders.optimizer(config, parameters: params)
        optimizer.update(params)
        #expect(params.values.map(\.storage) == [[1, -2, 4].map { $0 * (1 - 0.1 * 0.5) }, [1, -2, 4], [1, -2, 4]])
    }

    /// Parameters registered without roles get the roles the engine always gave them: `.bias`
    /// names are biases, the last matrix is the head, the rest weights.
    @Test func rolesInferredFromNamesAndShapes() {
        let p = Parameters<Double>([
            (name: "fc1.weight", value: Tensor(zeros: [3, 2])), (name: "fc1.bias", value: Tensor(zeros: [3])), (name: "scale", value: Tensor(zeros: [3])),
            (name: "fc2.weight", value: Tensor(zeros: [2, 3])), (name: "fc2.bias", value: Tensor(zeros: [2])),
        ])
        #expect(p.roles == [.weight, .bias, .weight, .head, .bias])
        #expect(p.copy().roles == p.roles)
    }

    /// The MLP and the VAE say their roles; they are the ones inference gives, so trials that ran
    /// before roles existed run the same.
    @Test func modelsRolesMatchTheInferredOnes() {
        var rng = Xoshiro256(seed: 1, stream: "init")
        let models: [any Model<Double>] = [
            MLPClassifier<Double>(inputs: 4, hidden: [5, 3], classes: 2, activation: .relu, rng: &rng),
            MLPClassifier<Double>(inputs: 4, hidden: [], classes: 2, activation: .relu, rng: &rng),
            VAE<Double>(inputs: 6, hidden: 4, latent: 2, rng: &rng),
        ]
        for model in models {
            let p = model.parameters
            #expect(p.roles == ParameterRole.inferred(names: p.names, shapes: p.values.map(\.shape)), "\(p.names)")
            #expect(p.roles.filter { $0 == .head }.count == 1)
        }
    }

    /// SGD with unit gradients moves each layer by its learning rate: lr·γ^(layers below the top).
    @Test func layerwiseLearningRates() throws {
        let names = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]
        let cases: [(ConfigValue, String, [Double])] = [
            (.double(0.5), "layer_lr_decay", [0.25, 0.5, 1]),
            (.list([.double(3), .double(1), .double(0.1)]), "layer_lr_multipliers", [3, 1, 0.1]),
        ]
        for (value, key, scales) in cases {
            let config = TrialConfig(values: Self.mlp.merging(["optimizer": .string("sgd"), "lr": .double(0.1), key: value]) { $1 })
            try config.validate()
            let params = Parameters<Double>(names.map { (name: $0, value: Tensor(shape: [2], storage: [0, 0])) })
            for i in 0..<params.count { params.gradients[i].storage = [1, 1] }
            let optimizer: any Optimizer<Double> = try Builders.optimizer(config, parameters: params)
            optimizer.update(params)
            for (i, name) in names.enumerated() {
                let expected = -0.1 * scales[i / 2]
                #expect(params.values[i].storage.allSatisfy { abs($0 - expected) < 1e-15 }, "\(key) \(name): \(params.values[i].storage) vs \(expected)")
            }
            // A schedule sets the base rate; every group follows with its multiplier.
            optimizer.learningRate = 0.2
            optimizer.update(params)
            #expect(abs(params.values[0].storage[0] - (-0.3 * scales[0])) < 1e-15)
        }
        let wrong = TrialConfig(values: Self.mlp.merging(["optimizer": .string("sgd"), "layer_lr_multipliers": .list([.double(1)])]) { $1 })
        let params = Parameters<Double>(names.map { (name: $0, value: Tensor(shape: [2], storage: [0, 0])) })
        #expect(throws: (any Error).self) { let _: any Optimizer<Double> = try Builders.optimizer(wrong, parameters: params) }
    }

    // MARK: Training loop

    /// k micro-batches of b averaged are one batch of k·b (same examples, same order), to rounding.
    @Test func accumulationEqualsOneLargeBatch() throws {
        let base = Self.mlp.merging(["optimizer": .string("sgd"), "lr": .double(0.05), "momentum": .double(0.9), "epochs": .int(2)]) { $1 }
        let large = try Trainer.run(TrialConfig(values: base.merging(["batch_size": .int(100)]) { $1 }))
        let accumulated = try Trainer.run(TrialConfig(values: base.merging(["batch_size": .int(25), "accumulation_steps": .int(4)]) { $1 }))
        #expect(accumulated.final!.step == large.final!.step)
        #expect(large.final!.step == 10)
        for (a, b) in zip(accumulated.history, large.history) {
            #expect(abs(a.testLoss - b.testLoss) <= 1e-12 * abs(b.testLoss), "\(a.testLoss) vs \(b.testLoss)")
        }
    }

    @Test func lrRangeTestRecordsTheCurveAndSuggests() throws {
        let config = TrialConfig(
            values: Self.mlp.merging([
                "optimizer": .string("sgd"), "momentum": .double(0.9), "mode": .string("lr_range_test"), "range_start_lr": .double(1e-5), "range_end_lr": .double(1e4),
                "range_steps": .int(80), "precision": .string("float32"),
            ]) { $1 })
        try config.validate()
        let result = try Trainer.run(config)
        let test = try #require(result.lrRangeTest)
        #expect(result.status == .done)
        // It ends when the loss explodes, well before the last rate.
        #expect(test.learningRates.count < 80 && test.stopReason.contains("stopped at step"), "\(test.stopReason)")
        #expect(test.learningRates.count == result.history.count)
        #expect(abs(test.learningRates[1] / test.learningRates[0] - pow(1e9, 1.0 / 80)) < 1e-9)
        let suggested = try #require(test.suggested)
        #expect(suggested > 1e-4 && suggested < test.learningRates.last!, "\(suggested)")
        #expect(result.message?.contains("suggested lr") == true)
    }

    @Test func perLayerDiagnosticsAreRecordedEachEpoch() throws {
        let config = TrialConfig(values: Self.mlp.merging(["optimizer": .string("adamw"), "lr": .double(0.003), "epochs": .int(2), "diagnostics": .bool(true)]) { $1 })
        let result = try Trainer.run(config)
        #expect(result.layerStatistics.map(\.layer) == ["fc1", "fc2", "fc1", "fc2"])
        #expect(result.layerStatistics.map(\.epoch) == [1, 1, 2, 2])
        for row in result.layerStatistics {
            #expect(row.updateNorm > 0 && row.updateSpectralNorm > 0 && row.updateSpectralNorm <= row.updateNorm * (1 + 1e-12), "\(row)")
            #expect(row.activationDelta > 0 && row.activationDelta.isFinite && row.weightNorm > 0 && row.gradNorm > 0)
        }
    }

    /// Muon's orthogonalised update of a hidden 16×16 matrix has a nearly flat spectrum: the
    /// quintic Newton–Schulz iteration leaves the singular values in about [0.68, 1.13], so
    /// ‖U‖_F/‖U‖_2 ≥ 4·0.68/1.13 ≈ 2.4 (4 = √16 if exactly flat), well above AdamW's for the same
    /// layer — the documents' h.1 observation, measured by the diagnostics.
    @Test func muonUpdatesHaveFlatSpectra() throws {
        func ratio(_ optimizer: String, _ lr: Double) throws -> Double {
            let config = TrialConfig(
                values: Self.mlp.merging([
                    "optimizer": .string(optimizer), "lr": .double(lr), "diagnostics": .bool(true), "hidden": .list([.int(16), .int(16)]),
                ]) { $1 })
            let hidden = try #require(try Trainer.run(config).layerStatistics.first { $0.layer == "fc2" })
            return hidden.updateNorm / hidden.updateSpectralNorm
        }
        let muon = try ratio("muon", 0.02), adamw = try ratio("adamw", 0.003)
        #expect(muon > 2.3 && muon <= 4.0 + 1e-9 && muon > 1.3 * adamw, "‖U‖_F/‖U‖_2: muon \(muon), adamw \(adamw)")
    }

    @Test func samTrainsAndNeedsNoAccumulation() throws {
        let config = TrialConfig(values: Self.mlp.merging(["optimizer": .string("sam"), "base_optimizer": .string("sgd"), "momentum": .double(0.9), "lr": .double(0.05), "epochs": .int(2)]) { $1 })
        let result = try Trainer.run(config)
        #expect(result.status == .done && result.history[1].trainLoss < result.history[0].trainLoss)
        let bad = TrialConfig(values: Self.mlp.merging(["optimizer": .string("sam"), "accumulation_steps": .int(2)]) { $1 })
        #expect(throws: (any Error).self) { try bad.validate() }
        let unknownBase = TrialConfig(values: Self.mlp.merging(["optimizer": .string("lookahead"), "base_optimizer": .string("adamx")]) { $1 })
        do { try unknownBase.validate(); Issue.record("accepted") } catch { #expect("\(error)".contains("base_optimizer") && "\(error)".contains("adamw")) }
    }

    /// Sophia gets its Gauss–Newton–Bartlett estimates from the loop (labels sampled from the
    /// model's softmax; the VAE's pixels from its Bernoulli) after every `hessian_interval` steps,
    /// and schedule-free AdamW is evaluated at its averaged point and checkpointed at its training point.
    @Test func sophiaAndScheduleFreeTrainThroughTheLoop() throws {
        for model in ["mlp", "vae"] {
            var values = Self.mlp.merging(["optimizer": .string("sophia"), "lr": .double(model == "vae" ? 1e-4 : 3e-4), "hessian_interval": .int(5), "epochs": .int(2)]) { $1 }
            values["model"] = .string(model)
            if model == "vae" { values["hidden"] = .int(32); values["latent"] = .int(4) }
            var saved: TrainingCheckpoint?
            let result = try Trainer.run(TrialConfig(values: values), checkpoints: CheckpointPolicy(every: 1) { saved = $0 })
            #expect(result.status == .done && result.history[1].trainLoss < result.history[0].trainLoss, "\(model): \(result.history.map(\.trainLoss))")
            guard case .float64(let t)? = saved?.payload, case .real(let h)? = t.optimizer["fc1.weight/hessian"] else {
                Issue.record("no Hessian estimate in the checkpoint")
                continue
            }
            // 20 steps, an estimate after every 5th: the diagonal estimate is positive somewhere.
            #expect(h.storage.contains { $0 > 0 } && h.storage.allSatisfy { $0 >= 0 && $0.isFinite }, "\(model)")
        }
        var saved: TrainingCheckpoint?
        let sf = try Trainer.run(
            TrialConfig(values: Self.mlp.merging(["optimizer": .string("schedule-free-adamw"), "lr": .double(2.5e-3), "epochs": .int(2)]) { $1 }),
            checkpoints: CheckpointPolicy(every: 1) { saved = $0 })
        #expect(sf.status == .done && sf.history[1].trainLoss < sf.history[0].trainLoss, "\(sf.history.map(\.trainLoss))")
        guard case .float64(let t)? = saved?.payload else { Issue.record("no checkpoint"); return }
        #expect(try t.optimizer.integer("train_mode") == 1)
    }
}
