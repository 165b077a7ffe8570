import Learning
import Sweeps

/// One run of a trial the scheduler wants leased: where it should pause (ASHA's next rung), and
/// whether it continues a paused trial (a promotion, which does not count as a retry).
public struct ScheduledRun: Equatable, Sendable {
    public var trial: Int
    public var pauseAfter: Int?
    public var promotedFrom: Int?
    public init(trial: Int, pauseAfter: Int? = nil, promotedFrom: Int? = nil) {
        self.trial = trial
        self.pauseAfter = pauseAfter
        self.promotedFrom = promotedFrom
    }
}

/// What becomes of a trial whose attempt ended with a result.
public enum RunEnding: Equatable, Sendable {
    /// It is finished: commit it.
    case finish
    /// It reached a rung and waits there, with its checkpoint, to be promoted.
    case pause(rung: Int)
}

/// The sweep's policy, decided from events and unaware of sockets, workers and files: which
/// trial runs next on a free slot, and which running trial stops, pauses or is promoted. Grid
/// and random sweeps run their trials in order (`TrialQueue`); the median stopping rule and ASHA
/// add stopping on top of that order. Adaptive searches (TPE, Gaussian processes, PBT) are
/// further implementations of the same protocol.
///
/// Trials are the sweep's indices. The coordinator calls `add` for each trial, `next` for every free slot, `unsent`
/// when a run could not be sent, `requeue` when an attempt ended without a usable result,
/// `adopt` when a worker proves it still runs an attempt (after a coordinator restart),
/// `observe` for each record of a running trial and `ended` for each result; when nothing is in
/// flight it asks `abandoned` which waiting trials will never run again.
public protocol TrialScheduler {
    /// A trial of the sweep (numbered in order), with its length; `waiting` if it is to run
    /// (false for a trial an earlier run committed). A search adds trials as it suggests them.
    mutating func add(_ trial: Int, length: Int, waiting: Bool)
    mutating func next() -> ScheduledRun?
    mutating func unsent(_ run: ScheduledRun)
    mutating func requeue(_ trial: Int)
    mutating func adopt(_ trial: Int)
    /// A reason to stop the trial now, or nil.
    mutating func observe(_ trial: Int, epoch: Int, value: Double) -> String?
    mutating func ended(_ trial: Int, status: TrialStatus, lastEpoch: Int) -> RunEnding
    /// Waiting trials that will never run again now that nothing is in flight, with the reason.
    mutating func abandoned() -> [(trial: Int, reason: String)]
    /// Trials waiting to be started (not paused ones).
    var waiting: Int { get }
}

/// Trials in the order they are to be started: the sweep's order, retries at the back. Removal
/// (an adopted trial) is O(1): it is marked and skipped when reached.
public struct TrialQueue: Sendable {
    private var items: [Int] = []
    private var head = 0
    /// Trial → how many of its entries are live (an entry removed by `remove` is skipped).
    private var live: [Int: Int] = [:]
    public private(set) var count = 0

    public init(_ trials: [Int] = []) {
        for t in trials { push(t) }
    }

    public mutating func push(_ trial: Int) {
        items.append(trial)
        live[trial, default: 0] += 1
        count += 1
    }

    public mutating func pop() -> Int? {
        while head < items.count {
            let t = items[head]
            head += 1
            if head > 4096 && head * 2 > items.count {
                items.removeFirst(head)
                head = 0
            }
            guard let n = live[t], n > 0 else { continue }
            live[t] = n == 1 ? nil : n - 1
            count -= 1
            return t
        }
        return nil
    }

    /// Puts a trial just popped back at the front.
    public mutating func unpop(_ trial: Int) {
        if head > 0 && items[head - 1] == trial { head -= 1 } else { items.insert(trial, at: head) }
        live[trial, default: 0] += 1
        count += 1
    }

    public mutating func remove(_ trial: Int) {
        guard let n = live.removeValue(forKey: trial) else { return }
        count -= n
    }

}

/// Grid and random sweeps: every trial once, in order; retries at the back.
public struct InOrder: TrialScheduler {
    var queue: TrialQueue

    public init(trials: [Int]) { queue = TrialQueue(trials) }

    public mutating func add(_ trial: Int, length: Int, waiting: Bool) { if waiting { queue.push(trial) } }
    public mutating func next() -> ScheduledRun? { queue.pop().map { ScheduledRun(trial: $0) } }
    public mutating func unsent(_ run: ScheduledRun) { queue.unpop(run.trial) }
    public mutating func requeue(_ trial: Int) { queue.push(trial) }
    public mutating func adopt(_ trial: Int) { queue.remove(trial) }
    public mutating func observe(_ trial: Int, epoch: Int, value: Double) -> String? { nil }
    public mutating func ended(_ trial: Int, status: TrialStatus, lastEpoch: Int) -> RunEnding { .finish }
    public mutating func abandoned() -> [(trial: Int, reason: String)] { [] }
    public var waiting: Int { queue.count }
}

