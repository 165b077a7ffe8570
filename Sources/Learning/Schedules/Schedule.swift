import Glibc

/// A learning-rate schedule as a value: it travels in a trial, is written to results, and gives
/// the learning rate at any step in closed form, with `torch.optim.lr_scheduler` semantics.
/// The counter `t` is the number of scheduler steps taken (epochs or optimizer steps, per the
/// trial's `schedule_interval`), starting at 0 for the first epoch or step.
public indirect enum Schedule: Sendable, Equatable, Codable {
    case constant
    /// `StepLR`: lr·γ^⌊t/stepSize⌋.
    case step(stepSize: Int, gamma: Double)
    /// `MultiStepLR`: lr·γ^(number of milestones ≤ t).
    case multiStep(milestones: [Int], gamma: Double)
    /// `ExponentialLR`: lr·γ^t.
    case exponential(gamma: Double)
    /// `CosineAnnealingLR`: η_min + (lr − η_min)·(1 + cos(π·t/T_max))/2 (period 2·T_max beyond T_max).
    case cosine(tMax: Int, etaMin: Double)
    /// `CosineAnnealingWarmRestarts`.
    case cosineWarmRestarts(t0: Int, tMult: Int, etaMin: Double)
    /// `OneCycleLR` (two or three phases, cosine or linear annealing); also cycles momentum/β₁.
    case oneCycle(maxLR: Double, totalSteps: Int, pctStart: Double, cosineAnneal: Bool, divFactor: Double, finalDivFactor: Double, threePhase: Bool)
    /// `LinearLR`: factor from startFactor to endFactor over totalIters.
    case linear(startFactor: Double, endFactor: Double, totalIters: Int)
    /// `ConstantLR`: lr·factor while t < totalIters, then lr.
    case constantFactor(factor: Double, totalIters: Int)
    /// `PolynomialLR`: lr·(1 − min(t, T)/T)^power.
    case polynomial(totalIters: Int, power: Double)
    /// The optimizer notes' `WarmupCosineSchedule` (001, §5): factor t/warmup during the warm-up,
    /// then minRatio + (1 − minRatio)·(1 + cos(π·progress))/2 with progress = (t − warmup)/(total − warmup).
    case warmupCosine(warmup: Int, total: Int, minRatio: Double)
    /// `SequentialLR`: `first` until `milestone`, then `then` restarted at 0.
    case sequential(first: Schedule, milestone: Int, then: Schedule)
    /// `ReduceLROnPlateau`: driven by the evaluated metric, not by `t` (see `PlateauState`).
    case reduceOnPlateau(mode: PlateauMode, factor: Double, patience: Int, threshold: Double, relativeThreshold: Bool, cooldown: Int, minLR: Double)

    public enum PlateauMode: String, Sendable, Codable { case min, max }

    /// The learning rate after `t` scheduler steps, for base learning rate `base`.
    public func callAsFunction(_ t: Int, base: Double) -> Double {
        let t = max(t, 0)
        switch self {
        case .constant, .reduceOnPlateau:
            return base
        case .step(let size, let gamma):
            return base * Double.pow(gamma, Double(t / size))
        case .multiStep(let milestones, let gamma):
            return base * Double.pow(gamma, Double(milestones.filter { $0 <= t }.count))
        case .exponential(let gamma):
            return base * Double.pow(gamma, Double(t))
        case .cosine(let tMax, let etaMin):
            return etaMin + (base - etaMin) * (1 + Glibc.cos(Double.pi * Double(t) / Double(tMax))) / 2
        case .cosineWarmRestarts(let t0, let tMult, let etaMin):
            var tCur = t, period = t0
            if tMult == 1 {
                tCur = t % t0
            } else {
                while tCur >= period {
                    tCur -= period
                    period *= tMult
                }
            }
            return etaMin + (base - etaMin) * (1 + Glibc.cos(Double.pi * Double(tCur) / Double(period))) / 2
        case .oneCycle(let maxLR, let total, let pctStart, let cosineAnneal, let div, let finalDiv, let threePhase):
            let initial = maxLR / div, minimum = initial / finalDiv
            let phases = Self.oneCyclePhases(total: total, pctStart: pctStart, threePhase: threePhase, initial: initial, maxLR: maxLR, minimum: minimum)
            return Self.oneCycleValue(t, phases: phases, cosine: cosineAnneal)
        case .linear(let start, let end, let iters):
            return base * (start + (end - start) * Double(min(t, iters)) / Double(iters))
        case .constantFactor(let factor, let iters):
            return t < iters ? base * factor : base
        case .polynomial(let iters, let power):
            return base * Double.pow(1 - Double(min(t, iters)) / Double(iters), power)
        case .warmupCosine(let warmup, let total, let minRatio):
            if t < warmup { return base * (Double(t) / Double(max(1, warmup))) }
            let progress = Double(t - warmup) / Double(max(1, total - warmup))
            return base * (minRatio + (1 - minRatio) * 0.5 * (1 + Glibc.cos(Double.pi * progress)))
        case .sequential(let first, let milestone, let then):
            return t < milestone ? first(t, base: base) : then(t - milestone, base: base)
        }
    }

    /// One-cycle momentum (or β₁) at step `t`, cycling inversely to the learning rate.
    public func momentum(_ t: Int, base: Double, max maxMomentum: Double) -> Double? {
        guard case .oneCycle(_, let total, let pctStart, let cosineAnneal, _, _, let threePhase) = self else { return nil }
        let phases = Self.oneCyclePhases(total: total, pctStart: pctStart, threePhase: threePhase, initial: maxMomentum, maxLR: base, minimum: maxMomentum)
        return Self.oneCycleValue(max(t, 0), phases: phases, cosine: cosineAnneal)
    }

    struct Phase { let end: Double; let start: Double; let stop: Double }

    /// torch's phase table: end step (inclusive index), start and end values.
    static func oneCyclePhases(total: Int, pctStart: Double, threePhase: Bool, initial: Double, maxLR: Double, minimum: Double) -> [Phase] {
        if threePhase {
            return [
                Phase(end: pctStart * Double(total) - 1, start: initial, stop: maxLR),
                Phase(end: 2 * pctStart * Double(total) - 2, start: maxLR, stop: initial),
                Phase(end: Double(total) - 1, start: initial, stop: minimum),
            ]
        }
        return [
            Phase(end: pctStart * Double(total) - 1, start: initial, stop: maxLR),
            Phase(end: Double(total) - 1, start: maxLR, stop: minimum),
        ]
    }

    static func oneCycleValue(_ t: Int, phases: [Phase], cosine: Bool) -> Double {
        let step = Double(t)
        var startStep = 0.0
        for (i, phase) in phases.enumerated() {
            if step <= phase.end || i == phases.count - 1 {
                let pct = (step - startStep) / (phase.end - startStep)
                if cosine { return phase.stop + (phase.start - phase.stop) / 2 * (Glibc.cos(Double.pi * pct) + 1) }
                return (phase.stop - phase.start) * pct + phase.start
            }
            startStep = phase.end
        }
        return phases.last!.stop
    }
}

