import ArgumentParser
import Coordinator
import Glibc
import Linalg
import Sweeps
import Transport

lineBufferStandardOutput()

struct SweepCoordinator: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep-coordinator",
        abstract: "Expands optimizer sweeps into trials and hands them to sweep-worker processes over ZeroMQ.",
        subcommands: [Plan.self, Start.self])
}

func printError(_ line: String) {
    let text = line + "\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
}

extension SweepCoordinator {
    struct Plan: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the number of trials and a table of them, without running anything.")
        @Argument(help: "Sweep file (YAML).") var sweep: String
        @Option(help: "Apply this profile of the sweep file (e.g. full).") var profile: String?
        @Option(help: "Show at most this many rows.") var limit: Int?

        func run() throws {
            do {
                let s = try SweepFile.load(path: sweep, profile: profile)
                print(s.planTable(limit: limit), terminator: "")
            } catch {
                printError("error: \(error)")
                throw ExitCode(1)
            }
        }
    }

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run a sweep: bind, hand out trials, write results. Restarting it on the same --out continues the sweep.")
        @Argument(help: "Sweep file (YAML).") var sweep: String
        @Option(help: "ZeroMQ endpoint to bind, e.g. tcp://*:5555 (default: a free loopback port).") var bind: String?
        @Option(help: "Results directory (default: results/NAME).") var out: String?
        @Option(help: "Start this many workers on this machine.") var localWorkers = 0
        @Option(help: "BLAS threads of each local worker.") var workerThreads = 1
        @Option(help: "Seconds between heartbeats.") var heartbeat = 1.0
        @Option(help: "Declare a worker lost after this many seconds of silence.") var deadAfter = 5.0
        @Option(help: "Attempts per trial before it is marked failed.") var maxAttempts = 3
        @Flag(help: "Plain log lines even on a terminal.") var plain = false
        @Option(help: "Apply this profile of the sweep file (e.g. full: the documents' full settings).") var profile: String?

        func validate() throws {
            guard localWorkers >= 0 else { throw ValidationError("--local-workers must be at least 0") }
            guard maxAttempts >= 1 else { throw ValidationError("--max-attempts must be at least 1") }
        }

        func run() throws {
            let signals = SignalWatcher()
            do {
                let s = try SweepFile.load(path: sweep, profile: profile)
                var options = Coordinator.Options(bind: bind, output: out ?? "results/\(s.name)", localWorkers: localWorkers)
                options.workerThreads = workerThreads
                options.heartbeatSeconds = heartbeat
                options.deadAfterSeconds = deadAfter
                options.maxAttempts = maxAttempts
                if plain { options.interactive = false }
                if localWorkers == 0 && bind == nil {
                    printError("note: no --local-workers and no --bind: workers must connect to the loopback port printed below")
                }
                let coordinator = try Coordinator(sweep: s, options: options) { print($0) }
                let summary = try coordinator.run(signals: signals)
                let counts = summary.counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
                print("sweep \(s.name): \(counts) in \(String(format: "%.1f", summary.seconds)) s; results in \(options.output)/sweep.h5")
                if let best = summary.best { print("best \(s.objective.metric): \(best.value) (trial \(best.id))") }
                if summary.rejectedMessages > 0 { print("rejected \(summary.rejectedMessages) malformed or stale messages") }
                if summary.interrupted { throw ExitCode(130) }
            } catch let e as ExitCode {
                throw e
            } catch {
                printError("error: \(error)")
                throw ExitCode(1)
            }
        }
    }
}

SweepCoordinator.main()
