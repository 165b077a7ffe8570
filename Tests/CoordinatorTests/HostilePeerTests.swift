import Foundation
import Glibc
import HDF5
import Learning
import TestSupport
import Testing
import Transport

extension SweepEndToEndTests {
    /// Malformed or dishonest messages from a peer that reaches the coordinator's port: each
    /// must be refused without crashing, stalling or fooling it, while honest workers finish
    /// the sweep with their own results.
    @Suite(.serialized) struct HostilePeerTests {
        static let toySweep = "name: hostile\nbase: {model: quadratic, steps: 2000, optimizer: sgd}\ngrid: {lr: [0.001, 0.002, 0.003, 0.004, 0.005, 0.006]}\n"

        /// Starts a coordinator bound to a loopback port with no workers of its own.
        static func coordinator(_ dir: String, sweep: String = toySweep, extra: [String] = []) throws -> (Process, String) {
            Harness.write(sweep, to: "\(dir)/s.yaml")
            let endpoint = "tcp://127.0.0.1:\(Harness.freePort())"
            return (try Harness.startCoordinator(["\(dir)/s.yaml", "--bind", endpoint, "--out", "\(dir)/out", "--plain"] + extra, log: "\(dir)/coordinator.log"), endpoint)
        }

        static func honestWorker(_ dir: String, _ endpoint: String, name: String = "honest") throws -> Process {
            try Harness.start("sweep-worker", ["--connect", endpoint, "--name", name, "--give-up-after", "20"], log: "\(dir)/\(name).log")
        }

        /// Waits for the coordinator to end the sweep; its log, and whether it ended well.
        static func finished(_ coordinator: Process, _ dir: String) -> String {
            #expect(Harness.wait(coordinator, timeout: 120), Comment(rawValue: Harness.read("\(dir)/coordinator.log")))
            let log = Harness.read("\(dir)/coordinator.log")
            #expect(coordinator.terminationStatus == 0, Comment(rawValue: log))
            return log
        }

        /// The committed trials: id → (status, attempts, last train loss).
        static func committed(_ dir: String) throws -> [String: (status: String, attempts: Int64, trainLoss: Double)] {
            var out: [String: (String, Int64, Double)] = [:]
            for row in try Harness.trials("\(dir)/out") { out[row.id] = (row.status, row.attempts, row.trainLoss) }
            return out.mapValues { (status: $0.0, attempts: $0.1, trainLoss: $0.2) }
        }

        static func result(_ lease: Lease, status: TrialStatus = .done, history: [EpochRecord] = [], trajectory: [[Double]] = [[0, 0]], stateBytes: Int = 0, wall: Double = 1) -> ResultMessage {
            ResultMessage(
                lease: lease, status: status, message: nil, history: history, trajectory: trajectory, parameterCount: 2,
                optimizerStateBytes: stateBytes, wallSeconds: wall, engine: "rogue")
        }

        static func record(_ epoch: Int, loss: Double = 0.123, accuracy: Double = .nan) -> EpochRecord {
            EpochRecord(epoch: epoch, step: epoch, trainLoss: loss, testLoss: .nan, testAccuracy: accuracy, gradientNorm: 1, learningRate: 0.001, seconds: 0.001, evalSeconds: 0)
        }

