import Foundation
import HDF5
import Learning
import Linalg
import TestSupport
import Testing
import Transport

@Suite(.serialized) struct SweepEndToEndTests {
    static let sweepText = """
        name: e2e
        base:
          model: mlp
          hidden: [16]
          limit: 1500
          test_limit: 500
          epochs: 2
        seeds: [0, 1]
        optimizers:
          sgd:
            base: {momentum: 0.9}
            grid: {lr: [0.05, 0.1]}
          adamw:
            grid: {lr: [1.0e-3]}
        """

    @Test func twoLocalWorkersRunARealSweepAndTheResultsReadBack() throws {
        let dir = Harness.temporaryDirectory("e2e")
        Harness.write(Self.sweepText, to: "\(dir)/e2e.yaml")
        let toy = "name: toys\nbase: {model: rosenbrock, steps: 200}\noptimizers:\n  adam: {grid: {lr: [0.01, 0.05]}}\n  sgd: {grid: {lr: [1.0e-4, 5.0e-4], momentum: [0.9]}}\n"
        Harness.write(toy, to: "\(dir)/toys.yaml")
        // Layer lists travel as nested mappings in the configuration, through the wire and HDF5.
        let nets = """
            name: nets
            base: {model: sequential, limit: 200, test_limit: 100, epochs: 1, optimizer: adamw, batch_size: 50}
            grid:
              lr: [0.001, 0.003]
              layers:
                - [{conv2d: {out: 4, kernel: 3}}, batchnorm, relu, {maxpool: 2}, flatten, {dropout: 0.1}, linear]
                - [flatten, {linear: 32}, relu, linear]
            """
        Harness.write(nets, to: "\(dir)/nets.yaml")
        for (sweep, expected) in [("e2e", 6), ("toys", 4), ("nets", 4)] {
            let out = "\(dir)/\(sweep)-results"
            let p = try Harness.start("sweep-coordinator", ["start", "\(dir)/\(sweep).yaml", "--local-workers", "2", "--out", out, "--plain"], log: "\(dir)/\(sweep).log")
            #expect(Harness.wait(p, timeout: 300), "coordinator did not finish: \(Harness.read("\(dir)/\(sweep).log"))")
            #expect(p.terminationStatus == 0, "\(Harness.read("\(dir)/\(sweep).log"))")
            let log = Harness.read("\(dir)/\(sweep).log")
            #expect(log.contains("sweep \(sweep): \(expected) done"))
            let file = try HDF5File("\(out)/sweep.h5", mode: .readOnly)
            #expect(try file.attribute("trial_count", as: Int64.self) == Int64(expected))
            #expect(try file.attribute("count_done", as: Int64.self) == Int64(expected))
            #expect(try file.stringAttribute("sweep_yaml").contains("name: \(sweep)"))
            let rows = try Harness.trials(out)
            #expect(rows.count == expected && rows.allSatisfy { $0.status == "done" && $0.attempts == 1 })
            // Every stored trial equals the same configuration trained in this process: the
            // distributed path changes nothing (same seed, same thread count).
            BLASRuntime.setThreads(1)  // as the local workers
            for row in rows {
                // A group through /by_id, or (one epoch) rows of the batch file's tables.
                let stored = try Harness.committed(out, id: row.id, file: row.file).text
                #expect(try file.group("by_id").contains(row.id) == (sweep != "nets"), "trial \(row.id) of \(sweep)")
                let config = try TrialConfig.parse(yaml: stored["config"] ?? "", source: row.id)
                #expect(TrialID.of(config) == row.id)
                let local = try Trainer.run(config)
                // Bit-identical with the same OpenBLAS kernel (scripts/test.sh gives the test
                // process the workers' kernel); different kernels round GEMMs differently.
                let engine = stored["engine"] ?? ""
                if config.isToyObjective || engine.hasPrefix("OpenBLAS \(BLASRuntime.coreName) ") {
                    #expect(local.history.last!.trainLoss == row.trainLoss, "trial \(row.id)")
                } else {
                    #expect(abs(local.history.last!.trainLoss - row.trainLoss) <= 1e-6 * abs(row.trainLoss), "trial \(row.id)")
                }
            }
        }
    }

