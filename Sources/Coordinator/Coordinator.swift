import Foundation
import Glibc
import Learning
import Logging
import Results
import SweepCore
import Sweeps
import Telemetry
import Transport

/// `sweep-coordinator start`: owns a sweep. This file is its event loop: it binds a ROUTER
/// socket, rate-limits and decodes messages (a bounded pass; `PeerLimiter`, `Message.decode`),
/// and hands them to its parts, each testable without sockets:
///
/// - `SweepState`: every trial's state and the rules that change it, over
///   - `LeaseBook`: workers, credit, each trial's live lease and its token, attempts;
///   - a `TrialScheduler` (`InOrder`, `MedianStopping`, `Asha`): what runs next, what stops,
///     pauses or is promoted;
///   - `ResultChecks`: what a result must satisfy to be its trial's;
/// - `ResultsWriter` (its own thread): group commits, checkpoints and the index, durably;
/// - `LeaseJournal`, `ResultsOwnership`, `LocalWorkerPool`, `ProgressDisplay`.
public final class Coordinator {
    public struct Options: Sendable {
        public var bind: String?
        public var output: String
        public var localWorkers: Int
        public var workerExecutable: String?
        public var workerThreads = 1
        public var heartbeatSeconds = 1.0
        public var deadAfterSeconds = 5.0
        public var maxAttempts = 3
        /// How long finished trials may wait to be committed together.
        public var commitInterval = 0.2
        public var indexInterval = 2.0
        /// Terminal progress line (true) or plain log lines (false); nil: decide by isatty.
        public var interactive: Bool?
        /// CURVE: the coordinator's keys and the workers allowed in. nil: plaintext, refused on a
        /// non-loopback `bind` unless `insecure`.
        public var curve: CurveServer?
        public var insecure = false
        /// Leases one worker may hold at once, whatever slots it announces.
        public var maxSlotsPerWorker = Coordinator.defaultMaxSlotsPerWorker
        /// Workers registered at once; further peers are refused until one leaves.
        public var maxWorkers = Coordinator.defaultMaxWorkers
        /// Messages per second one peer may send (sustained), and its burst.
        public var peerMessageRate = Coordinator.defaultPeerMessageRate
        public var peerMessageBurst = 2 * Coordinator.defaultPeerMessageRate
        /// Write into `output` even though it holds another version of this sweep, or other files.
        public var forceOutput = false
        /// Where the loop publishes its `LiveStatus` for the dashboard (nil: it builds none).
        public var live: LiveFeed?
        /// The Prometheus metrics it keeps (nil: none).
        public var metrics: SweepMetrics?
        /// Seconds between two published statuses (and metric samples).
        public var publishInterval = Coordinator.defaultPublishInterval

        public init(bind: String? = nil, output: String, localWorkers: Int = 0, workerExecutable: String? = nil) {
            self.bind = bind
            self.output = output
            self.localWorkers = localWorkers
            self.workerExecutable = workerExecutable
        }
    }

    public static let defaultMaxSlotsPerWorker = 64
    public static let defaultMaxWorkers = 4096
    /// Messages per second one peer may send, sustained (a busy worker sends a few per trial).
    public static let defaultPeerMessageRate = 10_000.0
    /// Seconds between two `LiveStatus`es (and metric samples): the dashboard's pace.
    public static let defaultPublishInterval = 0.5
    /// Finished trials handed to the writer in one group commit, at most: the loop applies a
    /// commit's completion (a few µs a trial) in one pass, and a writer that fell behind must
    /// not make that pass long. Larger groups would not commit faster (HDF5's work is per trial).
    static let maxCommitGroup = 4096

    public struct Summary: Sendable {
        public var total: Int
        public var counts: [String: Int]
        public var seconds: Double
        public var interrupted: Bool
        public var endpoint: String
        public var rejectedMessages: Int
        /// Connections refused at the door: unknown keys, plaintext clients, failed handshakes.
        public var refusedConnections: Int
        public var best: (id: String, value: Double)?
    }

