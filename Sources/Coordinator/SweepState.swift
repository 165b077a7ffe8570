import Foundation
import Learning
import Results
import Sweeps
import Transport

/// What the coordinator knows about its sweep, changed only by events: each trial's state, the
/// `LeaseBook`, the `TrialScheduler`, results waiting for their group commit, stop reasons,
/// paused trials and checkpoints. It owns no socket, thread or file: what it decides goes out
/// through its `Effects` (a message to a worker, a job for the results writer, a journal line,
/// a log line), so every rule here is unit-tested with recorded effects (`SweepStateTests`).
///
/// The event loop (`Coordinator`) decodes and rate-limits messages, then calls `register` for a
/// READY and `receive` for everything a registered worker sends; `dispatch` hands out work,
/// `heartbeat` checks on workers, and `committed`/`checkpointed` report the writer's progress.
public final class SweepState {
    /// Everything the state does outside itself.
    public struct Effects {
        /// Sends a message to a peer; false when it cannot be reached.
        public var send: (Message, _ to: [UInt8]) -> Bool
        /// Hands a job to the results writer.
        public var submit: (ResultsJob) -> Void
        /// Records a grant durably before its TRIAL message leaves (`LeaseJournal`).
        public var journal: (_ trial: String, LeaseJournal.Grant) throws -> Void
        /// A trial's stored checkpoint, to resume from.
        public var checkpoint: (_ trial: String) -> Data?
        /// Records a trial the search suggested durably, before it is leased (`LeaseJournal`).
        public var suggested: (LeaseJournal.SuggestedTrial) throws -> Void
        public var log: (String) -> Void
        /// A line about something gone wrong: rejected input, a lost worker (`log` by default).
        public var warn: (String) -> Void
        /// A running trial's accepted progress record (the dashboard's live curves).
        public var progressed: (_ trial: Int, EpochRecord) -> Void

        public init(
            send: @escaping (Message, _ to: [UInt8]) -> Bool, submit: @escaping (ResultsJob) -> Void,
            journal: @escaping (_ trial: String, LeaseJournal.Grant) throws -> Void, checkpoint: @escaping (_ trial: String) -> Data?,
            suggested: @escaping (LeaseJournal.SuggestedTrial) throws -> Void = { _ in }, log: @escaping (String) -> Void,
            warn: ((String) -> Void)? = nil, progressed: @escaping (_ trial: Int, EpochRecord) -> Void = { _, _ in }
        ) {
            self.suggested = suggested
            self.send = send
            self.submit = submit
            self.journal = journal
            self.checkpoint = checkpoint
            self.log = log
            self.warn = warn ?? log
            self.progressed = progressed
        }
    }

    /// The settings the state's rules read.
    public struct Settings {
        public var heartbeatSeconds: Double
        public var deadAfterSeconds: Double
        public var maxAttempts: Int
        public var maxSlotsPerWorker: Int
        public var maxWorkers: Int

        public init(heartbeatSeconds: Double = 1, deadAfterSeconds: Double = 5, maxAttempts: Int = 3, maxSlotsPerWorker: Int = 64, maxWorkers: Int = 4096) {
            self.heartbeatSeconds = heartbeatSeconds
            self.deadAfterSeconds = deadAfterSeconds
            self.maxAttempts = maxAttempts
            self.maxSlotsPerWorker = maxSlotsPerWorker
            self.maxWorkers = maxWorkers
        }
    }

    public enum TrialState: Equatable {
        case queued
        case leased
        /// Finished, waiting for the next group commit.
        case committing(TrialStatus)
        case finished(TrialStatus)
        /// Waiting at an ASHA rung (with its checkpoint) to be promoted.
        case paused(rung: Int)

        public var isInFlight: Bool {
            switch self {
            case .leased, .committing: true
            default: false
            }
        }

        /// The status the sweep index shows.
        public var name: String {
            switch self {
            case .queued: ResultsLayout.Index.queued
            case .leased, .committing: ResultsLayout.Index.running
            case .paused: ResultsLayout.Index.paused
            case .finished(let status): status.rawValue
            }
        }
    }

    public let sweep: Sweep
    public let settings: Settings
    let effects: Effects
    public private(set) var states: [TrialState]
    /// Trials leased or waiting to be committed: nothing is in flight when it is 0.
    public private(set) var inFlight = 0
    /// Trials by state name (`counts()`), the leased trials, and the best committed trial, kept
    /// as states change: the progress line, the metrics and the live status read them without
    /// a pass over every trial.
    private var countsByName: [String: Int] = [:]
    public private(set) var leased: Set<Int> = []
    private var bestCommitted: (id: String, value: Double)?
    public private(set) var finishedCount = 0
    public private(set) var book: LeaseBook
    private(set) var scheduler: any TrialScheduler
    /// The committed trials as the event loop knows them (the writer thread owns the store).
    public private(set) var committed: [String: CommittedTrial]
    /// Finished trials waiting for the next group commit.
    public private(set) var pending: [FinishedTrial] = []
    /// Whether the sweep index is out of date.
    public var indexDirty = true
    /// Messages not used (in all, and by kind: `decode`, `rate`, `result`, …), and their
    /// rate-limited log.
    public private(set) var rejected = 0
    public private(set) var rejectedByKind: [String: Int] = [:]
    private var rejections = RateLimitedLog()
    /// Workers that left, newest last (at most `maxDepartures`), and how many were declared lost.
    public private(set) var departures: [(worker: LeaseBook.Worker, reason: String, at: Double)] = []
    public private(set) var workersLost = 0
    public static let maxDepartures = 50

