import CSpawn
import Foundation
import Glibc
import Learning
import Linalg

/// Runs one attempt of a program trial (`program:`) the way `Trainer.run` runs a built-in one:
/// every epoch the program reports goes to `onEpoch`, `shouldStop` (a cancel, a full stop) is
/// asked as it runs, checkpoints are packed and handed to `onCheckpoint`, and the outcome is a
/// `TrialResult` with the history, the program's own metrics and the tails of its output.
///
/// The attempt gets a private directory (removed afterwards) holding the configuration file, an
/// empty checkpoint directory, the unpacked checkpoint it resumes from and, with `files`, its
/// working directory. The program runs in its own process group with the report pipe as
/// descriptor `ProgramContract.reportDescriptor`; it is stopped with SIGTERM to the group, then
/// SIGKILL after the grace period, and dies with the worker's thread (PR_SET_PDEATHSIG). What it
/// sends is bounded: line length, lines per second, metric names, checkpoint size; breaking a
/// bound, a malformed line or an epoch out of order stops it with a `failed` status that says so.
public enum ProgramRunner {
    /// The worker's settings for programs.
    public struct Settings: Sendable {
        /// Seconds between SIGTERM and SIGKILL.
        public var stopGrace = ProgramLimits.defaultStopGraceSeconds
        /// The largest checkpoint directory packed (all files together).
        public var maxCheckpointBytes = ProgramLimits.defaultCheckpointBytes
        /// Seconds a pausing program has to report its checkpoint.
        public var pauseCheckpointSeconds = ProgramLimits.pauseCheckpointSeconds

        public init() {}
    }

    /// One attempt.
    public struct Job {
        public var config: TrialConfig
        public var trialID: String
        /// The sweep file's folder (a trial file's for `sweep-worker run`): the program runs there
        /// unless `workdir` (relative: to this folder) or `files` say otherwise.
        public var folder: String = FileManager.default.currentDirectoryPath
        /// `files`, as read by the coordinator (or `sweep-worker run`) from `folder`.
        public var files: [PackedFile] = []
        /// The checkpoint this attempt continues from.
        public var resume: TrainingCheckpoint?
        /// The sweep's objective: required in every epoch's line; NaN or ±∞ ends the trial
        /// diverged. Without one, a non-finite `train_loss` or `test_loss` does.
        public var objective: Metric?
        /// Stop after this epoch, with its checkpoint (ASHA's rungs).
        public var pauseAfter: Int?
        /// Pack a checkpoint every this many epochs (and at the last and the pause epoch); nil: never.
        public var checkpointEvery: Int?

        public init(config: TrialConfig, trialID: String) {
            self.config = config
            self.trialID = trialID
        }
    }

    /// Why a program was stopped before it ended by itself.
    enum Stop: Equatable {
        case violation(String)
        case timeout(Double)
        case cancelled
        case paused(Int)
        case diverged(String)
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    public static func run(
        _ job: Job, settings: Settings = Settings(), shouldStop: () -> Bool = { false }, onEpoch: (EpochRecord) -> Void = { _ in },
        onCheckpoint: (TrainingCheckpoint) throws -> Void = { _ in }, log: (String) -> Void = { _ in }
    ) -> TrialResult {
        let started = now()
        var result = TrialResult(
            config: job.config, status: .failed, history: job.resume?.history ?? [], trajectory: [], parameterCount: 0, optimizerStateBytes: 0,
            wallSeconds: 0, engine: "program")
        result.extraHistory = job.resume?.extraHistory ?? [:]
        do {
            let spec = try ProgramSpec(job.config)
            result.engine = "program \((spec.arguments[0] as NSString).lastPathComponent) on \(hostName())"
            let attempt = try AttemptDirectory(trial: job.trialID)
            defer { attempt.remove() }
            var session = try Session(job: job, spec: spec, settings: settings, attempt: attempt, result: result)
            session.run(shouldStop: shouldStop, onEpoch: onEpoch, onCheckpoint: onCheckpoint, log: log)
            result = session.finish()
        } catch {
            result.status = .failed
            result.message = "\(error)"
            if result.programOutput == nil { result.programOutput = ProgramOutput(ending: "not started", stdoutTail: "", stderrTail: "") }
        }
        result.wallSeconds = now() - started
        return result
    }