        /// A READY whose credit would overflow, claims of every trial id (ids are public) with
        /// made-up tokens, and fabricated results: nothing traps, nothing of it is committed,
        /// and an honest worker runs every trial once.
        @Test func aPeerThatClaimsLeasesItWasNeverGivenGetsNothing() throws {
            let dir = Harness.temporaryDirectory("hijack")
            let (coordinator, endpoint) = try Self.coordinator(dir)
            var honest: Process?
            defer { Harness.stop(coordinator, honest) }
            let plan = try Harness.start("sweep-coordinator", ["plan", "\(dir)/s.yaml"], log: "\(dir)/plan.log")
            #expect(Harness.wait(plan, timeout: 30))
            let ids = Harness.read("\(dir)/plan.log").split(separator: "\n").compactMap { line in
                line.split(separator: " ").map(String.init).first { $0.count == 16 && $0.allSatisfy(\.isHexDigit) }
            }
            guard ids.count == 6 else {
                Issue.record("plan: \(Harness.read("\(dir)/plan.log"))")
                return
            }
            let rogue = try RoguePeer(endpoint)
            defer { rogue.close() }
            // 2^63-1 free slots with a running list: used to trap on overflow; now refused at decode.
            try rogue.send(
                .ready,
                json:
                    #"{"name":"rogue","host":"h","pid":1,"threads":1,"slots":1,"kernel":"x","version":"2","running":[{"lease":{"trial":"\#(ids[0])","attempt":1},"token":"00000000000000000000000000000000"}],"free":9223372036854775807}"#
            )
            // Every trial at attempt 5 and at attempt 1, with tokens it cannot know.
            let claims = ids.flatMap { id in [5, 1].map { HeldLease(lease: Lease(trial: id, attempt: $0), token: String(repeating: "ab", count: 16)) } }
            try rogue.ready(slots: 1, free: 0, running: claims)
            let replies = try rogue.drain(for: 1.5)
            let cancels = replies.filter { if case .cancel = $0 { true } else { false } }
            #expect(cancels.count == claims.count, "each unproven claim is cancelled")
            #expect(!replies.contains { if case .trial = $0 { true } else { false } }, "no credit was announced")
            for id in ids {
                for attempt in [5, 1] {
                    try rogue.send(.result(Self.result(Lease(trial: id, attempt: attempt), history: (1...2000).map { Self.record($0, loss: 1e-9) })))
                }
                try rogue.send(.heartbeat(Heartbeat(running: [.init(lease: Lease(trial: id, attempt: 9), epoch: 1)])))
            }
            honest = try Self.honestWorker(dir, endpoint)
            let log = Self.finished(coordinator, dir)
            #expect(log.contains("claimed 12 attempts it does not hold"), Comment(rawValue: log))
            #expect(log.contains("READY rejected: free is 9223372036854775807"), Comment(rawValue: log))
            let rows = try Self.committed(dir)
            #expect(rows.count == 6)
            for (id, row) in rows {
                #expect(row.status == "done" && row.attempts == 1 && row.trainLoss > 1e-6, "trial \(id): \(row)")
            }
        }

