import Foundation
import Glibc
import Learning
import Linalg
import Results

/// `sweep-worker run`: one trial in this process, a line per epoch, results to HDF5.
public enum LocalRun {
    public struct Options: Sendable {
        public var trialPath: String
        public var overrides: [String]
        public var outputPath: String?
        public var threads: Int
        /// Save the training state here (every `checkpointEvery` epochs and at the end).
        public var checkpointPath: String?
        public var checkpointEvery: Int?
        /// Continue from this checkpoint.
        public var resumePath: String?
        /// Program trials: the metric every epoch must report.
        public var objective: Metric?
        public var programs: ProgramRunner.Settings

        public init(
            trialPath: String, overrides: [String] = [], outputPath: String? = nil, threads: Int = 1, checkpointPath: String? = nil,
            checkpointEvery: Int? = nil, resumePath: String? = nil, objective: Metric? = nil, programs: ProgramRunner.Settings = .init()
        ) {
            self.objective = objective
            self.programs = programs
            self.trialPath = trialPath
            self.overrides = overrides
            self.outputPath = outputPath
            self.threads = threads
            self.checkpointPath = checkpointPath
            self.checkpointEvery = checkpointEvery
            self.resumePath = resumePath
        }
    }

    /// Reads the trial file (`-` for standard input) and applies the overrides.
    public static func loadConfig(path: String, overrides: [String]) throws -> TrialConfig {
        let text = try readText(path)
        return try TrialConfig.parse(yaml: text, source: path).overriding(overrides)
    }

