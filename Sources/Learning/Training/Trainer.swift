import Glibc
import Linalg

/// What a finished trial produced.
public struct TrialResult: Sendable {
    public var config: TrialConfig
    public var status: TrialStatus
    public var message: String?
    public var history: [EpochRecord]
    /// Toy objectives: the point after each step, starting with the start point (steps+1 × d).
    public var trajectory: [[Double]]
    public var parameterCount: Int
    public var optimizerStateBytes: Int
    public var wallSeconds: Double
    /// The BLAS kernel and threads it ran with.
    public var engine: String
    /// `mode: lr_range_test`: the learning rates tried, the smoothed losses and the suggestion.
    public var lrRangeTest: LRRangeTest?
    /// `diagnostics: true`: per-layer update norms and activation deltas, per epoch.
    public var layerStatistics: [LayerStatistics] = []
    /// `sharpness_rho: ρ`: the training loss increase under the first-order worst-case
    /// perturbation of norm ρ, `L(w + ρ·g/‖g‖) − L(w)`, at the end of training (SAM's measure).
    public var sharpness: Double?
    /// Bytes of optimizer state per parameter tensor (and global), summing to `optimizerStateBytes`.
    public var optimizerStateByTensor: [TensorStateBytes] = []
    /// The optimizer's work counters (`WorkCounting`), e.g. Shampoo's eigendecompositions.
    public var optimizerWork: [String: Int] = [:]
    /// Population-based training: where the trial comes from (set by the coordinator).
    public var lineage: TrialLineage?
    /// A program trial's own metrics (beyond `EpochRecord`'s), by name, aligned with `history`.
    public var extraHistory: [String: [Double]] = [:]
    /// A program trial: how the program ended and the tails of its output.
    public var programOutput: ProgramOutput?

    /// The optimizer's state size, in total and per tensor, and its work counters, at the end.
    mutating func recordOptimizer<T: BLASScalar>(_ optimizer: any Optimizer<T>, names: [String]) {
        let state = optimizer.exportState(names: names)
        optimizerStateBytes = state.byteCount
        optimizerStateByTensor = state.bytesByTensor(names)
        optimizerWork = (optimizer as? any WorkCounting)?.workCounters ?? [:]
    }

    public var final: EpochRecord? { history.last }

    public init(
        config: TrialConfig, status: TrialStatus, message: String? = nil, history: [EpochRecord], trajectory: [[Double]],
        parameterCount: Int, optimizerStateBytes: Int, wallSeconds: Double, engine: String
    ) {
        self.config = config
        self.status = status
        self.message = message
        self.history = history
        self.trajectory = trajectory
        self.parameterCount = parameterCount
        self.optimizerStateBytes = optimizerStateBytes
        self.wallSeconds = wallSeconds
        self.engine = engine
    }
}

/// Runs one trial to completion in this process.
public enum Trainer {
    /// Trains the trial described by `config`, calling `onEpoch` after every epoch (every step
    /// for toy objectives) and returning the whole result. Divergence is a result, not an error;
    /// errors are configuration or data problems.
    ///
    /// `data` supplies already loaded data (the worker caches it across trials); the trial's
    /// `limit`/`test_limit` still apply. `shouldStop` is asked after every epoch (every step
    /// for toy objectives); when it says yes the trial ends `stopped` with its history so far.
    ///
    /// `checkpoints` saves the complete training state every N epochs (steps for toy
    /// objectives) and at the end, and resumes from one: a resumed run produces bit-identical
    /// parameters and metrics to an uninterrupted one with the same seed, thread count and BLAS
    /// kernel.
    public static func run(
        _ config: TrialConfig, data: DataSplits? = nil, checkpoints: CheckpointPolicy = .none, shouldStop: () -> Bool = { false },
        onEpoch: (EpochRecord) -> Void = { _ in }
    ) throws -> TrialResult {
        try config.validate()
        if let resume = checkpoints.resume { try CheckpointPolicy.check(resume, against: config, mayDiffer: checkpoints.mayDiffer) }
        let precision = try config.string(TrialSchema.common["precision"])
        if config.model == "polyfit" { return try fitPolynomial(config, onEpoch: onEpoch) }
        if config.isToyObjective { return try runObjective(config, checkpoints: checkpoints, shouldStop: shouldStop, onStep: onEpoch) }
        let trainLimit = try config.optionalInt(TrialSchema.data["limit"]), testLimit = try config.optionalInt(TrialSchema.data["test_limit"])
        let splits =
            try data.map { DataSplits(train: $0.train.prefix(trainLimit), test: $0.test.prefix(testLimit)) }
            ?? DataSource(parsing: config.string(TrialSchema.data["data"])).load(
                trainLimit: trainLimit, testLimit: testLimit, seed: config.seed, text: try config.textOptions())
        try config.checkData(splits)
        // The data set's shape is known now: the limits on the model and the epochs, before the model exists.
        try config.checkResources(data: splits.train.shape)
        return precision == "float64"
            ? try train(config, splits, Double.self, checkpoints: checkpoints, shouldStop: shouldStop, onEpoch: onEpoch)
            : try train(config, splits, Float.self, checkpoints: checkpoints, shouldStop: shouldStop, onEpoch: onEpoch)
    }