    /// The attempt's private directory: `config.json`, `checkpoint/`, `resume/`, `work/`.
    struct AttemptDirectory {
        let path: String
        var config: String { path + "/config.json" }
        var checkpoints: String { path + "/checkpoint" }
        var resume: String { path + "/resume" }
        var work: String { path + "/work" }

        init(trial: String) throws {
            var template = Array((NSTemporaryDirectory() + "sweep-program-\(trial)-XXXXXX").utf8CString)
            guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
                throw Failure("cannot create the attempt's directory in \(NSTemporaryDirectory()): \(String(cString: strerror(errno)))")
            }
            path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            for dir in [checkpoints, work] where mkdir(dir, 0o700) != 0 {
                throw Failure("cannot create \(dir): \(String(cString: strerror(errno)))")
            }
        }

        func remove() { try? FileManager.default.removeItem(atPath: path) }
    }
}

// MARK: - The running program

extension ProgramRunner {
    struct Session {
        let job: Job
        let spec: ProgramSpec
        let settings: Settings
        let attempt: AttemptDirectory
        var result: TrialResult
        let resumedAfter: Int

        var pid: pid_t = 0
        var stop: Stop?
        var stopSentAt: Double?
        var killSent = false
        var waitStatus: Int32?
        var lastEpoch: Int
        var lastEpochAt: Double
        var lineNumber = 0
        var tokens = Double(ProgramLimits.reportBurst)
        var tokensAt: Double
        var report: [UInt8] = []
        var stdoutTail = Tail(), stderrTail = Tail()
        var checkpointedEpoch = 0
        var pausing: (epoch: Int, since: Double)?
        let startedAt: Double

        init(job: Job, spec: ProgramSpec, settings: Settings, attempt: AttemptDirectory, result: TrialResult) throws {
            (self.job, self.spec, self.settings, self.attempt, self.result) = (job, spec, settings, attempt, result)
            resumedAfter = job.resume?.epoch ?? 0
            lastEpoch = resumedAfter
            startedAt = now()
            lastEpochAt = startedAt
            tokensAt = startedAt
        }

        // MARK: Start

