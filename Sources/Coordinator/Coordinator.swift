import Foundation
import Glibc
import Learning
import Results
import Sweeps
import Transport

/// `sweep-coordinator start`: owns a sweep. This file is its event loop: it binds a ROUTER
/// socket, reads messages (bounded per pass, checked by `Message.decode` and `ResultChecks`),
/// and turns them into calls on its parts, each testable without sockets:
///
/// - `LeaseBook`: workers, credit, each trial's live lease and its token, attempts;
/// - a `TrialScheduler` (`InOrder`, `MedianStopping`, `Asha`): what runs next, what stops,
///   pauses or is promoted;
/// - `ResultsWriter` (its own thread): group commits, checkpoints and the index, durably;
/// - `LeaseJournal`, `ResultsOwnership`, `LocalWorkerPool`, `PeerLimiter`.
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

    enum TrialState {
        case queued
        case leased
        /// Finished, waiting for the next group commit.
        case committing(TrialStatus)
        case finished(TrialStatus)
        /// Waiting at an ASHA rung (with its checkpoint) to be promoted.
        case paused(rung: Int)
    }

    let sweep: Sweep
    let options: Options
    let store: SweepStore
    let writer: ResultsWriter
    /// The committed trials as the event loop knows them (the writer thread owns the store).
    var committed: [String: CommittedTrial]
    let log: (String) -> Void
    var states: [TrialState]
    /// Trials leased or waiting to be committed: nothing is in flight when it is 0.
    var inFlight = 0
    var indexByID: [String: Int] = [:]
    /// Each trial's configuration as sent to workers (computed once).
    let configTexts: [String]
    var book: LeaseBook
    var scheduler: any TrialScheduler
    var pending: [FinishedTrial] = []
    var lastCommit = now()
    var lastIndex = 0.0
    /// How long the last index rebuild took: rebuilds are spaced so they cost at most ~10%.
    var indexCost = 0.0
    var indexDirty = true
    var finishedCount = 0
    /// Seconds spent in each part of the loop (printed at the end of large sweeps).
    var timings: [String: Double] = [:]
    var rejected = 0
    var refusedConnections = 0
    /// Local workers' ephemeral CURVE key (a private temporary directory) and their arguments.
    var localWorkerSecurity: (directory: String?, arguments: [String]) = (nil, [])
    var started = now()
    /// Trials an early-stopping rule has cancelled, and why.
    var stopReasons: [Int: String] = [:]
    /// The epoch of each unfinished trial's latest checkpoint accepted in this run (the file is
    /// `SweepStore.checkpointPath`).
    var latestCheckpoint: [Int: Int] = [:]
    var localWorkers: LocalWorkerPool?
    /// The results directory, held by this coordinator alone while it lives.
    let ownership: ResultsOwnership
    /// Every lease handed out, with its token (see `LeaseJournal`).
    let journal: LeaseJournal
    var limiter: PeerLimiter
    var rejections = RateLimitedLog()
    /// Fewer refused peers' REGISTER replies: the last one per identity.
    var registerSent: [[UInt8]: Double] = [:]
    let progress: ProgressDisplay
    /// Each trial's length in epochs (steps for toy objectives).
    let lengths: [Int]
    /// The highest epoch (step) a record of each trial may name, whether it is an LR range test,
    /// and whether its loss is non-negative (see `ResultChecks`).
    let recordLimits: [Int]
    let isRangeTest: [Bool]
    let nonNegativeLoss: [Bool]
    /// Whether the sweep keeps checkpoints (asked for, or needed by ASHA to pause trials).
    let usesCheckpoints: Bool
    /// Paused trials' results so far, committed as `stopped` if never promoted.
    var pausedResults: [Int: (result: TrialResult, host: String, worker: String)] = [:]

    var workers: [[UInt8]: LeaseBook.Worker] { book.workers }

    public init(sweep: Sweep, options: Options, log: @escaping (String) -> Void) throws {
        self.sweep = sweep
        self.options = options
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
        committed = store.committed
        writer = ResultsWriter(store: store)
        let n = sweep.trials.count
        states = Array(repeating: .queued, count: n)
        for (i, t) in sweep.trials.enumerated() { indexByID[t.id] = i }
        configTexts = sweep.trials.map(\.config.canonicalJSON)
        lengths = sweep.trials.map { (try? $0.config.length()) ?? 1 }
        recordLimits = zip(sweep.trials, lengths).map { Self.recordLimit(of: $0.config, length: $1) }
        isRangeTest = sweep.trials.map { Self.isRangeTest($0.config) }
        nonNegativeLoss = sweep.trials.map { Self.lossIsNonNegative($0.config) }
        book = LeaseBook(trials: n, maxSlots: options.maxSlotsPerWorker, maxWorkers: options.maxWorkers, maxAttempts: options.maxAttempts)
        // Trials committed by an earlier run of this sweep are done: never run twice. The
        // journal's last grant of each other trial is what a worker still running it must prove.
        var toRun: [Int] = []
        for (i, t) in sweep.trials.enumerated() {
            if let c = committed[t.id] {
                states[i] = .finished(c.status)
                book.setAttempts(i, c.attempts)
                finishedCount += 1
            } else {
                toRun.append(i)
            }
        }
        switch sweep.earlyStopping {
        case .median(let grace, let minTrials)?:
            scheduler = MedianStopping(trials: toRun, graceEpochs: grace, minTrials: minTrials, maximize: sweep.objective.maximize, metric: sweep.objective.metric)
        case .asha(let minEpochs, let eta)?:
            scheduler = Asha(trials: toRun, lengths: lengths, minEpochs: minEpochs, reductionFactor: eta, maximize: sweep.objective.maximize, metric: sweep.objective.metric)
        case nil:
            scheduler = InOrder(trials: toRun)
        }
        usesCheckpoints = sweep.checkpoints.every != nil || scheduler is Asha
        for i in toRun {
            if let grant = journal.latest[sweep.trials[i].id] {
                book.restore(i, lease: Lease(trial: sweep.trials[i].id, attempt: grant.attempt), token: grant.token, checkpoints: usesCheckpoints)
            }
        }
        progress = ProgressDisplay(interactive: options.interactive ?? (isatty(1) != 0), total: n, objective: sweep.objective)
        if finishedCount > 0 { log("resuming: \(finishedCount) of \(n) trials already committed in \(options.output)") }
        if journal.skipped > 0 { log("lease journal \(journal.path): skipped \(journal.skipped) line\(journal.skipped == 1 ? "" : "s") that did not parse") }
        if scheduler is Asha { try rebuildRungs() }
    }

    /// After a restart: ASHA's rungs from the committed trials' histories, and the trials paused
    /// at a rung (their checkpoint sits exactly there) back to waiting for promotion.
    func rebuildRungs() throws {
        guard var asha = scheduler as? Asha else { return }
        for (i, t) in sweep.trials.enumerated() {
            if let c = committed[t.id] {
                asha.restore(i, epochs: try store.history(of: c).map { ($0.epoch, objective($0)) }, checkpointEpoch: nil, committed: true)
            } else if store.checkpoint(id: t.id) != nil, let checkpoint = try? CheckpointFile.read(store.checkpointPath(id: t.id)) {
                asha.restore(i, epochs: checkpoint.history.map { ($0.epoch, objective($0)) }, checkpointEpoch: checkpoint.epoch, committed: false)
                if let k = asha.paused[i] {
                    states[i] = .paused(rung: k)
                    let result = TrialResult(
                        config: t.config, status: .stopped, history: checkpoint.history, trajectory: checkpoint.trajectory, parameterCount: 0,
                        optimizerStateBytes: 0, wallSeconds: 0, engine: "")
                    pausedResults[i] = (result, "", "")
                }
            }
        }
        scheduler = asha
        if !pausedResults.isEmpty { log("ASHA: \(pausedResults.count) trial\(pausedResults.count == 1 ? "" : "s") waiting at a rung for promotion") }
    }

    // MARK: Running

    public func run(signals: SignalWatcher? = nil) throws -> Summary {
        let context = Context()
        let router = try Socket(context, .router)
        try router.set(.routerMandatory(true))
        try router.set(.maxMessageSize(Protocol.maxMessageSize))
        let bind = options.bind ?? "tcp://127.0.0.1:*"
        let gatekeeper = try secure(router, context: context, bind: bind)
        defer {
            router.close()
            gatekeeper.stop()
            removeLocalWorkerKeys()
        }
        try router.bind(bind)
        do { return try serve(router, gatekeeper: gatekeeper, signals: signals) } catch let error as FileSystemError {
            // The lease journal or a checkpoint could not be written: no more work goes out.
            throw CoordinatorError.storage(directory: options.output, underlying: error.description)
        }
    }

    func serve(_ router: Socket, gatekeeper: Gatekeeper, signals: SignalWatcher?) throws -> Summary {
        let endpoint = router.lastEndpoint
        log(
            "sweep \(sweep.name): \(sweep.trials.count) trials, \(sweep.trials.count - finishedCount) to run; listening on \(endpoint)\(options.curve == nil ? " (plaintext)" : " (CURVE)"); results in \(options.output)"
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
        while !isComplete {
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
            let passEnds = t + min(0.05, options.heartbeatSeconds / 4)
            var received = 0
            while received < 10_000, let frames = try router.receive(wait: false) {
                received += 1
                handle(frames, router: router)
                if received % 64 == 0 && now() > passEnds { break }
            }
            timings["receive", default: 0] += now() - t
            t = now()
            try dispatch(router)
            timings["dispatch", default: 0] += now() - t
            if t - lastHeartbeat >= options.heartbeatSeconds {
                lastHeartbeat = t
                for w in Array(workers.values) { send(.heartbeat(Heartbeat(running: [])), to: w.identity, router: router) }
                reapDeadWorkers(now: t)
                reportDroppedMessages(now: t)
                try watchLocalWorkers()
            }
            try collectCompletions()
            try report(gatekeeper)
            if !pending.isEmpty && !writer.commitInFlight && (t - lastCommit >= options.commitInterval || pending.count >= 512) {
                commit()
            }
            if indexDirty && !writer.indexInFlight && t - lastIndex >= max(options.indexInterval, 10 * indexCost) {
                writeIndex()
            }
            progress.update(self, now: t)
        }
        try finishWriting()
        try report(gatekeeper)
        progress.finish(self)
        if sweep.trials.count > 200 {
            log("coordinator time: " + timings.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.2f", $0.value)) s" }.joined(separator: ", "))
        }
        // Workers of a finished sweep have nothing left to do; after an interrupt only the local
        // ones are stopped, so a restarted coordinator finds the fleet waiting.
        for w in workers.values where !interrupted || isLocal(w) {
            send(.shutdown(Empty()), to: w.identity, router: router)
        }
        router.close()
        return summary(interrupted: interrupted, endpoint: endpoint)
    }

    var isComplete: Bool { finishedCount == states.count }

    /// Moves trial i to a new state, keeping the count of trials in flight.
    func setState(_ i: Int, _ new: TrialState) {
        if Self.isInFlight(states[i]) { inFlight -= 1 }
        if Self.isInFlight(new) { inFlight += 1 }
        states[i] = new
    }

    static func isInFlight(_ s: TrialState) -> Bool {
        switch s {
        case .leased, .committing: true
        default: false
        }
    }

    func summary(interrupted: Bool, endpoint: String) -> Summary {
        var counts: [String: Int] = [:]
        for s in states { counts[Self.statusName(s), default: 0] += 1 }
        return Summary(
            total: states.count, counts: counts, seconds: now() - started, interrupted: interrupted, endpoint: endpoint, rejectedMessages: rejected,
            refusedConnections: refusedConnections, best: best())
    }

    static func statusName(_ s: TrialState) -> String {
        switch s {
        case .queued: ResultsLayout.Index.queued
        case .leased: ResultsLayout.Index.running
        case .committing: ResultsLayout.Index.running
        case .paused: ResultsLayout.Index.paused
        case .finished(let st): st.rawValue
        }
    }

    // MARK: Messages

    /// Counts and logs (rate-limited, by kind) a message that was not used.
    func reject(_ kind: String, _ text: @autoclosure () -> String) {
        rejected += 1
        if let line = rejections.line(kind, text(), now: now()) { log(line) }
    }

    /// Peers whose messages the rate limit dropped since the last report.
    func reportDroppedMessages(now t: Double) {
        for (identity, count) in limiter.takeDropped() {
            rejected += count
            let who = workers[identity].map { "worker \($0.name) on \($0.host)" } ?? "peer \(hex(identity))"
            if let line = rejections.line(
                "rate", "dropped \(count) message\(count == 1 ? "" : "s") from \(who): over its rate limit (\(Int(limiter.rate))/s; --peer-rate raises it for a real worker)", now: t)
            {
                log(line)
            }
        }
    }

    /// What a registered worker sends that must not be dropped by its rate limit while it is
    /// within twice its burst: a lost RESULT would leave its trial waiting for ever.
    static let essentialCommands: Set<[UInt8]> = Set([Command.result, .ready, .bye].map { Array($0.rawValue.utf8) })

    func handle(_ frames: [[UInt8]], router: Socket) {
        let t = now()
        guard frames.count >= 2, !frames[0].isEmpty else {
            reject("frames", "dropped a message without a routing identity")
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
            reject("decode", "dropped a message from \(workers[identity].map { "worker \($0.name)" } ?? "peer \(hex(identity))"): \(error)")
            // A result that does not hold up still ends its attempt: without this the trial
            // would wait for a result that never comes from a worker that heartbeats on.
            if let worker = workers[identity], let lease = Message.lease(ofResult: Array(frames.dropFirst())), let i = holding(lease, worker) {
                retryOrFail(i, lease, reason: "\(worker.name) sent a result that was refused: \(error)", worker: worker)
            }
            return
        }
        if case .ready(let ready) = message {
            register(identity, ready, router: router, now: t)
            return
        }
        guard let worker = workers[identity] else {
            // A worker we do not know (we restarted, or it was declared dead): ask it to register,
            // at most once a second per peer.
            if message.command != .bye && t - (registerSent[identity] ?? -1) >= 1 {
                if registerSent.count > 4 * options.maxWorkers { registerSent = registerSent.filter { t - $0.value < 1 } }
                registerSent[identity] = t
                send(.register(Empty()), to: identity, router: router)
            }
            if case .result(let r) = message { reject("unregistered", "rejected result \(r.lease) from an unregistered peer \(hex(identity))") }
            return
        }
        book.heard(from: worker, at: t)
        switch message {
        case .heartbeat(let hb):
            for i in book.reconcile(worker, running: hb.running.map(\.lease), at: t, grace: options.deadAfterSeconds, trialIndex: { indexByID[$0] }) {
                let lease = book.live(i)!.lease
                retryOrFail(i, lease, reason: "\(worker.name) no longer runs it (its result was lost, or the attempt ended without one)", worker: worker)
            }
        case .progress(let p):
            guard let i = holding(p.lease, worker) else { return }
            if let problem = check(p.record, of: i, field: "record") {
                reject("progress", "rejected progress of \(p.lease) from \(worker.name): \(problem)")
                return
            }
            if let reason = scheduler.observe(i, epoch: p.record.epoch, value: objective(p.record)), stopReasons[i] == nil {
                stopReasons[i] = reason
                log("stopping trial \(p.lease.trial): \(reason)")
                send(.cancel(Cancel(lease: p.lease, reason: reason)), to: worker.identity, router: router)
            }
        case .checkpoint(let c):
            receiveCheckpoint(c, from: worker)
        case .result(let r):
            finish(r, worker: worker)
        case .bye:
            log("worker \(worker.name) left")
            remove(worker, reason: "left")
        default:
            reject("unexpected", "unexpected \(message.command.rawValue) from worker \(worker.name)")
        }
    }

    /// The trial index if `lease` is the live attempt held by `worker`.
    func holding(_ lease: Lease, _ worker: LeaseBook.Worker) -> Int? {
        book.holder(lease, identity: worker.identity) { indexByID[$0] }
    }

    /// A checkpoint is kept only if this lease was asked for checkpoints, its epoch is in the
    /// trial, and (checked on the writer thread, which alone touches HDF5) it is an HDF5
    /// checkpoint of this trial's configuration at that epoch.
    func receiveCheckpoint(_ c: CheckpointMessage, from worker: LeaseBook.Worker) {
        guard let i = holding(c.lease, worker), let live = book.live(i) else {
            reject("checkpoint", "rejected checkpoint of \(c.lease) from \(worker.name): not a lease it holds")
            return
        }
        guard live.checkpoints else {
            reject("checkpoint", "rejected checkpoint of \(c.lease) from \(worker.name): none was asked for")
            return
        }
        let after = live.resumedFrom ?? 0
        guard c.epoch <= lengths[i], c.epoch > after else {
            reject("checkpoint", "rejected checkpoint of \(c.lease) from \(worker.name): epoch \(c.epoch) is outside \(after + 1)…\(lengths[i])")
            return
        }
        guard let bytes = Data(base64Encoded: c.file) else {
            reject("checkpoint", "rejected checkpoint of \(c.lease) from \(worker.name): not base64")
            return
        }
        writer.submit(.checkpoint(id: c.lease.trial, bytes: bytes, expect: .init(config: sweep.trials[i].config, epoch: c.epoch, lease: c.lease)))
    }

    /// READY: a new worker, or a known one announcing its slots again. The attempts it lists
    /// are attached only when it shows their lease token (the live lease of this run or of the
    /// journal); others are cancelled. Credit is its free slots plus what it proved it runs.
    func register(_ identity: [UInt8], _ ready: Ready, router: Socket, now t: Double) {
        if ready.version != Protocol.version {
            reject("version", "worker \(ready.name) on \(ready.host) reports version \(ready.version.prefix(16)); this coordinator speaks \(Protocol.version)")
        }
        switch book.register(identity, ready, trialIndex: { indexByID[$0] }, now: t) {
        case .refused(let why):
            reject("workers", "refused worker \(ready.name) on \(ready.host): \(why)")
        case .registered(let worker, let isNew, let proven, var refused):
            for (i, lease) in proven where !adopt(i, by: worker) { refused.append(lease) }
            let capped = book.settleCredit(worker, free: ready.free, running: ready.running)
            for lease in refused {
                send(.cancel(Cancel(lease: lease, reason: "not a live lease of this sweep (superseded, finished, or never granted)")), to: identity, router: router)
            }
            if !refused.isEmpty {
                reject("claim", "worker \(ready.name) on \(ready.host) claimed \(refused.count) attempt\(refused.count == 1 ? "" : "s") it does not hold (e.g. \(refused[0])): not adopted, cancelled")
            }
            if isNew {
                log(
                    "worker \(ready.name) on \(ready.host) registered: \(ready.slots) slot\(ready.slots == 1 ? "" : "s"), \(ready.threads) thread\(ready.threads == 1 ? "" : "s"), OpenBLAS \(ready.kernel)\(capped ? " (credit capped at \(worker.capacity), --max-slots)" : "")"
                )
            }
            send(.welcome(Welcome(sweep: sweep.name, heartbeatSeconds: options.heartbeatSeconds, deadAfterSeconds: options.deadAfterSeconds)), to: identity, router: router)
        }
    }

    /// Attaches an attempt a registering worker proved it runs, if the trial is waiting for it:
    /// queued (we restarted while it trained), paused (a promoted attempt that kept running while
    /// we restarted), or leased under the worker's previous connection (it reconnected after a
    /// partition: the attempt moves over instead of running twice).
    func adopt(_ i: Int, by worker: LeaseBook.Worker) -> Bool {
        switch states[i] {
        case .queued, .paused, .leased: break
        default: return false
        }
        guard book.attach(i, to: worker) else { return false }
        if case .leased = states[i] {} else { scheduler.adopt(i) }
        setState(i, .leased)
        indexDirty = true
        return true
    }

    func finish(_ r: ResultMessage, worker: LeaseBook.Worker) {
        guard let i = holding(r.lease, worker) else {
            reject("result", "rejected result of \(r.lease) from \(worker.name): not a live lease it holds (superseded or never granted)")
            return
        }
        if let problem = check(r, of: i) {
            // The lease is spent: a worker that sends nonsense (a buggy build, a bad node) costs
            // the trial an attempt, as a lost worker would, and never gets it committed.
            reject("invalid", "rejected result of \(r.lease) from \(worker.name) on \(worker.host): \(problem)")
            retryOrFail(i, r.lease, reason: "\(worker.name) sent an invalid result: \(problem)", worker: worker)
            return
        }
        if r.status == .failed, let epoch = book.live(i)?.resumedFrom, (r.history.last?.epoch ?? 0) <= epoch {
            // It could not continue from the checkpoint it was given: the next attempt starts over.
            log("trial \(r.lease.trial): attempt \(r.lease.attempt) could not resume from its checkpoint (epoch \(epoch)): \(r.message ?? "no reason given"); dropping the checkpoint")
            latestCheckpoint[i] = nil
            writer.submit(.prune(id: r.lease.trial))
            retryOrFail(i, r.lease, reason: "could not resume from its checkpoint: \(r.message ?? "")", worker: worker)
            return
        }
        book.end(i)
        // Its whole history feeds the rules (the median's curves, ASHA's rungs).
        if var median = scheduler as? MedianStopping {
            median.forget(i)
            scheduler = median
        }
        for record in r.history { _ = scheduler.observe(i, epoch: record.epoch, value: objective(record)) }
        let trial = sweep.trials[i]
        let stopped = stopReasons[i].map { _ in TrialStatus.stopped }
        var result = TrialResult(
            config: trial.config, status: r.status == .done ? r.status : (stopped ?? r.status), message: r.status == .stopped ? (stopReasons[i] ?? r.message) : r.message, history: r.history,
            trajectory: r.trajectory,
            parameterCount: r.parameterCount, optimizerStateBytes: r.optimizerStateBytes, wallSeconds: r.wallSeconds, engine: r.engine)
        result.lrRangeTest = r.lrRangeTest
        result.layerStatistics = r.layerStatistics ?? []
        result.sharpness = r.sharpness
        result.optimizerStateByTensor = r.optimizerStateByTensor ?? []
        result.optimizerWork = r.optimizerWork ?? [:]
        if let earlier = pausedResults.removeValue(forKey: i) { result.wallSeconds += earlier.result.wallSeconds }
        let ending = stopReasons[i] == nil ? scheduler.ended(i, status: r.status, lastEpoch: r.history.last?.epoch ?? 0) : .finish
        if case .pause(let k) = ending {
            // Reached its rung: it waits there, with its checkpoint, until it ranks high enough.
            pausedResults[i] = (result, worker.host, worker.name)
            setState(i, .paused(rung: k))
        } else {
            pending.append(FinishedTrial(id: trial.id, index: trial.index, branch: trial.branch, result: result, attempts: r.lease.attempt, host: worker.host, worker: worker.name))
            setState(i, .committing(r.status))
        }
        indexDirty = true
    }

    /// The sweep objective's value in an epoch record (NaN counts as the worst).
    func objective(_ r: EpochRecord) -> Double {
        let v = sweep.objective.value(in: r)
        return v.isNaN ? (sweep.objective.maximize ? -.infinity : .infinity) : v
    }

    func remove(_ worker: LeaseBook.Worker, reason: String) {
        for i in book.remove(worker.identity) {
            retryOrFail(i, book.live(i)!.lease, reason: "\(worker.name) \(reason)", worker: worker)
        }
        indexDirty = true
    }

    /// An attempt that ended without a usable result: the trial runs again, or, after
    /// `maxAttempts` (ASHA promotions not counted), it is committed as failed with the reason.
    func retryOrFail(_ i: Int, _ lease: Lease, reason: String, worker: LeaseBook.Worker) {
        book.end(i)
        indexDirty = true
        let attempts = book.attempts[i]
        if !book.mayRetry(i) {
            log("trial \(lease.trial): attempt \(lease.attempt) ended without a result (\(reason)); \(attempts) attempts made, marking it failed")
            let trial = sweep.trials[i]
            let result = TrialResult(
                config: trial.config, status: .failed, message: "no result after \(attempts) attempts (last: \(reason))",
                history: [], trajectory: [], parameterCount: 0, optimizerStateBytes: 0, wallSeconds: 0, engine: "")
            pending.append(FinishedTrial(id: trial.id, index: trial.index, branch: trial.branch, result: result, attempts: attempts, host: worker.host, worker: worker.name))
            setState(i, .committing(.failed))
        } else {
            log("requeueing trial \(lease.trial) (attempt \(lease.attempt): \(reason))")
            setState(i, .queued)
            scheduler.requeue(i)
        }
    }

    func reapDeadWorkers(now t: Double) {
        for w in book.silent(at: t, for: options.deadAfterSeconds) {
            log("worker \(w.name) on \(w.host) silent for \(Int(t - w.lastSeen)) s: declared lost")
            remove(w, reason: "lost")
        }
    }

    /// Hands runs to workers with free slots, the freest first, in the scheduler's order (ASHA:
    /// promotions before new trials).
    func dispatch(_ router: Socket) throws {
        while let worker = book.freest(), let run = scheduler.next() {
            if let k = run.promotedFrom {
                log("ASHA: promoting trial \(sweep.trials[run.trial].id) from rung \(k)\(run.pauseAfter.map { " to epoch \($0)" } ?? " to its end")")
            }
            switch states[run.trial] {
            case .queued, .paused: if !(try lease(run, to: worker, router: router)) { scheduler.unsent(run) }
            default: continue  // already running or finished (adopted since it was queued)
            }
        }
        if inFlight == 0 && scheduler.waiting == 0 { endAbandoned() }
    }

    /// Trials the scheduler will never run again (ASHA: paused, never promoted) end `stopped`
    /// with its reason.
    func endAbandoned() {
        for (i, reason) in scheduler.abandoned() {
            guard let paused = pausedResults.removeValue(forKey: i) else { continue }
            var result = paused.result
            let trial = sweep.trials[i]
            result.status = .stopped
            result.message = reason
            log("stopping trial \(trial.id): \(reason)")
            pending.append(FinishedTrial(id: trial.id, index: trial.index, branch: trial.branch, result: result, attempts: book.attempts[i], host: paused.host, worker: paused.worker))
            setState(i, .committing(.stopped))
            indexDirty = true
        }
    }

    /// Sends a run to a worker (resuming from the trial's checkpoint if it has one). False when
    /// the worker cannot be reached (it is then removed).
    func lease(_ run: ScheduledRun, to worker: LeaseBook.Worker, router: Socket) throws -> Bool {
        let i = run.trial
        let lease = book.nextLease(i, id: sweep.trials[i].id)
        // An earlier attempt's checkpoint (a lost worker, a coordinator restart, a rung) lets this
        // one continue where that left off. Only checkpoints checked on arrival are stored.
        let resume = usesCheckpoints ? store.checkpoint(id: lease.trial)?.base64EncodedString() : nil
        // ASHA pauses trials at rungs with a checkpoint, so it needs them even when the sweep asks for none.
        let every = sweep.checkpoints.every ?? (scheduler is Asha ? lengths[i] : nil)
        let token = LeaseJournal.newToken()
        let assignment = Assignment(lease: lease, token: token, config: configTexts[i], checkpointEvery: every, checkpoint: resume, pauseAfter: run.pauseAfter)
        // Journaled before it leaves: a worker can only ever prove a lease this file records.
        try journal.record(trial: lease.trial, .init(attempt: lease.attempt, token: token, promoted: run.promotedFrom != nil, worker: "\(worker.name)@\(worker.host)"))
        let resumedFrom = resume == nil ? nil : latestCheckpoint[i] ?? 0
        book.grant(i, lease, token: token, to: worker, promoted: run.promotedFrom != nil, checkpoints: every != nil, resumedFrom: resumedFrom, now: now())
        guard send(.trial(assignment), to: worker.identity, router: router) else {
            book.ungrant(i, promoted: run.promotedFrom != nil)
            remove(worker, reason: "unreachable")
            return false
        }
        if resume != nil {
            log("trial \(lease.trial) attempt \(lease.attempt) resumes from its checkpoint\(latestCheckpoint[i].map { " (epoch \($0))" } ?? "")")
        }
        setState(i, .leased)
        indexDirty = true
        return true
    }

    @discardableResult
    func send(_ message: Message, to identity: [UInt8], router: Socket) -> Bool {
        do {
            try router.send([identity] + (try message.frames()), dontWait: true)
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
        guard !pending.isEmpty else { return }
        writer.submit(.commit(pending))
        pending.removeAll(keepingCapacity: true)
        lastCommit = now()
    }

    func collectCompletions() throws {
        for completion in writer.take() {
            switch completion {
            case .committed(let trials, let records, let seconds):
                timings["commit", default: 0] += seconds
                for r in records { committed[r.id] = r }
                for t in trials {
                    if let i = indexByID[t.id] {
                        setState(i, .finished(t.result.status))
                        finishedCount += 1
                        if latestCheckpoint.removeValue(forKey: i) != nil || sweep.checkpoints.every != nil {
                            if sweep.checkpoints.keep == .none { writer.submit(.prune(id: t.id)) }
                        }
                    }
                    progress.finished(t, self)
                }
                indexDirty = true
            case .indexed(let seconds):
                timings["index", default: 0] += seconds
                indexCost = seconds
                lastIndex = now()
            case .checkpointed(let id, let epoch):
                if let epoch, let i = indexByID[id] { latestCheckpoint[i] = max(latestCheckpoint[i] ?? 0, epoch) }
            case .checkpointRejected(let lease, let problem):
                reject("checkpoint", "rejected checkpoint of \(lease): \(problem)")
            case .failed(let error):
                throw CoordinatorError.storage(directory: options.output, underlying: "\(error)")
            }
        }
    }

    /// Commits what is pending, waits for the disk, and writes the final index.
    func finishWriting() throws {
        writer.drain()
        try collectCompletions()
        commit()
        writer.drain()
        try collectCompletions()
        writeIndex()
        writer.drain()
        try collectCompletions()
    }

    func writeIndex() {
        let rows = sweep.trials.enumerated().map { i, t in
            IndexRow(id: t.id, index: t.index, branch: t.branch, config: t.config, status: Self.statusName(states[i]), committed: committed[t.id])
        }
        typealias Index = ResultsLayout.Index
        let metadata = [
            Index.name: sweep.name, Index.description: sweep.description ?? "", Index.source: sweep.source,
            Index.seed: String(sweep.seed), Index.objectiveMetric: sweep.objective.metric,
            Index.objectiveMode: Index.objectiveMode(maximize: sweep.objective.maximize), Index.version: Protocol.version,
        ]
        writer.submit(.index(metadata: metadata, text: sweep.text, rows: rows))
        lastIndex = now()
        indexDirty = false
    }

    func best() -> (id: String, value: Double)? {
        var best: (String, Double)?
        for c in committed.values where c.status == .done {
            let v = sweep.objective.value(in: c)
            guard v.isFinite else { continue }
            if best == nil || (sweep.objective.maximize ? v > best!.1 : v < best!.1) { best = (c.id, v) }
        }
        return best.map { (id: $0.0, value: $0.1) }
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
