import Transport

/// Who holds what: the registered workers, their credit, and each trial's live lease (attempt,
/// token, holder), with the attempt counts that decide when a trial has failed. No sockets and
/// no files: the coordinator feeds it events and sends what it decides (`Tests/…/LeaseBookTests`).
///
/// Credit is what this book granted against a capacity it caps (`maxSlots`), never what a peer
/// says it has free; an attempt a registering worker lists is attached to it only when the
/// token proves it (the book holds the token of each trial's live lease, restored from the lease
/// journal after a restart).
public struct LeaseBook {
    public final class Worker {
        public let identity: [UInt8]
        public internal(set) var name: String
        public internal(set) var host: String
        public internal(set) var slots: Int
        /// BLAS threads per trial and the OpenBLAS kernel it chose (as its READY said).
        public internal(set) var threads = 1
        public internal(set) var kernel = ""
        /// Leases it accepts at once: its slots plus prefetch, capped by `maxSlots`.
        public internal(set) var capacity = 0
        /// Leases held, as granted by the book.
        public internal(set) var leases: Set<Lease> = []
        public internal(set) var lastSeen: Double
        /// Credit left: what it may still be sent.
        public var free: Int { max(0, capacity - leases.count) }
        /// Its place in the book's `CreditIndex` (bucket, index; -1: in none).
        var creditBucket = 0
        var creditPlace = -1

        init(identity: [UInt8], name: String, host: String, slots: Int, now: Double) {
            self.identity = identity
            self.name = name
            self.host = host
            self.slots = slots
            lastSeen = now
        }
    }

    /// A trial's live lease: the attempt that alone may report, its token, and its holder (nil
    /// while a journaled lease waits, after a restart, for its worker to prove it).
    public struct Live: Equatable {
        public var lease: Lease
        public var token: String
        public var holder: [UInt8]?
        /// Whether this attempt was asked for checkpoints (others are refused).
        public var checkpoints: Bool
        /// The checkpoint epoch it resumed from, if it did.
        public var resumedFrom: Int?
        /// When it was granted, and how many heartbeats of its holder since then left it out.
        public var grantedAt = 0.0
        public var missedHeartbeats = 0
    }

    public let maxSlots: Int
    public let maxWorkers: Int
    public let maxAttempts: Int
    /// Seconds between two heartbeats to a worker.
    public let heartbeatSeconds: Double
    public private(set) var workers: [[UInt8]: Worker] = [:]
    public private(set) var live: [Int: Live] = [:]
    /// Attempts per trial so far, how many of them were promotions (not retries), and how many
    /// never left (their worker was unreachable): neither of those counts against `maxAttempts`.
    public private(set) var attempts: [Int]
    public private(set) var promotions: [Int]
    public private(set) var unsent: [Int]
    /// The workers by credit left (`freest`), when each is next due a heartbeat, and the time
    /// each was last heard of as the silence check last saw it: none of the loop's regular work
    /// looks at every worker.
    private var credit: CreditIndex
    private var heartbeats = Deadlines<[UInt8]>()
    private var silence = Deadlines<[UInt8]>()
    /// Registrations so far: the k-th worker's heartbeats are offset by frac(k·φ) of a beat.
    private var registrations = 0

    public init(trials: Int, maxSlots: Int, maxWorkers: Int, maxAttempts: Int, heartbeatSeconds: Double = 1) {
        self.heartbeatSeconds = heartbeatSeconds
        self.maxSlots = maxSlots
        self.maxWorkers = maxWorkers
        self.maxAttempts = maxAttempts
        attempts = Array(repeating: 0, count: trials)
        promotions = Array(repeating: 0, count: trials)
        unsent = Array(repeating: 0, count: trials)
        credit = CreditIndex(maxCredit: maxSlots)
    }

    /// One more trial (a search's suggestion), numbered after the others.
    public mutating func addTrial() {
        attempts.append(0)
        promotions.append(0)
        unsent.append(0)
    }

    /// A committed trial's attempts (after a restart).
    public mutating func setAttempts(_ trial: Int, _ n: Int) { attempts[trial] = n }

    /// A lease the journal says was live when the last coordinator stopped: a worker that still
    /// runs it can prove it with the token.
    public mutating func restore(_ trial: Int, lease: Lease, token: String, checkpoints: Bool) {
        live[trial] = Live(lease: lease, token: token, holder: nil, checkpoints: checkpoints, resumedFrom: nil)
    }