        /// Writes the inputs, starts the program and follows it until it ends.
        mutating func run(
            shouldStop: () -> Bool, onEpoch: (EpochRecord) -> Void, onCheckpoint: (TrainingCheckpoint) throws -> Void, log: (String) -> Void
        ) {
            var pipes: [(read: Int32, write: Int32)] = []
            do {
                try Data(job.config.canonicalJSON.utf8).write(to: URL(fileURLWithPath: attempt.config))
                var environment = Self.inheritedEnvironment()
                for entry in spec.environment { environment[String(entry.split(separator: "=", maxSplits: 1)[0])] = String(entry.drop { $0 != "=" }.dropFirst()) }
                typealias Env = ProgramContract.Environment
                environment[Env.config] = attempt.config
                environment[Env.trialID] = job.trialID
                environment[Env.seed] = String(spec.seed)
                environment[Env.checkpointDirectory] = attempt.checkpoints
                environment[Env.reportFD] = String(ProgramContract.reportDescriptor)
                if let resume = job.resume {
                    guard case .files(let files) = resume.payload else { throw Failure("the checkpoint to resume from is not a program's") }
                    try SafeTree.write(files, into: attempt.resume, mode: 0o600)
                    environment[Env.resumeFrom] = attempt.resume
                }
                let workdir = spec.workdir.map { $0.hasPrefix("/") ? $0 : job.folder + "/" + $0 } ?? (spec.files.isEmpty ? job.folder : attempt.work)
                let missing = Set(spec.files).subtracting(job.files.map(\.path))
                guard missing.isEmpty else { throw Failure("files \(missing.sorted().joined(separator: ", ")) were not shipped with the trial") }
                try SafeTree.write(job.files, into: attempt.work, mode: 0o700)
                let executable = try Self.locate(spec.arguments[0], in: workdir, path: environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin")
                pipes = try (0..<3).map { _ in try Self.pipe() }
                defer { for p in pipes { close(p.write) } }
                let entries = environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
                pid = try Self.spawn(executable, arguments: spec.arguments, environment: entries, directory: workdir, stdout: pipes[0].write, stderr: pipes[1].write, report: pipes[2].write)
            } catch {
                // The write ends closed with the scope above; the read ends were not handed on.
                for p in pipes { close(p.read) }
                result.message = "\(error)"
                stop = .violation("\(error)")
                return
            }
            log("worker: trial \(job.trialID) runs \(spec.arguments.prefix(4).joined(separator: " "))\(spec.arguments.count > 4 ? " …" : "") (pid \(pid))")
            follow(pipes.map(\.read), shouldStop: shouldStop, onEpoch: onEpoch, onCheckpoint: onCheckpoint)
            for p in pipes { close(p.read) }
        }

        static func pipe() throws -> (read: Int32, write: Int32) {
            var fds: [Int32] = [0, 0]
            guard Glibc.pipe(&fds) == 0 else { throw Failure("cannot create a pipe: \(String(cString: strerror(errno)))") }
            // Close-on-exec (the child takes its ends by dup2; it also closes every other descriptor).
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
            return (fds[0], fds[1])
        }

        /// The worker's environment without the contract's names (a worker started by a program
        /// must not pass its own trial's on).
        static func inheritedEnvironment() -> [String: String] {
            ProcessInfo.processInfo.environment.filter { !ProgramContract.Environment.reserved.contains($0.key) }
        }

        /// The executable's path: a name with a '/' relative to the working directory, else the
        /// first match on PATH. It must be an executable regular file.
        static func locate(_ name: String, in workdir: String, path: String) throws -> String {
            func executable(_ p: String) -> Bool {
                var st = stat()
                return stat(p, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG && access(p, X_OK) == 0
            }
            if name.contains("/") {
                let full = name.hasPrefix("/") ? name : workdir + "/" + name
                guard executable(full) else { throw Failure("program \(name.debugDescription): \(full) is not an executable file (in workdir \(workdir))") }
                return full
            }
            let directories = path.split(separator: ":").map { $0.hasPrefix("/") ? String($0) : workdir + "/" + $0 }
            guard let found = directories.map({ $0 + "/" + name }).first(where: executable) else {
                throw Failure("program \(name.debugDescription) is not on this worker's PATH (\(path.prefix(300))); install it on every worker or give its path")
            }
            return found
        }

        static func spawn(_ executable: String, arguments: [String], environment: [String], directory: String, stdout: Int32, stderr: Int32, report: Int32) throws -> pid_t {
            func cStrings(_ strings: [String]) -> [UnsafeMutablePointer<CChar>?] { strings.map { strdup($0) } + [nil] }
            let argv = cStrings(arguments), envp = cStrings(environment)
            defer { for p in argv + envp { free(p) } }
            // A worker started with SIGCHLD ignored would have its children reaped by the kernel,
            // and `waitid` would never see them end.
            signal(SIGCHLD, SIG_DFL)
            let pid = sweep_spawn(executable, argv, envp, directory, stdout, stderr, report, ProgramContract.reportDescriptor)
            guard pid > 0 else { throw Failure("cannot start \(executable) in \(directory): \(String(cString: strerror(-pid)))") }
            return pid
        }

        // MARK: Following

        /// Reads the three pipes until the program has ended and its output is drained, stopping
        /// it when asked, when its time is up, when it pauses, or when it breaks the contract.
        mutating func follow(_ fds: [Int32], shouldStop: () -> Bool, onEpoch: (EpochRecord) -> Void, onCheckpoint: (TrainingCheckpoint) throws -> Void) {
            var open = fds
            var exitedAt: Double?
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                var items = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
                _ = poll(&items, nfds_t(items.count), 100)
                for item in items where item.revents != 0 {
                    let n = read(item.fd, &buffer, buffer.count)
                    if n > 0 {
                        let chunk = buffer[0..<n]
                        switch item.fd {
                        case fds[0]: stdoutTail.append(chunk)
                        case fds[1]: stderrTail.append(chunk)
                        default: received(chunk, onEpoch: onEpoch, onCheckpoint: onCheckpoint)
                        }
                    } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                        if item.fd == fds[2] && !report.isEmpty { line(report[...], onEpoch: onEpoch, onCheckpoint: onCheckpoint) }
                        open.removeAll { $0 == item.fd }
                    }
                }
                let t = now()
                if exitedAt == nil && hasExited() {
                    // The leader is gone: its group goes too (what it wrote stays in the pipes).
                    exitedAt = t
                    kill(-pid, SIGKILL)
                    reap()
                }
                if let exitedAt, open.isEmpty || t - exitedAt > 2 { break }
                if exitedAt != nil { continue }
                if stop == nil {
                    if shouldStop() {
                        stop = .cancelled
                    } else if let limit = spec.timeout, t - startedAt > limit {
                        stop = .timeout(limit)
                    } else if let pausing, job.checkpointEvery == nil || checkpointedEpoch >= pausing.epoch || t - pausing.since > settings.pauseCheckpointSeconds {
                        stop = .paused(pausing.epoch)
                    }
                }
                if stop != nil && stopSentAt == nil {
                    kill(-pid, SIGTERM)
                    stopSentAt = t
                } else if let sent = stopSentAt, !killSent, t - sent > settings.stopGrace {
                    kill(-pid, SIGKILL)
                    killSent = true
                }
            }
        }

