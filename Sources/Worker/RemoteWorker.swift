import Foundation
import Glibc
import Learning
import Linalg
import Results
import Transport

/// `sweep-worker --connect`: registers with a coordinator, trains the trials it leases, streams
/// an epoch at a time, heartbeats with progress, obeys cancel and shutdown, and reconnects with
/// back-off when the coordinator goes silent.
///
/// One thread owns the DEALER socket (the loop below); each running trial trains on its own
/// thread and hands its messages to the loop over an inproc PUSH/PULL pair.
public final class RemoteWorker {
    public struct Options: Sendable {
        public var endpoint: String
        public var name: String
        public var threads: Int
        public var slots: Int
        /// Leases accepted beyond the free slots, so the next trial is already here when one ends.
        public var prefetch: Int
        /// Give up after this long without any coordinator (nil: keep trying forever).
        public var giveUpAfter: Double?
        /// CURVE: this worker's keys and the coordinator's public key. nil: plaintext, refused
        /// for a non-loopback endpoint unless `insecure`.
        public var curve: CurveClient?
        public var insecure = false
        /// Program trials (`program:`): run with these settings; nil refuses them (`--allow-programs`).
        public var programs: ProgramRunner.Settings?

        public init(endpoint: String, name: String? = nil, threads: Int = 1, slots: Int = 1, prefetch: Int = 2, giveUpAfter: Double? = nil) {
            self.endpoint = endpoint
            self.name = name ?? "\(hostName())-\(getpid())"
            self.threads = threads
            self.slots = slots
            self.prefetch = prefetch
            self.giveUpAfter = giveUpAfter
        }
    }

    let options: Options
    let context = Context()
    let log: @Sendable (String) -> Void
    let data = DataCache()
    var running: [Lease: RunningTrial] = [:]
    /// Leases received while every slot was busy, in arrival order.
    var waiting: [Assignment] = []
    var heartbeatSeconds = 1.0
    var deadAfterSeconds = 5.0
    var lastHeard = now()
    var lastSent = 0.0
    /// The monitor of the current DEALER: tells a refused key from a silent coordinator.
    var monitor: Socket?
    var dealers = 0
    var lastHandshakeWarning = 0.0

    final class RunningTrial: @unchecked Sendable {
        let lease: Lease
        /// The lease's token, shown to the coordinator when this worker registers again.
        let token: String
        private let lock = NSLock()
        private var _cancelled = false
        private var _epoch = 0
        init(lease: Lease, token: String) {
            self.lease = lease
            self.token = token
        }
        var cancelled: Bool {
            get { lock.withLock { _cancelled } }
            set { lock.withLock { _cancelled = newValue } }
        }
        var epoch: Int {
            get { lock.withLock { _epoch } }
            set { lock.withLock { _epoch = newValue } }
        }
    }

    public init(_ options: Options, log: @escaping @Sendable (String) -> Void) {
        self.options = options
        self.log = log
    }

    var inbox: String { "inproc://worker-\(getpid())" }
    /// The threads trials train on, each with its PUSH socket to `inbox`, kept between trials:
    /// a thread and a socket per trial cost more than a trivial trial itself.
    lazy var trialThreads = TrialThreads(context: context, inbox: inbox, log: log)

    func makeDealer() throws -> Socket {
        let socket = try Socket(context, .dealer)
        try socket.set(.maxMessageSize(Protocol.maxMessageSize))
        if let curve = options.curve { try socket.makeCurveClient(curve.keys, serverKey: curve.serverKey) }
        // Handshake outcomes, read by the loop below (same thread).
        dealers += 1
        let endpoint = "inproc://worker-monitor-\(getpid())-\(dealers)"
        try socket.monitor(endpoint, events: [.handshakeSucceeded, .handshakeFailedProtocol, .handshakeFailedAuth, .handshakeFailedNoDetail])
        monitor?.close()
        let pair = try Socket(context, .pair)
        try pair.connect(endpoint)
        monitor = pair
        try socket.connect(options.endpoint)
        return socket
    }