    @Test func garbageTruncatedAndOversizedFramesLeaveTheSweepFinishing() throws {
        let dir = Harness.temporaryDirectory("garbage")
        Harness.write("name: slow-toys\nbase: {model: quadratic, steps: 20000, optimizer: sgd}\ngrid: {lr: [0.001, 0.002, 0.003, 0.004]}\n", to: "\(dir)/s.yaml")
        let port = Harness.freePort()
        let p = try Harness.start(
            "sweep-coordinator", ["start", "\(dir)/s.yaml", "--bind", "tcp://127.0.0.1:\(port)", "--local-workers", "1", "--out", "\(dir)/out", "--plain"],
            log: "\(dir)/log")
        usleep(500_000)
        let context = Context()
        let rogue = try Socket(context, .dealer)
        try rogue.connect("tcp://127.0.0.1:\(port)")
        let junk: [[[UInt8]]] = [
            [Array("hello".utf8)],
            [Array("SWP0".utf8), Array("READY".utf8), Array("{}".utf8)],
            [Protocol.header, Array("LAUNCH".utf8), Array("{}".utf8)],
            [Protocol.header, Array("READY".utf8), Array("{\"name\": 3".utf8)],
            [Protocol.header, Array("RESULT".utf8), Array("{}".utf8)],
            [
                Protocol.header, Array("RESULT".utf8),
                try Message.result(
                    ResultMessage(
                        lease: Lease(trial: "0000000000000000", attempt: 1), status: .done, message: nil, history: [], trajectory: [],
                        parameterCount: 0, optimizerStateBytes: 0, wallSeconds: 0, engine: "")
                ).frames()[2],
            ],
            (0..<40).map { _ in (0..<Int.random(in: 0...64)).map { _ in UInt8.random(in: 0...255) } },
        ]
        for frames in junk { try rogue.send(frames) }
        // Oversized: beyond ZMQ_MAXMSGSIZE libzmq drops the connection, not the coordinator.
        let big = try Socket(context, .dealer)
        try big.connect("tcp://127.0.0.1:\(port)")
        try big.send([[UInt8](repeating: 7, count: Int(Protocol.maxMessageSize) + 1024)])
        // Raw TCP garbage that is not even ZMTP.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        let noise = [UInt8](repeating: 0xFF, count: 4096)
        _ = noise.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        #expect(Harness.wait(p, timeout: 120), Comment(rawValue: Harness.read("\(dir)/log")))
        let log = Harness.read("\(dir)/log")
        #expect(p.terminationStatus == 0, Comment(rawValue: log))
        #expect(log.contains("sweep slow-toys: 4 done"))
        #expect(log.contains("dropped a message") && log.contains("rejected"))
        rogue.close()
        big.close()
    }