        /// Whether the program has exited (it stays a zombie, so its group can still be signalled).
        func hasExited() -> Bool {
            var info = siginfo_t()
            if waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 {
                // No such child: already reaped (SIGCHLD ignored by whoever started the worker).
                return errno == ECHILD
            }
            return info._sifields._sigchld.si_pid == pid
        }

        mutating func reap() {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            waitStatus = status
        }

        // MARK: Report lines

        mutating func received(_ chunk: ArraySlice<UInt8>, onEpoch: (EpochRecord) -> Void, onCheckpoint: (TrainingCheckpoint) throws -> Void) {
            report += chunk
            // Lines are cut from a moving start and the consumed prefix dropped once per chunk
            // (dropping it per line made a chunk of many short lines quadratic).
            var start = report.startIndex
            while let newline = report[start...].firstIndex(of: 0x0A) {
                line(report[start..<newline], onEpoch: onEpoch, onCheckpoint: onCheckpoint)
                start = newline + 1
            }
            report.removeSubrange(..<start)
            if report.count > ProgramLimits.maxReportLineBytes {
                violate("report line \(lineNumber + 1) is longer than \(ProgramLimits.maxReportLineBytes) bytes")
                report.removeAll()
            }
        }

        mutating func violate(_ why: String) {
            if stop == nil { stop = .violation(why) }
        }

        mutating func line(_ bytes: ArraySlice<UInt8>, onEpoch: (EpochRecord) -> Void, onCheckpoint: (TrainingCheckpoint) throws -> Void) {
            lineNumber += 1
            // Once the program is being stopped, nothing it says counts.
            if stop != nil { return }
            let t = now()
            tokens = min(Double(ProgramLimits.reportBurst), tokens + (t - tokensAt) * ProgramLimits.reportLinesPerSecond)
            tokensAt = t
            guard tokens >= 1 else {
                return violate(
                    "the program wrote report lines faster than \(Int(ProgramLimits.reportLinesPerSecond)) per second (after a burst of \(ProgramLimits.reportBurst)); report once per epoch")
            }
            tokens -= 1
            if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { return }
            let parsed: ReportLine
            do { parsed = try ReportLine.parse(bytes) } catch {
                let excerpt = String(decoding: bytes.prefix(120), as: UTF8.self).debugDescription
                return violate("report line \(lineNumber) \(error): \(excerpt)")
            }
            switch parsed {
            case .epoch(let epoch, let metrics): self.epoch(epoch, metrics, onEpoch: onEpoch)
            case .checkpoint(let path): checkpoint(path, onCheckpoint: onCheckpoint)
            }
        }