    static func train<T: BLASScalar>(
        _ config: TrialConfig, _ data: DataSplits, _: T.Type, checkpoints: CheckpointPolicy, shouldStop: () -> Bool,
        onEpoch: (EpochRecord) -> Void
    ) throws -> TrialResult {
        let started = now()
        let model: any Model<T> = try Builders.model(config, data: data.train.shape)
        let optimizer: any Optimizer<T> = try Builders.optimizer(config, parameters: model.parameters)
        if try config.string(TrialSchema.data["mode"]) == "lr_range_test" {
            return try rangeTest(config, data, model: model, optimizer: optimizer, started: started)
        }
        let epochs = try config.length()
        let batchSize = try config.int(TrialSchema.data["batch_size"])
        let requestedEvalBatch = try config.int(TrialSchema.data["eval_batch_size"])
        let evalBatch = (model as? Network<T>)?.evaluationBatch(requestedEvalBatch) ?? requestedEvalBatch
        var shuffle = Xoshiro256(seed: config.seed, stream: "shuffle")
        var noise = Xoshiro256(seed: config.seed, stream: "noise")
        let params = model.parameters
        let stepsPerEpoch = (data.train.count + batchSize - 1) / batchSize
        var scheduler = Scheduler(try TrialSchedule.from(config, epochs: epochs, stepsPerEpoch: stepsPerEpoch), base: try OptimizerCatalog.learningRate(config))
        let maxLoss = try config.double(TrialSchema.common["max_loss"])
        var result = TrialResult(
            config: config, status: .done, history: [], trajectory: [], parameterCount: params.scalarCount,
            optimizerStateBytes: 0, wallSeconds: 0, engine: BLASRuntime.summary)
        var x = Tensor<T>(zeros: [0])
        var labels: [Int32] = []
        var step = 0
        var firstEpoch = 1
        var gradients = try GradientProcessing<T>(config)
        let augmentation = try Augmentation(config, layout: data.train.layout)
        let sharpnessAware = optimizer as? any SharpnessAware<T>
        let hessian = optimizer as? any HessianEstimating<T>
        let evaluationPoint = optimizer as? any EvaluationPointSwapping<T>
        var diagnostics: LayerDiagnostics<T>?
        if try config.bool(TrialSchema.data["diagnostics"]) {
            var probe = Tensor<T>(zeros: [0]), probeLabels: [Int32] = []
            data.test.gather(Array(0..<min(256, data.test.count))[...], into: &probe, labels: &probeLabels)
            diagnostics = LayerDiagnostics(probe: probe)
        }
        if let resume = checkpoints.resume {
            try params.restore(try resume.tensors(T.self))
            if let buffers = model.buffers {
                try buffers.restore(try resume.tensors(T.self))
            } else if !(try resume.tensors(T.self).bufferNames.isEmpty) {
                throw CheckpointError.parameters("the checkpoint holds buffers the model does not have")
            }
            try optimizer.importState(try resume.tensors(T.self).optimizer, parameters: params)
            (shuffle, noise, scheduler.plateau) = (resume.shuffle, resume.noise, resume.plateau)
            result.history = resume.history
            result.layerStatistics = resume.layerStatistics
            step = resume.step
            firstEpoch = resume.epoch + 1
        }
        diagnostics?.start(model)
        epochLoop: for epoch in firstEpoch...max(firstEpoch, epochs) where epoch <= epochs {
            let t0 = now()
            let order = shuffle.permutation(data.train.count)
            var lossSum = 0.0, normSum = 0.0, steps = 0
            var start = 0
            while start < order.count {
                // One optimizer step: `accumulation` micro-batches (fewer at the end of the epoch).
                scheduler.apply(to: optimizer, epoch: epoch - 1, step: step)
                let stepStart = start
                var stepLoss = 0.0, micro = 0
                var noiseBefore = noise
                while micro < gradients.accumulation && start < order.count {
                    let end = min(start + batchSize, order.count)
                    data.train.gather(order[start..<end], into: &x, labels: &labels)
                    augmentation?.apply(to: &x, rng: &shuffle)
                    if micro == 0 { noiseBefore = noise }
                    let loss = model.lossAndGradients(x: x, labels: labels, rng: &noise)
                    let perExample = model.lossReduction == .sum ? loss / Double(end - start) : loss
                    stepLoss += perExample * Double(end - start)
                    if gradients.accumulation > 1 { gradients.accumulate(params, first: micro == 0) }
                    micro += 1
                    start = end
                }
                if micro > 1 { gradients.finishAccumulation(params, count: micro) }
                let gradNorm = params.gradientNorm
                let perExample = stepLoss / Double(start - stepStart)
                if !perExample.isFinite || !gradNorm.isFinite || perExample > maxLoss {
                    result.status = .diverged
                    result.message =
                        perExample > maxLoss && perExample.isFinite
                        ? "training loss \(perExample) exceeded max_loss \(maxLoss) at epoch \(epoch), step \(step + 1)"
                        : "non-finite \(perExample.isFinite ? "gradient" : "loss") at epoch \(epoch), step \(step + 1)"
                    let record = EpochRecord(
                        epoch: epoch, step: step, trainLoss: .nan, testLoss: .nan, testAccuracy: .nan, gradientNorm: gradNorm,
                        learningRate: optimizer.learningRate, seconds: now() - t0, evalSeconds: 0)
                    result.history.append(record)
                    onEpoch(record)
                    break epochLoop
                }
                gradients.clip(params, norm: gradNorm)
                if let sharpnessAware {
                    // SAM: the gradient again, on the same batch and noise, at the perturbed point.
                    sharpnessAware.perturb(params)
                    var again = noiseBefore
                    model.freezeRunningStatistics(true)
                    _ = model.lossAndGradients(x: x, labels: labels, rng: &again)
                    model.freezeRunningStatistics(false)
                    if gradients.clips { gradients.clip(params, norm: params.gradientNorm) }
                }
                if start >= order.count { diagnostics?.beforeLastStep(params) }
                optimizer.update(params)
                step += 1
                if let hessian, hessian.wantsHessianEstimate {
                    model.sampledTargetGradients(x: x, rng: &noise)
                    hessian.updateHessian(params, batchSize: x.rows)
                }
                lossSum += stepLoss
                normSum += gradNorm
                steps += 1
            }
            let trainSeconds = now() - t0
            if diagnostics != nil { result.layerStatistics += diagnostics!.finishEpoch(epoch, model: model, params: params) }
            let t1 = now()
            var evalNoise = Xoshiro256(seed: config.seed &+ UInt64(epoch), stream: "eval")
            evaluationPoint?.useEvaluationPoint(params)
            let (testLoss, accuracy) = evaluate(model, data.test, batchSize: evalBatch, rng: &evalNoise, buffer: &x, labels: &labels)
            evaluationPoint?.useTrainingPoint(params)
            let record = EpochRecord(
                epoch: epoch, step: step, trainLoss: lossSum / Double(data.train.count), testLoss: testLoss,
                testAccuracy: model.isClassifier ? accuracy : .nan, gradientNorm: normSum / Double(max(steps, 1)),
                learningRate: optimizer.learningRate, seconds: trainSeconds, evalSeconds: now() - t1)
            result.history.append(record)
            onEpoch(record)
            scheduler.endEpoch(record)
            if !testLoss.isFinite || !params.valuesFinite {
                result.status = .diverged
                result.message = "non-finite test loss after epoch \(epoch)"
                break
            }
            if checkpoints.due(epoch, of: epochs) {
                try checkpoints.save(
                    TrainingCheckpoint(
                        config: config, epoch: epoch, step: step, shuffle: shuffle, noise: noise, plateau: scheduler.plateau,
                        history: result.history, trajectory: [], payload: .make(params, optimizer, buffers: model.buffers), layerStatistics: result.layerStatistics))
            }
            if epoch < epochs && shouldStop() {
                result.status = .stopped
                result.message = "stopped after epoch \(epoch)"
                // A stopped trial may be continued later (ASHA promotes paused trials): keep its state.
                if checkpoints.every != nil && !checkpoints.due(epoch, of: epochs) {
                    try checkpoints.save(
                        TrainingCheckpoint(
                            config: config, epoch: epoch, step: step, shuffle: shuffle, noise: noise, plateau: scheduler.plateau,
                            history: result.history, trajectory: [], payload: .make(params, optimizer, buffers: model.buffers), layerStatistics: result.layerStatistics))
                }
                break
            }
        }
        if result.status == .done, let rho = try config.optionalDouble(TrialSchema.data["sharpness_rho"]) {
            evaluationPoint?.useEvaluationPoint(params)
            result.sharpness = sharpness(model, data.train, rho: rho, buffer: &x, labels: &labels)
            evaluationPoint?.useTrainingPoint(params)
            result.message = "sharpness at rho \(formatG(rho)): \(formatG(result.sharpness!))"
        }
        result.recordOptimizer(optimizer, names: params.names)
        result.wallSeconds = now() - started
        return result
    }

