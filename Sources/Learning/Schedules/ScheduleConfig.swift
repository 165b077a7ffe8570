/// Reading a schedule from trial keys, and the keys each schedule takes.
public enum ScheduleInterval: String, Sendable, Codable { case epoch, step }

/// A trial's schedule: the formula, its unit, and the one-cycle momentum range if cycled.
public struct TrialSchedule: Sendable, Equatable {
    public var schedule: Schedule
    public var interval: ScheduleInterval
    /// One-cycle momentum (SGD's momentum or Adam's β₁), `(base, max)`.
    public var cycledMomentum: (base: Double, max: Double)?
    /// For reduce-on-plateau: which evaluated metric drives it.
    public var plateauMetric: String

    public static func == (a: TrialSchedule, b: TrialSchedule) -> Bool {
        a.schedule == b.schedule && a.interval == b.interval && a.cycledMomentum?.base == b.cycledMomentum?.base
            && a.cycledMomentum?.max == b.cycledMomentum?.max && a.plateauMetric == b.plateauMetric
    }
}

extension TrialSchema {
    /// Keys of each schedule (besides `schedule` and `schedule_interval`).
    public static let schedules: [String: [Key]] = [
        "constant": [],
        "step": [Key(name: "step_size", help: "decay every N (required)"), Key(name: "gamma", help: "factor (default 0.1)")],
        "multistep": [Key(name: "milestones", help: "decay at these counts (required)"), Key(name: "gamma", help: "factor (default 0.1)")],
        "exponential": [Key(name: "gamma", help: "factor per unit (required)")],
        "cosine": [Key(name: "t_max", help: "half period (default: the whole run)"), Key(name: "eta_min", help: "floor (default 0)")],
        "cosine-restarts": [
            Key(name: "t_0", help: "first period (required)"), Key(name: "t_mult", help: "period growth (default 1)"),
            Key(name: "eta_min", help: "floor (default 0)"),
        ],
        "one-cycle": [
            Key(name: "max_lr", help: "peak (default: lr)"), Key(name: "total_steps", help: "cycle length (default: the whole run)"),
            Key(name: "pct_start", help: "rising fraction (default 0.3)"), Key(name: "anneal_strategy", help: "cos (default) | linear"),
            Key(name: "div_factor", help: "initial = max_lr/div_factor (default 25)"),
            Key(name: "final_div_factor", help: "final = initial/final_div_factor (default 1e4)"),
            Key(name: "three_phase", help: "torch's three-phase variant (default false)"),
            Key(name: "cycle_momentum", help: "cycle momentum/β₁ inversely (default true)"),
            Key(name: "base_momentum", help: "(default 0.85)"), Key(name: "max_momentum", help: "(default 0.95)"),
        ],
        "linear": [
            Key(name: "start_factor", help: "(default 1/3)"), Key(name: "end_factor", help: "(default 1)"),
            Key(name: "total_iters", help: "(default 5)"),
        ],
        "polynomial": [Key(name: "total_iters", help: "(default 5)"), Key(name: "power", help: "(default 1)")],
        "warmup-cosine": [
            Key(name: "warmup_steps", help: "linear warm-up length (required)"), Key(name: "total_steps", help: "(default: the whole run)"),
            Key(name: "min_lr_ratio", help: "floor as a fraction of lr (default 0)"),
        ],
        "plateau": [
            Key(name: "plateau_metric", help: "test_loss (default) | train_loss | test_accuracy"),
            Key(name: "plateau_mode", help: "min | max (default: max for accuracy, else min)"),
            Key(name: "factor", help: "(default 0.1)"), Key(name: "patience", help: "(default 10)"),
            Key(name: "threshold", help: "(default 1e-4)"), Key(name: "threshold_mode", help: "rel (default) | abs"),
            Key(name: "cooldown", help: "(default 0)"), Key(name: "min_lr", help: "(default 0)"),
        ],
    ]

    /// Keys any schedule may add: a linear warm-up in front of it (torch's SequentialLR).
    public static let scheduleCommon: [Key] = [
        Key(name: "schedule", help: "constant | step | multistep | exponential | cosine | cosine-restarts | one-cycle | linear | polynomial | warmup-cosine | plateau"),
        Key(name: "schedule_interval", help: "epoch | step: what t counts (default epoch; step for one-cycle and warmup-cosine)"),
        Key(name: "warmup_steps", help: "prepend a linear warm-up of this many units (LinearLR, then the schedule)"),
        Key(name: "warmup_start_factor", help: "the warm-up's first factor (default 0.1)"),
    ]

    static var scheduleNames: [String] { schedules.keys.sorted() }
}