        /// The standard field of a history row a report name stands for (its `EpochRecord.columns` name).
        static func standardField(_ name: String) -> WritableKeyPath<EpochRecord, Double>? {
            switch name {
            case Metric.trainLoss.rawValue: \.trainLoss
            case Metric.testLoss.rawValue: \.testLoss
            case Metric.testAccuracy.rawValue: \.testAccuracy
            case "grad_norm": \.gradientNorm
            case "lr": \.learningRate
            case "seconds": \.seconds
            case "eval_seconds": \.evalSeconds
            default: nil
            }
        }

        mutating func epoch(_ epoch: Int, _ metrics: [String: Double], onEpoch: (EpochRecord) -> Void) {
            if let pausing {
                // It went on without reporting the pause epoch's checkpoint: it pauses without one.
                stop = .paused(pausing.epoch)
                return
            }
            guard epoch == lastEpoch + 1 else {
                let hint =
                    epoch <= resumedAfter
                    ? " (this attempt resumes after epoch \(resumedAfter): load the checkpoint in \(ProgramContract.Environment.resumeFrom) and continue from there)" : ""
                return violate("report line \(lineNumber) is for epoch \(epoch), but epoch \(lastEpoch + 1) was due\(hint)")
            }
            guard epoch <= spec.epochs else { return violate("report line \(lineNumber) is for epoch \(epoch), past the trial's \(spec.epochs) epochs") }
            if let objective = job.objective, metrics[objective.rawValue] == nil {
                return violate("report line \(lineNumber) (epoch \(epoch)) lacks '\(objective.rawValue)', the sweep's objective; every epoch's line must give it")
            }
            let t = now()
            var record = EpochRecord(
                epoch: epoch, step: 0, trainLoss: .nan, testLoss: .nan, testAccuracy: .nan, gradientNorm: .nan, learningRate: .nan, seconds: t - lastEpochAt,
                evalSeconds: 0)
            var extra: [String: Double] = [:]
            for (name, value) in metrics {
                if let field = Self.standardField(name) {
                    record[keyPath: field] = value
                } else if name == "step" {
                    guard value.isFinite, value >= 0, value == value.rounded(), value < 1e15 else {
                        return violate("report line \(lineNumber): 'step' must be a whole number ≥ 0, got \(value)")
                    }
                    record.step = Int(value)
                } else {
                    extra[name] = value
                }
            }
            if !(record.testAccuracy.isNaN || (0...1).contains(record.testAccuracy)) {
                return violate("report line \(lineNumber): test_accuracy must be a fraction in [0, 1] (or NaN), got \(record.testAccuracy)")
            }
            do { try record.validate("report line \(lineNumber)") } catch { return violate("\(error)") }
            let names = Set(result.extraHistory.keys).union(extra.keys)
            guard names.count <= ProgramLimits.maxMetricNames else {
                return violate("report line \(lineNumber) brings the program's own metrics to \(names.count) names (at most \(ProgramLimits.maxMetricNames))")
            }
            let rows = result.history.count
            for name in names { result.extraHistory[name, default: Array(repeating: .nan, count: rows)].append(extra[name] ?? .nan) }
            result.history.append(record)
            lastEpoch = epoch
            lastEpochAt = t
            onEpoch(record)
            let watched = job.objective.map { [$0.rawValue] } ?? [Metric.trainLoss.rawValue, Metric.testLoss.rawValue]
            if let (name, value) = watched.lazy.compactMap({ name in metrics[name].map { (name, $0) } }).first(where: { !$0.1.isFinite }) {
                stop = .diverged("\(name) is \(value) at epoch \(epoch)")
                return
            }
            if let pause = job.pauseAfter, epoch >= pause, epoch < spec.epochs { pausing = (epoch, t) }
        }

