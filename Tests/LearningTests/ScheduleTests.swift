import Foundation
import Learning
import Testing

/// Learning-rate schedules against torch.optim.lr_scheduler (`Fixtures/generate_schedules.py`).
struct ScheduleFixture: Decodable {
    struct Case: Decodable {
        let name: String
        let keys: [String: Key]
        let lr: [Double]
        let momentum: [Double]
    }
    enum Key: Decodable {
        case int(Int), double(Double), string(String), bool(Bool), ints([Int])
        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let b = try? c.decode(Bool.self) {
                self = .bool(b)
            } else if let i = try? c.decode(Int.self) {
                self = .int(i)
            } else if let d = try? c.decode(Double.self) {
                self = .double(d)
            } else if let s = try? c.decode(String.self) {
                self = .string(s)
            } else {
                self = .ints(try c.decode([Int].self))
            }
        }
        var value: ConfigValue {
            switch self {
            case .int(let i): .int(i)
            case .double(let d): .double(d)
            case .string(let s): .string(s)
            case .bool(let b): .bool(b)
            case .ints(let l): .list(l.map { .int($0) })
            }
        }
    }
    let base_lr: Double
    let steps: Int
    let plateau_metric: [Double]
    let cases: [Case]

    static let shared: ScheduleFixture = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/schedules.json")
        return try! JSONDecoder().decode(ScheduleFixture.self, from: Data(contentsOf: url))
    }()

    func config(_ c: Case) throws -> TrialConfig {
        var values: [String: ConfigValue] = ["model": .string("mlp"), "optimizer": .string("sgd"), "lr": .double(base_lr), "momentum": .double(0.9)]
        for (k, v) in c.keys { values[k] = v.value }
        let config = TrialConfig(values: values)
        try config.validate()
        return config
    }
}

@Suite struct ScheduleTests {
    static let names = ScheduleFixture.shared.cases.map(\.name)

    @Test(arguments: names)
    func matchesTorch(name: String) throws {
        let f = ScheduleFixture.shared
        let c = f.cases.first { $0.name == name }!
        let trial = try TrialSchedule.from(try f.config(c), epochs: f.steps, stepsPerEpoch: 1)
        var plateau: PlateauState? = nil
        if case .reduceOnPlateau(let mode, _, _, _, _, _, _) = trial.schedule { plateau = PlateauState(mode: mode, learningRate: f.base_lr) }
        for t in 0..<f.steps {
            let lr = plateau?.learningRate ?? trial.schedule(t, base: f.base_lr)
            #expect(abs(lr - c.lr[t]) <= 1e-12 * max(abs(c.lr[t]), 1e-12), "\(name) t=\(t): \(lr) vs \(c.lr[t])")
            if let (low, high) = trial.cycledMomentum, let m = trial.schedule.momentum(t, base: low, max: high) {
                #expect(abs(m - c.momentum[t]) <= 1e-12, "\(name) momentum t=\(t): \(m) vs \(c.momentum[t])")
            }
            _ = plateau?.observe(f.plateau_metric[t], trial.schedule)
        }
    }

    @Test func trainingFollowsTheScheduleAndCyclesMomentum() throws {
        let config = TrialConfig(values: [
            "model": .string("mlp"), "hidden": .list([.int(16)]), "optimizer": .string("sgd"), "lr": .double(0.1), "momentum": .double(0.9),
            "epochs": .int(4), "limit": .int(600), "test_limit": .int(100), "schedule": .string("step"), "step_size": .int(2), "gamma": .double(0.5),
        ])
        let result = try Trainer.run(config)
        #expect(result.history.map(\.learningRate) == [0.1, 0.1, 0.05, 0.05])
        let toy = try Trainer.run(
            TrialConfig(values: [
                "model": .string("rosenbrock"), "optimizer": .string("adam"), "lr": .double(0.01), "steps": .int(100), "schedule": .string("one-cycle"),
                "max_lr": .double(0.05),
            ]))
        let lrs = toy.history.map(\.learningRate)
        #expect(abs(lrs[0] - 0.05 / 25) < 1e-15 && abs(lrs.max()! - 0.05) < 1e-3 && lrs.last! < 1e-5)
    }

    @Test func scheduleKeysAreValidatedWithTheirSchedule() throws {
        func error(_ yaml: String) -> ConfigError? {
            do { _ = try TrialConfig.parse(yaml: yaml, source: "t.yaml"); return nil } catch { return error as? ConfigError }
        }
        #expect(try #require(error("model: mlp\nschedule: cosin\n")).message.contains("did you mean 'cosine'"))
        let wrong = try #require(error("model: mlp\nschedule: step\nstep_size: 3\nt_max: 10\n"))
        #expect(wrong.key == "t_max" && wrong.message.contains("schedule 'step'") && wrong.location.line == 4)
        #expect(try #require(error("model: mlp\nschedule: step\n")).message.contains("needs 'step_size'"))
        #expect(try #require(error("model: mlp\nschedule: plateau\nwarmup_steps: 3\n")).message.contains("cannot precede"))
        #expect(try #require(error("model: mlp\nschedule: one-cycle\npct_start: 1.5\n")).message.contains("(0, 1)"))
    }
}