    /// A refused key or a mechanism mismatch will not mend itself: stop with the reason. A
    /// handshake that merely failed (wrong coordinator key, or the link dropped) is retried by
    /// libzmq and logged at most every 30 s.
    func handle(_ event: MonitorEvent) throws {
        let endpoint = options.endpoint
        switch event.kind {
        case .handshakeSucceeded:
            if options.curve != nil && lastHandshakeWarning >= 0 {
                log("worker \(options.name): CURVE handshake with \(endpoint) succeeded (coordinator key verified, traffic encrypted)")
                lastHandshakeWarning = -1
            }
        case .handshakeFailedAuth:
            throw SecurityError.refusedByCoordinator(endpoint: endpoint, publicKey: options.curve?.keys.publicKey ?? "(none)")
        case .handshakeFailedProtocol where event.isMechanismMismatch:
            throw SecurityError.mechanismMismatch(endpoint: endpoint, workerUsesCurve: options.curve != nil)
        case .handshakeFailedProtocol, .handshakeFailedNoDetail:
            let t = now()
            guard t - lastHandshakeWarning >= 30 else { return }
            lastHandshakeWarning = t
            let hint = options.curve != nil ? "; is --server-key the coordinator's public key?" : ""
            log(
                "worker \(options.name): the handshake with \(endpoint) failed (\(event.kind == .handshakeFailedProtocol ? "protocol error 0x\(String(event.value, radix: 16))" : "connection closed")\(hint)), retrying"
            )
        default:
            break
        }
    }

    func ready(_ dealer: Socket) throws {
        let message = Ready(
            name: options.name, host: hostName(), pid: getpid(), threads: options.threads, slots: options.slots,
            kernel: BLASRuntime.coreName, version: Protocol.version,
            running: running.values.map { HeldLease(lease: $0.lease, token: $0.token) } + waiting.map { HeldLease(lease: $0.lease, token: $0.token) },
            free: max(0, options.slots + options.prefetch - running.count - waiting.count))
        try send(dealer, .ready(message))
    }

    func send(_ dealer: Socket, _ message: Message) throws {
        try dealer.send(try message.frames())
        lastSent = now()
    }