        mutating func checkpoint(_ path: String, onCheckpoint: (TrainingCheckpoint) throws -> Void) {
            guard lastEpoch > resumedAfter else {
                return violate("report line \(lineNumber): a checkpoint before the first epoch's line (report the epoch, then its checkpoint)")
            }
            let root = attempt.checkpoints
            let full = path.hasPrefix("/") ? path : root + "/" + path
            guard let resolved = resolvedPath(full) else {
                return violate("report line \(lineNumber): checkpoint \(path.prefix(200).debugDescription) does not exist")
            }
            guard let realRoot = resolvedPath(root), resolved.hasPrefix(realRoot + "/") else {
                return violate("report line \(lineNumber): checkpoint \(path.prefix(200).debugDescription) is not inside \(ProgramContract.Environment.checkpointDirectory) (\(root))")
            }
            // The reported checkpoint is the worker's now: it leaves the program's directory at once
            // (the program may write its next checkpoint under the same name once it is gone).
            let taken = attempt.path + "/taken-\(lineNumber)"
            guard rename(resolved, taken) == 0 else {
                return violate("report line \(lineNumber): cannot take checkpoint \(path.prefix(200).debugDescription): \(String(cString: strerror(errno)))")
            }
            defer { try? FileManager.default.removeItem(atPath: taken) }
            guard let every = job.checkpointEvery, checkpointedEpoch < lastEpoch else { return }
            guard lastEpoch % every == 0 || lastEpoch == spec.epochs || lastEpoch == job.pauseAfter else { return }
            let files: [PackedFile]
            do { files = try SafeTree.read(taken, name: String(resolved.split(separator: "/").last!), limit: settings.maxCheckpointBytes) } catch {
                return violate("checkpoint after epoch \(lastEpoch): \(error)")
            }
            var checkpoint = TrainingCheckpoint(
                config: job.config, epoch: lastEpoch, step: result.history.last?.step ?? 0, shuffle: Xoshiro256(seed: 0), noise: Xoshiro256(seed: 0), plateau: nil,
                history: result.history, trajectory: [], payload: .files(files))
            checkpoint.extraHistory = result.extraHistory
            do { try onCheckpoint(checkpoint) } catch { return violate("checkpoint after epoch \(lastEpoch) could not be sent: \(error)") }
            checkpointedEpoch = lastEpoch
            if let pausing, checkpointedEpoch >= pausing.epoch { stop = .paused(pausing.epoch) }
        }

        // MARK: Outcome

        var ending: String {
            guard let status = waitStatus else { return "not started" }
            if status & 0x7F == 0 { return "exit \((status >> 8) & 0xFF)" }
            return "signal \(status & 0x7F)"
        }

        mutating func finish() -> TrialResult {
            let output = ProgramOutput(ending: ending, stdoutTail: stdoutTail.text, stderrTail: stderrTail.text)
            result.programOutput = output
            let tail = output.lastErrorLine.map { "; last line of stderr: \($0)" } ?? ""
            switch stop {
            case .violation(let why)?:
                result.status = .failed
                result.message = waitStatus == nil ? why : "stopped: \(why)"
            case .timeout(let limit)?:
                result.status = .failed
                result.message = "timed out: still running after \(formatSeconds(limit)) s (timeout)\(tail)"
            case .cancelled?:
                result.status = .stopped
                result.message = "stopped after epoch \(lastEpoch)"
            case .paused(let epoch)?:
                result.status = .stopped
                result.message = checkpointedEpoch >= epoch || job.checkpointEvery == nil ? "paused after epoch \(epoch)" : "paused after epoch \(epoch) without its checkpoint"
            case .diverged(let why)?:
                result.status = .diverged
                result.message = why
            case nil:
                if ending == "exit 0" {
                    if lastEpoch == spec.epochs {
                        result.status = .done
                    } else {
                        result.status = .failed
                        result.message = "the program exited with status 0 after reporting \(lastEpoch) of \(spec.epochs) epochs"
                    }
                } else {
                    result.status = .failed
                    result.message = "the program ended with \(ending) after epoch \(lastEpoch) of \(spec.epochs)\(tail)"
                }
            }
            return result
        }
    }
}

