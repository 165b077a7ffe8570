import CZeroMQ
import Foundation
import Glibc
import Learning
import Results
import Sweeps
import Transport

/// `sweep-coordinator start`: owns a sweep. It binds a ROUTER socket, leases trials to workers
/// that have free slots (credit), tracks heartbeats, requeues the trials of lost workers with
/// capped retries, rejects results of superseded attempts, and is the single writer of the
/// results (group-committed batch files and the index).
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
        case leased(Lease, worker: [UInt8])
        /// Finished, waiting for the next group commit.
        case committing(TrialStatus)
        case finished(TrialStatus)
        /// Waiting at an ASHA rung (with its checkpoint) to be promoted.
        case paused(rung: Int)
    }

    final class WorkerState {
        let identity: [UInt8]
        var name: String
        var host: String
        var slots: Int
        /// Leases it accepts at once: its slots plus its prefetch (credit), capped by
        /// `Options.maxSlotsPerWorker`.
        var capacity = 0
        /// Leases held, as this coordinator granted them (never what the peer claims).
        var leases: Set<Lease> = []
        var lastSeen: Double
        /// Credit left: what it may still be sent.
        var free: Int { max(0, capacity - leases.count) }
        init(identity: [UInt8], ready: Ready, now: Double) {
            self.identity = identity
            name = ready.name
            host = ready.host
            slots = ready.slots
            lastSeen = now
        }
    }

    let sweep: Sweep
    let options: Options
    let store: SweepStore
    let writer: ResultsWriter
    /// The committed trials as the event loop knows them (the writer thread owns the store).
    var committed: [String: CommittedTrial]
    let log: (String) -> Void
    var states: [TrialState]
    var indexByID: [String: Int] = [:]
    /// Each trial's configuration as sent to workers (computed once).
    let configTexts: [String]
    var attempts: [Int]
    var queue: [Int] = []
    var queueHead = 0
    var workers: [[UInt8]: WorkerState] = [:]
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
    var latestEpoch: [Int: EpochRecord] = [:]
    /// Objective values per epoch of the trials seen by this run (for early stopping).
    var curves: [Int: [Double]] = [:]
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
    /// The live lease of each trial that has one: its attempt and token.
    var tokens: [Int: (attempt: Int, token: String)] = [:]
    /// The checkpoint epoch an attempt resumed from (a failure before passing it drops the checkpoint).
    var resumedFrom: [Int: Int] = [:]
    /// Whether the live attempt was asked for checkpoints (others are refused).
    var checkpointsRequested: Set<Int> = []
    var limiter: PeerLimiter
    var rejections = RateLimitedLog()
    /// Fewer refused peers' REGISTER replies: the last one per identity.
    var registerSent: [[UInt8]: Double] = [:]
    let progress: ProgressDisplay
    /// ASHA's rungs, when the sweep uses it.
    var asha: SuccessiveHalving?
    /// Each trial's length in epochs (steps for toy objectives).
    let lengths: [Int]
    /// The highest epoch (step) a record of each trial may name, whether it is an LR range test,
    /// and whether its loss is non-negative (see `ResultChecks`).
    let recordLimits: [Int]
    let isRangeTest: [Bool]
    let nonNegativeLoss: [Bool]
    /// The epoch at which the current attempt of an ASHA trial pauses.
    var pauseTargets: [Int: Int] = [:]
    /// Paused trials' results so far, committed as `stopped` if never promoted.
    var pausedResults: [Int: (result: TrialResult, host: String, worker: String)] = [:]
    /// Attempts that were ASHA promotions rather than retries (they do not count towards `maxAttempts`).
    var promotions: [Int]

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
        states = Array(repeating: .queued, count: sweep.trials.count)
        attempts = Array(repeating: 0, count: sweep.trials.count)
        for (i, t) in sweep.trials.enumerated() { indexByID[t.id] = i }
        configTexts = sweep.trials.map(\.config.canonicalJSON)
        lengths = sweep.trials.map { (try? $0.config.length()) ?? 1 }
        recordLimits = zip(sweep.trials, lengths).map { Self.recordLimit(of: $0.config, length: $1) }
        isRangeTest = sweep.trials.map { (try? $0.config.string("mode", default: "train")) == "lr_range_test" }
        nonNegativeLoss = sweep.trials.map { Self.lossIsNonNegative($0.config) }
        promotions = Array(repeating: 0, count: sweep.trials.count)
        if case .asha(let minEpochs, let eta)? = sweep.earlyStopping {
            asha = SuccessiveHalving(minEpochs: minEpochs, reductionFactor: eta, maximize: sweep.objective.maximize)
        }
        // Trials committed by an earlier run of this sweep are done: never run twice. The
        // journal's last grant of each other trial is what a worker still running it must prove.
        var resumed = 0
        for (i, t) in sweep.trials.enumerated() {
            if committed[t.id] == nil, let grant = journal.latest[t.id] { tokens[i] = (grant.attempt, grant.token) }
            if let c = committed[t.id] {
                states[i] = .finished(c.status)
                attempts[i] = c.attempts
                resumed += 1
                finishedCount += 1
            } else {
                queue.append(i)
            }
        }
        progress = ProgressDisplay(interactive: options.interactive ?? (isatty(1) != 0), total: sweep.trials.count, objective: sweep.objective)
        if resumed > 0 { log("resuming: \(resumed) of \(sweep.trials.count) trials already committed in \(options.output)") }
        if journal.skipped > 0 { log("lease journal \(journal.path): skipped \(journal.skipped) line\(journal.skipped == 1 ? "" : "s") that did not parse") }
        if asha != nil { try rebuildRungs() }
    }

    /// After a restart: ASHA's rungs from the committed trials' histories, and the trials paused
    /// at a rung (their checkpoint sits exactly there) back to waiting for promotion.
    func rebuildRungs() throws {
        for (i, t) in sweep.trials.enumerated() {
            let history: [EpochRecord]
            if let c = committed[t.id] {
                history = try store.history(of: c)
            } else if store.checkpoint(id: t.id) != nil, let checkpoint = try? CheckpointFile.read(store.checkpointPath(id: t.id)) {
                history = checkpoint.history
                if let k = asha!.rung(ofEpoch: checkpoint.epoch, length: lengths[i]) {
                    removeFromQueue(i)
                    states[i] = .paused(rung: k)
                    let result = TrialResult(
                        config: t.config, status: .stopped, history: history, trajectory: checkpoint.trajectory, parameterCount: 0,
                        optimizerStateBytes: 0, wallSeconds: 0, engine: "")
                    pausedResults[i] = (result, "", "")
                } else {
                    pauseTargets[i] = asha!.pauseTarget(after: checkpoint.epoch, length: lengths[i])
                }
            } else {
                continue
            }
            for r in history { recordRung(r, of: i) }
            let reached = history.last?.epoch ?? 0
            for (k, level) in asha!.levels(length: lengths[i]).enumerated() where level < reached { asha!.markPromoted(trial: i, from: k) }
        }
        let paused = states.filter { if case .paused = $0 { true } else { false } }.count
        if paused > 0 { log("ASHA: \(paused) trial\(paused == 1 ? "" : "s") waiting at a rung for promotion") }
    }

    func recordRung(_ r: EpochRecord, of i: Int) {
        asha?.record(trial: i, epoch: r.epoch, value: objective(r), length: lengths[i])
    }

    // MARK: Running

    public func run(signals: SignalWatcher? = nil) throws -> Summary {
        let context = Context()
        let router = try Socket(context, .router)
        try router.setOption(ZMQ_ROUTER_MANDATORY, Int32(1))
        try router.setOption(ZMQ_MAXMSGSIZE, Protocol.maxMessageSize)
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
        log("sweep \(sweep.name): \(sweep.trials.count) trials, \(queue.count) to run; listening on \(endpoint)\(options.curve == nil ? " (plaintext)" : " (CURVE)"); results in \(options.output)")
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

    func summary(interrupted: Bool, endpoint: String) -> Summary {
        var counts: [String: Int] = [:]
        for s in states { counts[Self.statusName(s), default: 0] += 1 }
        return Summary(
            total: states.count, counts: counts, seconds: now() - started, interrupted: interrupted, endpoint: endpoint, rejectedMessages: rejected,
            refusedConnections: refusedConnections, best: best())
    }

    static func statusName(_ s: TrialState) -> String {
        switch s {
        case .queued: "queued"
        case .leased: "running"
        case .committing: "running"
        case .paused: "paused"
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
            if let line = rejections.line("rate", "dropped \(count) message\(count == 1 ? "" : "s") from \(who): over its rate limit (\(Int(limiter.rate))/s; --peer-rate raises it for a real worker)", now: t) { log(line) }
        }
    }

    /// What a registered worker sends that must not be dropped by its rate limit while it is
    /// within twice its burst: a lost RESULT would leave its trial waiting for ever.
    static let essentialCommands: Set<[UInt8]> = [Command.result, .ready, .bye].map { Array($0.rawValue.utf8) }.reduce(into: []) { $0.insert($1) }

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
            if let worker = workers[identity], let lease = Message.lease(ofResult: Array(frames.dropFirst())), let i = current(lease, worker: worker) {
                worker.leases.remove(lease)
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
        worker.lastSeen = t
        switch message {
        case .heartbeat:
            break
        case .progress(let p):
            guard let i = current(p.lease, worker: worker) else { return }
            guard p.record.epoch <= recordLimit(i) else {
                reject("progress", "rejected progress of \(p.lease) from \(worker.name): epoch \(p.record.epoch) is past the trial's \(recordLimit(i))")
                return
            }
            if let problem = check(p.record, of: i, field: "record") {
                reject("progress", "rejected progress of \(p.lease) from \(worker.name): \(problem)")
                return
            }
            latestEpoch[i] = p.record
            record(p.record, of: i)
            recordRung(p.record, of: i)
            applyEarlyStopping(i, lease: p.lease, worker: worker, router: router)
        case .checkpoint(let c):
            receiveCheckpoint(c, from: worker)
        case .result(let r):
            finish(r, worker: worker, router: router)
        case .bye:
            log("worker \(worker.name) left")
            remove(worker, reason: "left")
        default:
            reject("unexpected", "unexpected \(message.command.rawValue) from worker \(worker.name)")
        }
    }

    /// A checkpoint is kept only if this lease was asked for checkpoints, its epoch is in the
    /// trial, and (checked on the writer thread, which alone touches HDF5) it is an HDF5
    /// checkpoint of this trial's configuration at that epoch.
    func receiveCheckpoint(_ c: CheckpointMessage, from worker: WorkerState) {
        guard let i = current(c.lease, worker: worker) else {
            reject("checkpoint", "rejected checkpoint of \(c.lease) from \(worker.name): not a lease it holds")
            return
        }
        guard checkpointsRequested.contains(i) else {
            reject("checkpoint", "rejected checkpoint of \(c.lease) from \(worker.name): none was asked for")
            return
        }
        guard c.epoch <= lengths[i], c.epoch > (resumedFrom[i] ?? 0) else {
            reject("checkpoint", "rejected checkpoint of \(c.lease) from \(worker.name): epoch \(c.epoch) is outside \((resumedFrom[i] ?? 0) + 1)…\(lengths[i])")
            return
        }
        guard let bytes = Data(base64Encoded: c.file) else {
            reject("checkpoint", "rejected checkpoint of \(c.lease) from \(worker.name): not base64")
            return
        }
        writer.submit(.checkpoint(id: c.lease.trial, bytes: bytes, expect: .init(config: sweep.trials[i].config, epoch: c.epoch, lease: c.lease)))
    }

    /// READY: a new worker, or a known one announcing its slots again. Credit is what this
    /// coordinator granted against the capped capacity, never what the peer says it has free.
    /// The attempts it lists are adopted only when it shows their lease token and the journal
    /// (or this run) says that attempt is the trial's live one; others are cancelled.
    func register(_ identity: [UInt8], _ ready: Ready, router: Socket, now t: Double) {
        let known = workers[identity]
        if known == nil && workers.count >= options.maxWorkers {
            reject("workers", "refused worker \(ready.name) on \(ready.host): \(options.maxWorkers) workers are registered already (--max-workers)")
            return
        }
        if ready.version != Protocol.version {
            reject("version", "worker \(ready.name) on \(ready.host) reports version \(ready.version.prefix(16)); this coordinator speaks \(Protocol.version)")
        }
        let worker = known ?? WorkerState(identity: identity, ready: ready, now: t)
        worker.name = ready.name
        worker.host = ready.host
        worker.slots = ready.slots
        worker.lastSeen = t
        workers[identity] = worker
        var refused: [Lease] = []
        var held = 0
        for claim in ready.running {
            if worker.leases.contains(claim.lease) || adopt(claim, by: worker) { held += 1 } else { refused.append(claim.lease) }
        }
        // Credit: its free slots plus the attempts it proved it runs, never unproven claims.
        worker.capacity = min(options.maxSlotsPerWorker, ready.free + held)
        for lease in refused {
            send(.cancel(Cancel(lease: lease, reason: "not a live lease of this sweep (superseded, finished, or never granted)")), to: identity, router: router)
        }
        if !refused.isEmpty {
            reject("claim", "worker \(ready.name) on \(ready.host) claimed \(refused.count) attempt\(refused.count == 1 ? "" : "s") it does not hold (e.g. \(refused[0])): not adopted, cancelled")
        }
        if known == nil {
            log("worker \(ready.name) on \(ready.host) registered: \(ready.slots) slot\(ready.slots == 1 ? "" : "s"), \(ready.threads) thread\(ready.threads == 1 ? "" : "s"), OpenBLAS \(ready.kernel)\(worker.capacity < ready.free + held ? " (credit capped at \(worker.capacity), --max-slots)" : "")")
        }
        send(.welcome(Welcome(sweep: sweep.name, heartbeatSeconds: options.heartbeatSeconds, deadAfterSeconds: options.deadAfterSeconds)), to: identity, router: router)
    }

    /// Adopts an attempt a registering worker says it runs, if its token proves the lease.
    func adopt(_ held: HeldLease, by worker: WorkerState) -> Bool {
        let lease = held.lease
        guard let i = indexByID[lease.trial], let live = tokens[i], live.attempt == lease.attempt, live.token == held.token else { return false }
        guard worker.leases.count < options.maxSlotsPerWorker else { return false }
        switch states[i] {
        case .queued:
            // We restarted while it trained.
            removeFromQueue(i)
        case .paused(let k):
            // A promoted attempt that kept running while we restarted: it continues from rung k.
            asha?.markPromoted(trial: i, from: k)
            pauseTargets[i] = asha?.pauseTarget(after: pausedResults[i]?.result.history.last?.epoch ?? 0, length: lengths[i])
        case .leased(let current, let owner) where current == lease:
            // The same attempt under the worker's previous connection (it reconnected after a
            // partition) moves over to this one instead of being run twice.
            if owner != worker.identity { workers[owner]?.leases.remove(lease) }
        default:
            return false
        }
        states[i] = .leased(lease, worker: worker.identity)
        attempts[i] = max(attempts[i], lease.attempt)
        worker.leases.insert(lease)
        if sweep.checkpoints.every != nil || asha != nil { checkpointsRequested.insert(i) }
        indexDirty = true
        return true
    }

    /// The trial index if `lease` is the live attempt held by `worker`.
    func current(_ lease: Lease, worker: WorkerState) -> Int? {
        guard let i = indexByID[lease.trial], case .leased(let held, let owner) = states[i], held == lease, owner == worker.identity else { return nil }
        return i
    }

    func finish(_ r: ResultMessage, worker: WorkerState, router: Socket) {
        guard let i = current(r.lease, worker: worker) else {
            reject("result", "rejected result of \(r.lease) from \(worker.name): not a live lease it holds (superseded or never granted)")
            return
        }
        worker.leases.remove(r.lease)
        if let problem = check(r, of: i) {
            // The lease is spent: a worker that sends nonsense (a buggy build, a bad node) costs
            // the trial an attempt, as a lost worker would, and never gets it committed.
            reject("invalid", "rejected result of \(r.lease) from \(worker.name) on \(worker.host): \(problem)")
            retryOrFail(i, r.lease, reason: "\(worker.name) sent an invalid result: \(problem)", worker: worker)
            return
        }
        if r.status == .failed, let epoch = resumedFrom[i], (r.history.last?.epoch ?? 0) <= epoch {
            // It could not continue from the checkpoint it was given: the next attempt starts over.
            log("trial \(r.lease.trial): attempt \(r.lease.attempt) could not resume from its checkpoint (epoch \(epoch)): \(r.message ?? "no reason given"); dropping the checkpoint")
            latestCheckpoint[i] = nil
            writer.submit(.prune(id: r.lease.trial))
            retryOrFail(i, r.lease, reason: "could not resume from its checkpoint: \(r.message ?? "")", worker: worker)
            return
        }
        let trial = sweep.trials[i]
        curves[i] = nil
        for record in r.history {
            self.record(record, of: i)
            recordRung(record, of: i)
        }
        let stopped = stopReasons[i].map { _ in TrialStatus.stopped }
        var result = TrialResult(
            config: trial.config, status: r.status == .done ? r.status : (stopped ?? r.status), message: r.status == .stopped ? (stopReasons[i] ?? r.message) : r.message, history: r.history, trajectory: r.trajectory,
            parameterCount: r.parameterCount, optimizerStateBytes: r.optimizerStateBytes, wallSeconds: r.wallSeconds, engine: r.engine)
        result.lrRangeTest = r.lrRangeTest
        result.layerStatistics = r.layerStatistics ?? []
        result.sharpness = r.sharpness
        result.optimizerStateByTensor = r.optimizerStateByTensor ?? []
        result.optimizerWork = r.optimizerWork ?? [:]
        if let asha, r.status == .stopped, stopReasons[i] == nil, let target = pauseTargets[i], let last = r.history.last?.epoch, last == target,
            let k = asha.rung(ofEpoch: last, length: lengths[i])
        {
            // Reached its rung: it waits there, with its checkpoint, until it ranks high enough.
            if let earlier = pausedResults[i] { result.wallSeconds += earlier.result.wallSeconds }
            pausedResults[i] = (result, worker.host, worker.name)
            states[i] = .paused(rung: k)
            latestEpoch[i] = nil
            endLease(i)
            indexDirty = true
            return
        }
        if let earlier = pausedResults.removeValue(forKey: i) { result.wallSeconds += earlier.result.wallSeconds }
        pending.append(FinishedTrial(id: trial.id, index: trial.index, branch: trial.branch, result: result, attempts: r.lease.attempt, host: worker.host, worker: worker.name))
        states[i] = .committing(r.status)
        latestEpoch[i] = nil
        endLease(i)
    }

    /// The live attempt of trial i is over: its token and checkpoint permissions go with it.
    func endLease(_ i: Int) {
        tokens[i] = nil
        checkpointsRequested.remove(i)
        resumedFrom[i] = nil
    }

    /// The sweep objective's value in an epoch record (NaN counts as the worst).
    func objective(_ r: EpochRecord) -> Double {
        let v: Double = switch sweep.objective.metric {
        case "train_loss": r.trainLoss
        case "test_accuracy": r.testAccuracy
        default: r.testLoss.isNaN ? r.trainLoss : r.testLoss
        }
        return v.isNaN ? (sweep.objective.maximize ? -.infinity : .infinity) : v
    }

    func record(_ r: EpochRecord, of i: Int) {
        var curve = curves[i] ?? []
        guard r.epoch >= 1 else { return }
        if curve.count >= r.epoch { curve.removeLast(curve.count - r.epoch + 1) }
        while curve.count < r.epoch - 1 { curve.append(curve.last ?? objective(r)) }
        curve.append(objective(r))
        curves[i] = curve
    }

    /// The median stopping rule: at epoch e (past the grace period), stop trial i if its best
    /// value so far is worse than the median of the other trials' running averages up to e.
    func applyEarlyStopping(_ i: Int, lease: Lease, worker: WorkerState, router: Socket) {
        guard case .median(let grace, let minTrials)? = sweep.earlyStopping, stopReasons[i] == nil, let curve = curves[i] else { return }
        let e = curve.count
        guard e >= grace else { return }
        let averages = curves.filter { $0.key != i && $0.value.count >= e }.map { $0.value.prefix(e).reduce(0, +) / Double(e) }.sorted()
        guard averages.count >= minTrials else { return }
        let n = averages.count
        let median = n % 2 == 1 ? averages[n / 2] : (averages[n / 2 - 1] + averages[n / 2]) / 2
        let maximize = sweep.objective.maximize
        let best = maximize ? curve.max()! : curve.min()!
        guard maximize ? best < median : best > median else { return }
        let reason = "median stopping rule: best \(sweep.objective.metric) \(fmt(best)) after epoch \(e) is worse than the median \(fmt(median)) of \(n) other trials' running averages"
        stopReasons[i] = reason
        log("stopping trial \(lease.trial): \(reason)")
        send(.cancel(Cancel(lease: lease, reason: reason)), to: worker.identity, router: router)
    }

    func remove(_ worker: WorkerState, reason: String) {
        workers[worker.identity] = nil
        for lease in worker.leases {
            guard let i = indexByID[lease.trial], case .leased(let held, _) = states[i], held == lease else { continue }
            retryOrFail(i, lease, reason: "\(worker.name) \(reason)", worker: worker)
        }
        indexDirty = true
    }

    /// An attempt that ended without a usable result: the trial runs again, or, after
    /// `maxAttempts` (ASHA promotions not counted), it is committed as failed with the reason.
    func retryOrFail(_ i: Int, _ lease: Lease, reason: String, worker: WorkerState) {
        tokens[i] = nil
        checkpointsRequested.remove(i)
        resumedFrom[i] = nil
        latestEpoch[i] = nil
        indexDirty = true
        if attempts[i] - promotions[i] >= options.maxAttempts {
            log("trial \(lease.trial): attempt \(lease.attempt) ended without a result (\(reason)); \(attempts[i]) attempts made, marking it failed")
            let trial = sweep.trials[i]
            let result = TrialResult(
                config: trial.config, status: .failed, message: "no result after \(attempts[i]) attempts (last: \(reason))",
                history: [], trajectory: [], parameterCount: 0, optimizerStateBytes: 0, wallSeconds: 0, engine: "")
            pending.append(FinishedTrial(id: trial.id, index: trial.index, branch: trial.branch, result: result, attempts: attempts[i], host: worker.host, worker: worker.name))
            states[i] = .committing(.failed)
        } else {
            log("requeueing trial \(lease.trial) (attempt \(lease.attempt): \(reason))")
            states[i] = .queued
            queue.append(i)
        }
    }

    func reapDeadWorkers(now t: Double) {
        for w in Array(workers.values) where t - w.lastSeen > options.deadAfterSeconds {
            log("worker \(w.name) on \(w.host) silent for \(Int(t - w.lastSeen)) s: declared lost")
            remove(w, reason: "lost")
        }
    }

    func removeFromQueue(_ i: Int) {
        if let k = queue[queueHead...].firstIndex(of: i) { queue.remove(at: k) }
    }

    /// Hands queued trials to workers with free slots, the freest first.
    func dispatch(_ router: Socket) throws {
        while let worker = workers.values.filter({ $0.free > 0 }).max(by: { $0.free < $1.free }) {
            // ASHA: a paused trial that now ranks in the top 1/η of its rung goes before any new trial.
            if asha != nil, let (i, k) = asha!.promotion(isPaused: isPaused) {
                promotions[i] += 1
                pauseTargets[i] = asha!.pauseTarget(after: pausedResults[i]?.result.history.last?.epoch ?? 0, length: lengths[i])
                log("ASHA: promoting trial \(sweep.trials[i].id) from rung \(k)\(pauseTargets[i].map { " to epoch \($0)" } ?? " to its end")")
                states[i] = .queued
                if !(try lease(i, to: worker, router: router, promoted: true)) {
                    states[i] = .paused(rung: k)
                    promotions[i] -= 1
                    asha!.unmarkPromoted(trial: i, from: k)
                }
                continue
            }
            guard queueHead < queue.count else { break }
            let i = queue[queueHead]
            queueHead += 1
            guard case .queued = states[i] else { continue }
            if asha != nil && pauseTargets[i] == nil { pauseTargets[i] = asha!.pauseTarget(after: 0, length: lengths[i]) }
            if !(try lease(i, to: worker, router: router)) { queueHead -= 1 }
        }
        if queueHead > 4096 && queueHead * 2 > queue.count {
            queue.removeFirst(queueHead)
            queueHead = 0
        }
        if asha != nil { finishPausedIfNothingLeft() }
    }

    func isPaused(_ i: Int, at rung: Int) -> Bool {
        if case .paused(let k) = states[i] { k == rung } else { false }
    }

    /// ASHA with nothing queued or running: the trials still waiting at a rung will never rank
    /// high enough, so they end `stopped` with the reason.
    func finishPausedIfNothingLeft() {
        guard queueHead >= queue.count, !pausedResults.isEmpty, !asha!.canPromote(isPaused: isPaused) else { return }
        for s in states {
            switch s {
            case .leased, .committing: return
            case .queued: return
            default: continue
            }
        }
        for (i, s) in states.enumerated() {
            guard case .paused(let k) = s, let paused = pausedResults.removeValue(forKey: i) else { continue }
            var result = paused.result
            let trial = sweep.trials[i]
            let epoch = result.history.last?.epoch ?? 0
            result.status = .stopped
            result.message = asha!.reason(notPromoted: i, rung: k, epoch: epoch, metric: sweep.objective.metric)
            log("stopping trial \(trial.id): \(result.message!)")
            pending.append(FinishedTrial(id: trial.id, index: trial.index, branch: trial.branch, result: result, attempts: attempts[i], host: paused.host, worker: paused.worker))
            states[i] = .committing(.stopped)
        }
        indexDirty = true
    }

    /// Sends trial i to a worker (resuming from its latest checkpoint if it has one). False when
    /// the worker cannot be reached (it is then removed).
    func lease(_ i: Int, to worker: WorkerState, router: Socket, promoted: Bool = false) throws -> Bool {
        let lease = Lease(trial: sweep.trials[i].id, attempt: attempts[i] + 1)
        // An earlier attempt's checkpoint (a lost worker, or a coordinator restart) lets this one
        // continue where that left off. Only checkpoints that were checked on arrival are stored.
        let wantsCheckpoints = sweep.checkpoints.every != nil || asha != nil
        let stored = wantsCheckpoints ? store.checkpoint(id: lease.trial) : nil
        let resume = stored?.base64EncodedString()
        // ASHA pauses trials at rungs with a checkpoint, so it needs them even when the sweep asks for none.
        let pauseAfter = pauseTargets[i]
        let every = sweep.checkpoints.every ?? (asha != nil ? lengths[i] : nil)
        let token = LeaseJournal.newToken()
        let assignment = Assignment(lease: lease, token: token, config: configTexts[i], checkpointEvery: every, checkpoint: resume, pauseAfter: pauseAfter)
        // Journaled before it leaves: a worker can only ever prove a lease this file records.
        try journal.record(trial: lease.trial, .init(attempt: lease.attempt, token: token, promoted: promoted, worker: "\(worker.name)@\(worker.host)"))
        attempts[i] = lease.attempt
        guard send(.trial(assignment), to: worker.identity, router: router) else {
            tokens[i] = nil
            remove(worker, reason: "unreachable")
            return false
        }
        if resume != nil {
            let epoch = latestCheckpoint[i]
            log("trial \(lease.trial) attempt \(lease.attempt) resumes from its checkpoint\(epoch.map { " (epoch \($0))" } ?? "")")
            resumedFrom[i] = epoch ?? 0
        } else {
            resumedFrom[i] = nil
        }
        tokens[i] = (lease.attempt, token)
        if every != nil { checkpointsRequested.insert(i) } else { checkpointsRequested.remove(i) }
        states[i] = .leased(lease, worker: worker.identity)
        worker.leases.insert(lease)
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
                        states[i] = .finished(t.result.status)
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
        let metadata = [
            "name": sweep.name, "description": sweep.description ?? "", "source": sweep.source,
            "seed": String(sweep.seed), "objective_metric": sweep.objective.metric,
            "objective_mode": sweep.objective.maximize ? "max" : "min", "version": Protocol.version,
        ]
        writer.submit(.index(metadata: metadata, text: sweep.text, rows: rows))
        lastIndex = now()
        indexDirty = false
    }

    func best() -> (id: String, value: Double)? {
        var best: (String, Double)?
        for c in committed.values where c.status == .done {
            let v: Double = switch sweep.objective.metric {
            case "train_loss": c.trainLoss
            case "test_accuracy": c.testAccuracy
            default: c.testLoss.isNaN ? c.trainLoss : c.testLoss
            }
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

    func isLocal(_ w: WorkerState) -> Bool { localWorkers?.pid(named: w.name) != nil }
}

func siblingExecutable(_ name: String) -> String {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    let me = n > 0 ? String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
    return (me as NSString).deletingLastPathComponent + "/" + name
}

func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

func fmt(_ x: Double) -> String { String(format: "%.4g", x) }
