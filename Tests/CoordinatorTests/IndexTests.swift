import Coordinator
import Testing
import Transport

/// The structures that keep the coordinator's work per message and per pass independent of the
/// numbers of workers and trials: each checked against what the scan it replaces would answer.
@Suite struct IndexTests {
    @Test func deadlinesComeDueInOrderAndOnlyTheLatestOfAKeyCounts() {
        var d = Deadlines<String>()
        d.schedule("a", at: 1)
        d.schedule("b", at: 2)
        d.schedule("c", at: 0.5)
        d.schedule("a", at: 3)
        d.cancel("b")
        let due = { (t: Double) in d.takeDue(at: t).map(\.key) }
        #expect(due(2.5) == ["c"])
        #expect(due(2.9) == [])
        #expect(due(3) == ["a"])
        #expect(d.count == 0)
        // Many reschedules leave stale entries behind; the live deadlines stay exact.
        for round in 0..<200 {
            for k in 0..<10 { d.schedule("k\(k)", at: 100 + Double(round) + Double(k) / 10) }
        }
        #expect(due(299.25) == ["k0", "k1", "k2"])
        #expect(d.count == 7)
    }

    @Test func aHistogramsQuantilesAreWithinItsResolution() {
        var h = DurationHistogram()
        #expect(h.quantile(0.99) == 0)
        for ms in 1...1000 { h.record(Double(ms) / 1000) }
        h.record(0)
        #expect(h.count == 1001 && h.maximum == 1)
        // 2^(1/8) buckets: within 9% above the exact value.
        for (q, exact) in [(0.5, 0.5), (0.99, 0.99), (0.1, 0.1)] {
            let v = h.quantile(q)
            #expect(v >= exact * 0.99 && v <= exact * 1.095, "q \(q): \(v)")
        }
        #expect(h.quantile(1) == 1)
    }

    @Test func theHeapPopsInOrder() {
        var h = MinHeap<Int>()
        var g = SystemRandomNumberGenerator()
        let values = (0..<1000).map { _ in Int.random(in: 0..<100, using: &g) }
        for v in values { h.push(v) }
        var out: [Int] = []
        while let v = h.popMin() { out.append(v) }
        #expect(out == values.sorted())
    }

    static func ready(slots: Int) -> Ready {
        Ready(name: "w", host: "h", pid: 1, threads: 1, slots: slots, kernel: "k", version: Protocol.version, running: [], free: slots)
    }

    static func register(_ book: inout LeaseBook, _ identity: UInt8, slots: Int, now t: Double = 0) -> LeaseBook.Worker? {
        guard case .registered(let w, _, _, _) = book.register([identity], ready(slots: slots), trialIndex: { _ in nil }, now: t) else { return nil }
        book.settleCredit(w, free: slots, running: [])
        return w
    }

    @Test func theFreestWorkerFollowsGrantsEndsAndDepartures() throws {
        var book = LeaseBook(trials: 10, maxSlots: 8, maxWorkers: 10, maxAttempts: 3)
        let a = try #require(Self.register(&book, 1, slots: 3))
        let b = try #require(Self.register(&book, 2, slots: 1))
        let c = try #require(Self.register(&book, 3, slots: 2))
        let freest = { book.freest()?.identity }
        #expect(freest() == a.identity)
        for i in 0..<2 { book.grant(i, book.nextLease(i, id: "t\(i)"), token: "x", to: a, promoted: false, checkpoints: false, resumedFrom: nil) }
        #expect(freest() == c.identity, "a has 1 left, c 2")
        book.grant(2, book.nextLease(2, id: "t2"), token: "x", to: c, promoted: false, checkpoints: false, resumedFrom: nil)
        book.grant(3, book.nextLease(3, id: "t3"), token: "x", to: c, promoted: false, checkpoints: false, resumedFrom: nil)
        book.grant(4, book.nextLease(4, id: "t4"), token: "x", to: b, promoted: false, checkpoints: false, resumedFrom: nil)
        #expect(freest() == a.identity, "only a has credit left")
        book.grant(5, book.nextLease(5, id: "t5"), token: "x", to: a, promoted: false, checkpoints: false, resumedFrom: nil)
        #expect(freest() == nil)
        book.end(2)
        #expect(freest() == c.identity)
        _ = book.remove([3])
        #expect(freest() == nil, "a departed worker is never chosen")
        book.end(0)
        book.end(1)
        #expect(freest() == a.identity && a.free == 2)
        // A worker whose capacity drops (READY again, fewer slots) loses the credit.
        book.settleCredit(a, free: 0, running: [])
        #expect(freest() == nil)
    }