/// A path with every link resolved, or nil when it does not exist.
func resolvedPath(_ path: String) -> String? {
    guard let resolved = realpath(path, nil) else { return nil }
    defer { free(resolved) }
    return String(cString: resolved)
}

func formatSeconds(_ s: Double) -> String { s == s.rounded() && s < 1e15 ? String(Int(s)) : "\(s)" }

/// The end of an output stream: at most `ProgramLimits.outputTailBytes`, as text.
struct Tail {
    private var bytes: [UInt8] = []

    mutating func append(_ chunk: ArraySlice<UInt8>) {
        bytes += chunk
        let limit = ProgramLimits.outputTailBytes
        if bytes.count > 2 * limit { bytes.removeFirst(bytes.count - limit) }
    }

    /// UTF-8 (invalid bytes replaced), control characters other than newline and tab dropped,
    /// starting at a line where one begins near the cut, within the byte limit.
    var text: String {
        let limit = ProgramLimits.outputTailBytes
        var kept = bytes.suffix(limit)
        if bytes.count > limit, let newline = kept.prefix(1024).firstIndex(of: 0x0A) { kept = kept[(newline + 1)...] }
        var scalars = String.UnicodeScalarView()
        for u in String(decoding: kept, as: UTF8.self).unicodeScalars where u.value >= 0x20 || u == "\n" || u == "\t" { scalars.append(u) }
        var text = String(scalars)
        while text.utf8.count > limit { text.removeFirst() }
        return text
    }
}

