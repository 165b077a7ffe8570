import Coordinator
import Foundation
import Learning
import Results
import Sweeps
import Testing
import Transport

/// The coordinator's rules without sockets, threads or files: a `SweepState` fed events, its
/// effects (messages, writer jobs, journal lines, log lines) recorded in order.
@Suite struct SweepStateTests {
    /// What the state did, in order.
    final class Recorder {
        enum Effect {
            case sent(Message, to: [UInt8])
            case submitted(ResultsJob)
            case journaled(String, LeaseJournal.Grant)
        }
        var effects: [Effect] = []
        var log: [String] = []
        /// Peers a send fails for.
        var unreachable: Set<[UInt8]> = []

        var effectsHandle: SweepState.Effects {
            SweepState.Effects(
                send: { [unowned self] message, identity in
                    guard !unreachable.contains(identity) else { return false }
                    effects.append(.sent(message, to: identity))
                    return true
                },
                submit: { [unowned self] in effects.append(.submitted($0)) },
                journal: { [unowned self] trial, grant in effects.append(.journaled(trial, grant)) },
                checkpoint: { _ in nil },
                log: { [unowned self] in log.append($0) })
        }

        /// The assignments sent to `identity`, and clears the record.
        func takeAssignments(to identity: [UInt8]) -> [Assignment] {
            defer { effects.removeAll() }
            return effects.compactMap {
                if case .sent(.trial(let a), let to) = $0, to == identity { return a }
                return nil
            }
        }

        func cancels() -> [Cancel] {
            effects.compactMap {
                if case .sent(.cancel(let c), _) = $0 { return c }
                return nil
            }
        }
    }

    static func sweep(_ extra: String = "", steps: Int = 10, lrs: [Double] = [0.1, 0.2, 0.3]) throws -> Sweep {
        try SweepFile.parse(
            yaml: """
                name: state
                objective: {metric: train_loss, mode: min}
                \(extra)
                base: {model: quadratic, steps: \(steps), optimizer: sgd}
                grid: {lr: [\(lrs.map { "\($0)" }.joined(separator: ", "))]}
                """, source: "state.yaml")
    }

    static func ready(name: String = "w", slots: Int = 1, running: [HeldLease] = [], free: Int? = nil) -> Ready {
        Ready(name: name, host: "h", pid: 1, threads: 1, slots: slots, kernel: "k", version: Protocol.version, running: running, free: free ?? slots - running.count)
    }

    static func record(_ epoch: Int, loss: Double) -> EpochRecord {
        EpochRecord(
            epoch: epoch, step: epoch, trainLoss: loss, testLoss: .nan, testAccuracy: .nan, gradientNorm: 1, learningRate: 0.1, seconds: 0, evalSeconds: 0)
    }

    static func result(_ lease: Lease, status: TrialStatus = .done, epochs: Int = 10, loss: Double = 1) -> ResultMessage {
        ResultMessage(
            lease: lease, status: status, message: nil, history: (1...max(epochs, 1)).map { record($0, loss: loss) }, trajectory: [], parameterCount: 2,
            optimizerStateBytes: 0, wallSeconds: 0.1, engine: "test")
    }

    static func make(
        _ sweep: Sweep, _ recorder: Recorder, settings: SweepState.Settings = .init(), committed: [String: CommittedTrial] = [:], journaled: [String: LeaseJournal.Grant] = [:]
    ) -> SweepState {
        SweepState(sweep: sweep, settings: settings, committed: committed, journaled: journaled, effects: recorder.effectsHandle)
    }

    @Test func aGrantIsJournaledBeforeItsTrialMessageLeaves() throws {
        let recorder = Recorder()
        let state = Self.make(try Self.sweep(), recorder)
        state.register([1], Self.ready(slots: 2), now: 0)
        recorder.effects.removeAll()
        try state.dispatch(now: 0)
        var journaled: [String: String] = [:]
        var sent: [Assignment] = []
        for effect in recorder.effects {
            switch effect {
            case .journaled(let trial, let grant): journaled[trial] = grant.token
            case .sent(.trial(let a), _):
                #expect(journaled[a.lease.trial] == a.token, "TRIAL \(a.lease) left before its grant was journaled")
                sent.append(a)
            default: break
            }
        }
        // Two slots: the first two trials, in the sweep's order, with distinct tokens.
        #expect(sent.map(\.lease.trial) == state.sweep.trials.prefix(2).map(\.id))
        #expect(Set(sent.map(\.token)).count == 2)
        #expect(state.states.filter { $0 == .leased }.count == 2)
    }

