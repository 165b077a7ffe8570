import Foundation
import Learning
import Linalg
import Transport
import Worker

/// Many simulated workers in one process, on one thread: each its own DEALER connection, speaking
/// the protocol as `sweep-worker` does (READY with its slots and prefetch as credit, heartbeats
/// when it has sent nothing for a beat, the trial's messages from the worker's own
/// `RemoteWorker.attempt`, READY again on REGISTER, a `stopped` RESULT for a cancelled lease
/// that had not started), and timing what the coordinator does for it.
final class Fleet {
    struct Settings {
        var endpoint: String
        var workers: Int
        var first: Int
        var slots = 1
        var prefetch = 2
        /// Seconds each attempt holds its slot before it is trained and reported.
        var trainSeconds = 0.0
        /// Exit after this long without a message from the coordinator.
        var giveUpSeconds = 30.0
    }

    /// What one fleet measured, written as JSON for the parent to merge.
    struct Report: Codable {
        var workers = 0
        var sent: [String: Int] = [:]
        var received: [String: Int] = [:]
        /// Coordinator heartbeats: the gap between two to the same worker, minus the beat (ms).
        var heartbeatLatenessMs: [Float] = []
        /// Credit returned (READY's free slots, a RESULT) until the TRIAL that used it (ms):
        /// the coordinator's dispatch delay while trials are waiting.
        var leaseLatencyMs: [Float] = []
        /// READY until WELCOME (ms).
        var welcomeLatencyMs: [Float] = []
        /// Monotonic times (`now()`, comparable across processes): every worker welcomed, the
        /// last TRIAL, the first SHUTDOWN.
        var welcomedAt: Double?
        var lastTrialAt: Double?
        var shutdownAt: Double?
        /// This fleet's own loop: its longest pass (ms), which bounds what it adds to the delays above.
        var longestPassMs = 0.0
        var passes = 0
    }

    final class SimulatedWorker {
        let name: String
        let dealer: Socket
        var heartbeatSeconds = 1.0
        var lastSent = 0.0
        var readySentAt = 0.0
        var lastCoordinatorHeartbeat: Double?
        var welcomed = false
        var shutdown = false
        var running: [(assignment: Assignment, endsAt: Double)] = []
        var waiting: [Assignment] = []
        /// When each unit of credit came back, oldest first (matched to the TRIALs that use it).
        var creditReturned: [Double] = []

        init(name: String, dealer: Socket) {
            self.name = name
            self.dealer = dealer
        }
    }

    /// Seconds of training (trials' attempts) per pass of the loop, at most.
    static let trainingPerPass = 0.05
    let settings: Settings
    let context: Context
    /// The worker whose due attempts are trained first in the next pass.
    var nextToTrain = 0
    var workers: [SimulatedWorker] = []
    var report = Report()
    let host = hostName()

    init(_ settings: Settings) throws {
        self.settings = settings
        context = Context(maxSockets: Int32(settings.workers + 64))
        for i in 0..<settings.workers {
            let dealer = try Socket(context, .dealer)
            try dealer.set(.maxMessageSize(Protocol.maxMessageSize))
            try dealer.connect(settings.endpoint)
            workers.append(SimulatedWorker(name: "swarm-\(settings.first + i)", dealer: dealer))
        }
        report.workers = settings.workers
    }

    func send(_ w: SimulatedWorker, _ frames: [[UInt8]]) throws {
        try w.dealer.send(frames)
        w.lastSent = now()
        report.sent[String(decoding: frames[1], as: UTF8.self), default: 0] += 1
    }

    func ready(_ w: SimulatedWorker) throws {
        let held = w.running.map { HeldLease(lease: $0.assignment.lease, token: $0.assignment.token) } + w.waiting.map { HeldLease(lease: $0.lease, token: $0.token) }
        let free = max(0, settings.slots + settings.prefetch - held.count)
        let message = Ready(
            name: w.name, host: host, pid: getpid(), threads: 1, slots: settings.slots, kernel: BLASRuntime.coreName, version: Protocol.version, running: held,
            free: free)
        let t = now()
        w.readySentAt = t
        w.creditReturned = Array(repeating: t, count: free)
        try send(w, try Message.ready(message).frames())
    }