    let sweep: Sweep
    let options: Options
    let store: SweepStore
    let writer: ResultsWriter
    let log: (String) -> Void
    /// The trials, leases and scheduler: every rule the loop applies lives there.
    var state: SweepState!
    var lastCommit = now()
    var lastIndex = 0.0
    /// How long the last index rebuild took: rebuilds are spaced so they cost at most ~10%.
    var indexCost = 0.0
    /// Seconds spent in each part of the loop (printed at the end of large sweeps).
    var timings: [String: Double] = [:]
    /// How long each pass of the loop took (poll excluded), and how late each heartbeat left
    /// (printed at the end of large sweeps; `Benchmarks/WorkerSwarm` reads them).
    var passes = DurationHistogram()
    var heartbeatLateness = DurationHistogram()
    var refusedConnections = 0
    /// Local workers' ephemeral CURVE key (a private temporary directory) and their arguments.
    var localWorkerSecurity: (directory: String?, arguments: [String]) = (nil, [])
    var started = now()
    var localWorkers: LocalWorkerPool?
    /// The results directory, held by this coordinator alone while it lives.
    let ownership: ResultsOwnership
    /// Every lease handed out, with its token (see `LeaseJournal`).
    let journal: LeaseJournal
    var limiter: PeerLimiter
    /// Fewer refused peers' REGISTER replies: the last one per identity.
    var registerSent: [[UInt8]: Double] = [:]
    let progress: ProgressDisplay
    /// The ROUTER socket while the sweep runs.
    private var router: Socket?
    /// Messages read off the socket and sent, for the metrics.
    var messagesReceived = 0
    var messagesSent = 0
    /// What the dashboard is shown: running trials' progress so far (by trial index, only with
    /// `options.live`), and when the last status went out.
    var liveCurves: [Int: [LiveStatus.Point]] = [:]
    var lastPublish = -Double.infinity
    var publishedSequence = 0

    var workers: [[UInt8]: LeaseBook.Worker] { state.workers }

    /// A coordinator that logs through `logger`: progress at `info`, rejected input and lost
    /// workers at `warning`.
    public init(sweep: Sweep, options: Options, logger: Logger) throws {
        self.sweep = sweep
        self.options = options
        let log: (String) -> Void = { logger.info("\($0)") }
        self.log = log
        try Self.checkSecurityOptions(options)
        guard options.heartbeatSeconds > 0, options.heartbeatSeconds.isFinite else { throw CoordinatorError.setting("heartbeat must be positive, not \(options.heartbeatSeconds)") }
        guard options.deadAfterSeconds >= 2 * options.heartbeatSeconds, options.deadAfterSeconds.isFinite else {
            throw CoordinatorError.setting("dead-after (\(options.deadAfterSeconds) s) must be at least twice the heartbeat (\(options.heartbeatSeconds) s)")
        }
        guard options.maxAttempts >= 1, options.maxSlotsPerWorker >= 1, options.maxWorkers >= 1 else {
            throw CoordinatorError.setting("max attempts, max slots and max workers must be at least 1")
        }
        // Before anything in the directory is touched: one coordinator, one sweep.
        ownership = try ResultsOwnership(directory: options.output, sweepName: sweep.name, sweepText: sweep.text, force: options.forceOutput)
        store = try SweepStore(directory: options.output)
        journal = try LeaseJournal(directory: options.output)
        limiter = PeerLimiter(rate: options.peerMessageRate, burst: options.peerMessageBurst)
        writer = ResultsWriter(store: store)
        progress = ProgressDisplay(
            interactive: options.interactive ?? (isatty(1) != 0), total: sweep.search?.budget ?? sweep.trials.count, objective: sweep.objective, log: log)
        let settings = SweepState.Settings(
            heartbeatSeconds: options.heartbeatSeconds, deadAfterSeconds: options.deadAfterSeconds, maxAttempts: options.maxAttempts,
            maxSlotsPerWorker: options.maxSlotsPerWorker, maxWorkers: options.maxWorkers)
        let effects = SweepState.Effects(
            send: { [unowned self] message, identity in send(message, to: identity) },
            submit: { [writer] in writer.submit($0) },
            journal: { [journal] trial, grant in try journal.record(trial: trial, grant) },
            checkpoint: { [store] in store.checkpoint(id: $0) },
            suggested: { [journal] in try journal.record(suggested: $0) },
            log: log, warn: { logger.warning("\($0)") },
            progressed: { [unowned self] trial, record in if options.live != nil { observe(trial, record) } })
        state = SweepState(
            sweep: sweep, settings: settings, committed: store.committed, journaled: journal.latest, suggested: Self.suggestedTrials(sweep, journal, log: log), effects: effects)
        if state.finishedCount > 0 { log("resuming: \(state.finishedCount) of \(state.total) trials already committed in \(options.output)") }
        if journal.skipped > 0 { log("lease journal \(journal.path): skipped \(journal.skipped) line\(journal.skipped == 1 ? "" : "s") that did not parse") }
        try state.restoreRungs(
            history: { [store] in try store.history(of: $0) },
            checkpoint: { [store] id in store.checkpoint(id: id) == nil ? nil : try? CheckpointFile.read(store.checkpointPath(id: id)) })
    }

