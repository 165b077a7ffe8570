import Foundation
import HDF5
import Learning
import Results
import Testing

/// Exact resume: stop after some epochs, write the checkpoint to HDF5, read it back, continue;
/// everything equals the uninterrupted run bit for bit.
@Suite struct CheckpointTests {
    static let base: [String: ConfigValue] = [
        "model": .string("mlp"), "hidden": .list([.int(12)]), "epochs": .int(4), "batch_size": .int(50), "limit": .int(400), "test_limit": .int(100),
    ]

    /// Optimizer and schedule combinations (every optimizer in the catalog gets its own case below).
    static let variants: [[String: ConfigValue]] =
        [
            ["optimizer": .string("sgd"), "lr": .double(0.05), "momentum": .double(0.9), "nesterov": .bool(true), "schedule": .string("cosine")],
            ["optimizer": .string("adamw"), "lr": .double(0.003), "schedule": .string("one-cycle"), "max_lr": .double(0.01)],
            ["optimizer": .string("adam"), "lr": .double(0.003), "amsgrad": .bool(true), "schedule": .string("plateau"), "patience": .int(0), "plateau_metric": .string("train_loss")],
            ["optimizer": .string("sgd"), "lr": .double(0.05), "schedule": .string("step"), "step_size": .int(1), "warmup_steps": .int(2)],
            ["model": .string("vae"), "hidden": .int(16), "latent": .int(3), "optimizer": .string("adamw"), "lr": .double(0.003)],
            ["precision": .string("float64"), "optimizer": .string("adamw"), "lr": .double(0.003)],
            // The training techniques keep their state across a resume too.
            ["optimizer": .string("sam"), "base_optimizer": .string("adamw"), "lr": .double(0.003), "diagnostics": .bool(true), "clip_grad_norm": .double(0.5), "layer_lr_decay": .double(0.5)],
            ["optimizer": .string("lookahead"), "base_optimizer": .string("sgd"), "momentum": .double(0.9), "lr": .double(0.01), "accumulation_steps": .int(3), "lookahead_k": .int(4)],
            // Meta's eigendecomposed Shampoo keeping its basis between decompositions: the roots are rebuilt
            // from the stored eigenvectors and eigenvalues on resume.
            [
                "optimizer": .string("shampoo"), "lr": .double(0.001), "grafting": .string("adam"), "max_preconditioner_dim": .int(32),
                "preconditioner": .string("eigendecomposed"), "eigendecomposition_tolerance": .double(0.1),
            ],
        ] + OptimizerCatalog.all.map { ["optimizer": .string($0.name), "lr": .double(0.001), "muon_output": $0.name == "muon" ? .bool(true) : nil].compactMapValues { $0 } }

    static func config(_ variant: [String: ConfigValue]) -> TrialConfig {
        TrialConfig(values: base.merging(variant) { $1 })
    }

    @Test(arguments: variants.indices)
    func resumedRunEqualsUninterruptedRun(variant: Int) throws {
        let config = Self.config(Self.variants[variant])
        var saved: [TrainingCheckpoint] = []
        let straight = try Trainer.run(config, checkpoints: CheckpointPolicy(every: 2) { saved.append($0) })
        #expect(saved.map(\.epoch) == [2, 4], "\(config.canonicalJSON)")
        // Through the HDF5 file.
        let path = NSTemporaryDirectory() + "ckpt-\(UUID().uuidString).h5"
        try CheckpointFile.write(saved[0], to: path)
        let restored = try CheckpointFile.read(path)
        #expect(restored.epoch == 2 && restored.step == saved[0].step && restored.shuffle == saved[0].shuffle)
        var resumedEnd: [TrainingCheckpoint] = []
        let resumed = try Trainer.run(config, checkpoints: CheckpointPolicy(every: 2, resume: restored) { resumedEnd.append($0) })
        #expect(resumedEnd.map(\.epoch) == [4])
        #expect(resumed.status == straight.status)
        let strip: (EpochRecord) -> [Double] = { r in [Double(r.epoch), Double(r.step), r.trainLoss, r.testLoss, r.testAccuracy.isNaN ? -1 : r.testAccuracy, r.gradientNorm, r.learningRate] }
        #expect(resumed.history.map(strip) == straight.history.map(strip), "\(config.canonicalJSON)")
        #expect(resumed.layerStatistics == straight.layerStatistics, "\(config.canonicalJSON)")
        switch (saved[1].payload, resumedEnd[0].payload) {
        case (.float32(let a), .float32(let b)):
            #expect(a.parameters == b.parameters)
            #expect(a.optimizer == b.optimizer)
        case (.float64(let a), .float64(let b)):
            #expect(a.parameters == b.parameters)
            #expect(a.optimizer == b.optimizer)
        default:
            Issue.record("precision changed")
        }
    }

    @Test func toyObjectivesResumeToo() throws {
        let config = TrialConfig(values: ["model": .string("rosenbrock"), "optimizer": .string("adam"), "lr": .double(0.02), "steps": .int(300), "schedule": .string("cosine")])
        var saved: [TrainingCheckpoint] = []
        let straight = try Trainer.run(config, checkpoints: CheckpointPolicy(every: 100) { saved.append($0) })
        let path = NSTemporaryDirectory() + "toy-\(UUID().uuidString).h5"
        try CheckpointFile.write(saved[1], to: path)
        let resumed = try Trainer.run(config, checkpoints: CheckpointPolicy(resume: try CheckpointFile.read(path)))
        #expect(resumed.trajectory == straight.trajectory)
        #expect(resumed.history.map(\.trainLoss) == straight.history.map(\.trainLoss))
    }

    @Test func checkpointLayoutReadsByName() throws {
        let config = Self.config(["optimizer": .string("adamw"), "lr": .double(0.001), "epochs": .int(1)])
        var saved: TrainingCheckpoint?
        _ = try Trainer.run(config, checkpoints: CheckpointPolicy(every: 1) { saved = $0 })
        let path = NSTemporaryDirectory() + "layout-\(UUID().uuidString).h5"
        try CheckpointFile.write(saved!, to: path)
        let file = try HDF5File(path, mode: .readOnly)
        #expect(try file.read("model/fc1.weight", as: Float.self).shape == [12, 784])
        #expect(try file.read("optimizer/fc1.weight/exp_avg_sq", as: Float.self).shape == [12, 784])
        #expect(try file.read("optimizer/step", as: Int64.self).values == [8])
        #expect(try file.read("rng/shuffle", as: UInt64.self).values.count == 4)
        #expect(try file.stringAttribute("optimizer") == "adamw")
    }

    @Test func aCheckpointOfAnotherTrialIsRefused() throws {
        var saved: TrainingCheckpoint?
        _ = try Trainer.run(Self.config(["optimizer": .string("sgd"), "lr": .double(0.1), "epochs": .int(1)]), checkpoints: CheckpointPolicy(every: 1) { saved = $0 })
        #expect(throws: CheckpointError.configuration("keys differ: lr")) {
            _ = try Trainer.run(Self.config(["optimizer": .string("sgd"), "lr": .double(0.2)]), checkpoints: CheckpointPolicy(resume: saved))
        }
        // Extending a run (more epochs) is allowed.
        let longer = try Trainer.run(Self.config(["optimizer": .string("sgd"), "lr": .double(0.1), "epochs": .int(2)]), checkpoints: CheckpointPolicy(resume: saved))
        #expect(longer.history.count == 2)
    }
}
