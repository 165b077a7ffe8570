import Linalg

/// Schedule-Free AdamW (Defazio et al. 2024, "The Road Less Scheduled") exactly as
/// `schedulefree.AdamWScheduleFree` (facebookresearch/schedule_free, PyPI `schedulefree` 1.4.1).
///
/// Three sequences: z takes Adam-normalised SGD steps, x is a weighted average of the z's (the
/// point to evaluate), and the parameters hold y = (1 − β₁)·z + β₁·x, where gradients are taken.
/// Only y and z are stored; with k the steps taken so far:
///
///     sched = min(1, (k + 1)/warmup_steps);  η_k = lr·sched;  η_max ← max(η_max, η_k)
///     w_k = (k + 1)^r · η_max^weight_lr_power;  W ← W + w_k;  c = w_k / W   (0 if W = 0)
///     v ← β₂·v + (1 − β₂)·g²;  u = g / (√(v / (1 − β₂^(k+1))) + ε) + λ·y
///     y ← lerp(y, z, c) + η_k·(β₁·(1 − c) − 1)·u
///     z ← z − η_k·u
///
/// `useEvaluationPoint` moves the parameters to x = lerp(y, z, 1 − 1/β₁) (the package's `eval()`),
/// `useTrainingPoint` back to y = lerp(x, z, 1 − β₁) (`train()`), each only when not already
/// there; the round trip is exact only up to rounding, as in the package. The package raises when
/// stepped in eval mode; `update` instead first moves back to the training point. Its
/// `warmup_steps` is the trial key `sf_warmup_steps`, apart from the schedules' `warmup_steps`.
///
/// η_max and W are float64 in the package whatever the parameters' precision, and so here; the
/// checkpoint holds them as their IEEE-754 bit patterns (`lr_max_bits`, `weight_sum_bits`, int64)
/// so that a float32 run resumes bit for bit too.
public final class AdamWScheduleFree<Scalar: BLASScalar>: Optimizer, EvaluationPointSwapping {
    public let name = "schedule-free-adamw"
    public var learningRate: Double
    public let beta1: Double
    public let beta2: Double
    public let epsilon: Double
    public let weightDecay: Double
    public let warmupSteps: Int
    public let r: Double
    public let weightLRPower: Double
    /// The package's `k`.
    public private(set) var step = 0
    public private(set) var lrMax = -1.0
    public private(set) var weightSum = 0.0
    /// Whether the parameters hold y (training) rather than x (evaluation).
    public private(set) var atTrainingPoint = true

    struct State: ParameterState {
        var z: Tensor<Scalar>, v: Tensor<Scalar>
        static var slots: [StateSlot<Self>] { [.tensor("z", \.z), .tensor("exp_avg_sq", \.v)] }
    }
    var states = ParameterStates<State>()

    public init(
        learningRate: Double = 0.0025, beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double = 1e-8, weightDecay: Double = 0,
        warmupSteps: Int = 0, r: Double = 0, weightLRPower: Double = 2
    ) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.warmupSteps = warmupSteps
        self.r = r
        self.weightLRPower = weightLRPower
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func update(_ parameters: Parameters<Scalar>) {
        if !atTrainingPoint { useTrainingPoint(parameters) }
        if states.count != parameters.count { states = ParameterStates(parameters.values.map { State(z: $0, v: Tensor(zeros: $0.shape)) }) }
        let k = Double(step)
        let sched = step < warmupSteps ? (k + 1) / Double(warmupSteps) : 1
        let biasCorrection2 = Scalar(1 - Double.pow(beta2, k + 1))
        let lr = learningRate * sched
        lrMax = Swift.max(lr, lrMax)
        let weight = Double.pow(k + 1, r) * Double.pow(lrMax, weightLRPower)
        weightSum += weight
        let ckp1 = weightSum == 0 ? 0 : weight / weightSum
        let c = Scalar(ckp1), yStep = Scalar(lr * (beta1 * (1 - ckp1) - 1)), zStep = Scalar(lr)
        let b2 = Scalar(beta2), w2 = Scalar(1 - beta2), eps = Scalar(epsilon), decay = Scalar(weightDecay), decays = weightDecay != 0
        states.forEach(parameters) { _, g, y, n, s in
            s.z.storage.withUnsafeMutableBufferPointer { z in
                s.v.storage.withUnsafeMutableBufferPointer { v in
                    let (z, v) = (z.baseAddress!, v.baseAddress!)
                    forEachLanes(n) { j, k in
                        let gj = loadLanes(g, j, k), yj = loadLanes(y, j, k), zj = loadLanes(z, j, k)
                        let vj = loadLanes(v, j, k) * b2 + w2 * gj * gj
                        storeLanes(vj, v, j, k)
                        var u = gj / (squareRootLanes(vj / biasCorrection2) + eps)
                        if decays { u = u + decay * yj }
                        storeLanes(lerpLanes(yj, zj, c) + yStep * u, y, j, k)
                        storeLanes(zj - zStep * u, z, j, k)
                    }
                }
            }
        }
        step += 1
    }

