#if canImport(Glibc)
    import Glibc
#endif

/// Trials that run an external training program (`program: [python3, train.py]`) instead of a
/// built-in model: the keys such a trial reserves, their validation, and the resolved form the
/// worker runs (`ProgramSpec`). The rest of a program trial's keys are its own hyperparameters,
/// which the program validates; docs/programs.md describes the contract.
extension TrialSchema {
    typealias Names = ProgramContract.Key

    /// The keys a program trial reserves. Every other key is the program's.
    public static let program: [Key] = [
        .strings(Names.program, note: "required", "the command to run, as a list: the executable (a path, or a name looked up on PATH) and its arguments"),
        .string(Names.workdir, nil, note: "the sweep file's folder", "the directory the program runs in (relative: to the sweep file's folder); not with files"),
        .number(Names.timeout, nil, Key.Bounds(lower: 0, lowerOpen: true, upper: ProgramLimits.maxTimeoutSeconds), note: "none", "seconds an attempt may run before it is stopped and marked failed"),
        Key(Names.env, .environment, default: nil, note: "none", help: "extra environment variables, e.g. {OMP_NUM_THREADS: \"1\"}"),
        .choice(Names.args, "none", ["none", "flags"], "flags: also pass every hyperparameter (and epochs, seed) as --key=value arguments"),
        .strings(
            Names.files, note: "none",
            "small files (relative to the sweep file's folder) shipped with the trial and placed in a fresh working directory (at most \(ProgramLimits.maxFiles) files, \(ProgramLimits.maxFilesBytes >> 20) MiB in all)"
        ),
        .integer(Names.epochs, nil, .between(1, Double(TrialLimits.maxEpochs)), note: "required", "epochs the program trains (each reports one line)"),
        .integer(Names.seed, 0, "the trial's seed, given to the program as SWEEP_SEED"),
    ]

    static var programKeyNames: Set<String> { Set(program.map(\.name)) }
}

/// Bounds on what a program trial may ask for and what a program may send back: generous for
/// real use, and each a clear error or a stopped program when passed.
public enum ProgramLimits {
    /// `timeout`: about a year.
    public static let maxTimeoutSeconds = 3.2e7
    /// Arguments of `program` (after `args: flags`), and bytes of all of them.
    public static let maxArguments = 1024
    public static let maxArgumentBytes = 64 << 10
    /// `env` entries and their bytes.
    public static let maxEnvironment = 256
    public static let maxEnvironmentBytes = 64 << 10
    /// `files`: how many, and their bytes together.
    public static let maxFiles = 64
    public static let maxFilesBytes = 8 << 20
    /// Length of a hyperparameter's name (letters, digits, '_', '.', '-').
    public static let maxKeyLength = 64
    /// The longest report line, in bytes: a longer one stops the program.
    public static let maxReportLineBytes = 64 << 10
    /// Fields of one report line, and distinct metric names over a trial.
    public static let maxReportFields = 64
    public static let maxMetricNames = 64
    /// Report lines a program may write in a burst, and afterwards per second.
    public static let reportBurst = 1000
    public static let reportLinesPerSecond = 100.0
    /// The tails of standard output and standard error kept with the trial, in bytes each.
    public static let outputTailBytes = 8 << 10
    /// The largest checkpoint directory a worker packs by default (all files together); the
    /// worker's `--max-checkpoint-mb` lowers or raises it up to `maxCheckpointBytesAllowed`,
    /// which a checkpoint message must fit within (`Protocol.maxMessageSize`, base64-encoded).
    public static let defaultCheckpointBytes = 32 << 20
    public static let maxCheckpointBytesAllowed = 44 << 20
    /// Files in one checkpoint directory.
    public static let maxCheckpointFiles = 4096
    /// Directory entries of any kind (files, directories, anything else) a checkpoint's tree may
    /// hold, counted while it is read: bounds the work an empty-directory flood can cause.
    public static let maxCheckpointEntries = 4 * maxCheckpointFiles
    /// Seconds between SIGTERM and SIGKILL when a program is asked to stop.
    public static let defaultStopGraceSeconds = 10.0
    /// Seconds a paused program has, after reporting the epoch it pauses at, to report that
    /// epoch's checkpoint before it is stopped anyway.
    public static let pauseCheckpointSeconds = 300.0
}