/// Files under a directory the worker owns, read and written without following links.
enum SafeTree {
    /// Writes `files` under `directory` (created), each path checked (`RelativePath`), every
    /// component created with O_NOFOLLOW and every file with O_EXCL: nothing is written outside.
    static func write(_ files: [PackedFile], into directory: String, mode: mode_t) throws {
        if mkdir(directory, 0o700) != 0 && errno != EEXIST { throw ProgramRunner.Failure("cannot create \(directory): \(String(cString: strerror(errno)))") }
        let root = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard root >= 0 else { throw ProgramRunner.Failure("cannot open \(directory): \(String(cString: strerror(errno)))") }
        defer { close(root) }
        for file in files {
            if let problem = RelativePath.problem(file.path) { throw ProgramRunner.Failure("file \(file.path.prefix(200).debugDescription): \(problem)") }
            let components = file.path.split(separator: "/").map(String.init)
            var dir = dup(root)
            defer { close(dir) }
            for component in components.dropLast() {
                if mkdirat(dir, component, 0o700) != 0 && errno != EEXIST { throw ProgramRunner.Failure("cannot create \(file.path): \(String(cString: strerror(errno)))") }
                let next = openat(dir, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard next >= 0 else { throw ProgramRunner.Failure("cannot create \(file.path): '\(component)' is not a directory") }
                close(dir)
                dir = next
            }
            let fd = openat(dir, components.last!, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
            guard fd >= 0 else { throw ProgramRunner.Failure("cannot create \(file.path): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var offset = 0
            while offset < file.bytes.count {
                let n = file.bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                guard n > 0 else { throw ProgramRunner.Failure("cannot write \(file.path): \(String(cString: strerror(errno)))") }
                offset += n
            }
        }
    }

    /// A reported checkpoint's files: the file at `path` (as `name`), or every regular file under
    /// the directory at `path` (paths relative to it, sorted); at most `limit` bytes and
    /// `ProgramLimits.maxCheckpointFiles` files together. Anything but regular files and
    /// directories (a symbolic link, a socket) is an error, as is a path `RelativePath` refuses.
    static func read(_ path: String, name: String, limit: Int) throws -> [PackedFile] {
        var st = stat()
        guard lstat(path, &st) == 0 else { throw ProgramRunner.Failure("cannot read the checkpoint \(name): \(String(cString: strerror(errno)))") }
        switch st.st_mode & S_IFMT {
        case S_IFDIR:
            return try read(directory: path, limit: limit)
        case S_IFREG:
            let parent = String(path[..<path.lastIndex(of: "/")!])
            let leaf = String(path[path.index(after: path.lastIndex(of: "/")!)...])
            return try read(directory: parent, limit: limit, only: leaf).map { PackedFile(path: name, bytes: $0.bytes) }
        default:
            throw ProgramRunner.Failure("the checkpoint \(name) is not a regular file or a directory (a symbolic link?)")
        }
    }

    static func read(directory: String, limit: Int, only: String? = nil) throws -> [PackedFile] {
        var files: [PackedFile] = []
        var total = 0, entries = 0
        func walk(_ fd: Int32, _ prefix: String, depth: Int) throws {
            guard let dir = fdopendir(fd) else { close(fd); throw ProgramRunner.Failure("cannot read \(prefix.isEmpty ? "the checkpoint directory" : prefix)") }
            defer { closedir(dir) }
            var names: [String] = []
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                guard name != "." && name != ".." else { continue }
                entries += 1
                guard entries <= ProgramLimits.maxCheckpointEntries else {
                    throw ProgramRunner.Failure("the checkpoint holds more than \(ProgramLimits.maxCheckpointEntries) entries (files and directories)")
                }
                names.append(name)
            }
            for name in names.sorted() where only == nil || (prefix.isEmpty && name == only) {
                let path = prefix + name
                if let problem = RelativePath.problem(path) { throw ProgramRunner.Failure("the checkpoint holds \(path.prefix(200).debugDescription): \(problem)") }
                var st = stat()
                guard fstatat(dirfd(dir), name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { throw ProgramRunner.Failure("cannot read \(path): \(String(cString: strerror(errno)))") }
                switch st.st_mode & S_IFMT {
                case S_IFDIR:
                    guard depth < RelativePath.maxComponents else { throw ProgramRunner.Failure("the checkpoint nests deeper than \(RelativePath.maxComponents) levels") }
                    let sub = openat(dirfd(dir), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                    guard sub >= 0 else { throw ProgramRunner.Failure("cannot open \(path): \(String(cString: strerror(errno)))") }
                    try walk(sub, path + "/", depth: depth + 1)
                case S_IFREG:
                    guard files.count < ProgramLimits.maxCheckpointFiles else { throw ProgramRunner.Failure("the checkpoint holds more than \(ProgramLimits.maxCheckpointFiles) files") }
                    let size = Int(st.st_size)
                    guard total + size <= limit else {
                        throw ProgramRunner.Failure(
                            "the checkpoint holds more than \(limit) bytes (\(path) alone is \(size)); this worker sends at most \(limit >> 20) MiB (--max-checkpoint-mb)"
                        )
                    }
                    // Non-blocking, and checked again once open: the program may have replaced the
                    // file since (a FIFO would block an ordinary open, and its read, forever).
                    let file = openat(dirfd(dir), name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
                    guard file >= 0 else { throw ProgramRunner.Failure("cannot open \(path): \(String(cString: strerror(errno)))") }
                    defer { close(file) }
                    var opened = stat()
                    guard fstat(file, &opened) == 0, opened.st_mode & S_IFMT == S_IFREG, opened.st_ino == st.st_ino, opened.st_dev == st.st_dev else {
                        throw ProgramRunner.Failure("\(path) was replaced while it was read (the program still wrote to its checkpoint after reporting it)")
                    }
                    var bytes = [UInt8](repeating: 0, count: size)
                    var got = 0
                    while got < size {
                        let n = bytes[got...].withUnsafeMutableBytes { Glibc.read(file, $0.baseAddress, $0.count) }
                        if n < 0 && errno == EINTR { continue }
                        guard n > 0 else { break }
                        got += n
                    }
                    guard got == size else { throw ProgramRunner.Failure("\(path) changed while it was read (the program still wrote to it after reporting it)") }
                    total += size
                    files.append(PackedFile(path: path, bytes: bytes))
                default:
                    throw ProgramRunner.Failure("the checkpoint holds \(path), which is not a regular file or a directory (a symbolic link?); only those are packed")
                }
            }
        }
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw ProgramRunner.Failure("cannot open the checkpoint \(directory): \(String(cString: strerror(errno)))") }
        try walk(fd, "", depth: 1)
        return files
    }
}