extension TrialSchedule {
    /// Reads the trial's schedule. `epochs` and `stepsPerEpoch` give the defaults that depend on
    /// the run's length (cosine's T_max, one-cycle's and warmup-cosine's totals).
    public static func from(_ config: TrialConfig, epochs: Int, stepsPerEpoch: Int) throws -> TrialSchedule {
        let name = try config.string("schedule", default: "constant")
        guard TrialSchema.schedules[name] != nil else {
            throw config.error("schedule", "unknown schedule '\(name)'\(config.hint(name, TrialSchema.scheduleNames)); allowed: \(TrialSchema.scheduleNames.joined(separator: ", "))")
        }
        let defaultInterval: ScheduleInterval = name == "one-cycle" || name == "warmup-cosine" || config.isToyObjective ? .step : .epoch
        let intervalName = try config.string("schedule_interval", default: defaultInterval.rawValue)
        guard let interval = ScheduleInterval(rawValue: intervalName) else { throw config.error("schedule_interval", "must be epoch or step") }
        let total = interval == .step ? epochs * stepsPerEpoch : epochs
        func required(_ key: String) throws -> Int {
            guard config.values[key] != nil else { throw config.error("schedule", "schedule '\(name)' needs '\(key)'") }
            return try positive(key, 1)
        }
        func positive(_ key: String, _ d: Int) throws -> Int {
            let v = try config.int(key, default: d)
            guard v >= 1 else { throw config.error(key, "must be at least 1") }
            return v
        }
        let lr = try config.double("lr", default: 0.01)
        var cycled: (Double, Double)?
        var metric = "test_loss"
        var schedule: Schedule
        switch name {
        case "constant": schedule = .constant
        case "step": schedule = .step(stepSize: try required("step_size"), gamma: try config.double("gamma", default: 0.1))
        case "multistep":
            guard config.values["milestones"] != nil else { throw config.error("schedule", "schedule 'multistep' needs 'milestones'") }
            let milestones = try config.intList("milestones", default: [])
            guard milestones == milestones.sorted(), milestones.allSatisfy({ $0 >= 1 }) else { throw config.error("milestones", "must be increasing counts ≥ 1") }
            schedule = .multiStep(milestones: milestones, gamma: try config.double("gamma", default: 0.1))
        case "exponential":
            guard config.values["gamma"] != nil else { throw config.error("schedule", "schedule 'exponential' needs 'gamma'") }
            schedule = .exponential(gamma: try config.double("gamma", default: 1))
        case "cosine": schedule = .cosine(tMax: try positive("t_max", max(total, 1)), etaMin: try config.double("eta_min", default: 0))
        case "cosine-restarts":
            schedule = .cosineWarmRestarts(t0: try required("t_0"), tMult: try positive("t_mult", 1), etaMin: try config.double("eta_min", default: 0))
        case "one-cycle":
            let anneal = try config.string("anneal_strategy", default: "cos")
            guard anneal == "cos" || anneal == "linear" else { throw config.error("anneal_strategy", "must be cos or linear") }
            let pct = try config.double("pct_start", default: 0.3)
            guard pct > 0 && pct < 1 else { throw config.error("pct_start", "must be in (0, 1)") }
            schedule = .oneCycle(
                maxLR: try config.double("max_lr", default: lr), totalSteps: try positive("total_steps", max(total, 1)), pctStart: pct,
                cosineAnneal: anneal == "cos", divFactor: try config.double("div_factor", default: 25),
                finalDivFactor: try config.double("final_div_factor", default: 1e4), threePhase: try config.bool("three_phase", default: false))
            if try config.bool("cycle_momentum", default: true) {
                cycled = (try config.double("base_momentum", default: 0.85), try config.double("max_momentum", default: 0.95))
            }
        case "linear":
            schedule = .linear(startFactor: try config.double("start_factor", default: 1.0 / 3), endFactor: try config.double("end_factor", default: 1), totalIters: try positive("total_iters", 5))
        case "polynomial": schedule = .polynomial(totalIters: try positive("total_iters", 5), power: try config.double("power", default: 1))
        case "warmup-cosine":
            schedule = .warmupCosine(warmup: try required("warmup_steps"), total: try positive("total_steps", max(total, 1)), minRatio: try config.double("min_lr_ratio", default: 0))
        default:  // plateau
            metric = try config.string("plateau_metric", default: "test_loss")
            guard ["test_loss", "train_loss", "test_accuracy"].contains(metric) else { throw config.error("plateau_metric", "must be test_loss, train_loss or test_accuracy") }
            let modeName = try config.string("plateau_mode", default: metric == "test_accuracy" ? "max" : "min")
            guard let mode = Schedule.PlateauMode(rawValue: modeName) else { throw config.error("plateau_mode", "must be min or max") }
            let thresholdMode = try config.string("threshold_mode", default: "rel")
            guard thresholdMode == "rel" || thresholdMode == "abs" else { throw config.error("threshold_mode", "must be rel or abs") }
            schedule = .reduceOnPlateau(
                mode: mode, factor: try config.double("factor", default: 0.1), patience: try config.int("patience", default: 10),
                threshold: try config.double("threshold", default: 1e-4), relativeThreshold: thresholdMode == "rel",
                cooldown: try config.int("cooldown", default: 0), minLR: try config.double("min_lr", default: 0))
        }
        if config.values["warmup_steps"] != nil && name != "warmup-cosine" {
            guard name != "plateau" && name != "one-cycle" else { throw config.error("warmup_steps", "a warm-up cannot precede '\(name)'") }
            let warmup = try positive("warmup_steps", 1)
            let factor = try config.double("warmup_start_factor", default: 0.1)
            schedule = .sequential(first: .linear(startFactor: factor, endFactor: 1, totalIters: warmup), milestone: warmup, then: schedule)
        } else if config.values["warmup_start_factor"] != nil {
            throw config.error("warmup_start_factor", "only applies with warmup_steps")
        }
        return TrialSchedule(schedule: schedule, interval: interval, cycledMomentum: cycled, plateauMetric: metric)
    }
}

/// Optimizers whose momentum (SGD) or β₁ (Adam) a one-cycle schedule can drive.
public protocol MomentumCycling: AnyObject {
    var cycledMomentum: Double { get set }
}
