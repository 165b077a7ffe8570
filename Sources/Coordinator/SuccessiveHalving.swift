import Sweeps

/// ASHA's book-keeping (Li et al., "A System for Massively Parallel Hyperparameter Tuning",
/// MLSys 2020, algorithm 2), on epochs (steps for toy objectives).
///
/// Rung k sits at `minEpochs·η^k` epochs, for every level below the trial's own length (its last
/// epoch is not a rung: reaching it finishes the trial). Every trial pauses at each rung; the
/// coordinator asks `promotion` whenever a worker has a free slot, and only starts a new trial
/// when no paused one ranks in the top ⌊n/η⌋ of the n trials recorded at its rung, looking
/// from the highest rung down. Because rankings are taken against whatever has been recorded so
/// far, promotions happen as soon as they are justified, without waiting for a rung to fill.
public struct SuccessiveHalving: Sendable {
    let minEpochs: Int
    let reductionFactor: Int
    let maximize: Bool
    /// rung → trial → the objective at the rung's epoch.
    private(set) var rungs: [[Int: Double]] = []
    /// rung → its trials best first (ties by trial index), kept sorted as records arrive, so a
    /// promotion looks at the top of each rung instead of sorting it.
    private(set) var ranked: [[(value: Double, trial: Int)]] = []
    /// rung → trials already promoted out of it.
    private(set) var promoted: [Set<Int>] = []

    public init(minEpochs: Int, reductionFactor: Int, maximize: Bool) {
        self.minEpochs = minEpochs
        self.reductionFactor = reductionFactor
        self.maximize = maximize
    }

    /// The rung epochs of a trial that runs `length` epochs.
    public func levels(length: Int) -> [Int] {
        var levels: [Int] = []
        var e = minEpochs
        while e < length {
            levels.append(e)
            let (next, overflow) = e.multipliedReportingOverflow(by: reductionFactor)
            if overflow { break }
            e = next
        }
        return levels
    }

    /// The epoch at which a trial at `epoch` (0 when it has not started) should next pause.
    public func pauseTarget(after epoch: Int, length: Int) -> Int? { levels(length: length).first { $0 > epoch } }

    public func rung(ofEpoch epoch: Int, length: Int) -> Int? { levels(length: length).firstIndex(of: epoch) }

    /// Records a trial's objective at `epoch` if that epoch is one of its rungs.
    public mutating func record(trial: Int, epoch: Int, value: Double, length: Int) {
        guard let k = rung(ofEpoch: epoch, length: length) else { return }
        while rungs.count <= k {
            rungs.append([:])
            ranked.append([])
            promoted.append([])
        }
        let v = value.isNaN ? (maximize ? -.infinity : .infinity) : value
        if let old = rungs[k][trial] {
            if old == v { return }
            if let at = ranked[k].firstIndex(where: { $0.trial == trial }) { ranked[k].remove(at: at) }
        }
        rungs[k][trial] = v
        let entry = (value: v, trial: trial)
        var low = 0, high = ranked[k].count
        while low < high {
            let mid = (low + high) / 2
            if precedes(ranked[k][mid], entry) { low = mid + 1 } else { high = mid }
        }
        ranked[k].insert(entry, at: low)
    }

    private func precedes(_ a: (value: Double, trial: Int), _ b: (value: Double, trial: Int)) -> Bool {
        a.value != b.value ? (maximize ? a.value > b.value : a.value < b.value) : a.trial < b.trial
    }

    /// Marks a trial as having left rung `k` (it ran past it; rebuilt after a restart).
    public mutating func markPromoted(trial: Int, from k: Int) {
        guard k < promoted.count else { return }
        promoted[k].insert(trial)
    }

    /// Undoes a promotion that could not be sent.
    public mutating func unmarkPromoted(trial: Int, from k: Int) { promoted[k].remove(trial) }

    /// Trials recorded at rung k, best first (ties by trial index, so the order is stable).
    public func ranking(_ k: Int) -> [(trial: Int, value: Double)] { ranked[k].map { (trial: $0.trial, value: $0.value) } }

    /// How many of rung k's trials deserve promotion now.
    public func quota(_ k: Int) -> Int { rungs[k].count / reductionFactor }

    /// Whether some paused trial deserves promotion now (nothing is marked).
    public func canPromote(isPaused: (Int, Int) -> Bool) -> Bool {
        var copy = self
        return copy.promotion(isPaused: isPaused) != nil
    }

    /// The best trial to promote, highest rung first: one in the top ⌊n/η⌋ of its rung, not yet
    /// promoted, and paused there (`isPaused(trial, rung)`). Marks it promoted.
    public mutating func promotion(isPaused: (Int, Int) -> Bool) -> (trial: Int, rung: Int)? {
        for k in rungs.indices.reversed() {
            for entry in ranked[k].prefix(quota(k)) where !promoted[k].contains(entry.trial) && isPaused(entry.trial, k) {
                promoted[k].insert(entry.trial)
                return (entry.trial, k)
            }
        }
        return nil
    }

    /// Why a paused trial was never promoted (the sweep ended with it still waiting).
    public func reason(notPromoted trial: Int, rung k: Int, epoch: Int, metric: String) -> String {
        let ranked = ranking(k)
        let rank = (ranked.firstIndex { $0.trial == trial } ?? ranked.count) + 1
        let value = rungs[k][trial].map { String(format: "%.4g", $0) } ?? "n/a"
        return "ASHA: not promoted from rung \(k) (epoch \(epoch)): \(metric) \(value) ranked \(rank) of \(ranked.count); "
            + "only the top \(quota(k)) (1/\(reductionFactor)) continue"
    }
}