    func run() throws {
        // Closed before the context is dropped: terminating a context waits for its sockets.
        defer { for w in workers { w.dealer.close() } }
        for w in workers { try ready(w) }
        var lastHeard = now()
        let items = workers.map { Poller.Item.socket($0.dealer) }
        while workers.contains(where: { !$0.shutdown }) {
            let readable = try Poller.poll(items, timeout: 5)
            let started = now()
            for i in readable {
                let w = workers[i]
                while let frames = try w.dealer.receive(wait: false) {
                    lastHeard = now()
                    try handle(Message.decode(frames), w, frames: frames)
                }
            }
            let t = now()
            for w in workers where !w.shutdown && t - w.lastSent >= w.heartbeatSeconds {
                let running = w.running.map { Heartbeat.RunningTrial(lease: $0.assignment.lease, epoch: 0) } + w.waiting.map { .init(lease: $0.lease, epoch: 0) }
                try send(w, try Message.heartbeat(Heartbeat(running: running)).frames())
            }
            // Training is what a real worker does on other threads: here it gets a bounded share
            // of each pass, starting where the last pass stopped, so heartbeats stay on time.
            let trainingEnds = now() + Self.trainingPerPass
            for k in 0..<workers.count {
                let w = workers[(nextToTrain + k) % workers.count]
                if !w.shutdown { try work(w, now: t) }
                if now() > trainingEnds {
                    nextToTrain = (nextToTrain + k + 1) % workers.count
                    break
                }
            }
            report.passes += 1
            report.longestPassMs = max(report.longestPassMs, (now() - started) * 1000)
            if now() - lastHeard > settings.giveUpSeconds {
                FileHandle.standardError.write(Data("fleet \(settings.first): no message from the coordinator for \(Int(settings.giveUpSeconds)) s, stopping\n".utf8))
                break
            }
        }
    }

    func handle(_ message: Message, _ w: SimulatedWorker, frames: [[UInt8]]) throws {
        let t = now()
        report.received[String(decoding: frames[1], as: UTF8.self), default: 0] += 1
        switch message {
        case .welcome(let welcome):
            w.heartbeatSeconds = welcome.heartbeatSeconds
            if !w.welcomed {
                w.welcomed = true
                report.welcomeLatencyMs.append(Float((t - w.readySentAt) * 1000))
                if workers.allSatisfy(\.welcomed) { report.welcomedAt = t }
            }
        case .heartbeat:
            if let last = w.lastCoordinatorHeartbeat { report.heartbeatLatenessMs.append(Float((t - last - w.heartbeatSeconds) * 1000)) }
            w.lastCoordinatorHeartbeat = t
        case .trial(let a):
            report.lastTrialAt = t
            if !w.creditReturned.isEmpty { report.leaseLatencyMs.append(Float((t - w.creditReturned.removeFirst()) * 1000)) }
            if w.running.count < settings.slots { w.running.append((a, t + settings.trainSeconds)) } else { w.waiting.append(a) }
        case .cancel(let c):
            if let k = w.waiting.firstIndex(where: { $0.lease == c.lease }) {
                w.waiting.remove(at: k)
                let result = ResultMessage(
                    lease: c.lease, status: .stopped, message: "cancelled before it started: \(c.reason)", history: [], trajectory: [], parameterCount: 0,
                    optimizerStateBytes: 0, wallSeconds: 0, engine: BLASRuntime.summary)
                try send(w, try Message.result(result).frames())
                w.creditReturned.append(t)
            }
        case .register:
            try ready(w)
        case .shutdown:
            w.shutdown = true
            if report.shutdownAt == nil { report.shutdownAt = t }
        default:
            break
        }
    }

    /// Trains and reports the attempts whose time is up, then starts waiting ones.
    func work(_ w: SimulatedWorker, now t: Double) throws {
        while let first = w.running.first, first.endsAt <= t {
            w.running.removeFirst()
            try RemoteWorker.attempt(first.assignment, log: { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) { try self.send(w, $0) }
            w.creditReturned.append(now())
            if !w.waiting.isEmpty { w.running.append((w.waiting.removeFirst(), now() + settings.trainSeconds)) }
        }
    }
}