    public enum Registration {
        case refused(String)
        /// Registered (`isNew` for a first READY); `proven` are the trials whose live lease it
        /// showed the token of and does not hold yet, for the caller to attach or cancel;
        /// `unproven` the leases it claimed without proof.
        case registered(Worker, isNew: Bool, proven: [(trial: Int, lease: Lease)], unproven: [Lease])
    }

    /// READY from `identity`. Capacity is set by `settleCredit` once the caller has attached the
    /// proven leases it accepts.
    public mutating func register(_ identity: [UInt8], _ ready: Ready, trialIndex: (String) -> Int?, now: Double) -> Registration {
        let known = workers[identity]
        if known == nil && workers.count >= maxWorkers {
            return .refused("\(maxWorkers) workers are registered already (--max-workers)")
        }
        let worker = known ?? Worker(identity: identity, name: ready.name, host: ready.host, slots: ready.slots, now: now)
        if known == nil {
            // Its silence counted from now; its heartbeats on a phase of their own (the golden
            // ratio's multiples spread any number of workers evenly over the beat), so that a
            // thousand workers that registered together are not all due in the same pass.
            let phase = (Double(registrations) * 0.618_033_988_749_895).truncatingRemainder(dividingBy: 1)
            registrations += 1
            heartbeats.schedule(identity, at: now + phase * heartbeatSeconds)
            silence.schedule(identity, at: now)
        }
        worker.name = ready.name
        worker.host = ready.host
        worker.slots = ready.slots
        worker.threads = ready.threads
        worker.kernel = ready.kernel
        worker.lastSeen = now
        workers[identity] = worker
        var proven: [(Int, Lease)] = [], unproven: [Lease] = []
        for claim in ready.running where !worker.leases.contains(claim.lease) {
            if let i = trialIndex(claim.lease.trial), let l = live[i], l.lease == claim.lease, l.token == claim.token {
                proven.append((i, claim.lease))
            } else {
                unproven.append(claim.lease)
            }
        }
        return .registered(worker, isNew: known == nil, proven: proven.map { (trial: $0.0, lease: $0.1) }, unproven: unproven)
    }

    /// Credit after READY: its free slots plus the leases it proved it runs, capped. Returns
    /// whether the cap cut it.
    @discardableResult
    public mutating func settleCredit(_ worker: Worker, free: Int, running: [HeldLease]) -> Bool {
        let held = worker.leases.intersection(running.map(\.lease)).count
        worker.capacity = min(maxSlots, free + held)
        credit.update(worker)
        return worker.capacity < free + held
    }

    /// Gives a proven lease to the worker that showed its token (it moves from its previous
    /// holder, e.g. the same worker's old connection). False when the worker is at the cap.
    public mutating func attach(_ trial: Int, to worker: Worker) -> Bool {
        guard var l = live[trial], worker.leases.count < maxSlots else { return false }
        if let old = l.holder, old != worker.identity, let w = workers[old] {
            w.leases.remove(l.lease)
            credit.update(w)
        }
        l.holder = worker.identity
        live[trial] = l
        worker.leases.insert(l.lease)
        credit.update(worker)
        attempts[trial] = max(attempts[trial], l.lease.attempt)
        return true
    }

    /// The next attempt of a trial, with a new token, before it is sent.
    public func nextLease(_ trial: Int, id: String) -> Lease { Lease(trial: id, attempt: attempts[trial] + 1) }

    /// Records a lease as sent to `worker`.
    public mutating func grant(_ trial: Int, _ lease: Lease, token: String, to worker: Worker, promoted: Bool, checkpoints: Bool, resumedFrom: Int?, now: Double = 0) {
        attempts[trial] = lease.attempt
        if promoted { promotions[trial] += 1 }
        live[trial] = Live(lease: lease, token: token, holder: worker.identity, checkpoints: checkpoints, resumedFrom: resumedFrom, grantedAt: now)
        worker.leases.insert(lease)
        credit.update(worker)
    }

    /// A grant that could not be sent: the attempt number stays used (each number is journaled
    /// once), the lease is not live, and the trial's retries are untouched.
    public mutating func ungrant(_ trial: Int, promoted: Bool) {
        if promoted { promotions[trial] -= 1 }
        unsent[trial] += 1
        if let l = live.removeValue(forKey: trial), let h = l.holder { release(l.lease, held: h) }
    }