    @Test func eachWorkerIsSentItsHeartbeatOnItsOwnPhase() throws {
        var book = LeaseBook(trials: 0, maxSlots: 8, maxWorkers: 10, maxAttempts: 3)
        let a = try #require(Self.register(&book, 1, slots: 1, now: 0))
        let b = try #require(Self.register(&book, 2, slots: 1, now: 0.5))
        // The first worker's beat is at phase 0, the second's 0.618 of a beat after it registered.
        let due = { (t: Double) in book.takeHeartbeatsDue(at: t).map(\.worker.identity) }
        #expect(due(0) == [a.identity])
        #expect(due(0.9) == [])
        #expect(due(1.0) == [a.identity])
        #expect(due(1.2) == [b.identity])
        _ = book.remove(a.identity)
        #expect(due(2.0) == [], "a departed worker gets none")
        // Late (it says when it was due): the next one keeps the phase.
        let late = book.takeHeartbeatsDue(at: 2.5)
        #expect(late.map(\.worker.identity) == [b.identity] && abs(late[0].due - 2.118) < 0.001)
        #expect(due(3.1) == [])
        #expect(due(3.2) == [b.identity])
        // Far behind (a stalled pass): the next beat is a beat from now, not a burst.
        #expect(due(6.0) == [b.identity])
        #expect(due(6.9) == [])
        #expect(due(7.0) == [b.identity])

        // A thousand workers registering at once are due evenly over the beat.
        var many = LeaseBook(trials: 0, maxSlots: 8, maxWorkers: 1000, maxAttempts: 3)
        for k in 0..<1000 { _ = many.register([UInt8(k & 255), UInt8(k >> 8)], Self.ready(slots: 1), trialIndex: { _ in nil }, now: 0) }
        var perTenth: [Int] = []
        for tenth in 1...10 { perTenth.append(many.takeHeartbeatsDue(at: Double(tenth) / 10 - 1e-9).count) }
        #expect(perTenth.allSatisfy { (90...110).contains($0) } && perTenth.reduce(0, +) == 1000, "\(perTenth)")
    }

    @Test func aSilentWorkerIsReportedOnceAndAHeardOneIsLookedAtAgainLater() throws {
        var book = LeaseBook(trials: 0, maxSlots: 8, maxWorkers: 10, maxAttempts: 3)
        let a = try #require(Self.register(&book, 1, slots: 1, now: 0))
        let b = try #require(Self.register(&book, 2, slots: 1, now: 0))
        book.heard(from: b, at: 4)
        let silent = { (t: Double) in book.takeSilent(at: t, for: 5).map(\.identity) }
        #expect(silent(5) == [])
        #expect(silent(5.5) == [a.identity])
        #expect(silent(5.6) == [], "reported once; the caller removes it")
        #expect(silent(8) == [])
        #expect(silent(9.5) == [b.identity])
    }

    /// ASHA's promotion choice against the scan it replaces (each rung sorted, its top
    /// ⌊n/η⌋ walked for a paused, unpromoted trial), over random records, pauses, re-recorded
    /// values, promotions and unsent promotions, with enough trials to split the rankings' blocks.
    @Test func ashaPromotesWhatAScanOfEachRungWould() {
        var rng = SplitMix(seed: 7)
        for maximize in [false, true] {
            var sh = SuccessiveHalving(minEpochs: 1, reductionFactor: 3, maximize: maximize)
            var values: [[Int: Double]] = [[:], [:]]
            var paused: [Int: Int] = [:]
            var promoted: [Set<Int>] = [[], []]
            let isPaused = { (trial: Int, k: Int) in paused[trial] == k }
            func expected() -> (trial: Int, rung: Int)? {
                for k in [1, 0] {
                    let ranked = values[k].sorted { a, b in a.value != b.value ? (maximize ? a.value > b.value : a.value < b.value) : a.key < b.key }
                    for e in ranked.prefix(ranked.count / 3) where !promoted[k].contains(e.key) && paused[e.key] == k { return (e.key, k) }
                }
                return nil
            }
            var promotions = 0
            for step in 0..<6000 {
                let trial = Int(rng.next() % 2500)
                // Values from a small set: ties are broken by trial index.
                let value = Double(rng.next() % 400) / 8
                switch rng.next() % 10 {
                case 0..<6:
                    let k = values[0][trial] == nil || paused[trial] == 0 ? 0 : 1
                    guard paused[trial] == nil || rng.next() % 4 == 0 else { continue }
                    sh.record(trial: trial, epoch: k == 0 ? 1 : 3, value: value, length: 9)
                    values[k][trial] = value
                    if paused[trial] == nil && !promoted[k].contains(trial) {
                        paused[trial] = k
                        sh.waiting(trial: trial, at: k)
                    }
                default:
                    let want = expected()
                    guard let got = sh.promotion(isPaused: isPaused) else {
                        #expect(want == nil, "step \(step): nothing promoted, the scan finds \(String(describing: want))")
                        continue
                    }
                    #expect(want.map { [$0.trial, $0.rung] } == [got.trial, got.rung], "step \(step)")
                    if rng.next() % 5 == 0 {
                        // Could not be sent: it waits again.
                        sh.unmarkPromoted(trial: got.trial, from: got.rung)
                        sh.waiting(trial: got.trial, at: got.rung)
                    } else {
                        promoted[got.rung].insert(got.trial)
                        paused[got.trial] = nil
                        promotions += 1
                    }
                }
            }
            #expect(promotions > 100)
            for k in 0..<2 {
                let ranking = sh.ranking(k)
                #expect(ranking.count == values[k].count)
                #expect(ranking.map(\.trial) == values[k].sorted { a, b in a.value != b.value ? (maximize ? a.value > b.value : a.value < b.value) : a.key < b.key }.map(\.key))
            }
        }
    }
}

/// A small seeded generator (the tests' runs repeat exactly).
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