    /// Runs until SHUTDOWN, a signal, or `giveUpAfter` without a coordinator.
    public func run(signals: SignalWatcher? = nil) throws {
        if options.curve == nil {
            try EndpointScope.checkPlaintext(options.endpoint, role: .worker, insecure: options.insecure)
        } else if options.insecure {
            throw SecurityError.insecureWithKeys
        }
        defer { monitor?.close() }
        BLASRuntime.setThreads(options.threads)
        let pull = try Socket(context, .pull)
        try pull.bind(inbox)
        var dealer = try makeDealer()
        try ready(dealer)
        log("worker \(options.name): connecting to \(options.endpoint) (\(BLASRuntime.summary), \(options.slots) slot\(options.slots == 1 ? "" : "s"))")
        var backoff = 1.0
        var lastCoordinator = now()
        var stopping = false
        while true {
            var items: [Poller.Item] = [.socket(dealer), .socket(pull)]
            if let monitor { items.append(.socket(monitor)) }
            if let signals { items.append(.fd(signals.fd)) }
            let readable = try Poller.poll(items, timeout: 100)
            while let frames = try monitor?.receive(wait: false) {
                if let event = MonitorEvent(frames: frames) { try handle(event) }
            }
            if readable.contains(items.count - 1), let signals, let signal = signals.take() {
                log("worker \(options.name): \(signal), stopping")
                stopping = true
                waiting.removeAll()
                for trial in running.values { trial.cancelled = true }
                try? send(dealer, .bye(Empty()))
                if running.isEmpty { return }
            }
            // Messages from the trials' threads go out as they are, after their envelope (a
            // result's lease, empty for the rest).
            while var frames = try pull.receive(wait: false), !frames.isEmpty {
                if let lease = Self.lease(ofEnvelope: frames.removeFirst()) {
                    running[lease] = nil
                    if !stopping && !waiting.isEmpty { start(waiting.removeFirst()) }
                }
                try? dealer.send(frames)
                lastSent = now()
            }
            if stopping && running.isEmpty { return }
            while let frames = try dealer.receive(wait: false) {
                lastHeard = now()
                lastCoordinator = lastHeard
                backoff = 1
                let message: Message
                do { message = try Message.decode(frames) } catch {
                    log("worker \(options.name): dropped a malformed message: \(error)")
                    continue
                }
                switch message {
                case .welcome(let w):
                    heartbeatSeconds = w.heartbeatSeconds
                    deadAfterSeconds = w.deadAfterSeconds
                    log("worker \(options.name): registered with sweep \(w.sweep)")
                case .trial(let a):
                    if stopping { continue }
                    if running.count < options.slots { start(a) } else { waiting.append(a) }
                case .cancel(let c):
                    running[c.lease]?.cancelled = true
                    if let k = waiting.firstIndex(where: { $0.lease == c.lease }) {
                        waiting.remove(at: k)
                        try? send(
                            dealer,
                            .result(
                                ResultMessage(
                                    lease: c.lease, status: .stopped, message: "cancelled before it started: \(c.reason)", history: [], trajectory: [],
                                    parameterCount: 0, optimizerStateBytes: 0, wallSeconds: 0, engine: BLASRuntime.summary)))
                    }
                case .register:
                    try ready(dealer)
                case .shutdown:
                    log("worker \(options.name): shutdown requested")
                    for trial in running.values { trial.cancelled = true }
                    return
                case .heartbeat:
                    break
                default:
                    log("worker \(options.name): unexpected \(message.command.rawValue) from the coordinator")
                }
            }
            let t = now()
            if t - lastSent >= heartbeatSeconds {
                let hb = Heartbeat(running: running.values.map { .init(lease: $0.lease, epoch: $0.epoch) } + waiting.map { .init(lease: $0.lease, epoch: 0) })
                try? send(dealer, .heartbeat(hb))
            }
            if t - lastHeard > deadAfterSeconds {
                if let limit = options.giveUpAfter, t - lastCoordinator > limit {
                    log("worker \(options.name): no coordinator for \(Int(limit)) s, exiting")
                    return
                }
                log("worker \(options.name): coordinator silent for \(Int(t - lastHeard)) s, reconnecting in \(Int(backoff)) s")
                dealer.close()
                Thread.sleep(forTimeInterval: backoff)
                backoff = min(backoff * 2, 30)
                dealer = try makeDealer()
                try ready(dealer)
                lastHeard = now()
            }
        }
    }

    /// Starts a leased trial on one of the trial threads.
    func start(_ assignment: Assignment) {
        let lease = assignment.lease
        if running[lease] != nil { return }
        let trial = RunningTrial(lease: lease, token: assignment.token)
        running[lease] = trial
        let (data, log, programs) = (data, log, options.programs)
        trialThreads.run { push in
            do {
                // The lease travels ahead of a result to the loop, which frees the slot.
                try Self.attempt(assignment, trial: trial, data: data, programs: programs, log: log) { frames, result in
                    try push.send([result.map(Self.resultEnvelope) ?? []] + frames)
                }
            } catch {
                log("worker: trial \(lease) could not report: \(error)")
            }
        }
    }

    /// The frame a trial thread puts before its messages to the loop: the lease of a result
    /// (trial id, a space, the attempt), empty before progress and checkpoints. It saves the
    /// loop decoding the result's JSON to learn whose it is.
    static func resultEnvelope(_ lease: Lease) -> [UInt8] { Array("\(lease.trial) \(lease.attempt)".utf8) }

    static func lease(ofEnvelope frame: [UInt8]) -> Lease? {
        guard let space = frame.firstIndex(of: UInt8(ascii: " ")), let attempt = Int(String(decoding: frame[(space + 1)...], as: UTF8.self)) else { return nil }
        return Lease(trial: String(decoding: frame[..<space], as: UTF8.self), attempt: attempt)
    }