/// A program trial resolved for running: what `ProgramRunner` (in Worker) starts.
public struct ProgramSpec: Sendable, Equatable {
    /// The command: the executable and its arguments (with `args: flags`, the flags appended).
    public var arguments: [String]
    /// The directory to run in (nil with `files`: a fresh directory holding them).
    public var workdir: String?
    public var timeout: Double?
    /// `NAME=value` entries added to the environment.
    public var environment: [String]
    public var files: [String]
    public var epochs: Int
    public var seed: Int

    /// Resolves a validated program trial.
    public init(_ config: TrialConfig) throws {
        typealias Names = ProgramContract.Key
        try config.validate()
        arguments = try config.stringList(Names.program)
        workdir = config.values[Names.workdir] == nil ? nil : try config.string(Names.workdir, default: "")
        timeout = try config.optionalDouble(Names.timeout)
        environment = try config.stringList(Names.env)
        files = try config.stringList(Names.files)
        epochs = try config.int(Names.epochs, default: 1)
        seed = try config.int(Names.seed, default: 0)
        if try config.string(Names.args, default: "none") == "flags" {
            arguments += config.flagArguments
        }
    }
}

extension TrialConfig {
    /// The program's hyperparameters, `epochs` and `seed` as `--key=value` (sorted by key; lists
    /// as JSON, strings as they are).
    public var flagArguments: [String] {
        let reserved = TrialSchema.programKeyNames.subtracting([ProgramContract.Key.epochs, ProgramContract.Key.seed])
        var given = values.filter { !reserved.contains($0.key) }
        if given[ProgramContract.Key.seed] == nil { given[ProgramContract.Key.seed] = TrialSchema.program[ProgramContract.Key.seed].defaultValue }
        return given.keys.sorted().map { key in
            let value = given[key]!
            if case .string(let s) = value { return "--\(key)=\(s)" }
            return "--\(key)=\(value.json)"
        }
    }

    /// The checks of a program trial: its reserved keys' types and bounds, the names of its
    /// hyperparameters, and the sizes of what it would pass to the program.
    func validateProgram() throws {
        typealias Names = ProgramContract.Key
        for key in TrialSchema.program { try key.check(self) }
        for key in values.keys.sorted() where !TrialSchema.programKeyNames.contains(key) {
            guard !key.isEmpty, key.utf8.count <= ProgramLimits.maxKeyLength, key.unicodeScalars.allSatisfy(Self.isKeyCharacter), key.first != "-", key.first != "."
            else {
                // Not first: '-' (an option to the program) and '.' (the names become HDF5 links).
                throw error(key, "a program's hyperparameter names are 1 to \(ProgramLimits.maxKeyLength) letters, digits, '_', '.' and '-' ('.' and '-' not first)")
            }
        }
        guard values[Names.epochs] != nil else {
            throw error(nil, "a program trial needs 'epochs', the number of epochs it reports (early stopping and checkpoints count them)")
        }
        let arguments = try stringList(Names.program)
        guard let executable = arguments.first, !executable.isEmpty else {
            throw error(Names.program, "needs at least the executable, e.g. [python3, train.py]")
        }
        let all = try ProgramSpec.argumentsWithFlags(self, arguments)
        guard all.count <= ProgramLimits.maxArguments, all.reduce(0, { $0 + $1.utf8.count + 1 }) <= ProgramLimits.maxArgumentBytes else {
            throw error(
                Names.program,
                "the command would have \(all.count) arguments of \(all.reduce(0) { $0 + $1.utf8.count }) bytes; at most \(ProgramLimits.maxArguments) arguments of \(ProgramLimits.maxArgumentBytes) bytes in all"
            )
        }
        if let bad = all.first(where: { $0.utf8.contains(0) }) {
            throw error(Names.program, "an argument contains a NUL byte: \(bad.debugDescription)")
        }
        if values[Names.workdir] != nil {
            let dir = try string(Names.workdir, default: "")
            guard !dir.isEmpty, !dir.utf8.contains(0) else { throw error(Names.workdir, "must be a directory's path") }
            if values[Names.files] != nil { throw error(Names.files, "give either workdir (the program's directory on every worker) or files (shipped with the trial), not both") }
        }
        let environment = try stringList(Names.env)
        guard environment.count <= ProgramLimits.maxEnvironment, environment.reduce(0, { $0 + $1.utf8.count + 1 }) <= ProgramLimits.maxEnvironmentBytes else {
            throw error(Names.env, "at most \(ProgramLimits.maxEnvironment) variables of \(ProgramLimits.maxEnvironmentBytes) bytes in all")
        }
        for entry in environment {
            let name = entry.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)[0]
            guard !name.isEmpty, name.unicodeScalars.allSatisfy({ Self.isKeyCharacter($0) && $0 != "-" && $0 != "." }), !name.first!.isNumber, !entry.utf8.contains(0)
            else {
                throw error(Names.env, "'\(name)' is not an environment variable's name (letters, digits and '_', not starting with a digit)")
            }
            if ProgramContract.Environment.reserved.contains(String(name)) {
                throw error(Names.env, "\(name) is set by the worker (\(ProgramContract.Environment.reserved.joined(separator: ", ")) are)")
            }
        }
        let files = try stringList(Names.files)
        guard files.count <= ProgramLimits.maxFiles else { throw error(Names.files, "at most \(ProgramLimits.maxFiles) files, got \(files.count)") }
        for file in files {
            if let problem = RelativePath.problem(file) { throw error(Names.files, "'\(file)': \(problem)") }
        }
        if Set(files).count != files.count { throw error(Names.files, "a file is listed twice") }
    }

    static func isKeyCharacter(_ u: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(u) || ("A"..."Z").contains(u) || ("0"..."9").contains(u) || u == "_" || u == "." || u == "-"
    }
}