    @Test func aWorkerKilledMidTrialHasItsTrialFinishedByTheOther() throws {
        let dir = Harness.temporaryDirectory("kill")
        // Each trial takes several seconds (20 epochs of 20,000 images), so the first worker is
        // surely mid-trial when it is killed.
        Harness.write("name: kill\nbase: {model: mlp, hidden: [128], limit: 20000, test_limit: 500, epochs: 20, optimizer: adamw}\ngrid: {lr: [0.001, 0.002, 0.003]}\n", to: "\(dir)/s.yaml")
        let port = Harness.freePort()
        let endpoint = "tcp://127.0.0.1:\(port)"
        let coordinator = try Harness.start(
            "sweep-coordinator", ["start", "\(dir)/s.yaml", "--bind", endpoint, "--out", "\(dir)/out", "--plain", "--dead-after", "2", "--heartbeat", "0.5"],
            log: "\(dir)/coordinator.log")
        let victim = try Harness.start("sweep-worker", ["--connect", endpoint, "--name", "victim", "--give-up-after", "20"], log: "\(dir)/victim.log")
        // Let the victim take a trial, then start the survivor and kill the victim mid-trial.
        var waited = 0.0
        while !Harness.read("\(dir)/coordinator.log").contains("worker victim") && waited < 20 { usleep(100_000); waited += 0.1 }
        usleep(1_500_000)
        let survivor = try Harness.start("sweep-worker", ["--connect", endpoint, "--name", "survivor", "--give-up-after", "20"], log: "\(dir)/survivor.log")
        kill(victim.processIdentifier, SIGKILL)
        victim.waitUntilExit()
        #expect(Harness.wait(coordinator, timeout: 300), Comment(rawValue: Harness.read("\(dir)/coordinator.log")))
        let log = Harness.read("\(dir)/coordinator.log")
        #expect(coordinator.terminationStatus == 0, Comment(rawValue: log))
        #expect(log.contains("worker victim") && log.contains("declared lost"))
        #expect(log.contains("requeueing trial"))
        #expect(log.contains("sweep kill: 3 done"))
        let rows = try Harness.trials("\(dir)/out")
        #expect(rows.count == 3 && rows.allSatisfy { $0.status == "done" })
        #expect(rows.contains { $0.attempts == 2 }, "the victim's trial ran a second attempt")
        _ = Harness.wait(survivor, timeout: 30)
    }
}