    /// One attempt, from its lease to its result, on the calling thread: the frames this worker
    /// sends for it go to `send` in order (progress, checkpoints, then the result, with its
    /// lease as the second argument).
    static func attempt(
        _ assignment: Assignment, trial: RunningTrial, data: DataCache, programs: ProgramRunner.Settings?, log: @escaping @Sendable (String) -> Void,
        send: @escaping (_ frames: [[UInt8]], _ result: Lease?) throws -> Void
    ) throws {
        let lease = assignment.lease
        // Every epoch of a model streams at once; toy objectives record a row per step, so
        // their progress is sent at most every half second (a trial shorter than that
        // sends its result only).
        var lastProgress = now()
        let result = Self.train(
            assignment, trial: trial, data: data, programs: programs, log: log,
            onCheckpoint: { epoch, file in
                try? send(try Message.checkpoint(CheckpointMessage(lease: lease, epoch: epoch, file: file)).frames(), nil)
            }
        ) { record, everyRecord in
            trial.epoch = record.epoch
            let t = now()
            guard everyRecord || t - lastProgress >= 0.5 else { return }
            lastProgress = t
            try? send(try Message.progress(EpochProgress(lease: lease, record: record)).frames(), nil)
        }
        var frames = try Message.result(result).frames()
        // Checked as the coordinator will check it: a result it would refuse is reported
        // as a failure that says why, instead of costing the trial its attempts unexplained.
        if case .failure(let problem) = Result(catching: { () throws(Message.DecodeError) in try Message.check(outgoing: result, frames: frames) }) {
            log("worker: trial \(lease)'s result does not pass the protocol's checks: \(problem)")
            frames = try Message.result(
                ResultMessage(
                    lease: lease, status: .failed, message: "the result did not pass the protocol's checks: \(problem)", history: [], trajectory: [],
                    parameterCount: 0, optimizerStateBytes: 0, wallSeconds: result.wallSeconds, engine: result.engine)
            ).frames()
        }
        try send(frames, lease)
    }

    /// One attempt of a built-in trial (no data set is kept between calls, no program runs), as
    /// a connected worker runs it: for tools that speak the protocol for many simulated workers
    /// on one thread (`Benchmarks/WorkerSwarm`). The frames go to `send` in the order a worker
    /// sends them.
    public static func attempt(_ assignment: Assignment, log: @escaping @Sendable (String) -> Void, send: @escaping ([[UInt8]]) throws -> Void) throws {
        try attempt(assignment, trial: RunningTrial(lease: assignment.lease, token: assignment.token), data: DataCache(), programs: nil, log: log) { frames, _ in
            try send(frames)
        }
    }