    /// SAM's sharpness of the point reached: on the first 2,048 training examples (one batch,
    /// fixed noise), `L(w + ρ·g/‖g‖) − L(w)` with g the gradient there. The parameters are restored.
    static func sharpness<T: BLASScalar>(_ model: any Model<T>, _ data: Dataset, rho: Double, buffer x: inout Tensor<T>, labels: inout [Int32]) -> Double {
        let params = model.parameters
        data.gather(Array(0..<min(2048, data.count))[...], into: &x, labels: &labels)
        var noise = Xoshiro256(seed: 0, stream: "sharpness")
        let rows = Double(x.rows), summed = model.lossReduction == .sum
        let perExample = { (loss: Double) in summed ? loss / rows : loss }
        model.freezeRunningStatistics(true)
        defer { model.freezeRunningStatistics(false) }
        let before = perExample(model.lossAndGradients(x: x, labels: labels, rng: &noise))
        let norm = params.gradientNorm
        guard norm > 0 else { return 0 }
        let saved = params.values
        for i in 0..<params.count {
            for j in 0..<params.values[i].count { params.values[i].storage[j] += T(rho / norm) * params.gradients[i].storage[j] }
        }
        var again = Xoshiro256(seed: 0, stream: "sharpness")
        let after = perExample(model.lossAndGradients(x: x, labels: labels, rng: &again))
        params.values = saved
        return after - before
    }

