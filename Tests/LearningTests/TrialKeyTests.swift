import Foundation
import Learning
import Testing

/// The one declaration of each trial key: defaults that reach the optimizer, the generated page,
/// validation from the declared bounds, SAM on the loops that had no second gradient, ConstantLR.
@Suite struct TrialKeyTests {
    static func quadratic(_ extra: [String: ConfigValue]) -> TrialConfig {
        TrialConfig(values: ["model": .string("quadratic"), "steps": .int(20), "curvatures": .list([.double(10), .double(0.1)])].merging(extra) { $1 })
    }

    static func trajectory(_ extra: [String: ConfigValue]) throws -> [[Double]] { try Trainer.run(quadratic(extra)).trajectory }

    /// A missing `lr` is the optimizer's own default: torch's AdamW default is 1e-3, not the
    /// 0.01 the scheduler used to impose (the trajectory then equalled the one with lr 0.01).
    @Test func missingLearningRateIsTheOptimizersDefault() throws {
        let none = try Self.trajectory(["optimizer": .string("adamw")])
        #expect(none == (try Self.trajectory(["optimizer": .string("adamw"), "lr": .double(1e-3)])))
        #expect(none != (try Self.trajectory(["optimizer": .string("adamw"), "lr": .double(0.01)])))
        // Through a wrapper, the base optimizer's default: Lookahead around AdamW.
        let wrapped = try Self.trajectory(["optimizer": .string("lookahead"), "base_optimizer": .string("adamw")])
        #expect(wrapped == (try Self.trajectory(["optimizer": .string("lookahead"), "base_optimizer": .string("adamw"), "lr": .double(1e-3)])))
        // Published defaults of the others whose default differs from SGD's 0.01 (torch, the
        // schedule-free package, Keller Jordan's Muon, the Lion and Sophia papers' code).
        for (optimizer, lr) in [("schedule-free-adamw", 0.0025), ("muon", 0.02), ("lion", 1e-4), ("sophia", 1e-4), ("nadam", 2e-3), ("adam", 1e-3)] {
            let none = try Trainer.run(Self.quadratic(["optimizer": .string(optimizer)]))
            let given = try Trainer.run(Self.quadratic(["optimizer": .string(optimizer), "lr": .double(lr)]))
            #expect(none.trajectory == given.trajectory, "\(optimizer)")
            #expect(none.history.first?.learningRate == lr, "\(optimizer)")
        }
    }

