import Foundation
import Glibc
import Learning
import Results
import Sweeps

/// Progress on a terminal (one line redrawn in place) or, when output is not a terminal, plain
/// log lines (through `log`): one per finished trial for small sweeps, a summary every few
/// seconds for large ones.
final class ProgressDisplay {
    let interactive: Bool
    let total: Int
    let objective: Sweep.Objective
    let log: (String) -> Void
    var lastDraw = 0.0
    var lastLog = 0.0
    var finishedCount = 0

    init(interactive: Bool, total: Int, objective: Sweep.Objective, log: @escaping (String) -> Void) {
        self.interactive = interactive
        self.total = total
        self.objective = objective
        self.log = log
    }

    /// The time left at the pace so far, once a trial has finished and until the last one does.
    static func eta(finished: Int, total: Int, elapsed: Double) -> Double? {
        finished > 0 && finished < total ? elapsed / Double(finished) * Double(total - finished) : nil
    }

    /// From the state's running counts by name (no pass over the trials).
    func counts(_ c: SweepState) -> (done: Int, running: Int, failed: Int, queued: Int) {
        typealias Index = ResultsLayout.Index
        var done = 0, running = 0, failed = 0, queued = 0
        for (name, n) in c.counts() {
            switch name {
            case Index.queued, Index.paused: queued += n
            case Index.running: running += n
            case TrialStatus.failed.rawValue: failed += n
            default: done += n
            }
        }
        return (done, running, failed, queued)
    }

    func line(_ c: SweepState, started: Double, now t: Double) -> String {
        let k = counts(c)
        var s = "done \(k.done)/\(total) · running \(k.running) · failed \(k.failed) · queued \(k.queued) · workers \(c.workers.count)"
        if let best = c.best() { s += " · best \(objective.metric) \(String(format: "%.4g", best.value)) (\(best.id))" }
        if let eta = Self.eta(finished: k.done + k.failed, total: total, elapsed: t - started) { s += " · ETA \(duration(eta))" }
        return s
    }

    func update(_ c: SweepState, started: Double, now t: Double) {
        if interactive {
            guard t - lastDraw >= 0.25 else { return }
            lastDraw = t
            let text = line(c, started: started, now: t)
            print("\r\u{1B}[2K" + text, terminator: "")
            fflush(nil)
        } else if total > 200 && t - lastLog >= 5 {
            lastLog = t
            log(line(c, started: started, now: t))
        }
    }

    func finished(_ t: FinishedTrial) {
        finishedCount += 1
        guard total <= 200 else { return }
        let h = t.result.history.last
        var s = "trial \(t.id) [\(t.branch)] \(t.result.status.rawValue)"
        if let h {
            s += " after \(t.result.history.count) \(t.result.config.isToyObjective ? "steps" : "epochs"): train_loss \(String(format: "%.4f", h.trainLoss))"
            if !h.testLoss.isNaN { s += " test_loss \(String(format: "%.4f", h.testLoss))" }
            if !h.testAccuracy.isNaN { s += " test_acc \(String(format: "%.4f", h.testAccuracy))" }
        }
        if let m = t.result.message, t.result.status != .done { s += " (\(m))" }
        s += " on \(t.worker), attempt \(t.attempts)"
        if interactive { print("\r\u{1B}[2K" + s) } else { log(s) }
    }

    func finish(_ c: SweepState, started: Double) {
        if interactive { print("\r\u{1B}[2K" + line(c, started: started, now: now())) }
    }
}

func duration(_ s: Double) -> String {
    if s < 60 { return "\(Int(s.rounded()))s" }
    if s < 3600 { return "\(Int(s / 60))m\(Int(s.truncatingRemainder(dividingBy: 60)))s" }
    return "\(Int(s / 3600))h\(Int(s.truncatingRemainder(dividingBy: 3600) / 60))m"
}