    /// `mode: lr_range_test`: `range_steps` steps with the learning rate growing geometrically
    /// from `range_start_lr` to `range_end_lr` (see `LRRangeTest`). One history row per step
    /// (epoch = step, train_loss = that batch's loss); the batches cycle through shuffled epochs.
    static func rangeTest<T: BLASScalar>(
        _ config: TrialConfig, _ data: DataSplits, model: any Model<T>, optimizer: any Optimizer<T>, started: Double
    ) throws -> TrialResult {
        let params = model.parameters
        let batchSize = try config.int(TrialSchema.data["batch_size"])
        let steps = try config.int(TrialSchema.data["range_steps"])
        let (low, high) = (try config.double(TrialSchema.data["range_start_lr"]), try config.double(TrialSchema.data["range_end_lr"]))
        let smoothing = try config.double(TrialSchema.data["range_smoothing"])
        var shuffle = Xoshiro256(seed: config.seed, stream: "shuffle")
        var noise = Xoshiro256(seed: config.seed, stream: "noise")
        var result = TrialResult(
            config: config, status: .done, history: [], trajectory: [], parameterCount: params.scalarCount,
            optimizerStateBytes: 0, wallSeconds: 0, engine: BLASRuntime.summary)
        var test = LRRangeTest(stopReason: "reached range_end_lr after \(steps) steps")
        var x = Tensor<T>(zeros: [0]), labels: [Int32] = []
        var order: [Int] = [], position = 0
        var average = 0.0, best = Double.infinity
        let factor = Double.pow(high / low, 1 / Double(steps))
        var lr = low
        for i in 0..<steps {
            let t0 = now()
            if position >= order.count { (order, position) = (shuffle.permutation(data.train.count), 0) }
            let end = min(position + batchSize, order.count)
            data.train.gather(order[position..<end], into: &x, labels: &labels)
            position = end
            optimizer.learningRate = lr
            let noiseBefore = noise
            let loss = model.lossAndGradients(x: x, labels: labels, rng: &noise)
            let perExample = model.lossReduction == .sum ? loss / Double(x.rows) : loss
            average = i == 0 ? perExample : smoothing * perExample + (1 - smoothing) * average
            if !perExample.isFinite || average > 4 * best {
                test.stopReason = "stopped at step \(i + 1), lr \(formatG(lr)): the smoothed loss \(perExample.isFinite ? "exceeded 4× its best \(formatG(best))" : "became non-finite")"
                break
            }
            best = min(best, average)
            test.learningRates.append(lr)
            test.smoothedLosses.append(average)
            let norm = params.gradientNorm
            if let sharpnessAware = optimizer as? any SharpnessAware<T> {
                // SAM: the gradient again, on the same batch and noise, at the perturbed point.
                sharpnessAware.perturb(params)
                var again = noiseBefore
                model.freezeRunningStatistics(true)
                _ = model.lossAndGradients(x: x, labels: labels, rng: &again)
                model.freezeRunningStatistics(false)
            }
            optimizer.update(params)
            let record = EpochRecord(
                epoch: i + 1, step: i + 1, trainLoss: perExample, testLoss: .nan, testAccuracy: .nan, gradientNorm: norm, learningRate: lr,
                seconds: now() - t0, evalSeconds: 0)
            result.history.append(record)
            lr *= factor
        }
        test.suggested = LRRangeTest.suggest(test.learningRates, test.smoothedLosses)
        result.message = (test.suggested.map { "suggested lr \(formatG($0)) (steepest descent of the smoothed loss); " } ?? "too few points for a suggestion; ") + test.stopReason
        result.lrRangeTest = test
        result.recordOptimizer(optimizer, names: params.names)
        result.wallSeconds = now() - started
        return result
    }