    /// p ← lerp(p, z, w) for every parameter with state.
    func moveTowardsZ(_ parameters: Parameters<Scalar>, weight: Double) {
        let w = Scalar(weight)
        for i in 0..<states.count {
            let n = parameters.values[i].count
            if n == 0 { continue }
            parameters.values[i].storage.withUnsafeMutableBufferPointer { p in
                states[i]!.z.storage.withUnsafeBufferPointer { z in
                    let (p, z) = (p.baseAddress!, z.baseAddress!)
                    forEachLanes(n) { j, k in storeLanes(lerpLanes(loadLanes(p, j, k), loadLanes(z, j, k), w), p, j, k) }
                }
            }
        }
    }

    /// The package's `eval()`: parameters from y to x.
    public func useEvaluationPoint(_ parameters: Parameters<Scalar>) {
        guard atTrainingPoint else { return }
        moveTowardsZ(parameters, weight: 1 - 1 / beta1)
        atTrainingPoint = false
    }

    /// The package's `train()`: parameters from x back to y.
    public func useTrainingPoint(_ parameters: Parameters<Scalar>) {
        guard !atTrainingPoint else { return }
        moveTowardsZ(parameters, weight: 1 - beta1)
        atTrainingPoint = true
    }

    public func exportState(names: [String]) -> OptimizerState<Scalar> {
        var state = OptimizerState<Scalar>()
        state.set("step", integer: step)
        state.set("lr_max_bits", .int64([Int64(bitPattern: lrMax.bitPattern)], shape: []))
        state.set("weight_sum_bits", .int64([Int64(bitPattern: weightSum.bitPattern)], shape: []))
        state.set("train_mode", integer: atTrainingPoint ? 1 : 0)
        states.export(names: names, into: &state)
        return state
    }

    public func importState(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws {
        let imported = try state.integer("step")
        let lrMaxBits = try state.integer("lr_max_bits"), weightSumBits = try state.integer("weight_sum_bits")
        let trainMode = try state.integer("train_mode")
        states = imported == 0 ? ParameterStates() : try ParameterStates(state, parameters: parameters) { State(z: Tensor(zeros: $0), v: Tensor(zeros: $0)) }
        step = imported
        lrMax = Double(bitPattern: UInt64(bitPattern: Int64(lrMaxBits)))
        weightSum = Double(bitPattern: UInt64(bitPattern: Int64(weightSumBits)))
        atTrainingPoint = trainMode != 0
    }
}

enum ScheduleFreeAdamWDefinition: OptimizerDefinition {
    static let name = "schedule-free-adamw"
    static let keys: [TrialSchema.Key] =
        [
            .lr(0.0025)
        ] + betaKeys(0.9, "interpolation between z and the average x; must be > 0", 0.999, "second-moment decay") + [
            .number("eps", 1e-8, "denominator epsilon"),
            .number("weight_decay", 0, "weight decay added to the normalised gradient at y"),
            .integer("sf_warmup_steps", 0, "the package's warmup_steps: lr·min(1, (k+1)/sf_warmup_steps) inside the optimizer"),
            .number("r", 0, "polynomial weighting (k+1)^r of the average"),
            .number("weight_lr_power", 2, "average weights lr_max^weight_lr_power"),
        ]

    static func validate(_ config: TrialConfig) throws {
        for key in ["eps", "weight_decay", "weight_lr_power"] { try requireNonNegative(config, key) }
        guard try config.int(keys["sf_warmup_steps"]) >= 0 else { throw config.error("sf_warmup_steps", "must be ≥ 0") }
        let r = try config.double(keys["r"])
        guard r.isFinite else { throw config.error("r", "must be a finite number, got \(r)") }
        if try betas(config, keys).0 == 0 {
            throw config.error(config.values["betas"] != nil ? "betas" : "beta1", "beta1 must be > 0: the evaluation point is lerp(y, z, 1 − 1/beta1)")
        }
    }

    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> {
        let (b1, b2) = try betas(config, keys)
        return AdamWScheduleFree<T>(
            learningRate: try config.double(keys["lr"]), beta1: b1, beta2: b2, epsilon: try config.double(keys["eps"]),
            weightDecay: try config.double(keys["weight_decay"]), warmupSteps: try config.int(keys["sf_warmup_steps"]),
            r: try config.double(keys["r"]), weightLRPower: try config.double(keys["weight_lr_power"]))
    }
}
