import Yams

/// The contract between a worker and an external training program (a trial with `program:`),
/// defined once: the worker's runner, the Python helper's documentation (docs/programs.md) and
/// the tests read these names.
///
/// Input: the resolved configuration as JSON in the file `SWEEP_TRIAL_CONFIG` names (and, with
/// `args: flags`, `--key=value` arguments); the trial's id, seed, a private checkpoint directory
/// and, when resuming, the directory holding the last checkpoint. Output: one JSON object per
/// line on the descriptor `SWEEP_REPORT_FD` names: `{"epoch": N, METRIC: VALUE, …}` after each
/// epoch and `{"checkpoint": PATH}` after writing a checkpoint of the epoch last reported.
public enum ProgramContract {
    /// The environment a program receives besides the worker's own and the trial's `env`.
    public enum Environment {
        /// The path of a JSON file holding the trial's resolved configuration.
        public static let config = "SWEEP_TRIAL_CONFIG"
        public static let trialID = "SWEEP_TRIAL_ID"
        /// The trial's `seed` (0 unless given).
        public static let seed = "SWEEP_SEED"
        /// An empty directory private to this attempt: checkpoints are written here.
        public static let checkpointDirectory = "SWEEP_CHECKPOINT_DIR"
        /// Set when resuming: a directory holding the files of the last checkpoint.
        public static let resumeFrom = "SWEEP_RESUME_FROM"
        /// The number of the descriptor report lines are written to.
        public static let reportFD = "SWEEP_REPORT_FD"

        /// Every name above: a trial's `env` may not set them.
        public static let reserved = [config, trialID, seed, checkpointDirectory, resumeFrom, reportFD]
    }

    /// The descriptor the report pipe is given in the program (`SWEEP_REPORT_FD`).
    public static let reportDescriptor: Int32 = 3

    /// Keys of a report line with a meaning of their own.
    public enum Report {
        /// The epoch the line's metrics belong to: 1, 2, … in order.
        public static let epoch = "epoch"
        /// A checkpoint line's path, inside `SWEEP_CHECKPOINT_DIR`.
        public static let checkpoint = "checkpoint"
    }

    /// The trial keys a program trial reserves (the rest are its own hyperparameters).
    public enum Key {
        public static let program = "program"
        public static let workdir = "workdir"
        public static let timeout = "timeout"
        public static let env = "env"
        public static let args = "args"
        public static let files = "files"
        public static let epochs = "epochs"
        public static let seed = "seed"
    }

    /// Whether a report line's key may name a metric: a letter or '_', then letters, digits, '_'
    /// and '.', at most 64 bytes (it becomes a column of `/history`).
    public static func isMetricName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, name.utf8.count <= 64 else { return false }
        func letter(_ u: Unicode.Scalar) -> Bool { ("a"..."z").contains(u) || ("A"..."Z").contains(u) || u == "_" }
        return letter(first) && name.unicodeScalars.allSatisfy { letter($0) || ("0"..."9").contains($0) || $0 == "." }
    }

    /// Trial keys written as a mapping (`env: {NAME: value}`) and held in the configuration as a
    /// sorted list of `NAME=value` strings: a trial configuration's values are scalars and lists.
    public static let mappingKeys: Set<String> = [Key.env]
}

extension TrialConfig {
    /// Whether the trial runs an external program (`program:`) instead of a built-in model.
    public var isProgram: Bool { values[ProgramContract.Key.program] != nil }

    /// The model column of results: the model, `program` for a program trial that names none.
    public var modelLabel: String { isProgram && model.isEmpty ? ProgramContract.Key.program : model }
}

extension ConfigValue {
    /// A YAML mapping of names to scalars as the sorted list of `NAME=value` strings that
    /// `ProgramContract.mappingKeys` hold.
    public init(mappingNode node: Node) throws {
        guard case .mapping(let mapping) = node else {
            throw ConfigError(location: SourceLocation(node: node), key: nil, message: "expected a mapping of names to values, e.g. {OMP_NUM_THREADS: \"1\"}")
        }
        var items: [String] = []
        for (k, v) in mapping {
            guard case .scalar(let name) = k, case .scalar(let value) = v else {
                throw ConfigError(location: SourceLocation(node: k), key: nil, message: "expected NAME: value pairs of plain text, got a list or a mapping")
            }
            items.append("\(name.string)=\(value.string)")
        }
        self = .list(items.sorted().map(ConfigValue.string))
    }
}

/// How a program trial's process ended, and the ends of what it wrote to standard output and
/// standard error (at most `ProgramLimits.outputTailBytes` each, cut at a line start where one is
/// near), kept with the trial.
public struct ProgramOutput: Sendable, Codable, Equatable {
    /// `exit 0`, `exit 3`, `signal 9`, or `not started`.
    public var ending: String
    public var stdoutTail: String
    public var stderrTail: String

    public init(ending: String, stdoutTail: String, stderrTail: String) {
        self.ending = ending
        self.stdoutTail = stdoutTail
        self.stderrTail = stderrTail
    }

    /// The last non-empty line of standard error (for a failure's one-line message).
    public var lastErrorLine: String? {
        stderrTail.split(separator: "\n").last { !$0.allSatisfy(\.isWhitespace) }.map { String($0.prefix(500)) }
    }
}