    /// `model: polyfit`: the closed-form minimum-norm fit (no optimizer steps); one history row
    /// with the train and test mean squared errors (`grad_norm` holds the coefficients' norm).
    static func fitPolynomial(_ config: TrialConfig, onEpoch: (EpochRecord) -> Void) throws -> TrialResult {
        let started = now()
        let fit = PolynomialFit(
            degree: try config.int(TrialSchema.models["polyfit"]!["degree"]), points: try config.int(TrialSchema.models["polyfit"]!["points"]),
            noise: try config.double(TrialSchema.models["polyfit"]!["noise"]),
            seed: config.seed)
        let (train, test, norm) = try fit.fit()
        let record = EpochRecord(epoch: 1, step: 0, trainLoss: train, testLoss: test, testAccuracy: .nan, gradientNorm: norm, learningRate: 0, seconds: now() - started, evalSeconds: 0)
        onEpoch(record)
        return TrialResult(
            config: config, status: test.isFinite ? .done : .diverged, message: "minimum-norm least squares, degree \(fit.degree), \(fit.points) points",
            history: [record], trajectory: [], parameterCount: fit.degree + 1, optimizerStateBytes: 0, wallSeconds: now() - started, engine: BLASRuntime.summary)
    }

    /// Mean loss per example and accuracy over a data set, in batches, without gradients.
    static func evaluate<T: BLASScalar>(
        _ model: any Model<T>, _ data: Dataset, batchSize: Int, rng: inout Xoshiro256, buffer: inout Tensor<T>, labels: inout [Int32]
    ) -> (loss: Double, accuracy: Double) {
        var lossSum = 0.0, correct = 0
        let indices = Array(0..<data.count)
        let labelsPerExample = model.labelsPerExample
        var start = 0
        while start < data.count {
            let end = min(start + batchSize, data.count)
            data.gather(indices[start..<end], into: &buffer, labels: &labels)
            let (l, c) = model.evaluate(x: buffer, labels: labels, rng: &rng)
            lossSum += l
            correct += c
            start = end
        }
        return (lossSum / Double(max(data.count, 1)), Double(correct) / Double(max(data.count * labelsPerExample, 1)))
    }