    /// A search's trials suggested by an earlier run, from the journal, each checked against the
    /// search (it validates and is a point of its space); the list ends at the first that is not.
    static func suggestedTrials(_ sweep: Sweep, _ journal: LeaseJournal, log: (String) -> Void) -> [Trial] {
        guard let search = sweep.search else { return [] }
        var trials: [Trial] = []
        var byID: [String: Trial] = [:]
        for s in journal.suggested {
            do {
                let trial: Trial
                if search.pbt != nil {
                    let parent = try s.parent.map { id in
                        guard let p = byID[id] else { throw Search.SuggestionError.invalid("its parent \(id.prefix(32)) is not an earlier trial") }
                        return p
                    }
                    trial = try search.pbtTrial(configJSON: s.config, index: s.index, parent: parent, exploited: s.exploited ?? false)
                } else {
                    trial = try search.trial(branch: s.branch, configJSON: s.config, index: s.index)
                }
                guard trial.id == s.id else { throw Search.SuggestionError.invalid("its id is \(s.id.prefix(32)), its configuration's \(trial.id)") }
                trials.append(trial)
                byID[trial.id] = trial
            } catch {
                log(
                    "lease journal \(journal.path): suggested trial \(s.index) is not a trial of this search (\(error)); it and the \(journal.suggested.count - s.index - 1) after it are suggested again"
                )
                break
            }
        }
        if !trials.isEmpty { log("search: \(trials.count) trial\(trials.count == 1 ? "" : "s") suggested before the restart") }
        return trials
    }

    // MARK: Running

    public func run(signals: SignalWatcher? = nil) throws -> Summary {
        // A descriptor per connected worker: a default soft limit of 1,024 would refuse the
        // thousandth (docs/performance.md, "A thousand workers").
        FileLimit.raiseToHardLimit()
        let context = Context()
        let router = try Socket(context, .router)
        try router.set(.routerMandatory(true))
        try router.set(.maxMessageSize(Protocol.maxMessageSize))
        let bind = options.bind ?? "tcp://127.0.0.1:*"
        let gatekeeper = try secure(router, context: context, bind: bind)
        defer {
            self.router = nil
            router.close()
            gatekeeper.stop()
            removeLocalWorkerKeys()
        }
        try router.bind(bind)
        self.router = router
        do { return try serve(router, gatekeeper: gatekeeper, signals: signals) } catch let error as FileSystemError {
            // The lease journal or a checkpoint could not be written: no more work goes out.
            throw CoordinatorError.storage(directory: options.output, underlying: error.description)
        }
    }

