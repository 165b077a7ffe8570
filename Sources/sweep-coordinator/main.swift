import Analysis
import ArgumentParser
import Coordinator
import Dashboard
import Foundation
import Glibc
import Linalg
import Logging
import SweepCore
import Sweeps
import Telemetry
import Transport

lineBufferStandardOutput()

struct SweepCoordinator: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep-coordinator",
        abstract: "Expands optimizer sweeps into trials and hands them to sweep-worker processes over ZeroMQ.",
        subcommands: [Plan.self, Start.self, Keys.self])
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
        static let configuration = CommandConfiguration(
            abstract: "Run a sweep: bind, hand out trials, write results. Restarting it on the same --out continues the sweep.",
            discussion: """
                Exit status: \(ExitStatus.success) every trial ended done, diverged or stopped; \(ExitStatus.trialsFailed) the sweep ended but some trials failed; \(ExitStatus.error) an error stopped it (bad input, results directory refused or unwritable, no workers left), resumable; \(ExitStatus.interrupted) interrupted, resumable.
                """)
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
        @Option(help: "CURVE: the coordinator's secret key file (NAME.key_secret from `keys`, mode 0600). Encrypts all traffic.") var key: String?
        @Option(help: "CURVE: the workers allowed in: a directory of NAME.key files, a .key file, or a file of lines 'KEY [NAME]' (repeatable).") var allow: [String] = []
        @Flag(help: "Allow plaintext on a non-loopback --bind: any host that reaches the port can join and read the traffic.") var insecure = false
        @Option(help: "Leases one worker may hold at once, whatever slots it announces.") var maxSlots = Coordinator.defaultMaxSlotsPerWorker
        @Option(help: "Workers registered at once; more are refused until one leaves.") var maxWorkers = Coordinator.defaultMaxWorkers
        @Option(help: "Messages per second one peer may send (sustained; twice that at once); more are dropped unread.") var peerRate = Coordinator.defaultPeerMessageRate
        @Flag(help: "Write into --out even though it holds another version of this sweep, or files that are not sweep results.") var forceOut = false
        @Option(
            help: ArgumentHelp(
                "Serve the live dashboard and /metrics on HOST:PORT (the value may be left out: 127.0.0.1 and a free port; the address is printed).",
                valueName: "host:port"))
        var dashboard: String?
        @Option(
            help: ArgumentHelp(
                "The dashboard's access token (required off the loopback), or @FILE to read it from a file (keeps it out of `ps`).", valueName: "token|@file"))
        var dashboardToken: String?
        @Option(help: ArgumentHelp("Log lines at this level and above: \(LogOutput.levelNames.joined(separator: ", ")).", valueName: "level"))
        var logLevel = "info"
        @Option(help: ArgumentHelp("Log lines as plain text, or as JSON objects (one a line) for log collectors: plain, json.", valueName: "format"))
        var logFormat = "plain"

        func validate() throws {
            guard localWorkers >= 0 else { throw ValidationError("--local-workers must be at least 0") }
            guard maxAttempts >= 1 else { throw ValidationError("--max-attempts must be at least 1") }
            guard heartbeat > 0 && heartbeat <= 3600 else { throw ValidationError("--heartbeat must be a positive number of seconds (at most 3600)") }
            guard deadAfter >= 2 * heartbeat && deadAfter <= 86400 else { throw ValidationError("--dead-after must be at least twice --heartbeat (\(heartbeat) s) and at most 86400 s") }
            guard (1...4096).contains(workerThreads) else { throw ValidationError("--worker-threads must be between 1 and 4096") }
            guard (1...ProtocolLimits.maxSlots).contains(maxSlots) else { throw ValidationError("--max-slots must be between 1 and \(ProtocolLimits.maxSlots)") }
            guard maxWorkers >= 1 else { throw ValidationError("--max-workers must be at least 1") }
            guard peerRate >= 1 && peerRate.isFinite else { throw ValidationError("--peer-rate must be at least 1") }
            if key != nil && allow.isEmpty { throw ValidationError("--key needs --allow: the public keys of the workers allowed to join") }
            if key == nil && !allow.isEmpty { throw ValidationError("--allow needs --key: the coordinator's secret key") }
            if key != nil && insecure { throw ValidationError("--insecure turns CURVE off: give either --key/--allow or --insecure, not both") }
            if let dashboard {
                do { _ = try DashboardAddress(parsing: dashboard) } catch { throw ValidationError("--dashboard \(error)") }
            }
            if dashboardToken != nil && dashboard == nil { throw ValidationError("--dashboard-token needs --dashboard") }
            guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level: one of \(LogOutput.levelNames.joined(separator: ", "))") }
            guard LogFormat(rawValue: logFormat) != nil else { throw ValidationError("--log-format: plain or json") }
        }

        func run() throws {
            let format = LogFormat(rawValue: logFormat)!
            LogOutput.bootstrap(level: Logger.Level(rawValue: logLevel)!, format: format)
            let logger = Logger(label: "sweep-coordinator")
            /// A fatal error: on standard error as always, and as a log line when logs are JSON.
            func fail(_ line: String) {
                if format == .json { logger.error("\(line)") } else { printError(line) }
            }
            let signals = SignalWatcher()
            var server: DashboardServer?
            // The sweep's end reaches whoever watches before the dashboard stops.
            defer { server?.stop(linger: 2) }
            do {
                let s = try SweepFile.load(path: sweep, profile: profile)
                var options = Coordinator.Options(bind: bind, output: out ?? "results/\(s.name)", localWorkers: localWorkers)
                options.workerThreads = workerThreads
                options.heartbeatSeconds = heartbeat
                options.deadAfterSeconds = deadAfter
                options.maxAttempts = maxAttempts
                options.insecure = insecure
                options.maxSlotsPerWorker = maxSlots
                options.maxWorkers = maxWorkers
                options.forceOutput = forceOut
                options.peerMessageRate = peerRate
                options.peerMessageBurst = 2 * peerRate
                if let key {
                    options.curve = CurveServer(keys: try KeyFiles.readSecret(key), allowList: try AllowList.load(allow))
                }
                if plain || format == .json { options.interactive = false }
                if localWorkers == 0 && bind == nil {
                    logger.notice("note: no --local-workers and no --bind: workers must connect to the loopback port printed below")
                }
                var dashboardConfiguration: DashboardServer.Configuration?
                if let dashboard {
                    let c = DashboardServer.Configuration(address: try DashboardAddress(parsing: dashboard), token: try dashboardToken.map(DashboardServer.token(fromArgument:)))
                    try DashboardServer.check(c)
                    dashboardConfiguration = c
                    options.live = LiveFeed()
                    options.metrics = SweepMetrics()
                }
                let coordinator = try Coordinator(sweep: s, options: options, logger: logger)
                if let dashboardConfiguration, let feed = options.live, let metrics = options.metrics {
                    var serverLogger = logger
                    serverLogger.logLevel = max(logger.logLevel, .warning)
                    let model = DashboardModel(settings: .init(results: options.output), feed: feed)
                    let started = try DashboardServer.start(model: model, metrics: { metrics.exposition() }, configuration: dashboardConfiguration, logger: serverLogger)
                    server = started
                    logger.info(
                        "dashboard: \(started.url)\(dashboardConfiguration.token == nil ? "" : " (append ?token=… to the address)") — live progress, workers, curves and charts; metrics at \(started.url)metrics"
                    )
                }
                let summary = try coordinator.run(signals: signals)
                let counts = summary.counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
                logger.info("sweep \(s.name): \(counts) in \(String(format: "%.1f", summary.seconds)) s; results in \(options.output)/sweep.h5")
                if let best = summary.best { logger.info("best \(s.objective.metric): \(best.value) (trial \(best.id))") }
                if summary.rejectedMessages > 0 { logger.warning("rejected \(summary.rejectedMessages) malformed or stale messages") }
                if summary.refusedConnections > 0 {
                    logger.warning(
                        "refused \(summary.refusedConnections) connection\(summary.refusedConnections == 1 ? "" : "s") (keys not allowed, plaintext clients, failed handshakes)")
                }
                if summary.interrupted { throw ExitCode(ExitStatus.interrupted) }
                if let failed = summary.counts["failed"], failed > 0 {
                    fail("\(failed) trial\(failed == 1 ? "" : "s") failed (see sweep-analyze \(options.output) for why)")
                    throw ExitCode(ExitStatus.trialsFailed)
                }
            } catch let e as ExitCode {
                throw e
            } catch {
                fail("error: \(error)")
                throw ExitCode(ExitStatus.error)
            }
        }
    }
}

