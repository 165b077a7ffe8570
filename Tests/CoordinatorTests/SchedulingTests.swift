import Coordinator
import Learning
import Testing
import Transport

/// The coordinator's parts that decide, without sockets: the lease book and the schedulers.
@Suite struct LeaseBookTests {
    static func ready(slots: Int = 2, free: Int = 2, running: [HeldLease] = []) -> Ready {
        Ready(name: "w", host: "h", pid: 1, threads: 1, slots: slots, kernel: "k", version: Protocol.version, running: running, free: free)
    }

    static let ids = ["t0", "t1", "t2"]
    static func index(_ id: String) -> Int? { ids.firstIndex(of: id) }

    static func registered(_ book: inout LeaseBook, _ identity: [UInt8], _ ready: Ready) -> (LeaseBook.Worker, [(trial: Int, lease: Lease)], [Lease])? {
        guard case .registered(let w, _, let proven, let unproven) = book.register(identity, ready, trialIndex: index, now: 0) else { return nil }
        return (w, proven, unproven)
    }

    @Test func creditIsGrantedAgainstACappedCapacityNotWhatThePeerSays() throws {
        var book = LeaseBook(trials: 3, maxSlots: 2, maxWorkers: 10, maxAttempts: 3)
        let (w, _, _) = try #require(Self.registered(&book, [1], Self.ready(slots: 4096, free: 8000)))
        let capped = book.settleCredit(w, free: 8000, running: [])
        #expect(capped)
        #expect(w.free == 2)
        book.grant(0, Lease(trial: "t0", attempt: 1), token: "a", to: w, promoted: false, checkpoints: false, resumedFrom: nil)
        #expect(w.free == 1)
        // READY again with the same free count: the lease in flight still counts.
        _ = try #require(Self.registered(&book, [1], Self.ready(slots: 1, free: 1)))
        book.settleCredit(w, free: 1, running: [])
        #expect(w.free == 0)
    }

    @Test func onlyAProvenLeaseIsAttached() throws {
        var book = LeaseBook(trials: 3, maxSlots: 8, maxWorkers: 10, maxAttempts: 3)
        book.restore(1, lease: Lease(trial: "t1", attempt: 2), token: "secret", checkpoints: true)
        let claims = [
            HeldLease(lease: Lease(trial: "t1", attempt: 2), token: "secret"),
            HeldLease(lease: Lease(trial: "t1", attempt: 2), token: "guess"),
            HeldLease(lease: Lease(trial: "t1", attempt: 5), token: "secret"),
            HeldLease(lease: Lease(trial: "t0", attempt: 1), token: "secret"),
            HeldLease(lease: Lease(trial: "nope", attempt: 1), token: "secret"),
        ]
        let (w, proven, unproven) = try #require(Self.registered(&book, [9], Self.ready(running: claims)))
        #expect(proven.map(\.trial) == [1])
        #expect(unproven.count == 4)
        let attached = book.attach(1, to: w)
        #expect(attached)
        #expect(book.holder(Lease(trial: "t1", attempt: 2), identity: [9], trialIndex: Self.index) == 1)
        #expect(book.attempts[1] == 2)
        book.settleCredit(w, free: 0, running: claims)
        #expect(w.capacity == 1, "unproven claims add no credit")
        // The same worker on a new connection takes the lease over; the old one loses it.
        let (w2, proven2, _) = try #require(Self.registered(&book, [10], Self.ready(running: [claims[0]])))
        let moved = book.attach(1, to: w2)
        #expect(proven2.map(\.trial) == [1] && moved)
        #expect(w.leases.isEmpty && w2.leases.count == 1)
        #expect(book.holder(Lease(trial: "t1", attempt: 2), identity: [9], trialIndex: Self.index) == nil)
    }