    /// Runs the trial and returns its result; `print` receives each output line.
    @discardableResult
    public static func run(_ options: Options, print: @escaping (String) -> Void) throws -> TrialResult {
        let config = try loadConfig(path: options.trialPath, overrides: options.overrides)
        if config.isProgram { return try runProgram(config, options, print: print) }
        BLASRuntime.setThreads(options.threads)
        print("engine: \(BLASRuntime.summary)")
        print("trial: \(config.canonicalJSON)")
        var policy = CheckpointPolicy()
        if let path = options.checkpointPath {
            policy.every = options.checkpointEvery ?? Int.max
            policy.save = { checkpoint in
                try CheckpointFile.write(checkpoint, to: path)
                print("checkpoint: \(config.isToyObjective ? "step" : "epoch") \(checkpoint.epoch) → \(path)")
            }
        }
        if let resume = options.resumePath {
            policy.resume = try CheckpointFile.read(resume)
            print("resuming from \(resume) after \(config.isToyObjective ? "step" : "epoch") \(policy.resume!.epoch)")
        }
        let result = try Trainer.run(
            config, checkpoints: policy,
            onEpoch: { record in
                print(format(record, toy: config.isToyObjective))
            })
        var summary = "status: \(result.status.rawValue)"
        if let message = result.message { summary += " (\(message))" }
        summary += String(format2: result.wallSeconds, prefix: ", wall time ", suffix: " s")
        print(summary)
        if result.optimizerStateBytes > 0 {
            print("optimizer state: \(result.optimizerStateBytes) bytes (" + result.optimizerStateByTensor.map { "\($0.tensor) \($0.bytes)" }.joined(separator: ", ") + ")")
        }
        if !result.optimizerWork.isEmpty {
            print("optimizer work: " + result.optimizerWork.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        if let out = options.outputPath {
            try TrialFile.write(result, id: TrialID.of(config), to: out)
            print("wrote \(out)")
        }
        return result
    }

    /// A program trial: run in the trial file's folder (`files` read from there), checkpoints to
    /// and from HDF5 files as for built-in trials.
    static func runProgram(_ config: TrialConfig, _ options: Options, print: @escaping (String) -> Void) throws -> TrialResult {
        let folder = options.trialPath == "-" ? FileManager.default.currentDirectoryPath : URL(fileURLWithPath: options.trialPath).deletingLastPathComponent().path
        var job = ProgramRunner.Job(config: config, trialID: TrialID.of(config))
        job.folder = folder
        do { job.files = try ProgramFiles.read(try config.stringList(ProgramContract.Key.files), folder: folder) } catch {
            throw ConfigError(location: config.locations[ProgramContract.Key.files] ?? SourceLocation(file: options.trialPath, line: nil), key: ProgramContract.Key.files, message: "\(error)")
        }
        job.objective = options.objective
        if let resume = options.resumePath {
            let checkpoint = try CheckpointFile.read(resume)
            try CheckpointPolicy.check(checkpoint, against: config)
            job.resume = checkpoint
            print("resuming from \(resume) after epoch \(checkpoint.epoch)")
        }
        if options.checkpointPath != nil { job.checkpointEvery = try options.checkpointEvery ?? config.length() }
        print("trial: \(config.canonicalJSON)")
        let result = ProgramRunner.run(
            job, settings: options.programs, onEpoch: { print(format(program: $0)) },
            onCheckpoint: { checkpoint in
                guard let path = options.checkpointPath else { return }
                try CheckpointFile.write(checkpoint, to: path)
                print("checkpoint: epoch \(checkpoint.epoch) → \(path)")
            }, log: print)
        var summary = "status: \(result.status.rawValue)"
        if let message = result.message { summary += " (\(message))" }
        print(summary + String(format2: result.wallSeconds, prefix: ", wall time ", suffix: " s"))
        if let output = result.programOutput, result.status == .failed, !output.stderrTail.isEmpty {
            print("stderr (tail):\n" + output.stderrTail)
        }
        if let out = options.outputPath {
            try TrialFile.write(result, id: TrialID.of(config), to: out)
            print("wrote \(out)")
        }
        return result
    }

    /// A program's epoch: the metrics it reported.
    static func format(program r: EpochRecord) -> String {
        var line = "epoch \(r.epoch):"
        for (name, v) in [("train_loss", r.trainLoss), ("test_loss", r.testLoss), ("test_acc", r.testAccuracy)] where !v.isNaN { line += " \(name) \(fmt(v, 4))" }
        return line + " time \(fmt(r.seconds, 2))s"
    }

    static func format(_ r: EpochRecord, toy: Bool) -> String {
        if toy {
            return "step \(r.epoch): loss \(fmt(r.trainLoss, 6)) grad_norm \(fmt(r.gradientNorm, 4))"
        }
        var line = "epoch \(r.epoch): train_loss \(fmt(r.trainLoss, 4)) test_loss \(fmt(r.testLoss, 4))"
        if !r.testAccuracy.isNaN { line += " test_acc \(fmt(r.testAccuracy, 4))" }
        line += " grad_norm \(fmt(r.gradientNorm, 3)) time \(fmt(r.seconds, 2))s"
        return line
    }

    /// The trial file's text, bounded and checked as UTF-8 like every YAML the project reads
    /// (`-`: standard input, read up to the same limit).
    static func readText(_ path: String) throws -> String {
        guard path == "-" else { return try readYAMLFile(path, what: "trial file") }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while bytes.count <= YAMLLimits.maxBytes {
            let n = read(0, &buffer, buffer.count)
            if n <= 0 { break }
            bytes += buffer[0..<n]
        }
        guard bytes.count <= YAMLLimits.maxBytes else {
            throw ConfigError(location: SourceLocation(file: "-", line: nil), key: nil, message: "the trial read from standard input is longer than \(YAMLLimits.maxBytes) bytes")
        }
        return try decodeUTF8(bytes, source: "-")
    }
}

/// A fixed-precision rendering without Foundation.
func fmt(_ x: Double, _ digits: Int) -> String {
    if !x.isFinite { return "\(x)" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = (abs(x) * scale).rounded()
    if scaled >= 9e15 { return "\(x)" }
    let whole = Int(scaled / scale)
    var frac = String(Int(scaled) - whole * Int(scale))
    frac = String(repeating: "0", count: max(0, digits - frac.count)) + frac
    return (x < 0 && scaled > 0 ? "-" : "") + "\(whole)" + (digits > 0 ? "." + frac : "")
}

extension String {
    init(format2 x: Double, prefix: String, suffix: String) { self = prefix + fmt(x, 2) + suffix }
}

/// Writes a line to standard error.
public func printError(_ line: String) {
    let text = line + "\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
}