    /// A lease its holder no longer holds: one more credit.
    private mutating func release(_ lease: Lease, held identity: [UInt8]) {
        guard let w = workers[identity] else { return }
        w.leases.remove(lease)
        credit.update(w)
    }

    /// The trial whose live lease this is, if `identity` holds it.
    public func holder(_ lease: Lease, identity: [UInt8], trialIndex: (String) -> Int?) -> Int? {
        guard let i = trialIndex(lease.trial), let l = live[i], l.lease == lease, l.holder == identity else { return nil }
        return i
    }

    public func live(_ trial: Int) -> Live? { live[trial] }

    /// The live lease of trial i is over (a result arrived, or the attempt was lost).
    public mutating func end(_ trial: Int) {
        guard let l = live.removeValue(forKey: trial) else { return }
        if let h = l.holder { release(l.lease, held: h) }
    }

    /// Whether trial i may run again after an attempt that ended without a usable result
    /// (promotions do not count as tries).
    public func mayRetry(_ trial: Int) -> Bool { attempts[trial] - promotions[trial] - unsent[trial] < maxAttempts }

    /// Unregisters a worker; returns the trials whose live lease it held (the caller retries
    /// or fails them).
    public mutating func remove(_ identity: [UInt8]) -> [Int] {
        guard let worker = workers.removeValue(forKey: identity) else { return [] }
        credit.remove(worker)
        heartbeats.cancel(identity)
        silence.cancel(identity)
        return live.filter { $0.value.holder == identity && worker.leases.contains($0.value.lease) }.map(\.key).sorted()
    }

    public mutating func heard(from worker: Worker, at t: Double) { worker.lastSeen = t }

    /// A heartbeat lists the attempts its worker runs or holds. A lease granted more than
    /// `grace` seconds ago that two heartbeats in a row leave out is no longer run there (its
    /// result was lost on the way, or its thread died without one): returns those trials, whose
    /// attempt the caller ends. Messages of one connection arrive in order, so a result sent
    /// before the heartbeat has been handled by then.
    public mutating func reconcile(_ worker: Worker, running: [Lease], at t: Double, grace: Double, trialIndex: (String) -> Int?) -> [Int] {
        let listed = Set(running)
        var gone: [Int] = []
        for lease in worker.leases {
            guard let i = trialIndex(lease.trial), var l = live[i], l.lease == lease else { continue }
            if listed.contains(lease) {
                l.missedHeartbeats = 0
            } else if t - l.grantedAt > grace {
                l.missedHeartbeats += 1
                if l.missedHeartbeats >= 2 { gone.append(i) }
            }
            live[i] = l
        }
        return gone.sorted()
    }

    /// Workers silent for longer than `seconds`, each returned once (the caller removes it).
    /// Only workers whose last-heard time, as last checked, is that old are looked at.
    public mutating func takeSilent(at t: Double, for seconds: Double) -> [Worker] {
        var silent: [Worker] = []
        for (identity, _) in silence.takeDue(at: t - seconds) {
            guard let w = workers[identity] else { continue }
            if t - w.lastSeen > seconds { silent.append(w) } else { silence.schedule(identity, at: w.lastSeen) }
        }
        return silent
    }

    /// Workers whose heartbeat is due at `t` (with the time it was due), each due again a beat
    /// after its deadline (a beat from now if it fell further behind): each worker's beat keeps
    /// its own phase, so a thousand workers are not all sent theirs in one pass, and a late pass
    /// does not delay the beats after it.
    public mutating func takeHeartbeatsDue(at t: Double) -> [(worker: Worker, due: Double)] {
        let interval = heartbeatSeconds
        var due: [(worker: Worker, due: Double)] = []
        for (identity, deadline) in heartbeats.takeDue(at: t) {
            guard let w = workers[identity] else { continue }
            due.append((w, deadline))
            heartbeats.schedule(identity, at: deadline + interval > t ? deadline + interval : t + interval)
        }
        return due
    }

    /// The worker with the most credit left, if any has some.
    public mutating func freest() -> Worker? { credit.freest() }

    public func worker(_ identity: [UInt8]) -> Worker? { workers[identity] }
}