    @Test func lostWorkersGiveBackTheirTrialsAndRetriesAreCounted() throws {
        var book = LeaseBook(trials: 3, maxSlots: 8, maxWorkers: 1, maxAttempts: 2)
        let (w, _, _) = try #require(Self.registered(&book, [1], Self.ready()))
        book.settleCredit(w, free: 2, running: [])
        guard case .refused(let why) = book.register([2], Self.ready(), trialIndex: Self.index, now: 0) else {
            Issue.record("a second worker was let in past --max-workers 1")
            return
        }
        #expect(why.contains("--max-workers"))
        book.grant(0, book.nextLease(0, id: "t0"), token: "x", to: w, promoted: false, checkpoints: false, resumedFrom: nil)
        book.grant(2, book.nextLease(2, id: "t2"), token: "y", to: w, promoted: true, checkpoints: false, resumedFrom: nil)
        let silent = book.takeSilent(at: 10, for: 5).map(\.identity)
        #expect(silent == [[1]])
        let lost = book.remove([1])
        #expect(lost == [0, 2])
        book.end(0)
        book.end(2)
        #expect(book.mayRetry(0) && book.mayRetry(2))
        #expect(book.nextLease(0, id: "t0").attempt == 2)
        let (w2, _, _) = try #require(Self.registered(&book, [3], Self.ready()))
        book.grant(0, book.nextLease(0, id: "t0"), token: "z", to: w2, promoted: false, checkpoints: false, resumedFrom: nil)
        #expect(!book.mayRetry(0), "two tries of --max-attempts 2")
        #expect(book.mayRetry(2), "a promotion is not a try")
    }
}

extension LeaseBookTests {
    @Test func aLeaseItsHolderStopsListingIsGivenUpAfterTwoHeartbeats() throws {
        var book = LeaseBook(trials: 3, maxSlots: 8, maxWorkers: 10, maxAttempts: 3)
        let (w, _, _) = try #require(Self.registered(&book, [1], Self.ready()))
        book.settleCredit(w, free: 2, running: [])
        let a = Lease(trial: "t0", attempt: 1), b = Lease(trial: "t1", attempt: 1)
        book.grant(0, a, token: "x", to: w, promoted: false, checkpoints: false, resumedFrom: nil, now: 0)
        book.grant(1, b, token: "y", to: w, promoted: false, checkpoints: false, resumedFrom: nil, now: 0)
        var gone: [[Int]] = []
        // Within the grace period a missing lease may still be on its way to the worker.
        gone.append(book.reconcile(w, running: [], at: 1, grace: 5, trialIndex: Self.index))
        gone.append(book.reconcile(w, running: [], at: 2, grace: 5, trialIndex: Self.index))
        // Then: b is listed, a is not, twice.
        gone.append(book.reconcile(w, running: [b], at: 6, grace: 5, trialIndex: Self.index))
        gone.append(book.reconcile(w, running: [b], at: 7, grace: 5, trialIndex: Self.index))
        #expect(gone == [[], [], [], [0]])
        // b, left out once, then listed, then left out once: never twice in a row.
        gone = [
            book.reconcile(w, running: [], at: 8, grace: 5, trialIndex: Self.index), book.reconcile(w, running: [b], at: 9, grace: 5, trialIndex: Self.index),
            book.reconcile(w, running: [], at: 10, grace: 5, trialIndex: Self.index), book.reconcile(w, running: [], at: 11, grace: 5, trialIndex: Self.index),
        ]
        #expect(gone == [[0], [0], [0], [0, 1]])
    }
}

@Suite struct SchedulerTests {
    @Test func theQueueSkipsRemovedTrialsAndPutsRetriesLast() {
        var q = TrialQueue([0, 1, 2, 3])
        q.remove(1)
        #expect(q.count == 3)
        var popped = [q.pop()]
        q.unpop(0)
        popped.append(q.pop())
        q.push(0)
        for _ in 0..<4 { popped.append(q.pop()) }
        #expect(popped == [0, 0, 2, 3, 0, nil])
    }