    /// SAM on a toy objective, against SAM's definition written out here (Foret et al.; the
    /// reference the fixtures use, davda54/sam): g = ∇f(x), e = ρ·T²g/‖Tg‖ (T = |x| for ASAM, 1
    /// for SAM), x ← x − lr·∇f(x + e) with SGD as the base. It used to equal plain SGD.
    @Test func samStepsWithTheGradientAtThePerturbedPoint() throws {
        let h = [10.0, 0.1], lr = 0.05
        for (optimizer, rho, adaptive) in [("sam", 0.05, false), ("asam", 0.5, true)] {
            var x = [1.0, 1.0]
            var expected = [x]
            for _ in 0..<20 {
                let g = zip(h, x).map { $0 * $1 }
                let t = adaptive ? x.map(abs) : [1, 1]
                let norm = zip(t, g).map { ($0 * $1) * ($0 * $1) }.reduce(0, +).squareRoot()
                let e = (0..<2).map { t[$0] * t[$0] * g[$0] * rho / (norm + 1e-12) }
                x = (0..<2).map { x[$0] - lr * h[$0] * (x[$0] + e[$0]) }
                expected.append(x)
            }
            let got = try Self.trajectory(["optimizer": .string(optimizer), "lr": .double(lr), "rho": .double(rho)])
            #expect(got.count == expected.count)
            for (a, b) in zip(got, expected) { #expect(abs(a[0] - b[0]) <= 1e-13 && abs(a[1] - b[1]) <= 1e-13, "\(optimizer): \(a) vs \(b)") }
            #expect(got != (try Self.trajectory(["optimizer": .string("sgd"), "lr": .double(lr)])))
        }
    }

    /// The LR range test with SAM takes SAM steps: its losses after the first step differ from
    /// its base optimizer's (they were identical).
    @Test func rangeTestUsesSAM() throws {
        let base: [String: ConfigValue] = [
            "model": .string("mlp"), "hidden": .list([.int(16)]), "batch_size": .int(50), "limit": .int(200), "test_limit": .int(50),
            "precision": .string("float64"), "mode": .string("lr_range_test"), "range_steps": .int(4), "range_start_lr": .double(0.1),
            "range_end_lr": .double(1),
        ]
        let sgd = try Trainer.run(TrialConfig(values: base.merging(["optimizer": .string("sgd")]) { $1 }))
        let sam = try Trainer.run(TrialConfig(values: base.merging(["optimizer": .string("sam"), "rho": .double(0.5)]) { $1 }))
        #expect(sgd.history.count == 4 && sam.history.count == 4)
        #expect(sgd.history[0].trainLoss == sam.history[0].trainLoss)
        #expect(sgd.history[1].trainLoss != sam.history[1].trainLoss)
    }

    /// torch.optim.lr_scheduler.ConstantLR: lr·factor while the epoch count is below total_iters,
    /// then lr (torch's `_get_closed_form_lr`: base·(factor + (epoch ≥ total_iters)·(1 − factor))).
    /// No PyTorch here to extend the schedules fixture, so the closed form is written out instead.
    @Test func constantFactorScheduleIsTorchsConstantLR() throws {
        let config = Self.quadratic(["schedule": .string("constant-factor"), "factor": .double(0.25), "total_iters": .int(3), "lr": .double(0.1)])
        let schedule = try TrialSchedule.from(config, epochs: 10, stepsPerEpoch: 1)
        for t in 0..<8 {
            let torch = 0.1 * (0.25 + (t >= 3 ? 1 : 0) * (1 - 0.25))
            #expect(abs(schedule.schedule(t, base: 0.1) - torch) < 1e-15, "t = \(t)")
        }
        let result = try Trainer.run(config)
        #expect(result.history.prefix(5).map(\.learningRate).map { ($0 * 1e12).rounded() / 1e12 } == [0.025, 0.025, 0.025, 0.1, 0.1])
        // torch's defaults: factor 1/3, total_iters 5.
        let defaults = try TrialSchedule.from(Self.quadratic(["schedule": .string("constant-factor")]), epochs: 10, stepsPerEpoch: 1)
        #expect(defaults.schedule == .constantFactor(factor: 1.0 / 3, totalIters: 5))
    }

    func error(_ yaml: String) -> ConfigError? {
        do {
            _ = try TrialConfig.parse(yaml: yaml, source: "t.yaml")
            return nil
        } catch let e as ConfigError { return e } catch { return nil }
    }

    /// lion-simple's coefficient is beta1, as soap-simple's; the old name says the new one.
    @Test func lionSimpleSaysBeta1() throws {
        let e = try #require(error("model: quadratic\noptimizer: lion-simple\nbeta: 0.5\n"))
        #expect(e.key == "beta" && e.location.line == 3 && e.message.contains("'beta1'"), "\(e)")
        #expect(error("model: quadratic\noptimizer: lion-simple\nbeta1: 0.5\n") == nil)
    }

    /// Bounds declared once are enforced with the file, line and key; these were not checked.
    @Test func declaredBoundsAreValidated() throws {
        for (yaml, key, text) in [
            ("model: quadratic\noptimizer: adam\neps: -1\n", "eps", "at least 0"),
            ("model: mlp\nschedule: plateau\npatience: -2\n", "patience", "at least 0"),
            ("model: mlp\nschedule: constant-factor\nfactor: 2\n", "factor", "in [0, 1]"),
        ] {
            let e = try #require(error(yaml), "\(yaml)")
            #expect(e.key == key && e.location.file == "t.yaml" && e.location.line == 3 && e.message.contains(text), "\(e)")
        }
    }

    /// Every optimizer that is not a wrapper declares its `lr`, and no list declares a key twice.
    @Test func declarationsAreComplete() {
        for (name, keys) in TrialSchema.optimizers {
            let isWrapper = keys.contains { $0.name == "base_optimizer" }
            #expect(isWrapper != keys.contains { $0.name == "lr" }, "\(name)")
            #expect(Set(keys.map(\.name)).count == keys.count, "\(name)")
        }
    }

    /// docs/trial-keys.md is the generated page (`sweep-worker keys --markdown > docs/trial-keys.md`).
    @Test func referencePageIsCurrent() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let page = try String(contentsOf: root.appendingPathComponent("docs/trial-keys.md"), encoding: .utf8)
        #expect(page == TrialSchema.markdown, "docs/trial-keys.md is stale: run `.build/release/sweep-worker keys --markdown > docs/trial-keys.md`")
    }
}
