/// The names of a sweep's results directory and of the HDF5 files in it, defined once: the
/// writers (`SweepStore`, `TrialFile`, `CheckpointFile`, the coordinator's index metadata) and
/// the reader (`SweepResults` in Analysis) use these, so a name cannot drift between them.
/// docs/results-format.md describes the layout for people (and h5py).
///
///     OUT/sweep.h5                   the index (`Index`)
///     OUT/trials/batch-NNNNNNNN.h5   committed trials: a table row each, small ones as rows of
///                                    shared tables, the others as groups (`Trial`, `Batch`)
///     OUT/checkpoints/ID.h5          the latest checkpoint of a trial in progress (`Checkpoint`)
///     OUT/coordinator.lock           the coordinator's lock, naming its holder
///     OUT/sweep.identity             the sweep's name and a hash of its file
///     OUT/leases.journal             the coordinator's lease journal
public enum ResultsLayout {
    public static let indexFile = "sweep.h5"
    public static let trialsDirectory = "trials"
    public static let checkpointsDirectory = "checkpoints"
    public static let lockFile = "coordinator.lock"
    public static let identityFile = "sweep.identity"
    public static let leaseJournalFile = "leases.journal"
    /// Files are written under this suffix, then renamed: leftovers are never-acknowledged writes.
    public static let temporarySuffix = ".tmp"

    static let batchPrefix = "batch-"
    static let fileExtension = ".h5"

    /// `trials/batch-NNNNNNNN.h5`, relative to the results directory (as `/trials`' `file` column).
    public static func batchFile(_ number: Int) -> String {
        let digits = String(number)
        return "\(trialsDirectory)/\(batchPrefix)\(String(repeating: "0", count: max(0, 8 - digits.count)))\(digits)\(fileExtension)"
    }

    /// Whether a file name in `trials/` is a batch file's (`batch-*.h5`).
    public static func isBatchFile(_ name: String) -> Bool { name.hasPrefix(batchPrefix) && name.hasSuffix(fileExtension) }

    /// The number of a batch file's name (`batch-00000012.h5` → 12); nil for any other name.
    public static func batchNumber(fileName name: String) -> Int? {
        guard isBatchFile(name) else { return nil }
        return Int(name.dropFirst(batchPrefix.count).dropLast(fileExtension.count))
    }

    /// `checkpoints/ID.h5`, relative to the results directory.
    public static func checkpointFile(id: String) -> String { "\(checkpointsDirectory)/\(id)\(fileExtension)" }

    /// Attributes every file of the layout has on its root.
    public static let formatAttribute = "format"
    public static let formatVersionAttribute = "format_version"

    /// `sweep.h5`: the index, rebuilt and swapped in atomically.
    public enum Index {
        public static let format = "optimizer-sweeps/sweep"
        public static let formatVersion: Int64 = 1

        // Root attributes (strings unless noted).
        public static let name = "name"
        public static let description = "description"
        public static let source = "source"
        public static let seed = "seed"
        /// `train_loss`, `test_loss` or `test_accuracy` (a `Metric`).
        public static let objectiveMetric = "objective_metric"
        /// `objectiveMaximize` or `objectiveMinimize`.
        public static let objectiveMode = "objective_mode"
        public static let objectiveMaximize = "max"
        public static let objectiveMinimize = "min"
        /// The protocol version of the coordinator that wrote it.
        public static let version = "version"
        public static let sweepYAML = "sweep_yaml"
        /// int64: rows of `/trials`.
        public static let trialCount = "trial_count"
        /// A trial's `status` in `/trials`: one of these or a `TrialStatus` (committed).
        public static let queued = "queued"
        public static let running = "running"
        /// Successive halving: waiting at a rung, with its checkpoint.
        public static let paused = "paused"
        /// The states counted in `count_STATE` attributes (int64), in this order.
        public static let countedStates = [queued, running] + TrialStatus.allCases.map(\.rawValue)
        public static func countAttribute(_ state: String) -> String { "count_\(state)" }

        /// The objective mode attribute's value.
        public static func objectiveMode(maximize: Bool) -> String { maximize ? objectiveMaximize : objectiveMinimize }
        /// Whether an objective mode attribute's value says maximise (nil when it is neither).
        public static func maximize(objectiveMode mode: String) -> Bool? {
            mode == objectiveMaximize ? true : mode == objectiveMinimize ? false : nil
        }

        /// `/trials`: a table, one row per trial.
        public static let trials = "trials"
        /// `/hparams/KEY`: one column per trial key, aligned with `/trials`.
        public static let hparams = "hparams"
        /// `/configs`: every trial's canonical JSON, aligned with `/trials`.
        public static let configs = "configs"
        /// `/by_id/ID`: an external link to the trial's group in its batch file (trials stored
        /// as rows of the batch file's tables have none).
        public static let byID = "by_id"