/// The median stopping rule (Golovin et al. 2017, as in Vizier and Ray Tune): at epoch e past the
/// grace period, a trial whose best value so far is worse than the median of the other trials'
/// running averages up to e is stopped. Curves are kept as prefix sums, so one record costs
/// O(trials), not O(trials × epochs).
public struct MedianStopping: TrialScheduler {
    var order: InOrder
    let graceEpochs: Int
    let minTrials: Int
    let maximize: Bool
    let metric: String
    /// Trial → prefix sums of its objective per epoch (index e holds the sum of epochs 1…e).
    private var sums: [Int: [Double]] = [:]
    /// Trial → its best value so far.
    private var best: [Int: Double] = [:]
    private var stopped: Set<Int> = []

    public init(trials: [Int], graceEpochs: Int, minTrials: Int, maximize: Bool, metric: String) {
        order = InOrder(trials: trials)
        self.graceEpochs = graceEpochs
        self.minTrials = minTrials
        self.maximize = maximize
        self.metric = metric
    }

    public mutating func add(_ trial: Int, length: Int, waiting: Bool) { order.add(trial, length: length, waiting: waiting) }
    public mutating func next() -> ScheduledRun? { order.next() }
    public mutating func unsent(_ run: ScheduledRun) { order.unsent(run) }
    public mutating func requeue(_ trial: Int) { order.requeue(trial) }
    public mutating func adopt(_ trial: Int) { order.adopt(trial) }
    public var waiting: Int { order.waiting }
    public mutating func abandoned() -> [(trial: Int, reason: String)] { [] }

    public mutating func ended(_ trial: Int, status: TrialStatus, lastEpoch: Int) -> RunEnding { .finish }

    /// Records the value (a record may repeat or rewind an epoch after a resume: the curve is cut
    /// there) and applies the rule.
    public mutating func observe(_ trial: Int, epoch: Int, value: Double) -> String? {
        guard epoch >= 1 else { return nil }
        var s = sums[trial] ?? [0]
        if s.count > epoch { s.removeLast(s.count - epoch) }
        // A gap (a toy objective's progress is sampled) repeats the curve's last value.
        let last = s.count >= 2 ? s[s.count - 1] - s[s.count - 2] : value
        while s.count < epoch { s.append(s.last! + last) }
        s.append(s.last! + value)
        sums[trial] = s
        best[trial] = best[trial].map { maximize ? max($0, value) : min($0, value) } ?? value
        guard epoch >= graceEpochs, !stopped.contains(trial), let mine = best[trial] else { return nil }
        var averages: [Double] = []
        averages.reserveCapacity(sums.count)
        for (other, curve) in sums where other != trial && curve.count > epoch { averages.append(curve[epoch] / Double(epoch)) }
        guard averages.count >= minTrials else { return nil }
        averages.sort()
        let n = averages.count
        let median = n % 2 == 1 ? averages[n / 2] : (averages[n / 2 - 1] + averages[n / 2]) / 2
        guard maximize ? mine < median : mine > median else { return nil }
        stopped.insert(trial)
        return "median stopping rule: best \(metric) \(fmt(mine)) after epoch \(epoch) is worse than the median \(fmt(median)) of \(n) other trials' running averages"
    }

    /// Forgets a trial's curve (its attempt ended; a new attempt records it again).
    public mutating func forget(_ trial: Int) {
        sums[trial] = nil
        best[trial] = nil
    }
}

/// ASHA (Li et al., MLSys 2020): trials pause at each rung with a checkpoint; a free slot first
/// goes to a paused trial that ranks in the top 1/η of its rung (highest rung first), then to a
/// new trial; when nothing is running or waiting to start, the trials still paused end.
public struct Asha: TrialScheduler {
    var order: InOrder
    public private(set) var rungs: SuccessiveHalving
    private(set) var lengths: [Int]
    let metric: String
    /// Trial → the rung it waits at.
    public private(set) var paused: [Int: Int] = [:]
    /// Trial → the epoch at which its current attempt pauses.
    public private(set) var pauseTargets: [Int: Int] = [:]
    /// Trial → the last epoch it reached (for the next pause target after a promotion).
    private var reached: [Int: Int] = [:]