/// `sweep-coordinator start`'s exit status (documented in its help and the README).
enum ExitStatus {
    /// Every trial ended done, diverged or stopped.
    static let success: Int32 = 0
    /// Bad input (sweep file, options), a refused results directory, an I/O error (disk full),
    /// or no workers left: the sweep stopped and is resumable.
    static let error: Int32 = 1
    /// The sweep ran to the end but some trials failed.
    static let trialsFailed: Int32 = 2
    /// Interrupted (SIGINT/SIGTERM): finished trials are committed, the sweep is resumable.
    static let interrupted: Int32 = 130
}

extension SweepCoordinator {
    struct Keys: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create CURVE key pairs: NAME.key (public, share it) and NAME.key_secret (mode 0600, keep it on its host).",
            discussion: """
                sweep-coordinator keys --out keys coordinator
                sweep-coordinator keys --out keys/workers node01 node02
                sweep-coordinator start SWEEP.yaml --bind tcp://*:5555 --key keys/coordinator.key_secret --allow keys/workers
                sweep-worker --connect tcp://HOST:5555 --key keys/workers/node01.key_secret --server-key keys/coordinator.key
                """)
        @Argument(help: "Names of the key pairs (e.g. coordinator, or one per worker host).") var names: [String]
        @Option(help: "Directory for the key files (created with mode 0700).") var out = "."
        @Flag(help: "Replace existing key files.") var force = false

        func validate() throws {
            guard !names.isEmpty else { throw ValidationError("name at least one key pair, e.g. `keys coordinator`") }
            guard Set(names).count == names.count else { throw ValidationError("each name once") }
        }

        func run() throws {
            do {
                for name in names {
                    let written = try KeyFiles.write(try CurveKeyPair.generate(), name: name, directory: out, force: force)
                    print("\(name): public key \(written.publicKey)")
                    print("  \(written.publicPath) (public, mode 0644)")
                    print("  \(written.secretPath) (secret, mode 0600)")
                }
            } catch {
                printError("error: \(error)")
                throw ExitCode(1)
            }
        }
    }
}

SweepCoordinator.main(DashboardAddress.fillingDefaults(of: ["--dashboard"], in: Array(CommandLine.arguments.dropFirst())))
