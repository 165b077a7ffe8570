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
    /// The metrics reduce-on-plateau can follow, as `plateau_metric` lists them.
    public static let plateauMetrics = [Metric.testLoss, .trainLoss, .testAccuracy].map(\.rawValue)

    /// Keys of each schedule (besides `schedule` and `schedule_interval`).
    public static let schedules: [String: [Key]] = [
        "constant": [],
        "step": [.integer("step_size", nil, .atLeast(1), note: "required", "decay every N"), .number("gamma", 0.1, "factor")],
        "multistep": [.integers("milestones", nil, .atLeast(1), note: "required", "decay at these counts"), .number("gamma", 0.1, "factor")],
        "exponential": [.number("gamma", nil, note: "required", "factor per unit")],
        "cosine": [.integer("t_max", nil, .atLeast(1), note: "the whole run", "half period"), .number("eta_min", 0, "floor")],
        "cosine-restarts": [
            .integer("t_0", nil, .atLeast(1), note: "required", "first period"), .integer("t_mult", 1, .atLeast(1), "period growth"),
            .number("eta_min", 0, "floor"),
        ],
        "one-cycle": [
            .number("max_lr", nil, note: "lr", "peak"), .integer("total_steps", nil, .atLeast(1), note: "the whole run", "cycle length"),
            .number("pct_start", 0.3, .openUnit, "rising fraction"), .choice("anneal_strategy", "cos", ["cos", "linear"], "annealing shape"),
            .number("div_factor", 25, "initial = max_lr/div_factor"),
            .number("final_div_factor", 1e4, "final = initial/final_div_factor"),
            .flag("three_phase", false, "torch's three-phase variant"),
            .flag("cycle_momentum", true, "cycle momentum/β₁ inversely"),
            .number("base_momentum", 0.85, "lowest momentum/β₁"), .number("max_momentum", 0.95, "highest momentum/β₁"),
        ],
        "constant-factor": [
            .number("factor", 1.0 / 3, .closedUnit, "torch's ConstantLR: lr·factor for the first total_iters units, then lr"),
            .integer("total_iters", 5, .atLeast(1), "units at the reduced rate"),
        ],
        "linear": [
            .number("start_factor", 1.0 / 3, "first factor"), .number("end_factor", 1, "last factor"),
            .integer("total_iters", 5, .atLeast(1), "units to go from start_factor to end_factor"),
        ],
        "polynomial": [.integer("total_iters", 5, .atLeast(1), "units to decay to 0"), .number("power", 1, "exponent")],
        "warmup-cosine": [
            .integer("warmup_steps", nil, .atLeast(1), note: "required", "linear warm-up length"),
            .integer("total_steps", nil, .atLeast(1), note: "the whole run", "warm-up and cosine together"),
            .number("min_lr_ratio", 0, "floor as a fraction of lr"),
        ],
        "plateau": [
            .choice("plateau_metric", Metric.testLoss.rawValue, plateauMetrics, "the evaluated metric that drives it"),
            .choice("plateau_mode", nil, ["min", "max"], note: "max for accuracy, else min", "whether the metric should fall or rise"),
            .number("factor", 0.1, "multiply lr by this on a plateau"), .integer("patience", 10, .atLeast(0), "evaluations without improvement before reducing"),
            .number("threshold", 1e-4, "smallest improvement that counts"), .choice("threshold_mode", "rel", ["rel", "abs"], "relative or absolute threshold"),
            .integer("cooldown", 0, .atLeast(0), "evaluations to wait after a reduction"), .number("min_lr", 0, "floor of the learning rate"),
        ],
    ]

    /// Keys any schedule may add: a linear warm-up in front of it (torch's SequentialLR).
    public static let scheduleCommon: [Key] = [
        .choice(
            "schedule", "constant", ["constant", "step", "multistep", "exponential", "cosine", "cosine-restarts", "one-cycle", "constant-factor", "linear", "polynomial", "warmup-cosine", "plateau"],
            "the learning-rate schedule"),
        .choice("schedule_interval", nil, ["epoch", "step"], note: "epoch; step for one-cycle, warmup-cosine and toy objectives", "what t counts"),
        .integer("warmup_steps", nil, .atLeast(1), note: "none", "prepend a linear warm-up of this many units (LinearLR, then the schedule)"),
        .number("warmup_start_factor", 0.1, "the warm-up's first factor"),
    ]

    static var scheduleNames: [String] { schedules.keys.sorted() }
}