    /// Trains one assignment; `onEpoch` gets each record and whether it is an epoch of a model
    /// (true) or a step of a toy objective (false).
    static func train(
        _ assignment: Assignment, trial: RunningTrial, data: DataCache, programs: ProgramRunner.Settings?, log: @escaping @Sendable (String) -> Void,
        onCheckpoint: @escaping (Int, String) -> Void, onEpoch: (EpochRecord, Bool) -> Void
    ) -> ResultMessage {
        let lease = assignment.lease
        let started = now()
        do {
            let config = try TrialConfig.parse(yaml: assignment.config, source: "trial \(lease.trial)")
            if config.isProgram {
                guard let programs else {
                    throw ProgramRunner.Failure("this worker does not run training programs (trials with 'program'); start it with --allow-programs to let this coordinator's sweeps run them")
                }
                return try runProgram(assignment, config: config, trial: trial, settings: programs, log: log, onCheckpoint: onCheckpoint, onEpoch: onEpoch)
            }
            let splits = config.isToyObjective ? nil : try data.splits(config.string(TrialSchema.data["data"]), seed: config.seed, text: config.textOptions())
            let perEpoch = !config.isToyObjective
            var policy = CheckpointPolicy(every: assignment.checkpointEvery) { checkpoint in
                onCheckpoint(checkpoint.epoch, try CheckpointTransfer.encode(checkpoint))
            }
            if let file = assignment.checkpoint {
                let resume = try CheckpointTransfer.decode(file)
                log("worker: trial \(lease) resumes after \(perEpoch ? "epoch" : "step") \(resume.epoch) of its previous attempt")
                policy.resume = resume
                policy.mayDiffer = Set(assignment.explored ?? [])
            }
            var lastEpoch = 0
            let pauseAfter = assignment.pauseAfter ?? .max
            let result = try Trainer.run(
                config, data: splits, checkpoints: policy, shouldStop: { trial.cancelled || lastEpoch >= pauseAfter },
                onEpoch: { record in
                    lastEpoch = record.epoch
                    onEpoch(record, perEpoch)
                })
            var message = ResultMessage(
                lease: lease, status: result.status, message: result.message, history: result.history, trajectory: result.trajectory,
                parameterCount: result.parameterCount, optimizerStateBytes: result.optimizerStateBytes, wallSeconds: result.wallSeconds,
                engine: result.engine)
            message.lrRangeTest = result.lrRangeTest
            message.layerStatistics = result.layerStatistics.isEmpty ? nil : result.layerStatistics
            message.sharpness = result.sharpness
            message.optimizerStateByTensor = result.optimizerStateByTensor.isEmpty ? nil : result.optimizerStateByTensor
            message.optimizerWork = result.optimizerWork.isEmpty ? nil : result.optimizerWork
            return message
        } catch {
            return ResultMessage(
                lease: lease, status: .failed, message: "\(error)", history: [], trajectory: [], parameterCount: 0,
                optimizerStateBytes: 0, wallSeconds: now() - started, engine: BLASRuntime.summary)
        }
    }
}

extension RemoteWorker {
    /// Runs a program trial's attempt (`ProgramRunner`) with what the assignment brings: its files,
    /// the checkpoint it resumes from, its pause epoch and the sweep's objective.
    static func runProgram(
        _ assignment: Assignment, config: TrialConfig, trial: RunningTrial, settings: ProgramRunner.Settings, log: @escaping @Sendable (String) -> Void,
        onCheckpoint: @escaping (Int, String) -> Void, onEpoch: (EpochRecord, Bool) -> Void
    ) throws -> ResultMessage {
        let lease = assignment.lease
        var job = ProgramRunner.Job(config: config, trialID: lease.trial)
        if let directory = assignment.directory { job.folder = directory }
        job.files = try (assignment.files ?? []).map { file in
            guard let bytes = Data(base64Encoded: file.content) else { throw ProgramRunner.Failure("shipped file \(file.path) is not base64") }
            return PackedFile(path: file.path, bytes: [UInt8](bytes))
        }
        if let file = assignment.checkpoint {
            let resume = try CheckpointTransfer.decode(file)
            try CheckpointPolicy.check(resume, against: config, mayDiffer: Set(assignment.explored ?? []))
            log("worker: trial \(lease) resumes after epoch \(resume.epoch) of its previous attempt")
            job.resume = resume
        }
        job.objective = assignment.objective.flatMap(Metric.init(rawValue:))
        job.pauseAfter = assignment.pauseAfter
        job.checkpointEvery = assignment.checkpointEvery
        let result = ProgramRunner.run(
            job, settings: settings, shouldStop: { trial.cancelled }, onEpoch: { record in onEpoch(record, true) },
            onCheckpoint: { checkpoint in onCheckpoint(checkpoint.epoch, try CheckpointTransfer.encode(checkpoint)) }, log: log)
        var message = ResultMessage(
            lease: lease, status: result.status, message: result.message.map { String($0.prefix(ProtocolLimits.maxMessageLength / 2)) }, history: result.history,
            trajectory: [], parameterCount: 0, optimizerStateBytes: 0, wallSeconds: result.wallSeconds, engine: String(result.engine.prefix(ProtocolLimits.maxNameLength)))
        message.extraHistory = result.extraHistory.isEmpty ? nil : result.extraHistory
        message.programOutput = result.programOutput
        return message
    }
}