@Suite(.serialized) struct ResumeTests {
    /// SIGINT: no more trials handed out, finished ones committed, exit 130; starting again on the
    /// same results directory runs only what is missing.
    @Test func interruptedSweepResumesWithoutRunningFinishedTrialsAgain() throws {
        let dir = Harness.temporaryDirectory("resume")
        Harness.write(
            "name: resume\nbase: {model: mlp, hidden: [128], limit: 20000, test_limit: 500, epochs: 5, optimizer: sgd, momentum: 0.9}\ngrid: {lr: [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]}\n",
            to: "\(dir)/s.yaml")
        let out = "\(dir)/out"
        let first = try Harness.start("sweep-coordinator", ["start", "\(dir)/s.yaml", "--local-workers", "1", "--out", out, "--plain"], log: "\(dir)/first.log")
        var waited = 0.0
        while Harness.read("\(dir)/first.log").components(separatedBy: "] done after").count < 3 && waited < 120 { usleep(50_000); waited += 0.05 }
        kill(first.processIdentifier, SIGINT)
        #expect(Harness.wait(first, timeout: 60))
        #expect(first.terminationStatus == 130, Comment(rawValue: Harness.read("\(dir)/first.log")))
        let firstLog = Harness.read("\(dir)/first.log")
        #expect(firstLog.contains("SIGINT"))
        let before = try Harness.trials(out)
        #expect(before.count >= 2 && before.count < 6, "committed before the interrupt: \(before.count)")

        let second = try Harness.start("sweep-coordinator", ["start", "\(dir)/s.yaml", "--local-workers", "1", "--out", out, "--plain"], log: "\(dir)/second.log")
        #expect(Harness.wait(second, timeout: 180))
        let log = Harness.read("\(dir)/second.log")
        #expect(second.terminationStatus == 0, Comment(rawValue: log))
        #expect(log.contains("resuming: \(before.count) of 6 trials already committed"))
        #expect(log.components(separatedBy: "] done after").count - 1 == 6 - before.count)
        let after = try Harness.trials(out)
        #expect(after.count == 6 && after.allSatisfy { $0.status == "done" && $0.attempts == 1 })
        for b in before { #expect(after.contains { $0.id == b.id && $0.trainLoss == b.trainLoss }) }
    }

    /// A remote worker outlives its coordinator: it reconnects to the restarted one,
    /// which adopts the attempt the worker was still training, and the sweep completes.
    @Test func aRemoteWorkerReconnectsToARestartedCoordinator() throws {
        let dir = Harness.temporaryDirectory("reconnect")
        Harness.write("name: reconnect\nbase: {model: mlp, hidden: [128], limit: 20000, test_limit: 500, epochs: 4, optimizer: adamw}\ngrid: {lr: [0.001, 0.002, 0.003, 0.004]}\n", to: "\(dir)/s.yaml")
        let endpoint = "tcp://127.0.0.1:\(Harness.freePort())"
        let worker = try Harness.start("sweep-worker", ["--connect", endpoint, "--name", "remote", "--prefetch", "0", "--give-up-after", "60"], log: "\(dir)/worker.log")
        let args = ["start", "\(dir)/s.yaml", "--bind", endpoint, "--out", "\(dir)/out", "--plain", "--dead-after", "2", "--heartbeat", "0.5"]
        let first = try Harness.start("sweep-coordinator", args, log: "\(dir)/first.log")
        var waited = 0.0
        while !Harness.read("\(dir)/first.log").contains("] done after") && waited < 120 { usleep(50_000); waited += 0.05 }
        kill(first.processIdentifier, SIGINT)
        #expect(Harness.wait(first, timeout: 60) && first.terminationStatus == 130, Comment(rawValue: Harness.read("\(dir)/first.log")))
        // Longer than the 2 s the worker was told to wait: it notices the silence and backs off.
        usleep(4_000_000)
        let second = try Harness.start("sweep-coordinator", args, log: "\(dir)/second.log")
        #expect(Harness.wait(second, timeout: 180))
        let log = Harness.read("\(dir)/second.log")
        #expect(second.terminationStatus == 0, Comment(rawValue: log))
        #expect(log.contains("worker remote on") && log.contains("sweep reconnect: 4 done"))
        #expect(Harness.wait(worker, timeout: 30) && worker.terminationStatus == 0)
        let workerLog = Harness.read("\(dir)/worker.log")
        #expect(workerLog.components(separatedBy: "registered with sweep reconnect").count - 1 == 2, Comment(rawValue: workerLog))
        #expect(workerLog.contains("coordinator silent") && workerLog.contains("reconnecting in"))
        let rows = try Harness.trials("\(dir)/out")
        #expect(rows.count == 4 && rows.allSatisfy { $0.status == "done" && $0.attempts == 1 })
    }

    /// With checkpoints, a worker killed mid-trial costs only the epochs since its last
    /// checkpoint: the other worker continues from it, and the trial ends exactly as an
    /// uninterrupted run of the same configuration.
    @Test func aKilledWorkersTrialResumesFromItsCheckpointElsewhere() throws {
        let dir = Harness.temporaryDirectory("resume-elsewhere")
        Harness.write(
            """
            name: resume-elsewhere
            checkpoints: {every: 1}
            base: {model: mlp, hidden: [128], limit: 20000, test_limit: 500, epochs: 8, optimizer: adamw, schedule: cosine}
            grid: {lr: [0.001, 0.002]}
            """, to: "\(dir)/s.yaml")
        let endpoint = "tcp://127.0.0.1:\(Harness.freePort())"
        let coordinator = try Harness.start(
            "sweep-coordinator", ["start", "\(dir)/s.yaml", "--bind", endpoint, "--out", "\(dir)/out", "--plain", "--dead-after", "2", "--heartbeat", "0.5"],
            log: "\(dir)/coordinator.log")
        let victim = try Harness.start("sweep-worker", ["--connect", endpoint, "--name", "victim", "--prefetch", "0", "--give-up-after", "20"], log: "\(dir)/victim.log")
        // Kill the victim once its trial has sent a checkpoint (two epochs, to be mid-trial).
        var waited = 0.0
        func checkpoints() -> [String] { (try? FileManager.default.contentsOfDirectory(atPath: "\(dir)/out/checkpoints")) ?? [] }
        while checkpoints().filter({ $0.hasSuffix(".h5") }).isEmpty && waited < 60 { usleep(50_000); waited += 0.05 }
        usleep(600_000)
        kill(victim.processIdentifier, SIGKILL)
        victim.waitUntilExit()
        let survivor = try Harness.start("sweep-worker", ["--connect", endpoint, "--name", "survivor", "--give-up-after", "20"], log: "\(dir)/survivor.log")
        #expect(Harness.wait(coordinator, timeout: 300), Comment(rawValue: Harness.read("\(dir)/coordinator.log")))
        let log = Harness.read("\(dir)/coordinator.log")
        #expect(coordinator.terminationStatus == 0, Comment(rawValue: log))
        #expect(log.contains("declared lost") && log.contains("resumes from its checkpoint (epoch"), Comment(rawValue: log))
        #expect(Harness.read("\(dir)/survivor.log").contains("resumes after epoch"))
        let rows = try Harness.trials("\(dir)/out")
        #expect(rows.count == 2 && rows.contains { $0.attempts == 2 })
        // The resumed trial equals an uninterrupted run, bit for bit (same kernel, one thread).
        let file = try HDF5File("\(dir)/out/sweep.h5", mode: .readOnly)
        let byID = try file.group("by_id")
        BLASRuntime.setThreads(1)
        for row in rows where row.attempts == 2 {
            let config = try TrialConfig.parse(yaml: try byID.group(row.id).stringAttribute("config"), source: row.id)
            let engine = try byID.group(row.id).stringAttribute("engine")
            let local = try Trainer.run(config)
            if engine.hasPrefix("OpenBLAS \(BLASRuntime.coreName) ") {
                #expect(local.history.last!.trainLoss == row.trainLoss)
            } else {
                #expect(abs(local.history.last!.trainLoss - row.trainLoss) <= 1e-6 * abs(row.trainLoss))
            }
            #expect(try byID.group(row.id).readTableColumn("history", field: "epoch") == (1...8).map(Double.init))
        }
        // Finished trials' checkpoints are pruned (keep: none).
        #expect(checkpoints().filter { $0.hasSuffix(".h5") }.isEmpty, "\(checkpoints())")
        _ = Harness.wait(survivor, timeout: 30)
    }

    /// The median stopping rule stops trials that fall behind, recording the rule and the reason.
    @Test func medianStoppingRuleStopsTrialsThatFallBehind() throws {
        let dir = Harness.temporaryDirectory("median")
        Harness.write(
            """
            name: median
            early_stopping: {rule: median, grace_epochs: 2, min_trials: 2}
            base: {model: mlp, hidden: [32], limit: 3000, test_limit: 500, epochs: 10, optimizer: adamw, max_loss: 1000}
            grid: {lr: [0.003, 0.002, 0.004, 0.0025, 0.000001, 0.0000005]}
            """, to: "\(dir)/s.yaml")
        // One worker (one slot) runs the trials in grid order, so the four good ones have
        // finished when the hopeless ones start, whatever the machine's load; ten epochs leave the
        // cancel eight epochs to arrive.
        let p = try Harness.start("sweep-coordinator", ["start", "\(dir)/s.yaml", "--local-workers", "1", "--out", "\(dir)/out", "--plain"], log: "\(dir)/log")
        #expect(Harness.wait(p, timeout: 120))
        let log = Harness.read("\(dir)/log")
        #expect(p.terminationStatus == 0, Comment(rawValue: log))
        let file = try HDF5File("\(dir)/out/sweep.h5", mode: .readOnly)
        let byID = try file.group("by_id")
        var statuses: [Double: (String, String, Int)] = [:]
        for id in try byID.memberNames() {
            let g = try byID.group(id)
            let lr = try TrialConfig.parse(yaml: try g.stringAttribute("config"), source: id).double("lr", default: 0)
            statuses[lr] = (try g.stringAttribute("status"), try g.stringAttribute("message"), try g.readTableColumn("history", field: "epoch").count)
        }
        for lr in [0.003, 0.002, 0.004, 0.0025] { #expect(statuses[lr]?.0 == "done", "\(lr): \(String(describing: statuses[lr]))") }
        // The two hopeless learning rates come after four good trials and are stopped early.
        for lr in [0.000001, 0.0000005] {
            let s = try #require(statuses[lr])
            #expect(s.0 == "stopped" && s.1.contains("median stopping rule") && s.2 < 10, "\(lr): \(s)")
        }
        #expect(try file.attribute("count_stopped", as: Int64.self) == 2)
    }

    /// A network partition, simulated by freezing a worker (SIGSTOP) for longer than the lease:
    /// its trial is requeued elsewhere; when it comes back its late result is rejected, so every
    /// trial is committed exactly once.
    @Test func aWorkerCutOffLongerThanTheLeaseProducesNoDuplicates() throws {
        let dir = Harness.temporaryDirectory("partition")
        Harness.write("name: partition\nbase: {model: mlp, hidden: [128], limit: 20000, test_limit: 500, epochs: 5, optimizer: adamw}\ngrid: {lr: [0.001, 0.002, 0.003]}\n", to: "\(dir)/s.yaml")
        let endpoint = "tcp://127.0.0.1:\(Harness.freePort())"
        let coordinator = try Harness.start(
            "sweep-coordinator", ["start", "\(dir)/s.yaml", "--bind", endpoint, "--out", "\(dir)/out", "--plain", "--dead-after", "2", "--heartbeat", "0.5"],
            log: "\(dir)/coordinator.log")
        let cutOff = try Harness.start("sweep-worker", ["--connect", endpoint, "--name", "cut-off", "--prefetch", "0", "--give-up-after", "8"], log: "\(dir)/cut-off.log")
        var waited = 0.0
        while !Harness.read("\(dir)/coordinator.log").contains("worker cut-off") && waited < 20 { usleep(100_000); waited += 0.1 }
        usleep(800_000)
        kill(cutOff.processIdentifier, SIGSTOP)
        let other = try Harness.start("sweep-worker", ["--connect", endpoint, "--name", "other", "--give-up-after", "60"], log: "\(dir)/other.log")
        waited = 0
        while !Harness.read("\(dir)/coordinator.log").contains("declared lost") && waited < 30 { usleep(100_000); waited += 0.1 }
        usleep(1_000_000)
        kill(cutOff.processIdentifier, SIGCONT)
        #expect(Harness.wait(coordinator, timeout: 300), Comment(rawValue: Harness.read("\(dir)/coordinator.log")))
        let log = Harness.read("\(dir)/coordinator.log")
        #expect(coordinator.terminationStatus == 0, Comment(rawValue: log))
        #expect(log.contains("worker cut-off on") && log.contains("declared lost") && log.contains("sweep partition: 3 done"))
        let rows = try Harness.trials("\(dir)/out")
        #expect(rows.count == 3 && Set(rows.map(\.id)).count == 3)
        // Each trial is in exactly one batch file, once (a row of its /trials table each).
        var committed: [String] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: "\(dir)/out/trials") where name.hasSuffix(".h5") {
            committed += try HDF5File("\(dir)/out/trials/\(name)", mode: .readOnly).readTableStringColumn("trials", field: "id")
        }
        #expect(committed.sorted() == rows.map(\.id).sorted(), "\(committed)")
        // Whatever the timing, the coming-back worker either had its attempt adopted (the trial
        // still queued) or its late result rejected; never a second commit.
        _ = Harness.wait(cutOff, timeout: 30)
        _ = Harness.wait(other, timeout: 30)
    }
}