extension TrialSchedule {
    /// Reads the trial's schedule. `epochs` and `stepsPerEpoch` give the defaults that depend on
    /// the run's length (cosine's T_max, one-cycle's and warmup-cosine's totals).
    public static func from(_ config: TrialConfig, epochs: Int, stepsPerEpoch: Int) throws -> TrialSchedule {
        let common = TrialSchema.scheduleCommon
        let name = try config.string(common["schedule"])
        guard let keys = TrialSchema.schedules[name] else {
            throw config.error("schedule", "unknown schedule '\(name)'\(config.hint(name, TrialSchema.scheduleNames)); allowed: \(TrialSchema.scheduleNames.joined(separator: ", "))")
        }
        let defaultInterval: ScheduleInterval = name == "one-cycle" || name == "warmup-cosine" || config.isToyObjective ? .step : .epoch
        let intervalName = try config.string(common["schedule_interval"], otherwise: defaultInterval.rawValue)
        guard let interval = ScheduleInterval(rawValue: intervalName) else { throw config.error("schedule_interval", "must be epoch or step") }
        let total = interval == .step ? epochs * stepsPerEpoch : epochs
        func required(_ key: TrialSchema.Key) throws -> Int {
            guard config.values[key.name] != nil else { throw config.error("schedule", "schedule '\(name)' needs '\(key.name)'") }
            return try positive(key, 1)
        }
        func positive(_ key: TrialSchema.Key, _ d: Int) throws -> Int {
            let v = key.defaultValue == nil ? try config.int(key, otherwise: d) : try config.int(key)
            guard v >= 1 else { throw config.error(key.name, "must be at least 1") }
            return v
        }
        var cycled: (Double, Double)?
        var metric = Metric.testLoss.rawValue
        var schedule: Schedule
        switch name {
        case "constant": schedule = .constant
        case "step": schedule = .step(stepSize: try required(keys["step_size"]), gamma: try config.double(keys["gamma"]))
        case "multistep":
            guard config.values["milestones"] != nil else { throw config.error("schedule", "schedule 'multistep' needs 'milestones'") }
            let milestones = try config.intList(keys["milestones"], otherwise: [])
            guard milestones == milestones.sorted(), milestones.allSatisfy({ $0 >= 1 }) else { throw config.error("milestones", "must be increasing counts ≥ 1") }
            schedule = .multiStep(milestones: milestones, gamma: try config.double(keys["gamma"]))
        case "exponential":
            guard config.values["gamma"] != nil else { throw config.error("schedule", "schedule 'exponential' needs 'gamma'") }
            schedule = .exponential(gamma: try config.double(keys["gamma"], otherwise: 1))
        case "cosine": schedule = .cosine(tMax: try positive(keys["t_max"], max(total, 1)), etaMin: try config.double(keys["eta_min"]))
        case "cosine-restarts":
            schedule = .cosineWarmRestarts(t0: try required(keys["t_0"]), tMult: try positive(keys["t_mult"], 1), etaMin: try config.double(keys["eta_min"]))
        case "one-cycle":
            let anneal = try config.string(keys["anneal_strategy"])
            guard anneal == "cos" || anneal == "linear" else { throw config.error("anneal_strategy", "must be cos or linear") }
            let pct = try config.double(keys["pct_start"])
            guard pct > 0 && pct < 1 else { throw config.error("pct_start", "must be in (0, 1)") }
            let maxLR = config.values["max_lr"] == nil ? try OptimizerCatalog.learningRate(config) : try config.double(keys["max_lr"], otherwise: 0)
            schedule = .oneCycle(
                maxLR: maxLR, totalSteps: try positive(keys["total_steps"], max(total, 1)), pctStart: pct,
                cosineAnneal: anneal == "cos", divFactor: try config.double(keys["div_factor"]),
                finalDivFactor: try config.double(keys["final_div_factor"]), threePhase: try config.bool(keys["three_phase"]))
            if try config.bool(keys["cycle_momentum"]) {
                cycled = (try config.double(keys["base_momentum"]), try config.double(keys["max_momentum"]))
            }
        case "constant-factor":
            schedule = .constantFactor(factor: try config.double(keys["factor"]), totalIters: try positive(keys["total_iters"], 1))
        case "linear":
            schedule = .linear(startFactor: try config.double(keys["start_factor"]), endFactor: try config.double(keys["end_factor"]), totalIters: try positive(keys["total_iters"], 1))
        case "polynomial": schedule = .polynomial(totalIters: try positive(keys["total_iters"], 1), power: try config.double(keys["power"]))
        case "warmup-cosine":
            schedule = .warmupCosine(warmup: try required(keys["warmup_steps"]), total: try positive(keys["total_steps"], max(total, 1)), minRatio: try config.double(keys["min_lr_ratio"]))
        default:  // plateau
            metric = try config.string(keys["plateau_metric"])
            guard let measured = Metric(rawValue: metric) else {
                throw config.error("plateau_metric", "must be test_loss, train_loss or test_accuracy")
            }
            let modeName = try config.string(keys["plateau_mode"], otherwise: measured.maximizedByDefault ? "max" : "min")
            guard let mode = Schedule.PlateauMode(rawValue: modeName) else { throw config.error("plateau_mode", "must be min or max") }
            let thresholdMode = try config.string(keys["threshold_mode"])
            guard thresholdMode == "rel" || thresholdMode == "abs" else { throw config.error("threshold_mode", "must be rel or abs") }
            schedule = .reduceOnPlateau(
                mode: mode, factor: try config.double(keys["factor"]), patience: try config.int(keys["patience"]),
                threshold: try config.double(keys["threshold"]), relativeThreshold: thresholdMode == "rel",
                cooldown: try config.int(keys["cooldown"]), minLR: try config.double(keys["min_lr"]))
        }
        if config.values["warmup_steps"] != nil && name != "warmup-cosine" {
            guard name != "plateau" && name != "one-cycle" else { throw config.error("warmup_steps", "a warm-up cannot precede '\(name)'") }
            let warmup = try positive(common["warmup_steps"], 1)
            let factor = try config.double(common["warmup_start_factor"])
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