        /// The fields of `/trials`.
        public enum Column {
            public static let id = "id"
            public static let index = "index"
            public static let branch = "branch"
            public static let model = "model"
            public static let optimizer = "optimizer"
            /// `queued`, `running`, `paused` or a `TrialStatus`.
            public static let status = "status"
            public static let epochs = "epochs"
            public static let trainLoss = Metric.trainLoss.rawValue
            public static let testLoss = Metric.testLoss.rawValue
            public static let testAccuracy = Metric.testAccuracy.rawValue
            public static let wallSeconds = "wall_seconds"
            public static let attempts = "attempts"
            public static let host = "host"
            /// The batch file, relative to the results directory ("" until committed).
            public static let file = "file"
        }
    }

    /// A batch file (`trials/batch-NNNNNNNN.h5`). Version 2: the `/trials` table has a row per
    /// trial of the commit; a trial whose results fit rows (`rowsOnly`) is stored as rows of the
    /// shared `/history`, `/trajectory` and `/optimizer_state` tables, any other trial as its own
    /// group `/ID` (a trial as in `Trial`, plus the attributes here). Version 1 (written before
    /// the tables) has only the groups, one per trial. Creating an HDF5 group with its
    /// attributes and data sets costs about a millisecond; a table row, microseconds.
    public enum Batch {
        public static let format = "optimizer-sweeps/trial-batch"
        /// 2: `/trials` and the shared tables; 1: a group per trial only.
        public static let formatVersion: Int64 = 2
        /// The first version with the `/trials` table.
        public static let tablesVersion: Int64 = 2
        // A group's attributes beyond `Trial`'s (also columns of `/trials`).
        public static let attempts = "attempts"
        public static let host = "host"
        public static let worker = "worker"
        public static let branch = "branch"
        public static let index = "index"

        /// `/trials`: one row per trial committed in the file, fields `Column`.
        public static let trials = "trials"
        /// `/history`: the history rows of the trials without a group, fields `id` then
        /// `Trial.historyColumns`; a trial's rows are `history_start ..< history_start + history_rows`.
        public static let history = Trial.history
        /// `/trajectory`: the trajectories of the trials without a group, one point per row
        /// (float64, rows × dimension); a trial's are `trajectory_start ..< + trajectory_rows`.
        public static let trajectory = Trial.trajectory
        /// `/optimizer_state`: fields `id`, `tensor`, `bytes`, the rows of the trials without a group.
        public static let optimizerState = Trial.optimizerState

        /// A trial is stored as rows when it has at most this many history rows, nothing but a
        /// history, a trajectory (of the file's one dimension) and optimizer state per tensor, and
        /// short texts: fixed-width string columns are as wide as their longest value.
        public static let maxHistoryRows = 1
        public static let maxRowText = 1024

        /// The fields of `/trials` (the strings fixed-width UTF-8, numbers int64 or float64).
        public enum Column {
            public static let id = "id"
            public static let index = Batch.index
            public static let branch = Batch.branch
            public static let model = Trial.model
            public static let optimizer = Trial.optimizer
            public static let status = Trial.status
            public static let message = Trial.message
            public static let config = Trial.config
            public static let engine = Trial.engine
            public static let wallSeconds = Trial.wallSeconds
            public static let parameterCount = Trial.parameterCount
            public static let optimizerStateBytes = Trial.optimizerStateBytes
            public static let attempts = Batch.attempts
            public static let host = Batch.host
            public static let worker = Batch.worker
            /// int64: 1 when the trial is the group `/ID` (its data is there, the row ranges are
            /// empty), 0 when it is rows of the shared tables.
            public static let group = "group"
            public static let historyStart = "history_start"
            public static let historyRows = "history_rows"
            public static let trajectoryStart = "trajectory_start"
            public static let trajectoryRows = "trajectory_rows"
            public static let optimizerStateStart = "optimizer_state_start"
            public static let optimizerStateRows = "optimizer_state_rows"
            /// The int64 fields, in this order after the strings.
            public static let integers = [
                index, parameterCount, optimizerStateBytes, attempts, group, historyStart, historyRows, trajectoryStart, trajectoryRows, optimizerStateStart, optimizerStateRows,
            ]
        }
        /// The trial id field of the shared `/history` and `/optimizer_state` tables.
        public static let idField = Column.id

        /// The rows `start ..< start + rows` of a shared table of `count` rows, or nil when a
        /// (hostile or damaged) file names rows the table does not have.
        public static func rowRange(start: Int64, rows: Int64, count: Int) -> Range<Int>? {
            guard start >= 0, rows >= 0, start <= Int64(count), rows <= Int64(count) - start else { return nil }
            return Int(start)..<Int(start + rows)
        }
    }

    /// A trial: the root of a single-trial file, or its group in a batch file.
    public enum Trial {
        public static let format = "optimizer-sweeps/trial"
        public static let formatVersion: Int64 = 1