        /// A peer that is given real leases and answers each with something a correct worker
        /// never sends: every such result is refused (the attempt is spent), no writer trap, and
        /// the honest worker's values are the ones committed.
        @Test func invalidResultsFromALeaseHolderAreRefusedAndTheTrialRunsAgain() throws {
            let dir = Harness.temporaryDirectory("invalid-results")
            let (coordinator, endpoint) = try Self.coordinator(dir, extra: ["--max-attempts", "6"])
            var honest: Process?
            defer { Harness.stop(coordinator, honest) }
            let rogue = try RoguePeer(endpoint)
            defer { rogue.close() }
            try rogue.ready(slots: 1, free: 1)
            let full = (1...2000).map { Self.record($0) }
            let abuses: [(String, (Lease) -> ResultMessage)] = [
                ("trajectory[1] has 3 values where row 0 has 2", { Self.result($0, history: full, trajectory: [[0, 0], [1, 2, 3]]) }),
                ("optimizerStateBytes is 4611686018427387904", { Self.result($0, history: full, stateBytes: 1 << 62) }),
                ("trainLoss is -1e+308", { Self.result($0, history: [Self.record(1, loss: -1e308)]) }),
                ("testAccuracy is 1000000000.0", { Self.result($0, history: [Self.record(1, accuracy: 1e9)]) }),
                ("wallSeconds is -5.0", { Self.result($0, history: full, wall: -5) }),
                ("status done after 1 of 2000 steps", { Self.result($0, history: [Self.record(1)]) }),
                ("epoch 2001 is past the trial's 2000", { Self.result($0, history: (1...2001).map { Self.record($0) }) }),
                ("is -inf", { Self.result($0, history: [Self.record(1, loss: -.infinity)]) }),
            ]
            var refusedLeases: [Lease] = []
            for (_, make) in abuses {
                guard let a = try rogue.nextTrial() else {
                    Issue.record("no lease came: \(Harness.read("\(dir)/coordinator.log"))")
                    return
                }
                try rogue.send(.result(make(a.lease)))
                refusedLeases.append(a.lease)
            }
            // Range test columns of unequal length: a raw payload, as no Swift value holds it.
            if let a = try rogue.nextTrial() {
                try rogue.send(
                    .result,
                    json:
                        #"{"lease":{"trial":"\#(a.lease.trial)","attempt":\#(a.lease.attempt)},"status":"done","history":[],"trajectory":[],"parameterCount":2,"optimizerStateBytes":0,"wallSeconds":1,"engine":"x","lrRangeTest":{"learningRates":[0.1,0.2],"smoothedLosses":[1],"stopReason":"x"}}"#
                )
                // The lease is still the rogue's (the message never decoded): give it up.
                try rogue.send(.bye(Empty()))
            }
            #expect(coordinator.isRunning, "the coordinator survived: \(Harness.read("\(dir)/coordinator.log"))")
            honest = try Self.honestWorker(dir, endpoint)
            let log = Self.finished(coordinator, dir)
            for (problem, _) in abuses { #expect(log.contains(problem), "refused with the reason '\(problem)'") }
            #expect(log.contains("has 2 learning rates but 1 losses"), Comment(rawValue: log))
            let rows = try Self.committed(dir)
            #expect(rows.count == 6)
            for (id, row) in rows { #expect(row.status == "done" && row.trainLoss != 0.123, "trial \(id): \(row)") }
            for lease in refusedLeases { #expect(rows[lease.trial].map { $0.attempts > Int64(lease.attempt) } == true, "\(lease) ran again") }
        }

        /// Progress far past a trial's length, and checkpoints that are not checkpoints (for a
        /// sweep that asked for none, and for one that did): refused; the next attempt on an
        /// honest worker starts from scratch instead of failing on the poisoned file.
        @Test func progressPastTheTrialAndPoisonedCheckpointsAreRefused() throws {
            let dir = Harness.temporaryDirectory("poison")
            let sweep = "name: poison\nbase: {model: quadratic, steps: 2000, optimizer: sgd}\ncheckpoints: {every: 500}\ngrid: {lr: [0.001, 0.002]}\n"
            let (coordinator, endpoint) = try Self.coordinator(dir, sweep: sweep)
            var honest: Process?
            defer { Harness.stop(coordinator, honest) }
            let rogue = try RoguePeer(endpoint)
            defer { rogue.close() }
            try rogue.ready(slots: 1, free: 1)
            guard let a = try rogue.nextTrial() else {
                Issue.record("no lease")
                return
            }
            #expect(a.checkpointEvery == 500)
            // 10^9 epochs used to make the coordinator allocate a curve that long (and abort).
            try rogue.send(.progress(EpochProgress(lease: a.lease, record: Self.record(99_999_999))))
            try rogue.send(.checkpoint(CheckpointMessage(lease: a.lease, epoch: 500, file: Data("not an HDF5 file at all".utf8).base64EncodedString())))
            try rogue.send(.checkpoint(CheckpointMessage(lease: a.lease, epoch: 3000, file: Data([1, 2, 3]).base64EncodedString())))
            usleep(500_000)
            try rogue.send(.bye(Empty()))
            rogue.close()
            #expect(coordinator.isRunning)
            honest = try Self.honestWorker(dir, endpoint)
            let log = Self.finished(coordinator, dir)
            #expect(log.contains("epoch 99999999 is past the trial's 2000"), Comment(rawValue: log))
            #expect(log.contains("rejected checkpoint of \(a.lease): not a readable checkpoint"), Comment(rawValue: log))
            #expect(log.contains("epoch 3000 is outside"), Comment(rawValue: log))
            #expect(!log.contains("resumes from its checkpoint"), "nothing of the rogue's was resumed from")
            let rows = try Self.committed(dir)
            #expect(rows.count == 2 && rows.values.allSatisfy { $0.status == "done" })

            // A sweep without checkpoints accepts none at all.
            let dir2 = Harness.temporaryDirectory("poison-none")
            let (second, endpoint2) = try Self.coordinator(dir2)
            defer { Harness.stop(second) }
            let rogue2 = try RoguePeer(endpoint2)
            defer { rogue2.close() }
            try rogue2.ready(slots: 1, free: 1)
            guard let b = try rogue2.nextTrial() else {
                Issue.record("no lease")
                return
            }
            try rogue2.send(.checkpoint(CheckpointMessage(lease: b.lease, epoch: 10, file: Data("junk".utf8).base64EncodedString())))
            try rogue2.send(.bye(Empty()))
            let worker2 = try Self.honestWorker(dir2, endpoint2)
            defer { Harness.stop(worker2) }
            #expect(Harness.wait(second, timeout: 120))
            let log2 = Harness.read("\(dir2)/coordinator.log")
            #expect(second.terminationStatus == 0 && log2.contains("none was asked for"), Comment(rawValue: log2))
            #expect(!FileManager.default.fileExists(atPath: "\(dir2)/out/checkpoints/\(b.lease.trial).h5"))
        }

        /// A worker that heartbeats on but no longer lists an attempt (its result was lost, or its
        /// thread died without one) does not strand the trial: after two such heartbeats past the
        /// grace period the attempt ends and the trial runs again.
        @Test func aTrialWhoseResultNeverComesRunsAgain() throws {
            let dir = Harness.temporaryDirectory("lost-result")
            let (coordinator, endpoint) = try Self.coordinator(dir, extra: ["--heartbeat", "0.5", "--dead-after", "2"])
            var honest: Process?
            defer { Harness.stop(coordinator, honest) }
            let quiet = try RoguePeer(endpoint)
            defer { quiet.close() }
            try quiet.ready(slots: 1, free: 1)
            guard let first = try quiet.nextTrial() else {
                Issue.record("no lease")
                return
            }
            var again: Assignment?
            let deadline = Date().addingTimeInterval(10)
            while again == nil && Date() < deadline {
                try quiet.send(.heartbeat(Heartbeat(running: [])))
                for case .trial(let a) in try quiet.drain(for: 0.4) { again = a }
            }
            #expect(again != nil, "the credit came back and was used")
            try quiet.send(.bye(Empty()))
            honest = try Self.honestWorker(dir, endpoint)
            let log = Self.finished(coordinator, dir)
            #expect(log.contains("requeueing trial \(first.lease.trial) (attempt 1: rogue no longer runs it"), Comment(rawValue: log))
            #expect(try Self.committed(dir).values.allSatisfy { $0.status == "done" })
        }

        /// Credit is what the coordinator granted against a capped capacity: announcing a huge
        /// number of slots, or re-sending READY, does not get a peer more leases.
        @Test func creditIsCappedAndNotResetByRepeatedReady() throws {
            let dir = Harness.temporaryDirectory("credit")
            let (coordinator, endpoint) = try Self.coordinator(dir, extra: ["--max-slots", "2"])
            defer { Harness.stop(coordinator) }
            let hoarder = try RoguePeer(endpoint)
            defer { hoarder.close() }
            try hoarder.ready(name: "hoarder", slots: 4096, free: 8192)
            var trials = try hoarder.drain(for: 1).filter { if case .trial = $0 { true } else { false } }.count
            #expect(trials == 2, "capped at --max-slots")
            let modest = try RoguePeer(endpoint)
            defer { modest.close() }
            try modest.ready(name: "modest", slots: 3, free: 3)
            for _ in 0..<3 { try modest.ready(name: "modest", slots: 3, free: 3) }
            trials = try modest.drain(for: 1).filter { if case .trial = $0 { true } else { false } }.count
            #expect(trials == 2, "3 slots announced four times: still the 2 of --max-slots, not 8")
            let log = Harness.read("\(dir)/coordinator.log")
            #expect(log.contains("credit capped at 2, --max-slots"), Comment(rawValue: log))
        }

        /// 10,000 messages a second from one peer for 5 s: the honest worker's heartbeats keep
        /// their timing (no trial is run twice), and the log says so in a few lines, not 50,000.
        @Test func aFloodingPeerNeitherStallsTheSweepNorFloodsTheLog() throws {
            let dir = Harness.temporaryDirectory("flood")
            // Trials of a few seconds each, so the sweep runs while the flood goes on.
            let sweep = "name: flood\nbase: {model: mlp, hidden: [64], limit: 20000, test_limit: 500, epochs: 12, optimizer: adamw}\ngrid: {lr: [0.001, 0.002, 0.003, 0.004]}\n"
            let (coordinator, endpoint) = try Self.coordinator(dir, sweep: sweep, extra: ["--heartbeat", "0.5", "--dead-after", "2"])
            let honest = try Self.honestWorker(dir, endpoint)
            defer { Harness.stop(coordinator, honest) }
            let flooder = try RoguePeer(endpoint)
            defer { flooder.close() }
            let junk: [[UInt8]] = [Protocol.header, Array("PROGRESS".utf8), Array(#"{"lease":{"trial":"0000000000000000","attempt":1}}"#.utf8)]
            let started = Date()
            var sent = 0
            while Date().timeIntervalSince(started) < 5 && coordinator.isRunning {
                for _ in 0..<100 { try flooder.socket.send(junk, dontWait: true); sent += 1 }
                usleep(10_000)
            }
            #expect(sent >= 20_000)
            #expect(Harness.wait(coordinator, timeout: 180), Comment(rawValue: String(Harness.read("\(dir)/coordinator.log").suffix(3000))))
            let log = Harness.read("\(dir)/coordinator.log")
            #expect(coordinator.terminationStatus == 0)
            let lines = log.split(separator: "\n").count
            #expect(lines < 100, "\(lines) log lines")
            #expect(!log.contains("declared lost") && !log.contains("requeueing"), Comment(rawValue: log))
            // Every message was counted, and the summary says how many.
            let counted = log.split(separator: "\n").first { $0.hasPrefix("rejected ") }.flatMap { Int($0.split(separator: " ")[1]) } ?? 0
            #expect(counted >= sent / 2, "\(counted) of \(sent) counted: \(log)")
            let rows = try Self.committed(dir)
            #expect(rows.count == 4 && rows.values.allSatisfy { $0.status == "done" && $0.attempts == 1 })
        }

        /// A worker running an attempt when the coordinator is killed proves its lease with the
        /// token after the restart and is adopted (no second run); the journal is what proves it.
        @Test func aRestartedCoordinatorAdoptsOnlyJournaledLeases() throws {
            let dir = Harness.temporaryDirectory("adopt")
            let sweep = "name: adopt\nbase: {model: mlp, hidden: [128], limit: 20000, test_limit: 500, epochs: 12, optimizer: adamw}\ngrid: {lr: [0.001, 0.002]}\n"
            let (first, endpoint) = try Self.coordinator(dir, sweep: sweep, extra: ["--heartbeat", "0.5", "--dead-after", "2"])
            let worker = try Harness.start("sweep-worker", ["--connect", endpoint, "--name", "steady", "--prefetch", "0", "--give-up-after", "60"], log: "\(dir)/steady.log")
            defer { Harness.stop(first, worker) }
            var waited = 0.0
            while !Harness.read("\(dir)/coordinator.log").contains("worker steady on") && waited < 30 { usleep(50_000); waited += 0.05 }
            usleep(1_000_000)
            kill(first.processIdentifier, SIGKILL)
            first.waitUntilExit()
            let journal = Harness.read("\(dir)/out/leases.journal")
            #expect(journal.hasPrefix("lease ") && journal.contains(" steady@"), Comment(rawValue: journal))
            let args = ["start", "\(dir)/s.yaml", "--bind", endpoint, "--out", "\(dir)/out", "--plain", "--heartbeat", "0.5", "--dead-after", "2"]
            let second = try Harness.start("sweep-coordinator", args, log: "\(dir)/second.log")
            defer { Harness.stop(second) }
            #expect(Harness.wait(second, timeout: 180), Comment(rawValue: Harness.read("\(dir)/second.log")))
            let log = Harness.read("\(dir)/second.log")
            #expect(second.terminationStatus == 0, Comment(rawValue: log))
            #expect(!log.contains("does not hold"), Comment(rawValue: log))
            let rows = try Self.committed(dir)
            #expect(rows.count == 2 && rows.values.allSatisfy { $0.status == "done" && $0.attempts == 1 }, "\(rows)")
        }

        /// One coordinator per results directory, and only this sweep's results in it.
        @Test func aResultsDirectoryIsOwnedByOneCoordinatorAndOneSweep() throws {
            let dir = Harness.temporaryDirectory("owner")
            let (first, _) = try Self.coordinator(dir)
            defer { Harness.stop(first) }
            let second = try Harness.start("sweep-coordinator", ["start", "\(dir)/s.yaml", "--local-workers", "1", "--out", "\(dir)/out", "--plain"], log: "\(dir)/second.log")
            #expect(Harness.wait(second, timeout: 30) && second.terminationStatus == 1)
            let refusal = Harness.read("\(dir)/second.log")
            #expect(refusal.contains("results directory \(dir)/out is in use by another coordinator (pid \(first.processIdentifier) on host "), Comment(rawValue: refusal))
            #expect(first.isRunning)
            first.terminate()
            first.waitUntilExit()
            // Another sweep into the same directory.
            Harness.write("name: other\nbase: {model: quadratic, steps: 10, optimizer: sgd}\n", to: "\(dir)/other.yaml")
            let other = try Harness.start("sweep-coordinator", ["start", "\(dir)/other.yaml", "--local-workers", "1", "--out", "\(dir)/out", "--plain"], log: "\(dir)/other.log")
            #expect(Harness.wait(other, timeout: 30) && other.terminationStatus == 1)
            #expect(Harness.read("\(dir)/other.log").contains("holds the results of sweep 'hostile', not 'other'"), Comment(rawValue: Harness.read("\(dir)/other.log")))
            // The same sweep, edited: refused unless --force-out.
            Harness.write(Self.toySweep.replacingOccurrences(of: "0.006]", with: "0.006, 0.007]"), to: "\(dir)/s.yaml")
            let edited = try Harness.start("sweep-coordinator", ["start", "\(dir)/s.yaml", "--local-workers", "1", "--out", "\(dir)/out", "--plain"], log: "\(dir)/edited.log")
            #expect(Harness.wait(edited, timeout: 30) && edited.terminationStatus == 1)
            #expect(Harness.read("\(dir)/edited.log").contains("started from a different version of its file; pass --force-out"))
            let forced = try Harness.start("sweep-coordinator", ["start", "\(dir)/s.yaml", "--local-workers", "1", "--out", "\(dir)/out", "--plain", "--force-out"], log: "\(dir)/forced.log")
            #expect(Harness.wait(forced, timeout: 120) && forced.terminationStatus == 0, Comment(rawValue: Harness.read("\(dir)/forced.log")))
            #expect(try Self.committed(dir).count == 7)
            // A directory with unrelated files.
            let foreign = "\(dir)/foreign"
            try FileManager.default.createDirectory(atPath: foreign, withIntermediateDirectories: true)
            Harness.write("precious", to: "\(foreign)/thesis.tex")
            let intoForeign = try Harness.start("sweep-coordinator", ["start", "\(dir)/s.yaml", "--local-workers", "1", "--out", foreign, "--plain"], log: "\(dir)/foreign.log")
            #expect(Harness.wait(intoForeign, timeout: 30) && intoForeign.terminationStatus == 1)
            #expect(Harness.read("\(dir)/foreign.log").contains("is not empty and holds no sweep results (thesis.tex)"))
            #expect(try FileManager.default.contentsOfDirectory(atPath: foreign) == ["thesis.tex"])
        }

        /// Local workers that die are reported and replaced; when they keep dying the sweep
        /// stops with the reason (resumable) instead of waiting forever.
        @Test func deadLocalWorkersAreReplacedOrTheSweepStopsClearly() throws {
            let dir = Harness.temporaryDirectory("local-death")
            Harness.write("name: deaths\nbase: {model: mlp, hidden: [64], limit: 20000, test_limit: 500, epochs: 8, optimizer: adamw}\ngrid: {lr: [0.001, 0.002]}\n", to: "\(dir)/s.yaml")
            let port = Harness.freePort()
            let p = try Harness.start(
                "sweep-coordinator",
                ["start", "\(dir)/s.yaml", "--bind", "tcp://127.0.0.1:\(port)", "--local-workers", "1", "--out", "\(dir)/out", "--plain", "--heartbeat", "0.5", "--dead-after", "2"],
                log: "\(dir)/log")
            defer { Harness.stop(p) }
            var waited = 0.0
            while !Harness.read("\(dir)/log").contains("worker local-1 on") && waited < 30 { usleep(50_000); waited += 0.05 }
            // The worker's pid, from /proc: the one whose command line names this port.
            let pid = try FileManager.default.contentsOfDirectory(atPath: "/proc").compactMap(Int32.init).first { pid in
                let cmdline = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))) ?? Data()
                let text = String(decoding: cmdline, as: UTF8.self)
                return text.contains("sweep-worker") && text.contains("127.0.0.1:\(port)")
            }
            #expect(pid != nil)
            if let pid { kill(pid, SIGKILL) }
            #expect(Harness.wait(p, timeout: 180), Comment(rawValue: Harness.read("\(dir)/log")))
            let log = Harness.read("\(dir)/log")
            #expect(p.terminationStatus == 0, Comment(rawValue: log))
            #expect(log.contains("local worker local-1 was killed by signal 9 (out of memory?); started a new one (restart 1 of 3"), Comment(rawValue: log))
            #expect(log.contains("sweep deaths: 2 done"))
        }

        /// A full disk: the coordinator stops handing out work, says which file and why, exits 1
        /// without crashing (HDF5's exit-time cleanup used to segfault on the half-written file),
        /// and once there is room a restart finishes the sweep with every trial committed once.
        @Test func aFullDiskStopsTheSweepCleanlyAndARestartResumes() throws {
            guard getuid() == 0 else { return }  // needs a small tmpfs of its own (CI runs as root)
            let dir = Harness.temporaryDirectory("disk-full")
            let mnt = "\(dir)/mnt"
            try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
            func system(_ tool: String, _ arguments: [String]) -> Bool {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: tool)
                p.arguments = arguments
                guard (try? p.run()) != nil else { return false }
                p.waitUntilExit()
                return p.terminationStatus == 0
            }
            func mount(_ options: String) -> Bool { system("/bin/mount", ["-t", "tmpfs", "-o", options, "tmpfs", mnt]) }
            guard mount("size=1500k") else {
                Issue.record("cannot mount a tmpfs at \(mnt)")
                return
            }
            defer { _ = system("/bin/umount", ["-l", mnt]) }
            Harness.write("name: full\nbase: {model: rosenbrock, steps: 3000, optimizer: sgd}\ngrid: {lr: {logspace: [1.0e-5, 1.0e-3, 40]}}\n", to: "\(dir)/s.yaml")
            let args = ["start", "\(dir)/s.yaml", "--local-workers", "2", "--out", "\(mnt)/out", "--plain"]
            let first = try Harness.start("sweep-coordinator", args, log: "\(dir)/first.log")
            #expect(Harness.wait(first, timeout: 120))
            let log = Harness.read("\(dir)/first.log")
            #expect(first.terminationStatus == 1, Comment(rawValue: log))
            #expect(log.contains("error: cannot write the results in \(mnt)/out: writing \(mnt)/out/trials/batch-") && log.contains("No space left on device"), Comment(rawValue: log))
            #expect(!log.contains("crashed") && !log.contains("Signal"), Comment(rawValue: log))
            guard mount("remount,size=64m") else {
                Issue.record("cannot remount \(mnt)")
                return
            }
            let second = try Harness.start("sweep-coordinator", args, log: "\(dir)/second.log")
            #expect(Harness.wait(second, timeout: 120))
            let log2 = Harness.read("\(dir)/second.log")
            #expect(second.terminationStatus == 0 && log2.contains("sweep full: 40 done"), Comment(rawValue: log2))
            let rows = try Harness.trials("\(mnt)/out")
            #expect(rows.count == 40 && Set(rows.map(\.id)).count == 40 && rows.allSatisfy { $0.status == "done" })
        }

        /// A sweep whose trials all fail ends with exit status 2; loose settings are refused.
        @Test func failedTrialsAndLooseSettingsGiveNonZeroExitStatus() throws {
            let dir = Harness.temporaryDirectory("failing")
            Harness.write("name: failing\nbase: {model: mlp, data: \"idx:\(dir)/missing\", epochs: 1, optimizer: sgd}\ngrid: {lr: [0.1, 0.2]}\n", to: "\(dir)/s.yaml")
            let p = try Harness.start("sweep-coordinator", ["start", "\(dir)/s.yaml", "--local-workers", "1", "--out", "\(dir)/out", "--plain"], log: "\(dir)/log")
            #expect(Harness.wait(p, timeout: 120))
            let log = Harness.read("\(dir)/log")
            #expect(p.terminationStatus == 2 && log.contains("2 trials failed"), Comment(rawValue: log))
            for bad in [["--dead-after", "0"], ["--dead-after=-1"], ["--heartbeat", "0"], ["--heartbeat", "2", "--dead-after", "3"]] {
                let q = try Harness.start("sweep-coordinator", ["start", "\(dir)/s.yaml", "--local-workers", "1", "--out", "\(dir)/out2"] + bad, log: "\(dir)/bad.log")
                #expect(Harness.wait(q, timeout: 30) && q.terminationStatus != 0, "\(bad) refused")
                #expect(Harness.read("\(dir)/bad.log").contains("--heartbeat"), Comment(rawValue: Harness.read("\(dir)/bad.log")))
            }
            // An allow-list directory anyone may write lets anyone in: refused.
            let keys = "\(dir)/allowed"
            try FileManager.default.createDirectory(atPath: keys, withIntermediateDirectories: true)
            let k = try Harness.start("sweep-coordinator", ["keys", "--out", keys, "w1"], log: "\(dir)/keys.log")
            #expect(Harness.wait(k, timeout: 30))
            chmod(keys, 0o777)
            #expect(throws: SecurityError.writableAllowList(path: keys, mode: 0o777)) { _ = try AllowList.load([keys]) }
        }
    }
}
