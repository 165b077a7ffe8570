import ArgumentParser
import Foundation
import Glibc
import Learning
import Linalg
import Transport
import Worker

// One line per epoch must reach a pipe or log file as it happens.
lineBufferStandardOutput()

// OpenBLAS picks its kernel when it loads; choose it (re-executing if needed) before anything else.
BLASRuntime.selectKernel()

struct SweepWorker: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep-worker",
        abstract: "Trains the trials of an optimizer sweep on this machine.",
        subcommands: [Serve.self, Run.self, Info.self, Keys.self],
        defaultSubcommand: Serve.self)
}

extension SweepWorker {
    struct Serve: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Connect to a coordinator and train the trials it hands out (the default).")

        @Option(help: "Coordinator endpoint, e.g. tcp://HOST:5555.") var connect: String
        @Option(help: "BLAS threads per trial.") var threads = 1
        @Option(help: "Trials trained at once.") var slots = 1
        @Option(help: "Trials accepted ahead of a free slot (hides the round trip between trials).") var prefetch = 2
        @Option(help: "Worker name (default HOST-PID).") var name: String?
        @Option(help: "Exit after this many seconds without a coordinator (default: keep trying).") var giveUpAfter: Double?
        @Option(help: "CURVE: this worker's secret key file (NAME.key_secret, mode 0600), allowed by the coordinator.") var key: String?
        @Option(help: "CURVE: the coordinator's public key: its .key file or the 40-character key.") var serverKey: String?
        @Flag(help: "Allow plaintext to a non-loopback coordinator (one started with --insecure).") var insecure = false
        @Flag(help: "Run trials with 'program' (an external training program the sweep names); without it they fail. Give it only for coordinators you trust to run commands here.")
        var allowPrograms = false
        @OptionGroup var programOptions: ProgramOptions

        func validate() throws {
            guard (1...ProtocolLimits.maxThreads).contains(threads), (1...ProtocolLimits.maxSlots).contains(slots) else {
                throw ValidationError("--threads must be between 1 and \(ProtocolLimits.maxThreads), --slots between 1 and \(ProtocolLimits.maxSlots)")
            }
            guard (0...ProtocolLimits.maxSlots).contains(prefetch) else { throw ValidationError("--prefetch must be between 0 and \(ProtocolLimits.maxSlots)") }
            if (key == nil) != (serverKey == nil) { throw ValidationError("CURVE needs both --key (this worker's secret key) and --server-key (the coordinator's public key)") }
            if key != nil && insecure { throw ValidationError("--insecure turns CURVE off: give either --key/--server-key or --insecure, not both") }
        }

        func run() throws {
            let signals = SignalWatcher()
            do {
                var options = RemoteWorker.Options(endpoint: connect, name: name, threads: threads, slots: slots, prefetch: prefetch, giveUpAfter: giveUpAfter)
                options.insecure = insecure
                if allowPrograms { options.programs = programOptions.settings }
                if let key, let serverKey {
                    options.curve = CurveClient(keys: try KeyFiles.readSecret(key), serverKey: try KeyFiles.readPublic(serverKey))
                }
                let worker = RemoteWorker(options) { print($0) }
                try worker.run(signals: signals)
            } catch {
                printError("error: \(error)")
                throw ExitCode(1)
            }
        }
    }

    /// The settings of program trials, for `--allow-programs` and `run`.
    struct ProgramOptions: ParsableArguments {
        @Option(help: "Program trials: seconds between SIGTERM and SIGKILL when a program is stopped.")
        var programGrace = ProgramLimits.defaultStopGraceSeconds
        @Option(help: "Program trials: the largest checkpoint directory sent to the coordinator, in MiB (at most \(ProgramLimits.maxCheckpointBytesAllowed >> 20)).")
        var maxCheckpointMb = ProgramLimits.defaultCheckpointBytes >> 20

        func validate() throws {
            guard programGrace >= 0, programGrace <= 3600 else { throw ValidationError("--program-grace must be between 0 and 3600 seconds") }
            guard (1...(ProgramLimits.maxCheckpointBytesAllowed >> 20)).contains(maxCheckpointMb) else {
                throw ValidationError("--max-checkpoint-mb must be between 1 and \(ProgramLimits.maxCheckpointBytesAllowed >> 20)")
            }
        }

        var settings: ProgramRunner.Settings {
            var s = ProgramRunner.Settings()
            s.stopGrace = programGrace
            s.maxCheckpointBytes = maxCheckpointMb << 20
            return s
        }
    }

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run one trial locally, print a line per epoch, write its results to HDF5.")

        @Argument(help: "Trial file (YAML mapping of trial keys), or - for standard input.")
        var trial: String

        @Option(name: .customLong("set"), help: "Override a trial key: --set lr=3e-4 (repeatable).")
        var overrides: [String] = []

        @Option(help: "Write the trial's configuration and history to this HDF5 file.")
        var out: String?

        @Option(help: "BLAS threads.")
        var threads: Int = 1

        @Option(help: "Save the complete training state (model, optimizer, schedule, RNG) to this HDF5 file.")
        var checkpoint: String?

        @Option(help: "Checkpoint every N epochs (steps for toy objectives); always at the end.")
        var checkpointEvery: Int?

        @Option(help: "Continue from a checkpoint; the result equals an uninterrupted run.")
        var resumeFrom: String?

        @Option(help: "Program trials: the metric every epoch must report; NaN or infinity ends the trial diverged (default: train_loss and test_loss are watched where given).")
        var objective: String?

        @OptionGroup var programOptions: ProgramOptions

        func validate() throws {
            guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
            if let n = checkpointEvery, n < 1 { throw ValidationError("--checkpoint-every must be at least 1") }
            if checkpointEvery != nil && checkpoint == nil { throw ValidationError("--checkpoint-every needs --checkpoint FILE") }
            if let objective, Metric(rawValue: objective) == nil {
                throw ValidationError("--objective must be one of \(Metric.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }

        func run() throws {
            do {
                let result = try LocalRun.run(
                    .init(
                        trialPath: trial, overrides: overrides, outputPath: out, threads: threads, checkpointPath: checkpoint,
                        checkpointEvery: checkpointEvery, resumePath: resumeFrom, objective: objective.flatMap(Metric.init(rawValue:)),
                        programs: programOptions.settings)
                ) { print($0) }
                if result.status == .failed { throw ExitCode(2) }
            } catch let error as ExitCode {
                throw error
            } catch {
                printError("error: \(error)")
                throw ExitCode(1)
            }
        }
    }

    struct Keys: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "keys", abstract: "List the trial keys: models, optimizers and schedules with their hyperparameters and defaults.")

        @Flag(help: "Print the reference page docs/trial-keys.md (Markdown) instead of the plain listing.")
        var markdown = false

        func run() {
            print(markdown ? TrialSchema.markdown : TrialSchema.listing, terminator: "")
        }
    }

    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the BLAS kernel and threads this worker would use.")
        @Option(help: "BLAS threads.")
        var threads: Int = 1
        func run() {
            BLASRuntime.setThreads(threads)
            print(BLASRuntime.summary)
            if let preferred = BLASRuntime.preferredCoreName { print("best kernel for this CPU: \(preferred)") }
        }
    }
}

SweepWorker.main()
