import Learning

/// An expanded sweep: the file's settings and its trials, in expansion order, duplicates removed.
public struct Sweep: Sendable {
    /// What the sweep optimises when trials are compared.
    public struct Objective: Sendable, Equatable {
        /// `train_loss`, `test_loss` or `test_accuracy`.
        public let metric: String
        /// `true` for `mode: max`.
        public let maximize: Bool

        /// The objective's value in a history row or a committed trial (a toy objective's NaN
        /// test loss counts as its training loss); NaN when it was not measured.
        public func value(in r: some MetricValues) -> Double {
            (Metric(rawValue: metric) ?? .testLoss).objectiveValue(in: r)
        }
    }

    public struct Checkpoints: Sendable, Equatable {
        public enum Keep: String, Sendable { case none, last }
        /// Checkpoint every N epochs (steps for toy objectives); nil: never.
        public var every: Int?
        /// `none` deletes a trial's checkpoint once it is committed; `last` keeps its final one.
        public var keep: Keep = .none
        public init(every: Int? = nil, keep: Keep = .none) {
            self.every = every
            self.keep = keep
        }
    }

    /// An early-stopping rule applied by the coordinator as epochs arrive.
    public enum EarlyStopping: Sendable, Equatable {
        /// The median stopping rule (Golovin et al., Google Vizier): after `graceEpochs`, stop a
        /// trial whose best objective so far is worse than the median of the other trials'
        /// running averages at the same epoch, once `minTrials` others have reached it.
        case median(graceEpochs: Int, minTrials: Int)
        /// Asynchronous successive halving (Li et al., "A System for Massively Parallel
        /// Hyperparameter Tuning", 2020) on epochs (steps for toy objectives): rungs at
        /// `minEpochs·η^k` below each trial's `epochs`. A trial pauses at each rung with a
        /// checkpoint; a paused trial is promoted, resuming from that checkpoint, once it ranks in
        /// the top 1/η of the trials recorded at its rung. Trials never promoted end `stopped`.
        case asha(minEpochs: Int, reductionFactor: Int)
    }

    public let name: String
    public let description: String?
    /// The seed of the random draws (`seed:`, default 0).
    public let seed: UInt64
    public let objective: Objective
    /// When workers checkpoint trials (so a lost worker's trial resumes elsewhere), and what is
    /// kept once a trial is finished.
    public var checkpoints = Checkpoints()
    public var earlyStopping: EarlyStopping?
    /// An adaptive search (`search:`): its trials are suggested as the sweep runs, and `trials`
    /// is empty.
    public var search: Search?
    /// The sweep file's text, as read.
    public let text: String
    /// The sweep file's path (or the name given to `SweepFile.parse`).
    public let source: String
    /// The sweep file's folder (absolute): program trials run there unless their `workdir` says
    /// otherwise (relative to it), and their `files` are read from it.
    public var folder = "/"
    /// Program trials' `files` by path, read from `folder` when the sweep was loaded.
    public var programFiles: [String: PackedFile] = [:]
    public let trials: [Trial]

    /// The keys whose values differ across the sweep (sorted); the same as every trial's `varied`.
    public var varied: [String] { search?.varied ?? trials.first?.varied ?? [] }

    /// A plain-text table of the trials: a `N trials` line, then one row per trial with its index,
    /// id, branch and the value of every varied key (`-` where a trial does not set it). With a
    /// `limit`, only the first `limit` rows are shown and a last line says how many were left out.
    public func planTable(limit: Int? = nil) -> String {
        if let search { return search.plan }
        let keys = varied
        let shown = limit.map { max(0, min($0, trials.count)) } ?? trials.count
        var rows: [[String]] = [["index", "id", "branch"] + keys]
        for trial in trials.prefix(shown) {
            rows.append([String(trial.index), trial.id, trial.branch] + keys.map { trial.config.values[$0]?.description ?? "-" })
        }
        var widths = Array(repeating: 0, count: rows[0].count)
        for row in rows {
            for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) }
        }
        var lines = ["\(trials.count) \(trials.count == 1 ? "trial" : "trials")"]
        for row in rows {
            var line = ""
            for (i, cell) in row.enumerated() {
                line += cell
                if i < row.count - 1 { line += String(repeating: " ", count: widths[i] - cell.count + 2) }
            }
            lines.append(line)
        }
        if shown < trials.count { lines.append("... \(trials.count - shown) more") }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// One trial of a sweep.
public struct Trial: Sendable {
    /// `TrialID.of(config)`: a hash of the canonical configuration, stable across expansions.
    public let id: String
    /// Position in expansion order (after duplicates are removed), from 0.
    public let index: Int
    /// The `optimizers` entry the trial comes from, or `main` for a sweep without `optimizers`.
    public let branch: String
    /// The resolved configuration; `locations` point at the sweep file's lines.
    public let config: TrialConfig
    /// The keys whose values differ across the sweep, sorted.
    public let varied: [String]
    /// Population-based training: the member, generation and parent (whose checkpoint it continues).
    public let lineage: TrialLineage?

    public init(id: String, index: Int, branch: String, config: TrialConfig, varied: [String], lineage: TrialLineage? = nil) {
        self.id = id
        self.index = index
        self.branch = branch
        self.config = config
        self.varied = varied
        self.lineage = lineage
    }
}