    /// The sweep's trials: its expansion, or those a search suggested so far.
    public private(set) var trials: [Trial] = []
    public private(set) var indexByID: [String: Int] = [:]
    /// Each trial's configuration as sent to workers (computed once).
    private(set) var configTexts: [String] = []
    /// Each trial's length in epochs (steps for toy objectives).
    public private(set) var lengths: [Int] = []
    /// The highest epoch (step) a record of each trial may name, whether it is an LR range test,
    /// and whether its loss is non-negative (see `ResultChecks`).
    private(set) var recordLimits: [Int] = []
    private(set) var isRangeTest: [Bool] = []
    private(set) var nonNegativeLoss: [Bool] = []
    /// What became of each trial a search suggested (what the search learns from).
    private(set) var outcomes: [Int: Search.Outcome] = [:]
    /// The ASHA rung the search's model was last fitted on (BOHB), for the log.
    private var modelledRung: Int?
    /// Why the search stopped suggesting before its budget, if it did.
    public private(set) var searchEnded: String?
    /// Whether the sweep keeps checkpoints (asked for, needed by ASHA to pause trials, or by
    /// population-based training to continue each generation).
    let usesCheckpoints: Bool
    /// Trials an early-stopping rule has cancelled, and why.
    public private(set) var stopReasons: [Int: String] = [:]
    /// The epoch of each unfinished trial's latest checkpoint accepted in this run (the file is
    /// `SweepStore.checkpointPath`).
    public private(set) var latestCheckpoint: [Int: Int] = [:]
    /// Trial → its checkpoints handed to the writer and not yet stored or refused. A paused trial
    /// is not promoted while one is in flight: its next attempt would resume from an older one.
    private var checkpointsInFlight: [Int: Int] = [:]
    /// Paused trials' results so far, committed as `stopped` if never promoted.
    private(set) var pausedResults: [Int: (result: TrialResult, host: String, worker: String)] = [:]

    public var workers: [[UInt8]: LeaseBook.Worker] { book.workers }
    public var isComplete: Bool {
        guard finishedCount == states.count else { return false }
        guard let search = sweep.search else { return true }
        return trials.count >= search.budget || searchEnded != nil
    }

    /// The sweep with the trials an earlier run committed (never run twice) and the journal's
    /// last grant of each other trial (what a worker still running it must prove).
    /// The sweep with the trials an earlier run committed (never run twice), the journal's last
    /// grant of each other trial (what a worker still running it must prove) and, for a search,
    /// the trials it suggested before (`suggested`, checked by `Search.trial`).
    public init(
        sweep: Sweep, settings: Settings, committed: [String: CommittedTrial], journaled: [String: LeaseJournal.Grant], suggested: [Trial] = [],
        effects: Effects
    ) {
        self.sweep = sweep
        self.settings = settings
        self.effects = effects
        self.committed = committed
        states = []
        let objective = sweep.objective
        switch sweep.earlyStopping {
        case .median(let grace, let minTrials)?:
            scheduler = MedianStopping(trials: [], graceEpochs: grace, minTrials: minTrials, maximize: objective.maximize, metric: objective.metric)
        case .asha(let minEpochs, let eta)?:
            scheduler = Asha(trials: [], lengths: [], minEpochs: minEpochs, reductionFactor: eta, maximize: objective.maximize, metric: objective.metric)
        case nil:
            scheduler = InOrder(trials: [])
        }
        usesCheckpoints = sweep.checkpoints.every != nil || scheduler is Asha || sweep.search?.pbt != nil
        book = LeaseBook(
            trials: 0, maxSlots: settings.maxSlotsPerWorker, maxWorkers: settings.maxWorkers, maxAttempts: settings.maxAttempts,
            heartbeatSeconds: settings.heartbeatSeconds)
        for trial in sweep.search == nil ? sweep.trials : suggested {
            add(trial)
            if let grant = journaled[trial.id], committed[trial.id] == nil {
                book.restore(trial.index, lease: Lease(trial: trial.id, attempt: grant.attempt), token: grant.token, checkpoints: usesCheckpoints)
            }
        }
        for c in committed.values { considerBest(c) }
    }

