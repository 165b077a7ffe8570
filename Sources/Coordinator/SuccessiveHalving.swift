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
///
/// A promotion looks only at the best trial waiting at each rung (a heap of the trials paused
/// there, `waiting`) and at its rank (`BlockedRanking`), never along a rung: with 100,000
/// trials, rung 0's top third is mostly promoted already, and a free slot must not cost a pass
/// over it.
public struct SuccessiveHalving: Sendable {
    let minEpochs: Int
    let reductionFactor: Int
    let maximize: Bool
    /// rung → trial → the objective at the rung's epoch.
    private(set) var rungs: [[Int: Double]] = []
    /// rung → its trials best first (ties by trial index), kept in order as records arrive.
    private(set) var ranked: [BlockedRanking<Entry>] = []
    /// rung → trials already promoted out of it.
    private(set) var promoted: [Set<Int>] = []
    /// rung → the trials paused there and not promoted (`waiting`), and a heap of them best
    /// first; an entry whose trial left, or whose value changed, is dropped when it surfaces.
    private var candidates: [Set<Int>] = []
    private var candidateHeaps: [MinHeap<Entry>] = []

    /// A trial's value at a rung, ordered as the rung ranks it: best first, ties by trial index.
    struct Entry: Comparable, Sendable {
        var value: Double
        var trial: Int
        var maximize: Bool
        static func < (a: Entry, b: Entry) -> Bool { a.value != b.value ? (a.maximize ? a.value > b.value : a.value < b.value) : a.trial < b.trial }
        static func == (a: Entry, b: Entry) -> Bool { a.value == b.value && a.trial == b.trial }
    }

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
            ranked.append(BlockedRanking())
            promoted.append([])
            candidates.append([])
            candidateHeaps.append(MinHeap())
        }
        let v = value.isNaN ? (maximize ? -.infinity : .infinity) : value
        if let old = rungs[k][trial] {
            if old == v { return }
            ranked[k].remove(Entry(value: old, trial: trial, maximize: maximize))
        }
        rungs[k][trial] = v
        let entry = Entry(value: v, trial: trial, maximize: maximize)
        ranked[k].insert(entry)
        if candidates[k].contains(trial) { candidateHeaps[k].push(entry) }
    }

    /// A trial now waits at rung k (paused there, with its value recorded) for promotion.
    public mutating func waiting(trial: Int, at k: Int) {
        guard k < rungs.count, let v = rungs[k][trial], !promoted[k].contains(trial) else { return }
        candidates[k].insert(trial)
        candidateHeaps[k].push(Entry(value: v, trial: trial, maximize: maximize))
    }

    /// Marks a trial as having left rung `k` (it ran past it; rebuilt after a restart).
    public mutating func markPromoted(trial: Int, from k: Int) {
        guard k < promoted.count else { return }
        promoted[k].insert(trial)
        candidates[k].remove(trial)
    }

    /// Undoes a promotion that could not be sent.
    public mutating func unmarkPromoted(trial: Int, from k: Int) { promoted[k].remove(trial) }

    /// Trials recorded at rung k, best first (ties by trial index, so the order is stable).
    public func ranking(_ k: Int) -> [(trial: Int, value: Double)] { ranked[k].all.map { (trial: $0.trial, value: $0.value) } }

    /// How many of rung k's trials deserve promotion now.
    public func quota(_ k: Int) -> Int { rungs[k].count / reductionFactor }

    /// Whether some paused trial deserves promotion now (nothing is marked).
    public mutating func canPromote(isPaused: (Int, Int) -> Bool) -> Bool { best(isPaused: isPaused) != nil }

    /// The best trial to promote, highest rung first: one in the top ⌊n/η⌋ of its rung, not yet
    /// promoted, and paused there (`waiting`, and `isPaused(trial, rung)`). Marks it promoted.
    public mutating func promotion(isPaused: (Int, Int) -> Bool) -> (trial: Int, rung: Int)? {
        guard let (trial, k) = best(isPaused: isPaused) else { return nil }
        candidateHeaps[k].popMin()
        markPromoted(trial: trial, from: k)
        return (trial, k)
    }

    /// The trial `promotion` would pick, without marking it: at each rung, the best trial still
    /// waiting there (stale heap entries dropped on the way), if it ranks within the quota.
    private mutating func best(isPaused: (Int, Int) -> Bool) -> (trial: Int, rung: Int)? {
        for k in rungs.indices.reversed() {
            while let e = candidateHeaps[k].min {
                guard candidates[k].contains(e.trial), !promoted[k].contains(e.trial), isPaused(e.trial, k) else {
                    candidateHeaps[k].popMin()
                    candidates[k].remove(e.trial)
                    continue
                }
                guard rungs[k][e.trial] == e.value else {
                    candidateHeaps[k].popMin()
                    continue
                }
                if ranked[k].rank(of: e) < quota(k) { return (e.trial, k) }
                break
            }
        }
        return nil
    }

    /// Why a paused trial was never promoted (the sweep ended with it still waiting).
    public func reason(notPromoted trial: Int, rung k: Int, epoch: Int, metric: String) -> String {
        let n = ranked[k].count
        let rank = rungs[k][trial].map { ranked[k].rank(of: Entry(value: $0, trial: trial, maximize: maximize)) + 1 } ?? n + 1
        let value = rungs[k][trial].map { String(format: "%.4g", $0) } ?? "n/a"
        return "ASHA: not promoted from rung \(k) (epoch \(epoch)): \(metric) \(value) ranked \(rank) of \(n); "
            + "only the top \(quota(k)) (1/\(reductionFactor)) continue"
    }
}