    /// The event loop: messages (a bounded pass), dispatch, heartbeats, the writer's progress,
    /// group commits and index rebuilds, until every trial is committed or a signal comes.
    func serve(_ router: Socket, gatekeeper: Gatekeeper, signals: SignalWatcher?) throws -> Summary {
        let endpoint = router.lastEndpoint
        log(
            "sweep \(sweep.name): \(state.total) trials\(sweep.search.map { " (\($0.algorithm.rawValue) search)" } ?? ""), \(state.total - state.finishedCount) to run; listening on \(endpoint)\(options.curve == nil ? " (plaintext)" : " (CURVE)"); results in \(options.output)"
        )
        try startLocalWorkers(endpoint: connectable(endpoint))
        defer {
            localWorkers?.stop()
            writer.drain()
            writer.stop()
        }
        started = now()
        var interrupted = false
        var lastHeartbeat = 0.0
        writeIndex()
        while !state.isComplete {
            var items: [Poller.Item] = [.socket(router)]
            if let signals { items.append(.fd(signals.fd)) }
            let readable = try Poller.poll(items, timeout: 50)
            if readable.contains(1), let signals, let signal = signals.take() {
                log("\(signal): no more trials will be handed out; committing finished trials and leaving the sweep resumable")
                interrupted = true
                break
            }
            // A bounded pass: heartbeats and reaping below keep their timing whatever arrives.
            var t = now()
            let passStarted = t
            let passEnds = t + min(0.05, options.heartbeatSeconds / 4)
            var received = 0
            while received < 10_000, let frames = try router.receive(wait: false) {
                received += 1
                messagesReceived += 1
                handle(frames)
                // A clock read costs ~30 ns, a message tens of µs: checked often enough that a
                // loaded machine does not stretch the pass.
                if received % 8 == 0 && now() > passEnds { break }
            }
            timings["receive", default: 0] += now() - t
            t = now()
            try state.dispatch(now: t)
            timings["dispatch", default: 0] += now() - t
            for late in state.heartbeat(now: t) { heartbeatLateness.record(late) }
            if t - lastHeartbeat >= options.heartbeatSeconds {
                lastHeartbeat = t
                reportDroppedMessages(now: t)
                try watchLocalWorkers()
            }
            try collectCompletions()
            try report(gatekeeper)
            if !state.pending.isEmpty && !writer.commitInFlight && (t - lastCommit >= options.commitInterval || state.pending.count >= 512) {
                commit()
            }
            if state.indexDirty && !writer.indexInFlight && t - lastIndex >= max(options.indexInterval, 10 * indexCost) {
                writeIndex()
            }
            progress.update(state, started: started, now: t)
            if t - lastPublish >= options.publishInterval { publish(now: t) }
            passes.record(now() - passStarted)
        }
        try finishWriting()
        try report(gatekeeper)
        progress.finish(state, started: started)
        publish(now: now(), finished: true)
        if state.total > 200 {
            log("coordinator time: " + timings.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.2f", $0.value)) s" }.joined(separator: ", "))
            log("event loop: \(passes.count) passes, \(passes.summary); \(heartbeatLateness.count) heartbeats sent, late by \(heartbeatLateness.summary)")
        }
        // Workers of a finished sweep have nothing left to do; after an interrupt only the local
        // ones are stopped, so a restarted coordinator finds the fleet waiting.
        for w in workers.values where !interrupted || isLocal(w) {
            send(.shutdown(Empty()), to: w.identity)
        }
        self.router = nil
        router.close()
        return Summary(
            total: state.total, counts: state.counts(), seconds: now() - started, interrupted: interrupted, endpoint: endpoint,
            rejectedMessages: state.rejected, refusedConnections: refusedConnections, best: state.best())
    }

    // MARK: Messages

    /// Peers whose messages the rate limit dropped since the last report.
    func reportDroppedMessages(now t: Double) {
        for (identity, count) in limiter.takeDropped() {
            let who = workers[identity].map { "worker \($0.name) on \($0.host)" } ?? "peer \(hex(identity))"
            state.reject(
                "rate", "dropped \(count) message\(count == 1 ? "" : "s") from \(who): over its rate limit (\(Int(limiter.rate))/s; --peer-rate raises it for a real worker)",
                count: count, now: t)
        }
    }

    /// What a registered worker sends that must not be dropped by its rate limit while it is
    /// within twice its burst: a lost RESULT would leave its trial waiting for ever.
    static let essentialCommands: Set<[UInt8]> = Set([Command.result, .ready, .bye].map { Array($0.rawValue.utf8) })

    /// One message off the socket: rate-limited before anything is decoded, decoded and checked
    /// (`Message.decode`), then handed to the sweep state.
    func handle(_ frames: [[UInt8]]) {
        let t = now()
        guard frames.count >= 2, !frames[0].isEmpty else {
            state.reject("frames", "dropped a message without a routing identity", now: t)
            return
        }
        let identity = frames[0]
        // Charged before anything is decoded: a flood costs a lookup per message.
        let essential = frames.count == 4 && workers[identity] != nil && Self.essentialCommands.contains(frames[2])
        guard limiter.admit(identity, bytes: frames.reduce(0) { $0 + $1.count }, now: t, essential: essential) else { return }
        let message: Message
        do {
            message = try Message.decode(Array(frames.dropFirst()))
        } catch {
            state.reject("decode", "dropped a message from \(workers[identity].map { "worker \($0.name)" } ?? "peer \(hex(identity))"): \(error)", now: t)
            if let worker = workers[identity], let lease = Message.lease(ofResult: Array(frames.dropFirst())) {
                state.refusedResult(lease, from: worker, error: "\(error)")
            }
            return
        }
        if case .ready(let ready) = message {
            state.register(identity, ready, now: t)
            return
        }
        guard let worker = workers[identity] else {
            // A worker we do not know (we restarted, or it was declared dead): ask it to register,
            // at most once a second per peer.
            if message.command != .bye && t - (registerSent[identity] ?? -1) >= 1 {
                if registerSent.count > 4 * options.maxWorkers { registerSent = registerSent.filter { t - $0.value < 1 } }
                registerSent[identity] = t
                send(.register(Empty()), to: identity)
            }
            if case .result(let r) = message { state.reject("unregistered", "rejected result \(r.lease) from an unregistered peer \(hex(identity))", now: t) }
            return
        }
        state.receive(message, from: worker, now: t)
    }

    @discardableResult
    func send(_ message: Message, to identity: [UInt8]) -> Bool {
        guard let router else { return false }
        do {
            try router.send([identity] + (try message.frames()), dontWait: true)
            messagesSent += 1
            return true
        } catch let error as ZMQError {
            if !error.isUnroutable { log("send \(message.command.rawValue) failed: \(error)") }
            return false
        } catch {
            log("send \(message.command.rawValue) failed: \(error)")
            return false
        }
    }

    // MARK: Results

    /// Hands the finished trials to the writer as one group commit. They count as finished when
    /// the writer reports them durable (`collectCompletions`).
    func commit() {
        let trials = state.takePending(limit: Self.maxCommitGroup)
        guard !trials.isEmpty else { return }
        writer.submit(.commit(trials))
        lastCommit = now()
    }

    func collectCompletions() throws {
        for completion in writer.take() {
            switch completion {
            case .committed(let trials, let records, let seconds):
                timings["commit", default: 0] += seconds
                options.metrics?.observeCommit(seconds: seconds)
                state.committed(trials, records: records)
                for t in trials { progress.finished(t) }
            case .indexed(let seconds):
                timings["index", default: 0] += seconds
                options.metrics?.observeIndexRebuild(seconds: seconds)
                indexCost = seconds
                lastIndex = now()
            case .checkpointed(let id, let epoch):
                if let epoch { state.checkpointed(id, epoch: epoch) }
            case .checkpointRejected(let lease, let problem):
                state.checkpointRefused(lease, problem: problem)
            case .failed(let error):
                throw CoordinatorError.storage(directory: options.output, underlying: "\(error)")
            }
        }
    }

    /// Commits what is pending, waits for the disk, and writes the final index.
    func finishWriting() throws {
        writer.drain()
        try collectCompletions()
        while !state.pending.isEmpty {
            commit()
            writer.drain()
            try collectCompletions()
        }
        writeIndex()
        writer.drain()
        try collectCompletions()
    }

    func writeIndex() {
        typealias Index = ResultsLayout.Index
        let metadata = [
            Index.name: sweep.name, Index.description: sweep.description ?? "", Index.source: sweep.source,
            Index.seed: String(sweep.seed), Index.objectiveMetric: sweep.objective.metric,
            Index.objectiveMode: Index.objectiveMode(maximize: sweep.objective.maximize), Index.version: Protocol.version,
        ]
        writer.submit(.index(metadata: metadata, text: sweep.text, rows: state.indexRows()))
        lastIndex = now()
        state.indexDirty = false
    }

    // MARK: Local workers

    func connectable(_ endpoint: String) -> String {
        endpoint.replacingOccurrences(of: "tcp://0.0.0.0:", with: "tcp://127.0.0.1:").replacingOccurrences(of: "tcp://*:", with: "tcp://127.0.0.1:")
    }

    func startLocalWorkers(endpoint: String) throws {
        guard options.localWorkers > 0 else { return }
        let logs = "\(options.output)/logs"
        localWorkers = try LocalWorkerPool(
            count: options.localWorkers, executable: options.workerExecutable ?? siblingExecutable("sweep-worker"), endpoint: endpoint,
            threads: options.workerThreads, extraArguments: localWorkerSecurity.arguments, logDirectory: logs)
        log("started \(options.localWorkers) local worker\(options.localWorkers == 1 ? "" : "s") (logs in \(logs))")
    }

    /// Local workers that died are reported and replaced; when none is left and no other worker
    /// is connected, the sweep cannot go on and says why.
    func watchLocalWorkers() throws {
        guard let pool = localWorkers else { return }
        let (lines, alive) = pool.watch()
        for line in lines { log(line) }
        if !alive && !workers.values.contains(where: { !$0.name.hasPrefix("local-") }) {
            throw CoordinatorError.noWorkersLeft(
                "every local worker died \(pool.maxRestarts + 1) times and no other worker is connected; the sweep stops here (resumable). "
                    + "See \(pool.logDirectory)/local-*.log; a worker killed by signal 9 may have run out of memory")
        }
    }

    func isLocal(_ w: LeaseBook.Worker) -> Bool { localWorkers?.pid(named: w.name) != nil }
}

func siblingExecutable(_ name: String) -> String {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    let me = n > 0 ? String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
    return (me as NSString).deletingLastPathComponent + "/" + name
}

func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