extension ProgramSpec {
    static func argumentsWithFlags(_ config: TrialConfig, _ arguments: [String]) throws -> [String] {
        try config.string(ProgramContract.Key.args, default: "none") == "flags" ? arguments + config.flagArguments : arguments
    }
}

/// Relative paths inside a directory the worker owns (`files`, a checkpoint's files): what may
/// name a file there.
public enum RelativePath {
    /// Components of at most this many bytes, and paths of at most this many components.
    public static let maxComponentBytes = 255
    public static let maxComponents = 16

    /// Why `path` may not name a file inside a directory, or nil: it must be relative, without
    /// `.`/`..` components, empty components, NUL or control characters.
    public static func problem(_ path: String) -> String? {
        guard !path.isEmpty else { return "an empty path" }
        guard !path.hasPrefix("/") else { return "an absolute path (give it relative to the directory)" }
        let components = path.split(separator: "/", omittingEmptySubsequences: false)
        guard components.count <= maxComponents else { return "more than \(maxComponents) components" }
        for c in components {
            if c.isEmpty { return "an empty component ('//' or a trailing '/')" }
            if c == "." || c == ".." { return "a '\(c)' component (paths may not leave the directory)" }
            if c.utf8.count > maxComponentBytes { return "a component longer than \(maxComponentBytes) bytes" }
            if c.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) { return "control characters" }
        }
        return nil
    }
}

/// Reads a program trial's `files` from the folder they are relative to (the sweep file's or
/// the trial file's), bounded by `ProgramLimits`: regular files only, at most `maxFilesBytes` in all.
public enum ProgramFiles {
    public struct Problem: Error, CustomStringConvertible {
        public var description: String
    }

    public static func read(_ paths: [String], folder: String) throws -> [PackedFile] {
        var files: [PackedFile] = []
        var total = 0
        for path in paths {
            if let problem = RelativePath.problem(path) { throw Problem(description: "'\(path)': \(problem)") }
            let full = folder + "/" + path
            var st = stat()
            guard stat(full, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
                throw Problem(description: "'\(path)': \(full) is not a readable regular file")
            }
            guard total + Int(st.st_size) <= ProgramLimits.maxFilesBytes else {
                throw Problem(description: "'\(path)' brings the files to more than \(ProgramLimits.maxFilesBytes >> 20) MiB; ship large files another way (a shared folder, a container image)")
            }
            guard let handle = fopen(full, "rb") else { throw Problem(description: "'\(path)': cannot read \(full): \(String(cString: strerror(errno)))") }
            defer { fclose(handle) }
            var bytes = [UInt8](repeating: 0, count: Int(st.st_size) + 1)
            let n = bytes.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, handle) }
            guard n == Int(st.st_size) else { throw Problem(description: "'\(path)': \(full) changed while it was read") }
            total += n
            files.append(PackedFile(path: path, bytes: Array(bytes.prefix(n))))
        }
        return files
    }
}