    /// The last epoch a trial reached (0 before its first record).
    public func reached(_ trial: Int) -> Int { reached[trial] ?? 0 }

    public init(trials: [Int], lengths: [Int], minEpochs: Int, reductionFactor: Int, maximize: Bool, metric: String) {
        order = InOrder(trials: trials)
        rungs = SuccessiveHalving(minEpochs: minEpochs, reductionFactor: reductionFactor, maximize: maximize)
        self.lengths = lengths
        self.metric = metric
    }

    public var waiting: Int { order.waiting }

    public mutating func add(_ trial: Int, length: Int, waiting: Bool) {
        precondition(trial == lengths.count, "trials are added in order")
        lengths.append(length)
        order.add(trial, length: length, waiting: waiting)
    }

    public mutating func next() -> ScheduledRun? {
        if let (trial, k) = rungs.promotion(isPaused: { paused[$0] == $1 }) {
            paused[trial] = nil
            let target = rungs.pauseTarget(after: reached[trial] ?? 0, length: lengths[trial])
            pauseTargets[trial] = target
            return ScheduledRun(trial: trial, pauseAfter: target, promotedFrom: k)
        }
        guard var run = order.next() else { return nil }
        if pauseTargets[run.trial] == nil { pauseTargets[run.trial] = rungs.pauseTarget(after: reached[run.trial] ?? 0, length: lengths[run.trial]) }
        run.pauseAfter = pauseTargets[run.trial]
        return run
    }

    public mutating func unsent(_ run: ScheduledRun) {
        if let k = run.promotedFrom {
            paused[run.trial] = k
            rungs.unmarkPromoted(trial: run.trial, from: k)
            rungs.waiting(trial: run.trial, at: k)
        } else {
            order.unsent(run)
        }
    }

    public mutating func requeue(_ trial: Int) { order.requeue(trial) }

    public mutating func adopt(_ trial: Int) {
        if let k = paused.removeValue(forKey: trial) {
            // A promoted attempt that kept running while the coordinator restarted.
            rungs.markPromoted(trial: trial, from: k)
            pauseTargets[trial] = rungs.pauseTarget(after: reached[trial] ?? 0, length: lengths[trial])
        } else {
            order.adopt(trial)
        }
    }

    public mutating func observe(_ trial: Int, epoch: Int, value: Double) -> String? {
        rungs.record(trial: trial, epoch: epoch, value: value, length: lengths[trial])
        reached[trial] = max(reached[trial] ?? 0, epoch)
        return nil
    }

    public mutating func ended(_ trial: Int, status: TrialStatus, lastEpoch: Int) -> RunEnding {
        reached[trial] = lastEpoch
        guard status == .stopped, let target = pauseTargets[trial], lastEpoch == target, let k = rungs.rung(ofEpoch: lastEpoch, length: lengths[trial]) else {
            return .finish
        }
        paused[trial] = k
        rungs.waiting(trial: trial, at: k)
        return .pause(rung: k)
    }

    /// With nothing running and nothing to start, the paused trials will never rank high enough.
    public mutating func abandoned() -> [(trial: Int, reason: String)] {
        guard order.waiting == 0, !paused.isEmpty, !rungs.canPromote(isPaused: { paused[$0] == $1 }) else { return [] }
        let out = paused.sorted { $0.key < $1.key }.map { trial, k in
            (trial: trial, reason: rungs.reason(notPromoted: trial, rung: k, epoch: reached[trial] ?? 0, metric: metric))
        }
        paused.removeAll()
        return out
    }

    /// After a restart: a trial's history (from its committed results or its checkpoint), and
    /// whether it waits at a rung (its checkpoint sits exactly there).
    public mutating func restore(_ trial: Int, epochs: [(epoch: Int, value: Double)], checkpointEpoch: Int?, committed: Bool) {
        for (epoch, value) in epochs { rungs.record(trial: trial, epoch: epoch, value: value, length: lengths[trial]) }
        let last = epochs.last?.epoch ?? 0
        reached[trial] = last
        for (k, level) in rungs.levels(length: lengths[trial]).enumerated() where level < last { rungs.markPromoted(trial: trial, from: k) }
        guard !committed, let epoch = checkpointEpoch else { return }
        reached[trial] = epoch
        if let k = rungs.rung(ofEpoch: epoch, length: lengths[trial]) {
            order.adopt(trial)
            paused[trial] = k
            rungs.waiting(trial: trial, at: k)
        } else {
            pauseTargets[trial] = rungs.pauseTarget(after: epoch, length: lengths[trial])
        }
    }
}

func fmt(_ x: Double) -> String { String(format: "%.4g", x) }