    @Test func theMedianRuleStopsATrialWorseThanTheOthersRunningAverages() {
        var rule = MedianStopping(trials: [0, 1, 2, 3], graceEpochs: 2, minTrials: 2, maximize: false, metric: "test_loss")
        var reasons: [String?] = []
        for (trial, losses) in [(0, [1.0, 0.8, 0.6]), (1, [1.2, 0.9, 0.7])] {
            for (e, v) in losses.enumerated() { reasons.append(rule.observe(trial, epoch: e + 1, value: v)) }
        }
        #expect(reasons.allSatisfy { $0 == nil })
        // Epoch 1 is inside the grace period; at epoch 2 its best (1.5) is worse than the median
        // of 0.9 and 1.05 (the others' averages over two epochs); it is stopped once.
        let trial2 = [rule.observe(2, epoch: 1, value: 2.0), rule.observe(2, epoch: 2, value: 1.5), rule.observe(2, epoch: 3, value: 1.4)]
        #expect(trial2 == [nil, "median stopping rule: best test_loss 1.5 after epoch 2 is worse than the median 0.975 of 2 other trials' running averages", nil])
        // A good trial is left alone, also when its sampled curve has a gap.
        let trial3 = [rule.observe(3, epoch: 1, value: 0.5), rule.observe(3, epoch: 3, value: 0.4)]
        #expect(trial3 == [nil, nil])
    }

    @Test func ashaPromotesTheTopOfEachRungBeforeStartingNewTrials() {
        // Rungs at 1 and 3 epochs of 9; η = 3.
        var asha = Asha(trials: [0, 1, 2, 3], lengths: [9, 9, 9, 9], minEpochs: 1, reductionFactor: 3, maximize: false, metric: "test_loss")
        let first = (0..<3).compactMap { _ in asha.next() }
        #expect(first == [0, 1, 2].map { ScheduledRun(trial: $0, pauseAfter: 1) })
        var endings: [RunEnding] = []
        for (trial, loss) in [(0, 0.5), (1, 0.3), (2, 0.9)] {
            _ = asha.observe(trial, epoch: 1, value: loss)
            endings.append(asha.ended(trial, status: .stopped, lastEpoch: 1))
        }
        #expect(endings == Array(repeating: .pause(rung: 0), count: 3))
        // Trial 1 is the top third of rung 0: it goes before trial 3 starts, and pauses at 3.
        let then = [asha.next(), asha.next(), asha.next()]
        #expect(then == [ScheduledRun(trial: 1, pauseAfter: 3, promotedFrom: 0), ScheduledRun(trial: 3, pauseAfter: 1), nil])
        _ = asha.observe(3, epoch: 1, value: 0.7)
        _ = asha.observe(1, epoch: 3, value: 0.2)
        endings = [asha.ended(3, status: .stopped, lastEpoch: 1), asha.ended(1, status: .stopped, lastEpoch: 3)]
        #expect(endings == [.pause(rung: 0), .pause(rung: 1)])
        // Four at rung 0 (quota 1, taken), one at rung 1 (quota 0): with nothing in flight,
        // nothing will move again.
        let ended = asha.abandoned()
        #expect(ended.map(\.trial) == [0, 1, 2, 3])
        #expect(ended[2].reason == "ASHA: not promoted from rung 0 (epoch 1): test_loss 0.9 ranked 4 of 4; only the top 1 (1/3) continue")
    }

    @Test func anUnsentPromotionWaitsAgain() {
        var asha = Asha(trials: [0, 1, 2], lengths: [9, 9, 9], minEpochs: 1, reductionFactor: 3, maximize: true, metric: "test_accuracy")
        for t in 0..<3 {
            _ = asha.next()
            _ = asha.observe(t, epoch: 1, value: Double(t))
            _ = asha.ended(t, status: .stopped, lastEpoch: 1)
        }
        let promotion = asha.next()
        #expect(promotion == ScheduledRun(trial: 2, pauseAfter: 3, promotedFrom: 0))
        if let promotion { asha.unsent(promotion) }
        let again = asha.next()
        #expect(again == promotion)
    }
}