    /// Toy objectives: `steps` optimizer steps from the start point, in float64, recording the
    /// trajectory and one history row per step.
    static func runObjective(_ config: TrialConfig, checkpoints: CheckpointPolicy, shouldStop: () -> Bool, onStep: (EpochRecord) -> Void) throws -> TrialResult {
        let started = now()
        let objective = try Builders.objective(config)
        let optimizer: any Optimizer<Double> = try Builders.optimizer(config)
        let steps = try config.length()
        let params = Parameters<Double>([(name: "x", value: Tensor(vector: objective.start))])
        var scheduler = Scheduler(try TrialSchedule.from(config, epochs: steps, stepsPerEpoch: 1), base: try OptimizerCatalog.learningRate(config))
        let maxLoss = try config.double(TrialSchema.common["max_loss"])
        let clipping = try GradientProcessing<Double>(config)
        var result = TrialResult(
            config: config, status: .done, history: [], trajectory: [objective.start], parameterCount: objective.start.count,
            optimizerStateBytes: 0, wallSeconds: 0, engine: "scalar")
        var firstStep = 1
        if let resume = checkpoints.resume {
            try params.restore(try resume.tensors(Double.self))
            try optimizer.importState(try resume.tensors(Double.self).optimizer, parameters: params)
            scheduler.plateau = resume.plateau
            result.history = resume.history
            result.trajectory = resume.trajectory
            firstStep = resume.epoch + 1
        }
        for step in firstStep...max(firstStep, steps) where step <= steps {
            let t0 = now()
            let (value, gradient) = objective.evaluate(params.values[0].storage)
            params.gradients[0].storage = gradient
            let norm = params.gradientNorm
            clipping.clip(params, norm: norm)
            if !value.isFinite || !norm.isFinite || value > maxLoss {
                result.status = .diverged
                result.message = value > maxLoss && value.isFinite ? "loss \(value) exceeded max_loss \(maxLoss) at step \(step)" : "non-finite value at step \(step)"
                let record = EpochRecord(
                    epoch: step, step: step - 1, trainLoss: value, testLoss: .nan, testAccuracy: .nan, gradientNorm: norm, learningRate: optimizer.learningRate, seconds: now() - t0, evalSeconds: 0)
                result.history.append(record)
                onStep(record)
                break
            }
            scheduler.apply(to: optimizer, epoch: step - 1, step: step - 1)
            if let sharpnessAware = optimizer as? any SharpnessAware<Double> {
                // SAM: the gradient again, at the perturbed point (the objective is deterministic).
                sharpnessAware.perturb(params)
                params.gradients[0].storage = objective.evaluate(params.values[0].storage).gradient
                if clipping.clips { clipping.clip(params, norm: params.gradientNorm) }
            }
            optimizer.update(params)
            result.trajectory.append(params.values[0].storage)
            let record = EpochRecord(
                epoch: step, step: step, trainLoss: value, testLoss: .nan, testAccuracy: .nan, gradientNorm: norm, learningRate: optimizer.learningRate, seconds: now() - t0, evalSeconds: 0)
            result.history.append(record)
            onStep(record)
            let stopping = step < steps && shouldStop()
            if checkpoints.due(step, of: steps) || (stopping && checkpoints.every != nil) {
                try checkpoints.save(
                    TrainingCheckpoint(
                        config: config, epoch: step, step: step, shuffle: Xoshiro256(seed: 0), noise: Xoshiro256(seed: 0), plateau: scheduler.plateau,
                        history: result.history, trajectory: result.trajectory, payload: .make(params, optimizer)))
            }
            if stopping {
                result.status = .stopped
                result.message = "stopped after step \(step)"
                break
            }
        }
        result.recordOptimizer(optimizer, names: params.names)
        result.wallSeconds = now() - started
        return result
    }
}

func formatG(_ x: Double) -> String {
    var buf = [CChar](repeating: 0, count: 32)
    _ = withVaList([x]) { vsnprintf(&buf, buf.count, "%.3g", $0) }
    return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Monotonic seconds.
@inline(__always)
public func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Applies a trial's schedule to its optimizer: the learning rate (and one-cycle momentum) before
/// every optimizer step, the plateau rule after every evaluated epoch.
struct Scheduler {
    let trial: TrialSchedule
    let base: Double
    var plateau: PlateauState?

    init(_ trial: TrialSchedule, base: Double) {
        self.trial = trial
        self.base = base
        if case .reduceOnPlateau(let mode, _, _, _, _, _, _) = trial.schedule { plateau = PlateauState(mode: mode, learningRate: base) }
    }

    /// `epoch` and `step` count from 0 (the epoch in progress, the optimizer steps already taken).
    func apply<T>(to optimizer: any Optimizer<T>, epoch: Int, step: Int) {
        let t = trial.interval == .step ? step : epoch
        optimizer.learningRate = plateau?.learningRate ?? trial.schedule(t, base: base)
        if let (low, high) = trial.cycledMomentum, let cycling = optimizer as? any MomentumCycling,
            let m = trial.schedule.momentum(t, base: low, max: high)
        {
            cycling.cycledMomentum = m
        }
    }

    mutating func endEpoch(_ record: EpochRecord) {
        guard plateau != nil else { return }
        let metric = (Metric(rawValue: trial.plateauMetric) ?? .testLoss).value(in: record)
        _ = plateau!.observe(metric, trial.schedule)
    }
}
