import Learning
import Transport

/// A setting that cannot work, found before anything starts.
public enum CoordinatorError: Error, CustomStringConvertible {
    case setting(String)
    /// Every local worker died repeatedly and no other worker is connected.
    case noWorkersLeft(String)
    /// The results directory could not be written (a full disk, an I/O error).
    case storage(directory: String, underlying: String)

    public var description: String {
        switch self {
        case .setting(let s): s
        case .noWorkersLeft(let s): s
        case .storage(let directory, let underlying):
            "cannot write the results in \(directory): \(Self.summarize(underlying)). No more trials were handed out; trials committed so far are safe, "
                + "finished ones not yet committed will run again. Free space (or fix the error) and start the sweep again to resume."
        }
    }

    /// The gist of an I/O error (HDF5's stacks are long): the file and the system's reason.
    static func summarize(_ text: String) -> String {
        var parts: [String] = []
        if let r = text.range(of: "filename = '"), let end = text[r.upperBound...].firstIndex(of: "'") { parts.append("writing \(text[r.upperBound..<end])") }
        if let r = text.range(of: "error message = '"), let end = text[r.upperBound...].firstIndex(of: "'") {
            parts.append(String(text[r.upperBound..<end]))
        }
        return parts.isEmpty ? String(text.prefix(400)) : parts.joined(separator: ": ")
    }
}

/// What a trial's records and results must satisfy beyond the protocol's own bounds
/// (`Message.decode`): they are held to the trial they claim to belong to.
extension SweepState {
    /// The highest epoch (step) a record of the trial may name: its length, or for the LR range
    /// test its `range_steps`.
    static func recordLimit(of config: TrialConfig, length: Int) -> Int {
        guard isRangeTest(config) else { return length }
        return (try? config.int(TrialSchema.data["range_steps"])) ?? length
    }

    static func isRangeTest(_ config: TrialConfig) -> Bool {
        TrialSchema.models[config.model]?.contains { $0.name == "mode" } == true && (try? config.string(TrialSchema.data["mode"])) == "lr_range_test"
    }

    /// Whether the trial's losses are non-negative by construction (cross-entropy, the VAE's
    /// negative ELBO, squared errors, Rosenbrock, a quadratic with non-negative curvatures).
    static func lossIsNonNegative(_ config: TrialConfig) -> Bool {
        if config.isProgram { return false }  // the program's loss is its own
        guard config.model == "quadratic", let curvatures = TrialSchema.models["quadratic"]?["curvatures"] else { return true }
        return ((try? config.doubleList(curvatures)) ?? [-1]).allSatisfy { $0 >= 0 }
    }

    /// Why an epoch record cannot belong to trial i, or nil.
    func check(_ r: EpochRecord, of i: Int, field: String) -> String? {
        guard r.epoch <= recordLimits[i] else { return "\(field).epoch \(r.epoch) is past the trial's \(recordLimits[i])" }
        if nonNegativeLoss[i] {
            for (name, v) in [("trainLoss", r.trainLoss), ("testLoss", r.testLoss)] where v < 0 {
                return "\(field).\(name) is \(v), but this trial's loss cannot be negative"
            }
        }
        return nil
    }

    /// Why a result cannot be trial i's, or nil.
    func check(_ r: ResultMessage, of i: Int) -> String? {
        for (k, record) in r.history.enumerated() {
            if let problem = check(record, of: i, field: "history[\(k)]") { return problem }
        }
        guard r.trajectory.count <= recordLimits[i] + 1 else {
            return "trajectory has \(r.trajectory.count) rows for a trial of \(recordLimits[i]) steps"
        }
        if r.status == .done {
            let last = r.history.last
            guard let last, !isRangeTest[i] ? last.epoch == lengths[i] : true else {
                return "status done after \(last?.epoch ?? 0) of \(lengths[i]) \(trials[i].config.isToyObjective ? "steps" : "epochs")"
            }
            if trials[i].config.isProgram {
                // A program reports the metrics it has: the objective must be among them, finite.
                let value = sweep.objective.value(in: last)
                guard value.isFinite else { return "status done with the objective \(sweep.objective.metric) \(value) at the last epoch" }
                return nil
            }
            guard last.trainLoss.isFinite, !last.testLoss.isInfinite else {
                return "status done with a non-finite final loss (train \(last.trainLoss), test \(last.testLoss)): that is a divergence"
            }
        }
        return nil
    }
}