        // Attributes.
        /// Single-trial files only.
        public static let trialID = "trial_id"
        public static let model = "model"
        public static let optimizer = "optimizer"
        /// A `TrialStatus`.
        public static let status = "status"
        public static let message = "message"
        /// The canonical JSON of the trial's configuration.
        public static let config = "config"
        public static let engine = "engine"
        public static let wallSeconds = "wall_seconds"
        public static let parameterCount = "parameter_count"
        public static let optimizerStateBytes = "optimizer_state_bytes"
        public static let suggestedLR = "suggested_lr"
        public static let sharpness = "sharpness"
        /// Population-based training (`TrialLineage`): member, generation, parent trial id (empty in
        /// generation 0), the parent's epoch copied, and 1 if the member exploited another.
        public static let pbtMember = "pbt_member"
        public static let pbtGeneration = "pbt_generation"
        public static let pbtParent = "pbt_parent"
        public static let pbtParentEpoch = "pbt_parent_epoch"
        public static let pbtExploited = "pbt_exploited"
        /// Program trials (`ProgramOutput`): how the program ended (`exit 0`, `signal 9`, …) and
        /// the tails of its standard output and standard error.
        public static let programEnding = "program_ending"
        public static let programStdout = "program_stdout"
        public static let programStderr = "program_stderr"
        /// `optimizer_work_NAME` (int64): an optimizer's work counter.
        public static func optimizerWork(_ name: String) -> String { "optimizer_work_\(name)" }

        // Groups and data sets.
        /// Single-trial files: one attribute per trial key.
        public static let configGroup = "config"
        /// A table with the fields `historyColumns`, one row per epoch (per step for toy objectives),
        /// then a program trial's own metrics, one float64 field each (sorted by name).
        public static let history = "history"
        public static let historyColumns = EpochRecord.columns
        /// Toy objectives: (steps + 1) × dimension points.
        public static let trajectory = "trajectory"
        /// A table (`lr`, `loss`), one row per step of an LR range test.
        public static let lrRangeTest = "lr_range_test"
        public static let lrRangeLR = "lr"
        public static let lrRangeLoss = "loss"
        /// A table: `layer` (text), `epoch`, then `layerStatsColumns`, one row per layer and epoch.
        public static let layerStats = "layer_stats"
        public static let layerStatsLayer = "layer"
        public static let layerStatsEpoch = "epoch"
        public static let layerStatsColumns = LayerStat.allCases.map(\.rawValue)
        /// The per-layer quantities of `layer_stats`, in column order.
        public enum LayerStat: String, CaseIterable, Sendable {
            case updateNorm = "update_norm"
            case updateSpectralNorm = "update_spectral_norm"
            case weightNorm = "weight_norm"
            case gradNorm = "grad_norm"
            case activationDelta = "activation_delta"
        }
        /// A table (`tensor` text, `bytes` int64), one row per parameter tensor.
        public static let optimizerState = "optimizer_state"
        public static let optimizerStateTensor = "tensor"
        public static let optimizerStateBytesColumn = "bytes"
    }

    /// A checkpoint file (`checkpoints/ID.h5`, and what a worker sends).
    public enum Checkpoint {
        public static let format = "optimizer-sweeps/checkpoint"
        public static let formatVersion: Int64 = 1

        // Attributes.
        public static let config = Trial.config
        public static let epoch = "epoch"
        public static let step = "step"
        public static let precision = "precision"
        public static let optimizer = Trial.optimizer
        /// JSON lists of the parameter and optimizer state names.
        public static let parameterNames = "parameter_names"
        public static let stateNames = "state_names"
        /// A JSON list of the model's buffers (batch norm's running statistics), stored beside
        /// the parameters as `model/NAME` (as PyTorch's `state_dict` holds both); absent: none.
        public static let bufferNames = "buffer_names"

        // Groups and data sets (`history`, `trajectory` and `layer_stats` as in `Trial`).
        /// `model/NAME`: a parameter tensor.
        public static func parameter(_ name: String) -> String { "model/\(name)" }
        /// `optimizer/NAME`: an optimizer state tensor or counter.
        public static func optimizerState(_ name: String) -> String { "optimizer/\(name)" }
        public static let shuffleRNG = "rng/shuffle"
        public static let noiseRNG = "rng/noise"
        /// A group whose attributes hold reduce-on-plateau's state, when used.
        public static let schedule = "schedule"
        public static let plateauBest = "plateau_best"
        public static let plateauBadEpochs = "plateau_bad_epochs"
        public static let plateauCooldown = "plateau_cooldown"
        public static let plateauLR = "plateau_lr"
        /// Program trials: `files/data` (uint8, every file's bytes one after another),
        /// `files/sizes` (int64, one per file) and the attribute `file_names` (a JSON list of
        /// paths relative to the checkpoint directory, in the same order).
        public static let files = "files"
        public static let fileData = "files/data"
        public static let fileSizes = "files/sizes"
        public static let fileNames = "file_names"
        /// The `precision` attribute of a program's checkpoint.
        public static let programPrecision = "program"
    }
}
