// The values every part of the system passes around: how a trial ended, one row of its
// history, and the metrics a sweep ranks trials by.

/// How a trial ended.
public enum TrialStatus: String, Sendable, Codable, CaseIterable {
    case done
    /// The loss or a gradient became NaN or infinite; the history up to then is kept.
    case diverged
    /// An error (bad data file, …) ended it.
    case failed
    /// An early-stopping rule or a cancel ended it.
    case stopped
}

extension Int {
    /// A count read from a file as a float: NaN is 0, values beyond Int's range are clamped
    /// (a damaged or hostile file must not trap the reader).
    public init(saturating d: Double) {
        self = d.isNaN ? 0 : d >= 9.2e18 ? .max : d <= -9.2e18 ? .min : Int(d)
    }
}

/// One row of a trial's history: an epoch for models trained on data, a step for toy objectives.
public struct EpochRecord: Sendable, Equatable, Codable {
    public var epoch: Int
    /// Optimizer steps taken so far.
    public var step: Int
    /// Mean training loss per example over the epoch (the VAE: nats per image).
    public var trainLoss: Double
    /// Test loss per example (NaN for toy objectives).
    public var testLoss: Double
    /// Test accuracy for classifiers, NaN otherwise.
    public var testAccuracy: Double
    /// Mean global gradient norm over the epoch's steps.
    public var gradientNorm: Double
    public var learningRate: Double
    /// Wall time of the epoch's training (evaluation excluded), seconds.
    public var seconds: Double
    /// Wall time of the evaluation, seconds.
    public var evalSeconds: Double

    /// The fields of the `/history` table, in `row` order.
    public static let columns = ["epoch", "step", Metric.trainLoss.rawValue, Metric.testLoss.rawValue, Metric.testAccuracy.rawValue, "grad_norm", "lr", "seconds", "eval_seconds"]
    public var row: [Double] { [Double(epoch), Double(step), trainLoss, testLoss, testAccuracy, gradientNorm, learningRate, seconds, evalSeconds] }

    /// The inverse of `row` (values in `columns` order).
    public init(row r: [Double]) {
        precondition(r.count == Self.columns.count, "an epoch record has \(Self.columns.count) columns")
        self.init(
            epoch: Int(saturating: r[0]), step: Int(saturating: r[1]), trainLoss: r[2], testLoss: r[3], testAccuracy: r[4], gradientNorm: r[5],
            learningRate: r[6], seconds: r[7], evalSeconds: r[8])
    }

    public init(
        epoch: Int, step: Int, trainLoss: Double, testLoss: Double, testAccuracy: Double, gradientNorm: Double, learningRate: Double,
        seconds: Double, evalSeconds: Double
    ) {
        self.epoch = epoch
        self.step = step
        self.trainLoss = trainLoss
        self.testLoss = testLoss
        self.testAccuracy = testAccuracy
        self.gradientNorm = gradientNorm
        self.learningRate = learningRate
        self.seconds = seconds
        self.evalSeconds = evalSeconds
    }
}

/// The three numbers a history row, a committed trial and a row of the sweep index each carry.
public protocol MetricValues {
    var trainLoss: Double { get }
    var testLoss: Double { get }
    var testAccuracy: Double { get }
}

extension EpochRecord: MetricValues {}

/// A metric a trial reports, by its name in the results layout: a column of `/history` and of
/// the index's `/trials` table, a sweep's `objective.metric` and a schedule's `plateau_metric`.
public enum Metric: String, CaseIterable, Sendable {
    case trainLoss = "train_loss"
    case testLoss = "test_loss"
    case testAccuracy = "test_accuracy"

    /// Accuracy is maximised, losses minimised, unless the sweep or the user says otherwise.
    public var maximizedByDefault: Bool { self == .testAccuracy }
    public var label: String {
        switch self {
        case .trainLoss: "train loss"
        case .testLoss: "test loss"
        case .testAccuracy: "test accuracy"
        }
    }

    /// The metric as recorded (NaN where it was not measured).
    public func value(in r: some MetricValues) -> Double {
        switch self {
        case .trainLoss: r.trainLoss
        case .testLoss: r.testLoss
        case .testAccuracy: r.testAccuracy
        }
    }

    /// The value trials are ranked by: toy objectives have no test set, so a NaN test loss
    /// counts as the training loss (the objective's value).
    public func objectiveValue(in r: some MetricValues) -> Double {
        self == .testLoss && r.testLoss.isNaN ? r.trainLoss : value(in: r)
    }
}

/// Where a trial of population-based training comes from: its member of the population, its
/// generation, and the trial whose checkpoint it continued (its own member's previous generation,
/// or the member it exploited) at that trial's last epoch.
public struct TrialLineage: Sendable, Equatable, Codable {
    public var member: Int
    public var generation: Int
    /// The parent trial's id (nil in generation 0).
    public var parent: String?
    /// The epoch (step for toy objectives) the parent's checkpoint was taken at.
    public var parentEpoch: Int
    /// Whether the member exploited another member (copied its checkpoint and explored).
    public var exploited: Bool

    public init(member: Int, generation: Int, parent: String?, parentEpoch: Int, exploited: Bool) {
        self.member = member
        self.generation = generation
        self.parent = parent
        self.parentEpoch = parentEpoch
        self.exploited = exploited
    }
}