    /// Appends a trial: committed by an earlier run (finished), or queued with the scheduler.
    private func add(_ trial: Trial) {
        let i = trials.count
        precondition(trial.index == i, "trials are numbered in order")
        trials.append(trial)
        indexByID[trial.id] = i
        configTexts.append(trial.config.canonicalJSON)
        let length = (try? trial.config.length()) ?? 1
        lengths.append(length)
        recordLimits.append(Self.recordLimit(of: trial.config, length: length))
        isRangeTest.append(Self.isRangeTest(trial.config))
        nonNegativeLoss.append(Self.lossIsNonNegative(trial.config))
        book.addTrial()
        if let c = committed[trial.id] {
            states.append(.finished(c.status))
            countsByName[states[i].name, default: 0] += 1
            book.setAttempts(i, c.attempts)
            finishedCount += 1
            if sweep.search != nil { outcomes[i] = outcome(of: c) }
            scheduler.add(i, length: length, waiting: false)
        } else {
            states.append(.queued)
            countsByName[states[i].name, default: 0] += 1
            scheduler.add(i, length: length, waiting: true)
        }
    }

    /// Trials the sweep will have run in all: its expansion, or a search's budget.
    public var total: Int { sweep.search.map { max($0.budget, trials.count) } ?? trials.count }

    /// After a restart, for ASHA: the rungs from the committed trials' histories, and the trials
    /// paused at a rung (their checkpoint sits exactly there) back to waiting for promotion.
    /// `history` reads a committed trial's records, `checkpoint` an unfinished trial's stored one.
    public func restoreRungs(history: (CommittedTrial) throws -> [EpochRecord], checkpoint: (_ trial: String) -> TrainingCheckpoint?) throws {
        guard var asha = scheduler as? Asha else { return }
        for (i, t) in trials.enumerated() {
            if let c = committed[t.id] {
                asha.restore(i, epochs: try history(c).map { ($0.epoch, objective($0)) }, checkpointEpoch: nil, committed: true)
            } else if let saved = checkpoint(t.id) {
                asha.restore(i, epochs: saved.history.map { ($0.epoch, objective($0)) }, checkpointEpoch: saved.epoch, committed: false)
                if let k = asha.paused[i] {
                    setState(i, .paused(rung: k))
                    let result = TrialResult(
                        config: t.config, status: .stopped, history: saved.history, trajectory: saved.trajectory, parameterCount: 0,
                        optimizerStateBytes: 0, wallSeconds: 0, engine: "")
                    pausedResults[i] = (result, "", "")
                }
            }
        }
        scheduler = asha
        if !pausedResults.isEmpty { effects.log("ASHA: \(pausedResults.count) trial\(pausedResults.count == 1 ? "" : "s") waiting at a rung for promotion") }
    }

    /// Moves trial i to a new state, keeping the count of trials in flight.
    private func setState(_ i: Int, _ new: TrialState) {
        if states[i].isInFlight { inFlight -= 1 }
        if new.isInFlight { inFlight += 1 }
        countsByName[states[i].name, default: 0] -= 1
        countsByName[new.name, default: 0] += 1
        if new == .leased { leased.insert(i) } else if states[i] == .leased { leased.remove(i) }
        states[i] = new
    }

    /// Counts and logs (rate-limited, by kind) a message that was not used.
    public func reject(_ kind: String, _ text: @autoclosure () -> String, count: Int = 1, now t: Double = now()) {
        rejected += count
        rejectedByKind[kind, default: 0] += count
        if let line = rejections.line(kind, text(), now: t) { effects.warn(line) }
    }

    /// The sweep objective's value in an epoch record (NaN counts as the worst).
    public func objective(_ r: some MetricValues) -> Double {
        let v = sweep.objective.value(in: r)
        return v.isNaN ? (sweep.objective.maximize ? -.infinity : .infinity) : v
    }

    // MARK: Workers

    /// READY: a new worker, or a known one announcing its slots again. The attempts it lists
    /// are attached only when it shows their lease token (the live lease of this run or of the
    /// journal); others are cancelled. Credit is its free slots plus what it proved it runs.
    public func register(_ identity: [UInt8], _ ready: Ready, now t: Double) {
        if ready.version != Protocol.version {
            reject("version", "worker \(ready.name) on \(ready.host) reports version \(ready.version.prefix(16)); this coordinator speaks \(Protocol.version)", now: t)
        }
        switch book.register(identity, ready, trialIndex: { indexByID[$0] }, now: t) {
        case .refused(let why):
            reject("workers", "refused worker \(ready.name) on \(ready.host): \(why)", now: t)
        case .registered(let worker, let isNew, let proven, var refused):
            for (i, lease) in proven where !adopt(i, by: worker) { refused.append(lease) }
            let capped = book.settleCredit(worker, free: ready.free, running: ready.running)
            for lease in refused {
                _ = effects.send(.cancel(Cancel(lease: lease, reason: "not a live lease of this sweep (superseded, finished, or never granted)")), identity)
            }
            if !refused.isEmpty {
                reject(
                    "claim", "worker \(ready.name) on \(ready.host) claimed \(refused.count) attempt\(refused.count == 1 ? "" : "s") it does not hold (e.g. \(refused[0])): not adopted, cancelled",
                    now: t)
            }
            if isNew {
                effects.log(
                    "worker \(ready.name) on \(ready.host) registered: \(ready.slots) slot\(ready.slots == 1 ? "" : "s"), \(ready.threads) thread\(ready.threads == 1 ? "" : "s"), OpenBLAS \(ready.kernel)\(capped ? " (credit capped at \(worker.capacity), --max-slots)" : "")"
                )
            }
            let welcome = Welcome(sweep: sweep.name, heartbeatSeconds: settings.heartbeatSeconds, deadAfterSeconds: settings.deadAfterSeconds)
            _ = effects.send(.welcome(welcome), identity)
        }
    }