/// Long-lived threads that run trials, each owning a PUSH socket connected to the worker's
/// inbox (a ZeroMQ socket belongs to one thread). A job waits for an idle thread; when none is
/// idle a new one starts, so there are as many threads as trials ever ran at once (the slots).
final class TrialThreads: @unchecked Sendable {
    typealias Job = (Socket) -> Void
    private let context: Context
    private let inbox: String
    private let log: @Sendable (String) -> Void
    private let condition = NSCondition()
    private var jobs: [Job] = []
    private var idle = 0

    init(context: Context, inbox: String, log: @escaping @Sendable (String) -> Void) {
        self.context = context
        self.inbox = inbox
        self.log = log
    }

    func run(_ job: @escaping Job) {
        condition.lock()
        jobs.append(job)
        if idle >= jobs.count {
            condition.signal()
        } else {
            let thread = Thread { [self] in loop() }
            thread.stackSize = 8 << 20
            thread.start()
        }
        condition.unlock()
    }

    private func loop() {
        let push: Socket
        do {
            push = try Socket(context, .push)
            try push.connect(inbox)
        } catch {
            // Without its socket a thread can report nothing; its job waits for the next thread.
            log("worker: a trial thread could not connect to \(inbox): \(error)")
            return
        }
        while true {
            condition.lock()
            idle += 1
            while jobs.isEmpty { condition.wait() }
            idle -= 1
            let job = jobs.removeFirst()
            condition.unlock()
            job(push)
        }
    }
}

/// Data sets loaded once per worker process and shared by its trials.
final class DataCache: @unchecked Sendable {
    private let lock = NSLock()
    private var loaded: [String: DataSplits] = [:]

    /// Synthetic data sets depend on the trial's seed and are cached per seed; texts per way of
    /// cutting them into windows.
    func splits(_ name: String, seed: UInt64, text: TextOptions) throws -> DataSplits {
        let source = try DataSource(parsing: name)
        let key = source.isSynthetic ? "\(name)#\(seed)" : source.isText ? "\(name)#\(text)" : name
        return try lock.withLock {
            if let d = loaded[key] { return d }
            let d = try source.load(seed: seed, text: text)
            loaded[key] = d
            return d
        }
    }

}

public func hostName() -> String {
    var buf = [CChar](repeating: 0, count: 256)
    gethostname(&buf, buf.count)
    return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Checkpoints travel as the bytes of their HDF5 file, base64-encoded in the JSON payload.
enum CheckpointTransfer {
    static func encode(_ checkpoint: TrainingCheckpoint) throws -> String {
        let path = NSTemporaryDirectory() + "sweep-ckpt-\(getpid())-\(UUID().uuidString).h5"
        defer { unlink(path) }
        try CheckpointFile.write(checkpoint, to: path)
        return try Data(contentsOf: URL(fileURLWithPath: path)).base64EncodedString()
    }

    static func decode(_ base64: String) throws -> TrainingCheckpoint {
        guard let data = Data(base64Encoded: base64) else { throw CheckpointError.configuration("the checkpoint sent is not base64") }
        let path = NSTemporaryDirectory() + "sweep-ckpt-\(getpid())-\(UUID().uuidString).h5"
        defer { unlink(path) }
        try data.write(to: URL(fileURLWithPath: path))
        return try CheckpointFile.read(path)
    }
}

/// A worker's CURVE identity and the coordinator key it insists on.
public struct CurveClient: Sendable {
    public var keys: CurveKeyPair
    /// The coordinator's public key: a coordinator without its secret key cannot complete the handshake.
    public var serverKey: String

    public init(keys: CurveKeyPair, serverKey: String) {
        self.keys = keys
        self.serverKey = serverKey
    }
}