    @Test func onlyTheHolderOfTheLiveLeaseGetsAResultCommitted() throws {
        let recorder = Recorder()
        let state = Self.make(try Self.sweep(lrs: [0.1]), recorder)
        state.register([1], Self.ready(name: "holder"), now: 0)
        state.register([2], Self.ready(name: "other"), now: 0)
        try state.dispatch(now: 0)
        let sentTo1 = recorder.effects.contains {
            if case .sent(.trial, let to) = $0 { return to == [1] }
            return false
        }
        let a = try #require(recorder.takeAssignments(to: sentTo1 ? [1] : [2]).first)
        let (holder, other): ([UInt8], [UInt8]) = sentTo1 ? ([1], [2]) : ([2], [1])
        // Another worker naming the lease, and the holder naming another attempt: both refused.
        state.receive(.result(Self.result(a.lease)), from: try #require(state.book.worker(other)), now: 1)
        state.receive(.result(Self.result(Lease(trial: a.lease.trial, attempt: 2))), from: try #require(state.book.worker(holder)), now: 1)
        #expect(state.pending.isEmpty)
        #expect(state.rejected == 2)
        state.receive(.result(Self.result(a.lease)), from: try #require(state.book.worker(holder)), now: 1)
        let finished = state.takePending()
        #expect(finished.map(\.id) == [a.lease.trial])
        #expect(state.states[0] == .committing(.done))
        #expect(!state.isComplete)
        state.committed(finished, records: [])
        #expect(state.states[0] == .finished(.done))
        #expect(state.isComplete)
    }

    @Test func anInvalidResultSpendsTheAttemptAndTheLastOneFailsTheTrial() throws {
        let recorder = Recorder()
        let state = Self.make(try Self.sweep(lrs: [0.1]), recorder, settings: .init(maxAttempts: 2))
        state.register([1], Self.ready(), now: 0)
        let worker = try #require(state.book.worker([1]))
        for attempt in 1...2 {
            try state.dispatch(now: 0)
            let a = try #require(recorder.takeAssignments(to: [1]).first)
            #expect(a.lease.attempt == attempt)
            // `done` after 3 of 10 steps: not this trial's result.
            state.receive(.result(Self.result(a.lease, epochs: 3)), from: worker, now: 1)
        }
        let failed = try #require(state.takePending().first)
        #expect(failed.result.status == .failed)
        #expect(failed.result.message?.contains("no result after 2 attempts") == true)
        #expect(failed.result.message?.contains("status done after 3 of 10 steps") == true)
    }

    @Test func aSilentWorkerIsDeclaredLostAndItsTrialRunsElsewhere() throws {
        let recorder = Recorder()
        let state = Self.make(try Self.sweep(lrs: [0.1]), recorder, settings: .init(heartbeatSeconds: 1, deadAfterSeconds: 5))
        state.register([1], Self.ready(name: "first"), now: 0)
        try state.dispatch(now: 0)
        let first = try #require(recorder.takeAssignments(to: [1]).first)
        state.register([2], Self.ready(name: "second"), now: 4)
        state.receive(.heartbeat(Heartbeat(running: [])), from: try #require(state.book.worker([2])), now: 5)
        state.heartbeat(now: 4.9)
        #expect(state.book.worker([1]) != nil, "silent for less than dead-after")
        state.heartbeat(now: 5.1)
        #expect(state.book.worker([1]) == nil)
        #expect(recorder.log.contains { $0.contains("worker first on h silent") })
        try state.dispatch(now: 5.1)
        let second = try #require(recorder.takeAssignments(to: [2]).first)
        #expect(second.lease == Lease(trial: first.lease.trial, attempt: 2))
    }

    @Test func afterARestartOnlyTheJournaledTokenAdoptsARunningAttempt() throws {
        let sweep = try Self.sweep(lrs: [0.1, 0.2])
        let ids = sweep.trials.map(\.id)
        let journaled = [ids[0]: LeaseJournal.Grant(attempt: 1, token: "secret", promoted: false, worker: "w@h")]
        let recorder = Recorder()
        let state = Self.make(sweep, recorder, journaled: journaled)
        let claims = [HeldLease(lease: Lease(trial: ids[0], attempt: 1), token: "secret"), HeldLease(lease: Lease(trial: ids[1], attempt: 1), token: "guess")]
        state.register([7], Self.ready(slots: 2, running: claims, free: 1), now: 0)
        #expect(state.states == [.leased, .queued])
        #expect(recorder.cancels().map(\.lease) == [claims[1].lease])
        // The adopted trial is not handed out again; the other one is, to the free slot.
        recorder.effects.removeAll()
        try state.dispatch(now: 0)
        #expect(recorder.takeAssignments(to: [7]).map(\.lease) == [Lease(trial: ids[1], attempt: 1)])
        // The adopted attempt's result counts.
        state.receive(.result(Self.result(claims[0].lease)), from: try #require(state.book.worker([7])), now: 1)
        #expect(state.takePending().map(\.id) == [ids[0]])
    }

    @Test func anUnreachableWorkerIsRemovedAndTheRunGoesToTheNextWithoutSpendingARetry() throws {
        let recorder = Recorder()
        let state = Self.make(try Self.sweep(lrs: [0.1]), recorder, settings: .init(maxAttempts: 2))
        state.register([1], Self.ready(name: "gone", slots: 4), now: 0)
        state.register([2], Self.ready(name: "here"), now: 0)
        recorder.unreachable = [[1]]
        try state.dispatch(now: 0)
        #expect(state.book.worker([1]) == nil)
        let a = try #require(recorder.takeAssignments(to: [2]).first)
        // Attempt 1 was journaled but never left: its number stays used, its retry does not.
        #expect(a.lease.attempt == 2)
        state.receive(.result(Self.result(a.lease, epochs: 3)), from: try #require(state.book.worker([2])), now: 1)
        #expect(state.pending.isEmpty, "one invalid result of two allowed attempts: the trial runs again")
        try state.dispatch(now: 1)
        #expect(recorder.takeAssignments(to: [2]).map(\.lease.attempt) == [3])
    }

    @Test func ashaPausesATrialAtItsRungAndPromotesOrStopsIt() throws {
        let recorder = Recorder()
        // Three trials, rungs at 1 and 3 of 9 steps (η = 3): one in three is promoted.
        let state = Self.make(try Self.sweep("early_stopping: {rule: asha, min_epochs: 1, reduction_factor: 3}", steps: 9), recorder)
        state.register([1], Self.ready(), now: 0)
        let worker = try #require(state.book.worker([1]))
        var promoted: [Assignment] = []
        for (k, loss) in [3.0, 1.0, 2.0].enumerated() {
            try state.dispatch(now: 0)
            let a = try #require(recorder.takeAssignments(to: [1]).first)
            if a.lease.attempt > 1 {
                promoted.append(a)
                break
            }
            #expect(a.pauseAfter == 1, "trial \(k) pauses at the first rung")
            state.receive(.result(Self.result(a.lease, status: .stopped, epochs: 1, loss: loss)), from: worker, now: 1)
            #expect(state.states[k] == .paused(rung: 0))
        }
        // The best of the three at rung 0 (loss 1, the second trial) is promoted to the next rung.
        try state.dispatch(now: 2)
        promoted += recorder.takeAssignments(to: [1])
        let p = try #require(promoted.first)
        #expect(p.lease.trial == state.sweep.trials[1].id)
        #expect(p.pauseAfter == 3)
        // It finishes its last rung; the others are never promoted and end `stopped`.
        state.receive(.result(Self.result(p.lease, status: .stopped, epochs: 3, loss: 0.5)), from: worker, now: 3)
        try state.dispatch(now: 3)
        var ends = state.takePending()
        if let next = recorder.takeAssignments(to: [1]).first {
            state.receive(.result(Self.result(next.lease, status: .done, epochs: 9, loss: 0.1)), from: worker, now: 4)
            try state.dispatch(now: 4)
            ends += state.takePending()
        }
        #expect(Set(ends.map(\.id)) == Set(state.sweep.trials.map(\.id)))
        #expect(ends.filter { $0.result.status == .stopped }.allSatisfy { $0.result.message?.contains("rung") == true })
    }

    @Test func aPromotionWaitsForItsRungsCheckpointToBeStored() throws {
        let recorder = Recorder()
        // Three trials pause at the first rung (epoch 1 of 9, η = 3); the best (loss 1) is promoted,
        // but its checkpoint is still with the writer when the third one pauses.
        let state = Self.make(try Self.sweep("early_stopping: {rule: asha, min_epochs: 1, reduction_factor: 3}", steps: 9), recorder)
        state.register([1], Self.ready(), now: 0)
        let worker = try #require(state.book.worker([1]))
        var leases: [Lease] = []
        for loss in [3.0, 1.0, 2.0] {
            try state.dispatch(now: 0)
            let a = try #require(recorder.takeAssignments(to: [1]).first)
            #expect(a.lease.attempt == 1)
            leases.append(a.lease)
            state.receive(.checkpoint(CheckpointMessage(lease: a.lease, epoch: 1, file: Data("rung 0".utf8).base64EncodedString())), from: worker, now: 1)
            state.receive(.result(Self.result(a.lease, status: .stopped, epochs: 1, loss: loss)), from: worker, now: 1)
            if loss != 1 { state.checkpointed(a.lease.trial, epoch: 1) }
        }
        try state.dispatch(now: 2)
        #expect(recorder.takeAssignments(to: [1]).isEmpty, "promoted before its checkpoint was stored")
        // Stored: the promotion goes out, to resume from it.
        state.checkpointed(leases[1].trial, epoch: 1)
        try state.dispatch(now: 3)
        let promoted = try #require(recorder.takeAssignments(to: [1]).first)
        #expect(promoted.lease.trial == leases[1].trial && promoted.lease.attempt == 2 && promoted.pauseAfter == 3)
    }

    @Test func theMedianRuleCancelsAWorseTrialFromItsProgress() throws {
        let recorder = Recorder()
        let state = Self.make(try Self.sweep("early_stopping: {rule: median, grace_epochs: 2, min_trials: 2}", lrs: [0.1, 0.2, 0.3]), recorder)
        state.register([1], Self.ready(), now: 0)
        let worker = try #require(state.book.worker([1]))
        for loss in [1.0, 1.2] {
            try state.dispatch(now: 0)
            let a = try #require(recorder.takeAssignments(to: [1]).first)
            state.receive(.result(Self.result(a.lease, loss: loss)), from: worker, now: 1)
        }
        try state.dispatch(now: 1)
        let third = try #require(recorder.takeAssignments(to: [1]).first)
        state.receive(.progress(EpochProgress(lease: third.lease, record: Self.record(1, loss: 5))), from: worker, now: 2)
        #expect(recorder.cancels().isEmpty, "within the grace period")
        state.receive(.progress(EpochProgress(lease: third.lease, record: Self.record(2, loss: 5))), from: worker, now: 2)
        #expect(recorder.cancels().map(\.lease) == [third.lease])
        state.receive(.result(Self.result(third.lease, status: .stopped, epochs: 2, loss: 5)), from: worker, now: 3)
        let stopped = try #require(state.takePending().last)
        #expect(stopped.result.status == .stopped)
        #expect(stopped.result.message?.contains("median stopping rule") == true)
    }
}

extension SweepStateTests {
    /// Group commits are bounded: the oldest finished trials first, the rest in the next group;
    /// the counts the progress line and the metrics read follow the trials' states.
    @Test func pendingTrialsAreTakenOldestFirstInBoundedGroupsAndCountedByState() throws {
        let recorder = Recorder()
        let state = Self.make(try Self.sweep(lrs: [0.1, 0.2, 0.3]), recorder)
        state.register([1], Self.ready(slots: 3), now: 0)
        try state.dispatch(now: 0)
        #expect(state.counts() == ["running": 3] && state.leased.count == 3)
        let worker = try #require(state.book.worker([1]))
        let leases = recorder.takeAssignments(to: [1]).map(\.lease)
        for lease in leases { state.receive(.result(Self.result(lease)), from: worker, now: 1) }
        #expect(state.leased.isEmpty && state.counts() == ["running": 3])
        let first = state.takePending(limit: 2)
        #expect(first.map(\.id) == leases.prefix(2).map(\.trial))
        state.committed(first, records: [])
        #expect(state.counts() == ["done": 2, "running": 1])
        let rest = state.takePending(limit: 2)
        #expect(rest.map(\.id) == [leases[2].trial] && state.pending.isEmpty)
    }
}