/// `ReduceLROnPlateau`'s running state (exported with checkpoints).
public struct PlateauState: Sendable, Equatable, Codable {
    public var best: Double
    public var badEpochs = 0
    public var cooldownCounter = 0
    public var learningRate: Double

    public init(mode: Schedule.PlateauMode, learningRate: Double) {
        best = mode == .min ? .infinity : -.infinity
        self.learningRate = learningRate
    }

    /// Feeds one evaluated metric; returns the (possibly reduced) learning rate.
    public mutating func observe(_ metric: Double, _ schedule: Schedule) -> Double {
        guard case .reduceOnPlateau(let mode, let factor, let patience, let threshold, let relative, let cooldown, let minLR) = schedule else { return learningRate }
        let better: Bool
        switch (mode, relative) {
        case (.min, true): better = metric < best * (1 - threshold)
        case (.min, false): better = metric < best - threshold
        case (.max, true): better = metric > best * (threshold + 1)
        case (.max, false): better = metric > best + threshold
        }
        if better {
            best = metric
            badEpochs = 0
        } else {
            badEpochs += 1
        }
        if cooldownCounter > 0 {
            cooldownCounter -= 1
            badEpochs = 0
        }
        if badEpochs > patience {
            let reduced = max(learningRate * factor, minLR)
            // torch ignores reductions smaller than eps = 1e-8.
            if learningRate - reduced > 1e-8 { learningRate = reduced }
            cooldownCounter = cooldown
            badEpochs = 0
        }
        return learningRate
    }
}