    /// Attaches an attempt a registering worker proved it runs, if the trial is waiting for it:
    /// queued (we restarted while it trained), paused (a promoted attempt that kept running while
    /// we restarted), or leased under the worker's previous connection (it reconnected after a
    /// partition: the attempt moves over instead of running twice).
    private func adopt(_ i: Int, by worker: LeaseBook.Worker) -> Bool {
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

    /// A message from a registered worker (READY goes to `register`).
    public func receive(_ message: Message, from worker: LeaseBook.Worker, now t: Double) {
        book.heard(from: worker, at: t)
        switch message {
        case .heartbeat(let hb):
            for i in book.reconcile(worker, running: hb.running.map(\.lease), at: t, grace: settings.deadAfterSeconds, trialIndex: { indexByID[$0] }) {
                let lease = book.live(i)!.lease
                retryOrFail(i, lease, reason: "\(worker.name) no longer runs it (its result was lost, or the attempt ended without one)", worker: worker)
            }
        case .progress(let p):
            guard let i = holding(p.lease, worker) else { return }
            if let problem = check(p.record, of: i, field: "record") {
                reject("progress", "rejected progress of \(p.lease) from \(worker.name): \(problem)", now: t)
                return
            }
            effects.progressed(i, p.record)
            if let reason = scheduler.observe(i, epoch: p.record.epoch, value: objective(p.record)), stopReasons[i] == nil {
                stopReasons[i] = reason
                effects.log("stopping trial \(p.lease.trial): \(reason)")
                _ = effects.send(.cancel(Cancel(lease: p.lease, reason: reason)), worker.identity)
            }
        case .checkpoint(let c):
            receiveCheckpoint(c, from: worker, now: t)
        case .result(let r):
            finish(r, worker: worker, now: t)
        case .bye:
            effects.log("worker \(worker.name) left")
            remove(worker, reason: "left", now: t)
        default:
            reject("unexpected", "unexpected \(message.command.rawValue) from worker \(worker.name)", now: t)
        }
    }

    /// A RESULT from a registered worker that did not decode: if it names the worker's live
    /// lease, the attempt is spent (without this the trial would wait for a result that never
    /// comes from a worker that heartbeats on).
    public func refusedResult(_ lease: Lease, from worker: LeaseBook.Worker, error: String) {
        guard let i = holding(lease, worker) else { return }
        retryOrFail(i, lease, reason: "\(worker.name) sent a result that was refused: \(error)", worker: worker)
    }

    /// The trial index if `lease` is the live attempt held by `worker`.
    private func holding(_ lease: Lease, _ worker: LeaseBook.Worker) -> Int? {
        book.holder(lease, identity: worker.identity) { indexByID[$0] }
    }

    /// A checkpoint is kept only if this lease was asked for checkpoints, its epoch is in the
    /// trial, and (checked on the writer thread, which alone touches HDF5) it is an HDF5
    /// checkpoint of this trial's configuration at that epoch.
    private func receiveCheckpoint(_ c: CheckpointMessage, from worker: LeaseBook.Worker, now t: Double) {
        func refuse(_ why: String) { reject("checkpoint", "rejected checkpoint of \(c.lease) from \(worker.name): \(why)", now: t) }
        guard let i = holding(c.lease, worker), let live = book.live(i) else { return refuse("not a lease it holds") }
        guard live.checkpoints else { return refuse("none was asked for") }
        let after = live.resumedFrom ?? 0
        guard c.epoch <= lengths[i], c.epoch > after else { return refuse("epoch \(c.epoch) is outside \(after + 1)…\(lengths[i])") }
        guard let bytes = Data(base64Encoded: c.file) else { return refuse("not base64") }
        effects.submit(.checkpoint(id: c.lease.trial, bytes: bytes, expect: .init(config: trials[i].config, epoch: c.epoch, lease: c.lease)))
        checkpointsInFlight[i, default: 0] += 1
    }

    /// One of a trial's checkpoints left the writer (stored or refused).
    private func checkpointLanded(_ i: Int) {
        guard let n = checkpointsInFlight[i] else { return }
        checkpointsInFlight[i] = n > 1 ? n - 1 : nil
    }

    private func finish(_ r: ResultMessage, worker: LeaseBook.Worker, now t: Double) {
        guard let i = holding(r.lease, worker) else {
            reject("result", "rejected result of \(r.lease) from \(worker.name): not a live lease it holds (superseded or never granted)", now: t)
            return
        }
        if let problem = check(r, of: i) {
            // The lease is spent: a worker that sends nonsense (a buggy build, a bad node) costs
            // the trial an attempt, as a lost worker would, and never gets it committed.
            reject("invalid", "rejected result of \(r.lease) from \(worker.name) on \(worker.host): \(problem)", now: t)
            retryOrFail(i, r.lease, reason: "\(worker.name) sent an invalid result: \(problem)", worker: worker)
            return
        }
        if r.status == .failed, let epoch = book.live(i)?.resumedFrom, (r.history.last?.epoch ?? 0) <= epoch {
            // It could not continue from the checkpoint it was given: the next attempt starts over.
            effects.log(
                "trial \(r.lease.trial): attempt \(r.lease.attempt) could not resume from its checkpoint (epoch \(epoch)): \(r.message ?? "no reason given"); dropping the checkpoint")
            latestCheckpoint[i] = nil
            effects.submit(.prune(id: r.lease.trial))
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
        let trial = trials[i]
        let status = r.status == .done || stopReasons[i] == nil ? r.status : .stopped
        var result = TrialResult(
            config: trial.config, status: status, message: r.status == .stopped ? (stopReasons[i] ?? r.message) : r.message, history: r.history,
            trajectory: r.trajectory, parameterCount: r.parameterCount, optimizerStateBytes: r.optimizerStateBytes, wallSeconds: r.wallSeconds,
            engine: r.engine)
        result.lrRangeTest = r.lrRangeTest
        result.layerStatistics = r.layerStatistics ?? []
        result.sharpness = r.sharpness
        result.optimizerStateByTensor = r.optimizerStateByTensor ?? []
        result.optimizerWork = r.optimizerWork ?? [:]
        result.extraHistory = r.extraHistory ?? [:]
        result.programOutput = r.programOutput
        result.lineage = trial.lineage
        if let earlier = pausedResults.removeValue(forKey: i) { result.wallSeconds += earlier.result.wallSeconds }
        let ending = stopReasons[i] == nil ? scheduler.ended(i, status: r.status, lastEpoch: r.history.last?.epoch ?? 0) : .finish
        if case .pause(let k) = ending {
            // Reached its rung: it waits there, with its checkpoint, until it ranks high enough.
            pausedResults[i] = (result, worker.host, worker.name)
            setState(i, .paused(rung: k))
        } else {
            pending.append(FinishedTrial(id: trial.id, index: trial.index, branch: trial.branch, result: result, attempts: r.lease.attempt, host: worker.host, worker: worker.name))
            setState(i, .committing(r.status))
            if sweep.search != nil { outcomes[i] = outcome(status: result.status, last: r.history.last) }
        }
        indexDirty = true
    }

    private func remove(_ worker: LeaseBook.Worker, reason: String, now t: Double) {
        departures.append((worker, reason, t))
        if departures.count > Self.maxDepartures { departures.removeFirst(departures.count - Self.maxDepartures) }
        for i in book.remove(worker.identity) {
            retryOrFail(i, book.live(i)!.lease, reason: "\(worker.name) \(reason)", worker: worker)
        }
        indexDirty = true
    }

    /// An attempt that ended without a usable result: the trial runs again, or, after
    /// `maxAttempts` (ASHA promotions not counted), it is committed as failed with the reason.
    private func retryOrFail(_ i: Int, _ lease: Lease, reason: String, worker: LeaseBook.Worker) {
        book.end(i)
        indexDirty = true
        let attempts = book.attempts[i]
        if !book.mayRetry(i) {
            effects.warn("trial \(lease.trial): attempt \(lease.attempt) ended without a result (\(reason)); \(attempts) attempts made, marking it failed")
            let trial = trials[i]
            var result = TrialResult(
                config: trial.config, status: .failed, message: "no result after \(attempts) attempts (last: \(reason))",
                history: [], trajectory: [], parameterCount: 0, optimizerStateBytes: 0, wallSeconds: 0, engine: "")
            result.lineage = trial.lineage
            pending.append(FinishedTrial(id: trial.id, index: trial.index, branch: trial.branch, result: result, attempts: attempts, host: worker.host, worker: worker.name))
            setState(i, .committing(.failed))
            if sweep.search != nil { outcomes[i] = .failed }
        } else {
            effects.log("requeueing trial \(lease.trial) (attempt \(lease.attempt): \(reason))")
            setState(i, .queued)
            scheduler.requeue(i)
        }
    }

    /// Heartbeats to the workers due one (each every `heartbeatSeconds`, on its own phase);
    /// workers silent for `deadAfterSeconds` are declared lost and their trials retried. Called
    /// on every pass of the loop: it looks only at the workers whose time has come. Returns how
    /// late each heartbeat sent was (seconds past its time).
    @discardableResult
    public func heartbeat(now t: Double) -> [Double] {
        var lateness: [Double] = []
        for (w, due) in book.takeHeartbeatsDue(at: t) {
            _ = effects.send(.heartbeat(Heartbeat(running: [])), w.identity)
            lateness.append(t - due)
        }
        for w in book.takeSilent(at: t, for: settings.deadAfterSeconds) {
            effects.warn("worker \(w.name) on \(w.host) silent for \(Int(t - w.lastSeen)) s: declared lost")
            workersLost += 1
            remove(w, reason: "lost", now: t)
        }
        return lateness
    }

    // MARK: Dispatch

    /// Hands runs to workers with free slots, the freest first, in the scheduler's order (ASHA:
    /// promotions before new trials).
    public func dispatch(now t: Double) throws {
        // Promotions whose checkpoint at the rung is still with the writer: leased now, they would
        // resume from an older one. They wait for a later pass; other work goes out meanwhile.
        var held: [ScheduledRun] = []
        while let worker = book.freest() {
            guard let run = try scheduler.next() ?? suggest() else { break }
            if run.promotedFrom != nil && checkpointsInFlight[run.trial] != nil {
                held.append(run)
                continue
            }
            if let k = run.promotedFrom {
                effects.log("ASHA: promoting trial \(trials[run.trial].id) from rung \(k)\(run.pauseAfter.map { " to epoch \($0)" } ?? " to its end")")
            }
            switch states[run.trial] {
            case .queued, .paused: if !(try lease(run, to: worker, now: t)) { scheduler.unsent(run) }
            default: continue  // already running or finished (adopted since it was queued)
            }
        }
        for run in held.reversed() { scheduler.unsent(run) }
        if inFlight == 0 && scheduler.waiting == 0 && held.isEmpty { endAbandoned() }
    }

    // MARK: Search

    /// The search's next trial, journaled and queued, when its budget and `parallel` allow one.
    private func suggest() throws -> ScheduledRun? {
        guard let search = sweep.search, searchEnded == nil, trials.count < search.budget else { return nil }
        if search.pbt != nil { return try pbtSuggest(search) }
        if let parallel = search.parallel, inFlight >= parallel { return nil }
        let history = searchHistory(search)
        let trial: Trial
        do {
            trial = try search.suggest(number: trials.count, history: history) { indexByID[$0] != nil }
        } catch {
            searchEnded = "\(error)"
            effects.log("search: no further trials after \(trials.count): \(error)")
            return nil
        }
        try effects.suggested(.init(index: trial.index, id: trial.id, branch: trial.branch, config: trial.config.canonicalJSON))
        add(trial)
        indexDirty = true
        return scheduler.next()
    }

    /// Population-based training: the whole first generation, then each next one once every
    /// member has finished the last and its checkpoint is stored.
    private func pbtSuggest(_ search: Search) throws -> ScheduledRun? {
        let pbt = search.pbt!
        var generation: [Trial]
        if trials.isEmpty {
            generation = try (0..<pbt.population).map { try search.pbtInitial(member: $0) }
        } else {
            let last = Array(trials.suffix(pbt.population))
            // Committed (so the writer has also handled its checkpoint, sent before its result).
            for t in last {
                guard case .finished = states[t.index] else { return nil }
            }
            guard let next = try search.pbtNextGeneration(last, outcomes: last.map { outcomes[$0.index] ?? .failed }, checkpointed: last.map { hasCheckpoint($0.index) }) else {
                searchEnded = "no member of the population has a usable result after generation \(last[0].lineage?.generation ?? 0)"
                effects.log("population-based training: \(searchEnded!); stopping")
                return nil
            }
            generation = next
            let exploits = next.filter { $0.lineage?.exploited == true }.map { "member \($0.lineage!.member) ← \(trials[indexByID[$0.lineage!.parent!]!].lineage!.member)" }
            effects.log("population-based training: generation \(next[0].lineage!.generation + 1) of \(pbt.generations)\(exploits.isEmpty ? "" : "; exploit " + exploits.joined(separator: ", "))")
            // The generation before the last is nobody's starting point any more.
            if sweep.checkpoints.keep == .none, let g = last.first?.lineage?.generation, g >= 1 {
                for t in trials where t.lineage?.generation == g - 1 { effects.submit(.prune(id: t.id)) }
            }
        }
        for trial in generation {
            try effects.suggested(
                .init(index: trial.index, id: trial.id, branch: trial.branch, config: trial.config.canonicalJSON, parent: trial.lineage?.parent, exploited: trial.lineage?.exploited))
            add(trial)
        }
        indexDirty = true
        return scheduler.next()
    }

    /// What the search learns from. With ASHA (BOHB, Falkner et al. 2018): the values at the
    /// largest budget at which enough trials have one — the trials' end, else the highest rung with
    /// at least `startupTrials` values —; trials still running count as running, trials that stopped
    /// below that budget as pruned at the epoch they reached. Without ASHA: each trial's outcome.
    private func searchHistory(_ search: Search) -> [Search.Record] {
        let plain = trials.indices.map { i in Search.Record(trial: trials[i], outcome: outcomes[i] ?? .running) }
        guard let asha = scheduler as? Asha else { return plain }
        let complete = plain.filter { if case .complete = $0.outcome { true } else { false } }.count
        if complete >= search.startupTrials { return plain }
        let rungs = asha.rungs.rungs
        guard let k = rungs.indices.last(where: { rungs[$0].count >= search.startupTrials }) else { return plain }
        if modelledRung != k {
            modelledRung = k
            effects.log("search: modelled on ASHA's rung \(k) (\(rungs[k].count) trials have a value there)")
        }
        return trials.indices.map { i in
            if let v = rungs[k][i] { return Search.Record(trial: trials[i], outcome: .complete(v)) }
            switch states[i] {
            case .queued, .leased: return Search.Record(trial: trials[i], outcome: .running)
            default:
                let reached = asha.reached(i)
                let value = (0..<k).reversed().lazy.compactMap { rungs[$0][i] }.first ?? .infinity
                return Search.Record(trial: trials[i], outcome: .pruned(epoch: reached, value: value))
            }
        }
    }

    /// Whether trial i's last checkpoint is stored (reported by the writer, or there after a restart).
    private func hasCheckpoint(_ i: Int) -> Bool {
        if latestCheckpoint[i] == lengths[i] { return true }
        guard effects.checkpoint(trials[i].id) != nil else { return false }
        latestCheckpoint[i] = lengths[i]
        return true
    }

    /// What a committed trial tells the search.
    private func outcome(of c: CommittedTrial) -> Search.Outcome {
        outcome(status: c.status, epoch: c.epochs, value: c.epochs > 0 ? objective(c) : nil)
    }

    /// What a finished trial tells the search: its final value, the value where a rule stopped
    /// it, the worst value for a divergence; a failure tells it nothing.
    private func outcome(status: TrialStatus, last: EpochRecord?) -> Search.Outcome {
        outcome(status: status, epoch: last?.epoch ?? 0, value: last.map(objective))
    }

    private func outcome(status: TrialStatus, epoch: Int, value: Double?) -> Search.Outcome {
        switch status {
        case .done: return value.map { .complete($0) } ?? .failed
        case .diverged: return .complete(sweep.objective.maximize ? -.infinity : .infinity)
        case .stopped: return value.map { .pruned(epoch: epoch, value: $0) } ?? .failed
        case .failed: return .failed
        }
    }

    /// Trials the scheduler will never run again (ASHA: paused, never promoted) end `stopped`
    /// with its reason.
    private func endAbandoned() {
        for (i, reason) in scheduler.abandoned() {
            guard let paused = pausedResults.removeValue(forKey: i) else { continue }
            var result = paused.result
            let trial = trials[i]
            result.status = .stopped
            result.message = reason
            effects.log("stopping trial \(trial.id): \(reason)")
            pending.append(FinishedTrial(id: trial.id, index: trial.index, branch: trial.branch, result: result, attempts: book.attempts[i], host: paused.host, worker: paused.worker))
            setState(i, .committing(.stopped))
            if sweep.search != nil { outcomes[i] = outcome(status: .stopped, last: result.history.last) }
            indexDirty = true
        }
    }

    /// Sends a run to a worker (resuming from the trial's checkpoint if it has one). False when
    /// the worker cannot be reached (it is then removed).
    private func lease(_ run: ScheduledRun, to worker: LeaseBook.Worker, now t: Double) throws -> Bool {
        let i = run.trial
        let lease = book.nextLease(i, id: trials[i].id)
        // An earlier attempt's checkpoint (a lost worker, a coordinator restart, a rung) lets this
        // one continue where that left off. Only checkpoints checked on arrival are stored.
        var resume = usesCheckpoints ? effects.checkpoint(lease.trial)?.base64EncodedString() : nil
        var resumedFrom = resume == nil ? nil : latestCheckpoint[i] ?? 0
        // Population-based training: a new generation continues its parent's checkpoint (its own
        // member's, or the member it exploited) with its own values of the explored keys.
        var explored: [String]?
        if resume == nil, let lineage = trials[i].lineage, let parent = lineage.parent {
            guard let file = effects.checkpoint(parent) else {
                effects.log("trial \(lease.trial): its parent \(parent)'s checkpoint is gone; it cannot continue")
                return false
            }
            resume = file.base64EncodedString()
            resumedFrom = lineage.parentEpoch
            explored = sweep.search?.space.keys
        }
        // ASHA pauses trials at rungs with a checkpoint, and population-based training continues
        // from each generation's last one: both need them even when the sweep asks for none.
        let every = sweep.checkpoints.every ?? (usesCheckpoints ? lengths[i] : nil)
        let token = LeaseJournal.newToken()
        var assignment = Assignment(
            lease: lease, token: token, config: configTexts[i], checkpointEvery: every, checkpoint: resume, pauseAfter: run.pauseAfter, explored: explored)
        if trials[i].config.isProgram { addProgramInputs(to: &assignment, trials[i].config) }
        // Journaled before it leaves: a worker can only ever prove a lease this file records.
        try effects.journal(lease.trial, .init(attempt: lease.attempt, token: token, promoted: run.promotedFrom != nil, worker: "\(worker.name)@\(worker.host)"))
        book.grant(i, lease, token: token, to: worker, promoted: run.promotedFrom != nil, checkpoints: every != nil, resumedFrom: resumedFrom, now: t)
        guard effects.send(.trial(assignment), worker.identity) else {
            book.ungrant(i, promoted: run.promotedFrom != nil)
            remove(worker, reason: "unreachable", now: t)
            return false
        }
        if resume != nil {
            effects.log("trial \(lease.trial) attempt \(lease.attempt) resumes from \(explored == nil ? "its" : "its parent's") checkpoint\(resumedFrom.map { " (epoch \($0))" } ?? "")")
        }
        setState(i, .leased)
        indexDirty = true
        return true
    }

    /// A program trial's lease also brings the sweep's folder (its working directory unless
    /// `workdir` or `files` say otherwise), its `files` and the objective it must report.
    private func addProgramInputs(to assignment: inout Assignment, _ config: TrialConfig) {
        assignment.directory = sweep.folder
        assignment.objective = sweep.objective.metric
        let names = (try? config.stringList(ProgramContract.Key.files)) ?? []
        if !names.isEmpty {
            assignment.files = names.compactMap { sweep.programFiles[$0] }.map { ShippedFile(path: $0.path, content: Data($0.bytes).base64EncodedString()) }
        }
    }

    // MARK: Results

    /// The finished trials for the next group commit, at most `limit`, oldest first (they count
    /// as finished once `committed`).
    public func takePending(limit: Int = .max) -> [FinishedTrial] {
        guard pending.count > limit else {
            defer { pending.removeAll(keepingCapacity: true) }
            return pending
        }
        defer { pending.removeFirst(limit) }
        return Array(pending.prefix(limit))
    }

    /// The writer made these trials durable.
    public func committed(_ finished: [FinishedTrial], records: [CommittedTrial]) {
        for r in records {
            committed[r.id] = r
            considerBest(r)
        }
        for t in finished {
            guard let i = indexByID[t.id] else { continue }
            setState(i, .finished(t.result.status))
            finishedCount += 1
            // A generation's checkpoints are the next one's starting points: population-based
            // training prunes them when that generation is done (`pbtSuggest`).
            if let pbt = sweep.search?.pbt, let g = trials[i].lineage?.generation, g < pbt.generations - 1 { continue }
            if latestCheckpoint.removeValue(forKey: i) != nil || sweep.checkpoints.every != nil {
                if sweep.checkpoints.keep == .none { effects.submit(.prune(id: t.id)) }
            }
        }
        indexDirty = true
    }

    /// The writer stored a trial's checkpoint at `epoch`.
    public func checkpointed(_ id: String, epoch: Int) {
        guard let i = indexByID[id] else { return }
        latestCheckpoint[i] = max(latestCheckpoint[i] ?? 0, epoch)
        checkpointLanded(i)
    }

    /// The writer refused a trial's checkpoint (not an HDF5 checkpoint of its configuration and epoch).
    public func checkpointRefused(_ lease: Lease, problem: String) {
        if let i = indexByID[lease.trial] { checkpointLanded(i) }
        reject("checkpoint", "rejected checkpoint of \(lease): \(problem)")
    }

    /// The sweep index's rows, as the trials stand now.
    public func indexRows() -> [IndexRow] {
        trials.enumerated().map { i, t in
            IndexRow(id: t.id, index: t.index, branch: t.branch, config: t.config, status: states[i].name, committed: committed[t.id])
        }
    }

    /// Trials by status (as the index names them).
    public func counts() -> [String: Int] { countsByName.filter { $0.value > 0 } }

    /// The best committed trial by the sweep's objective.
    public func best() -> (id: String, value: Double)? { bestCommitted }

    private func considerBest(_ c: CommittedTrial) {
        guard c.status == .done else { return }
        let v = sweep.objective.value(in: c)
        guard v.isFinite else { return }
        if let b = bestCommitted, sweep.objective.maximize ? v <= b.value : v >= b.value { return }
        bestCommitted = (c.id, v)
    }
}
