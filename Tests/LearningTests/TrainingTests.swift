import Learning
import Linalg
import Testing

@Suite struct TrainingTests {
    func config(_ pairs: [String: ConfigValue]) -> TrialConfig { TrialConfig(values: pairs) }

    static let small: [String: ConfigValue] = [
        "model": .string("mlp"), "hidden": .list([.int(32)]), "optimizer": .string("adamw"), "lr": .double(1e-3),
        "epochs": .int(2), "batch_size": .int(64), "limit": .int(1000), "test_limit": .int(500),
    ]

    @Test func runsAreDeterministicForASeed() throws {
        let a = try Trainer.run(config(Self.small))
        let b = try Trainer.run(config(Self.small))
        #expect(a.status == .done && a.history.count == 2)
        #expect(a.history.map(\.trainLoss) == b.history.map(\.trainLoss))
        #expect(a.history.map(\.testLoss) == b.history.map(\.testLoss))
        var other = Self.small
        other["seed"] = .int(1)
        let c = try Trainer.run(config(other))
        #expect(c.history.map(\.trainLoss) != a.history.map(\.trainLoss))
    }

    @Test func vaeIsDeterministicIncludingItsNoise() throws {
        let vae: [String: ConfigValue] = [
            "model": .string("vae"), "hidden": .int(64), "latent": .int(4), "optimizer": .string("adam"), "lr": .double(1e-3), "limit": .int(512), "test_limit": .int(256),
        ]
        let a = try Trainer.run(config(vae)), b = try Trainer.run(config(vae))
        #expect(a.history.map(\.trainLoss) == b.history.map(\.trainLoss))
        #expect(a.history.map(\.testLoss) == b.history.map(\.testLoss))
        #expect(a.history.map(\.gradientNorm) == b.history.map(\.gradientNorm))
        #expect(a.final!.testAccuracy.isNaN && a.final!.testLoss > 0)
    }

    @Test func divergenceIsAResultWithItsHistory() throws {
        // Plain SGD at lr 1 on the VAE's summed loss: exp(logvar) overflows within a few steps.
        let huge: [String: ConfigValue] = ["model": .string("vae"), "optimizer": .string("sgd"), "lr": .double(1), "epochs": .int(3), "limit": .int(512), "test_limit": .int(128)]
        let result = try Trainer.run(config(huge))
        #expect(result.status == .diverged)
        #expect(result.message?.contains("non-finite") == true)
        #expect(!result.history.isEmpty && result.history.count <= 3)
    }

    @Test func aLossBoundEndsTheTrialAsDiverged() throws {
        var bounded = Self.small
        bounded["max_loss"] = .double(1.0)  // the first batches' cross-entropy is about 2.3
        let result = try Trainer.run(config(bounded))
        #expect(result.status == .diverged && result.message?.contains("exceeded max_loss 1.0") == true)
        let toy = try Trainer.run(config(["model": .string("rosenbrock"), "optimizer": .string("sgd"), "lr": .double(0.001), "steps": .int(50), "max_loss": .double(5)]))
        #expect(toy.status == .diverged && toy.history.count == 1)
    }

    @Test func toyObjectivesRecordTrajectories() throws {
        let result = try Trainer.run(config(["model": .string("rosenbrock"), "optimizer": .string("adam"), "lr": .double(0.02), "steps": .int(3000)]))
        #expect(result.status == .done)
        #expect(result.trajectory.count == 3001 && result.trajectory[0] == [-1.5, 2])
        #expect(result.history.count == 3000)
        let end = result.trajectory.last!
        #expect(abs(end[0] - 1) < 0.05 && abs(end[1] - 1) < 0.1, "Adam ends at \(end)")
        let quad = try Trainer.run(config(["model": .string("quadratic"), "curvatures": .list([.double(10), .double(0.1)]), "optimizer": .string("sgd"), "lr": .double(0.21), "steps": .int(50)]))
        // lr > 2/h_max: SGD oscillates and blows up along the steep axis.
        #expect(abs(quad.trajectory.last![0]) > 1)
        // Long enough, the oscillation overflows: the trial ends diverged, with its history.
        let blowUp = try Trainer.run(config(["model": .string("quadratic"), "optimizer": .string("sgd"), "lr": .double(0.5), "steps": .int(2000)]))
        #expect(blowUp.status == .diverged && blowUp.history.count < 2000 && blowUp.history.count > 100)
    }

    /// The acceptance run: the 784-256-128-10 MLP with AdamW (lr 1e-3) on the full
    /// Fashion-MNIST reaches at least 0.85 test accuracy in 2 epochs.
    @Test func mlpLearnsFashionMNIST() throws {
        let c = config(["model": .string("mlp"), "optimizer": .string("adamw"), "lr": .double(1e-3), "epochs": .int(2)])
        let result = try Trainer.run(c)
        #expect(result.status == .done)
        #expect(result.final!.testAccuracy >= 0.85, "test accuracy \(result.final!.testAccuracy)")
        #expect(result.history[1].trainLoss < result.history[0].trainLoss)
        #expect(result.parameterCount == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10)
    }
}
