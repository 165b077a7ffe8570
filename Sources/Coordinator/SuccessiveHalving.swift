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
struct SuccessiveHalving {
    let minEpochs: Int
    let reductionFactor: Int
    let maximize: Bool
    /// rung → trial → the objective at the rung's epoch.
    private(set) var rungs: [[Int: Double]] = []
    /// rung → trials already promoted out of it.
    private(set) var promoted: [Set<Int>] = []

    init(minEpochs: Int, reductionFactor: Int, maximize: Bool) {
        self.minEpochs = minEpochs
        self.reductionFactor = reductionFactor
        self.maximize = maximize
    }

    /// The rung epochs of a trial that runs `length` epochs.
    func levels(length: Int) -> [Int] {
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
    func pauseTarget(after epoch: Int, length: Int) -> Int? { levels(length: length).first { $0 > epoch } }

    func rung(ofEpoch epoch: Int, length: Int) -> Int? { levels(length: length).firstIndex(of: epoch) }

    /// Records a trial's objective at `epoch` if that epoch is one of its rungs.
    mutating func record(trial: Int, epoch: Int, value: Double, length: Int) {
        guard let k = rung(ofEpoch: epoch, length: length) else { return }
        while rungs.count <= k {
            rungs.append([:])
            promoted.append([])
        }
        rungs[k][trial] = value.isNaN ? (maximize ? -.infinity : .infinity) : value
    }

    /// Marks a trial as having left rung `k` (it ran past it; rebuilt after a restart).
    mutating func markPromoted(trial: Int, from k: Int) {
        guard k < promoted.count else { return }
        promoted[k].insert(trial)
    }

    /// Undoes a promotion that could not be sent.
    mutating func unmarkPromoted(trial: Int, from k: Int) { promoted[k].remove(trial) }

    /// Trials recorded at rung k, best first (ties by trial index, so the order is stable).
    func ranking(_ k: Int) -> [(trial: Int, value: Double)] {
        rungs[k].map { (trial: $0.key, value: $0.value) }.sorted {
            $0.value != $1.value ? (maximize ? $0.value > $1.value : $0.value < $1.value) : $0.trial < $1.trial
        }
    }

    /// How many of rung k's trials deserve promotion now.
    func quota(_ k: Int) -> Int { rungs[k].count / reductionFactor }

    /// Whether some paused trial deserves promotion now (nothing is marked).
    func canPromote(isPaused: (Int, Int) -> Bool) -> Bool {
        var copy = self
        return copy.promotion(isPaused: isPaused) != nil
    }

    /// The best trial to promote, highest rung first: one in the top ⌊n/η⌋ of its rung, not yet
    /// promoted, and paused there (`isPaused(trial, rung)`). Marks it promoted.
    mutating func promotion(isPaused: (Int, Int) -> Bool) -> (trial: Int, rung: Int)? {
        for k in rungs.indices.reversed() {
            for entry in ranking(k).prefix(quota(k)) where !promoted[k].contains(entry.trial) && isPaused(entry.trial, k) {
                promoted[k].insert(entry.trial)
                return (entry.trial, k)
            }
        }
        return nil
    }

    /// Why a paused trial was never promoted (the sweep ended with it still waiting).
    func reason(notPromoted trial: Int, rung k: Int, epoch: Int, metric: String) -> String {
        let ranked = ranking(k)
        let rank = (ranked.firstIndex { $0.trial == trial } ?? ranked.count) + 1
        let value = rungs[k][trial].map { String(format: "%.4g", $0) } ?? "n/a"
        return "ASHA: not promoted from rung \(k) (epoch \(epoch)): \(metric) \(value) ranked \(rank) of \(ranked.count); "
            + "only the top \(quota(k)) (1/\(reductionFactor)) continue"
    }
}
