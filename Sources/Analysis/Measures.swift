import Foundation
import SweepCore

/// A number a committed trial has, by its name on the command line (`--pareto M1,M2`): the
/// three metrics of `Metric` and the costs the results record. One definition for the CLI's
/// help, its parser and the charts.
public enum TrialMeasure: String, CaseIterable, Sendable {
    case trainLoss = "train_loss"
    case testLoss = "test_loss"
    case testAccuracy = "test_accuracy"
    /// The mean training seconds per epoch (per step for toy objectives) of the history.
    case secondsPerEpoch = "seconds_per_epoch"
    /// The trial's wall time, as the index records it.
    case wallSeconds = "wall_seconds"
    case optimizerStateBytes = "optimizer_state_bytes"
    /// The model's trainable scalars (`parameter_count` in the trial's group).
    case parameterCount = "parameter_count"

    /// The `Metric` it is, for the three metrics.
    public var metric: Metric? { Metric(rawValue: rawValue) }

    /// Accuracy is maximised; losses, times and sizes minimised.
    public var maximizedByDefault: Bool { metric?.maximizedByDefault ?? false }

    public var label: String {
        switch self {
        case .trainLoss, .testLoss, .testAccuracy: metric!.label
        case .secondsPerEpoch: "seconds per epoch"
        case .wallSeconds: "wall seconds"
        case .optimizerStateBytes: "optimizer state bytes"
        case .parameterCount: "parameters"
        }
    }

    /// The trial's value (NaN when it was not measured or the trial is not committed). Toy
    /// objectives' test loss is their objective value, as the leaderboard ranks it.
    public func value(_ t: TrialRow) -> Double {
        switch self {
        case .trainLoss, .testLoss, .testAccuracy: t.value(metric!)
        case .secondsPerEpoch: t.details?.secondsPerEpoch ?? .nan
        case .wallSeconds: t.wallSeconds.isFinite ? t.wallSeconds : t.details?.wallSeconds ?? .nan
        case .optimizerStateBytes: t.details?.optimizerStateBytes.map(Double.init) ?? .nan
        case .parameterCount: t.details?.parameterCount.map(Double.init) ?? .nan
        }
    }

    /// Reads `M1,M2` (two different measures).
    public static func pair(parsing text: String) throws -> (TrialMeasure, TrialMeasure) {
        let names = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard names.count == 2 else { throw AnalysisError("--pareto wants two metrics, M1,M2 (e.g. test_loss,seconds_per_epoch)") }
        let measures = try names.map { name in
            guard let m = TrialMeasure(rawValue: name) else {
                throw AnalysisError("--pareto: unknown metric '\(name)'; use \(allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return m
        }
        guard measures[0] != measures[1] else { throw AnalysisError("--pareto: give two different metrics, not \(names[0]) twice") }
        return (measures[0], measures[1])
    }

    /// A value written for a table: sizes in bytes, times in seconds, counts whole.
    public func format(_ x: Double) -> String {
        switch self {
        case .secondsPerEpoch, .wallSeconds: formatSeconds(x)
        case .optimizerStateBytes: formatBytes(x)
        case .parameterCount: formatNumber(x)
        default: formatMetric(x)
        }
    }
}
