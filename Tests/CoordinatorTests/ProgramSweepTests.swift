import Foundation
import Glibc
import HDF5
import TestSupport
import Testing

/// Sweeps of program trials end to end: a coordinator, real workers and real programs (python3
/// with the standard library and python/sweep_report.py, and sh).
@Suite(.serialized) struct ProgramSweepTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// A Python program: `epochs` epochs of `sleep` seconds each, resuming from its checkpoint,
    /// reporting where this attempt started (`started_at`) and writing its pid and epoch to `progress`.
    static let python = """
        import os, sys, time
        import sweep_report as sweep
        cfg = sweep.config()
        start = 1
        if sweep.resume_dir():
            start = int((sweep.resume_dir() / "epoch.txt").read_text()) + 1
            print("resuming at epoch", start, file=sys.stderr)
        for epoch in range(start, cfg["epochs"] + 1):
            time.sleep(cfg.get("sleep", 0))
            loss = 1.0 / (1.0 + cfg["lr"] * epoch)
            sweep.report(epoch=epoch, train_loss=loss, test_loss=loss + 0.1, test_accuracy=1 - loss / 2, started_at=start)
            (sweep.checkpoint_dir() / "epoch.txt").write_text(str(epoch))
            sweep.checkpoint("epoch.txt")
            if "progress" in cfg:
                with open(cfg["progress"], "a") as f:
                    f.write(f"{os.getpid()} {epoch}\\n")
        print("trained lr", cfg["lr"])
        """

    func sweepFolder(_ name: String, _ yaml: String) -> String {
        let dir = Harness.temporaryDirectory(name)
        Harness.write(Self.python, to: "\(dir)/train.py")
        Harness.write(yaml, to: "\(dir)/sweep.yaml")
        return dir
    }

    @Test func aPythonProgramsMetricsLandInHDF5AndTheReport() throws {
        let dir = sweepFolder(
            "program-sweep",
            """
            name: programs
            objective: {metric: test_accuracy}
            base:
              program: [python3, train.py]
              env: {PYTHONPATH: \(Self.repository)/python}
              epochs: 3
            grid: {lr: [0.5, 1.0, 2.0]}
            """)
        let coordinator = try Harness.start(
            "sweep-coordinator", ["start", "\(dir)/sweep.yaml", "--local-workers", "2", "--out", "\(dir)/out", "--plain"], log: "\(dir)/coordinator.log")
        defer { Harness.stop(coordinator) }
        #expect(Harness.wait(coordinator, timeout: 120), Comment(rawValue: Harness.read("\(dir)/coordinator.log")))
        let log = Harness.read("\(dir)/coordinator.log")
        #expect(coordinator.terminationStatus == 0 && log.contains("sweep programs: 3 done"), Comment(rawValue: log))
        let file = try HDF5File("\(dir)/out/sweep.h5", mode: .readOnly)
        let byID = try file.group("by_id")
        var accuracies: [Double] = []
        for id in try byID.memberNames() {
            let trial = try byID.group(id)
            #expect(try trial.stringAttribute("status") == "done" && trial.stringAttribute("model") == "program")
            #expect(try trial.stringAttribute("program_ending") == "exit 0")
            #expect(try trial.stringAttribute("program_stdout").hasPrefix("trained lr "))
            #expect(try trial.readTableColumn("history", field: "started_at") == [1, 1, 1])
            accuracies.append(try trial.readTableColumn("history", field: "test_accuracy").last!)
        }
        // lr 2 learns fastest here: 1 − 1/(2·(1 + 2·3)).
        #expect(accuracies.count == 3 && abs(accuracies.max()! - (1 - 1 / 14.0)) < 1e-12)

        let analyze = try Harness.start("sweep-analyze", ["\(dir)/out", "--html", "\(dir)/report.html"], log: "\(dir)/analyze.log")
        #expect(Harness.wait(analyze, timeout: 60) && analyze.terminationStatus == 0, Comment(rawValue: Harness.read("\(dir)/analyze.log")))
        let text = Harness.read("\(dir)/analyze.log")
        #expect(text.contains("0.9286"), Comment(rawValue: text))
        #expect(Harness.read("\(dir)/report.html").contains("0.9286"))
    }

    /// The median rule stops the two poor trials of a shell program (run after the two good ones
    /// on one worker); they are recorded `stopped`.
    @Test func earlyStoppingStopsAShellProgramAndRecordsIt() throws {
        let dir = Harness.temporaryDirectory("program-median")
        Harness.write(
            """
            for a in "$@"; do case $a in --quality=*) q=${a#--quality=};; --epochs=*) n=${a#--epochs=};; esac; done
            e=1; while [ $e -le $n ]; do
              sleep 0.2
              echo "{\\"epoch\\": $e, \\"test_loss\\": $(awk "BEGIN { print $q + 1 / $e }")}" >&$SWEEP_REPORT_FD
              e=$((e + 1)); done
            """, to: "\(dir)/train.sh")
        Harness.write(
            """
            name: median-programs
            base: {program: [sh, train.sh], args: flags, epochs: 6}
            grid: {quality: [0, 0.1, 5, 6]}
            early_stopping: {rule: median, grace_epochs: 1, min_trials: 2}
            """, to: "\(dir)/sweep.yaml")
        let coordinator = try Harness.start(
            "sweep-coordinator", ["start", "\(dir)/sweep.yaml", "--local-workers", "1", "--out", "\(dir)/out", "--plain"], log: "\(dir)/coordinator.log")
        defer { Harness.stop(coordinator) }
        #expect(Harness.wait(coordinator, timeout: 120), Comment(rawValue: Harness.read("\(dir)/coordinator.log")))
        let log = Harness.read("\(dir)/coordinator.log")
        #expect(coordinator.terminationStatus == 0, Comment(rawValue: log))
        let file = try HDF5File("\(dir)/out/sweep.h5", mode: .readOnly)
        #expect(try file.attribute("count_done", as: Int64.self) == 2 && file.attribute("count_stopped", as: Int64.self) == 2, Comment(rawValue: log))
        for row in try Harness.trials("\(dir)/out") where row.status == "stopped" {
            let trial = try file.group("by_id").group(row.id)
            #expect(try trial.readTableColumn("history", field: "epoch").count < 6)
            #expect(try trial.stringAttribute("message").contains("median"))
            #expect(try trial.stringAttribute("program_ending") == "signal 15")
        }
    }

    /// A worker killed with SIGKILL mid-trial takes its program along; the trial resumes on the
    /// other worker from the program's last checkpoint.
    @Test func aKilledWorkersTrialResumesFromTheProgramsCheckpointElsewhere() throws {
        let dir = sweepFolder(
            "program-kill",
            """
            name: program-kill
            base:
              program: [python3, train.py]
              env: {PYTHONPATH: \(Self.repository)/python}
              epochs: 8
              lr: 1.0
              sleep: 0.4
              progress: progress.txt
            checkpoints: {every: 1}
            """)
        let endpoint = "tcp://127.0.0.1:\(Harness.freePort())"
        let coordinator = try Harness.start(
            "sweep-coordinator", ["start", "\(dir)/sweep.yaml", "--bind", endpoint, "--out", "\(dir)/out", "--plain", "--dead-after", "2", "--heartbeat", "0.5"],
            log: "\(dir)/coordinator.log")
        let victim = try Harness.start("sweep-worker", ["--connect", endpoint, "--name", "victim", "--allow-programs", "--give-up-after", "20"], log: "\(dir)/victim.log")
        var survivor: Process?
        defer { Harness.stop(coordinator, victim, survivor) }
        var waited = 0.0
        while Harness.read("\(dir)/progress.txt").split(separator: "\n").count < 3 && waited < 30 { usleep(50_000); waited += 0.05 }
        let lines = Harness.read("\(dir)/progress.txt").split(separator: "\n")
        let program = pid_t(lines.first?.split(separator: " ").first ?? "") ?? 0
        #expect(lines.count >= 3 && program > 0, "the victim's program did not get going: \(Harness.read("\(dir)/victim.log"))")
        kill(victim.processIdentifier, SIGKILL)
        victim.waitUntilExit()
        usleep(300_000)
        // Gone, or a zombie nobody reaps (this machine's init may not).
        let state = Harness.read("/proc/\(program)/stat").split(separator: ")").last?.split(separator: " ").first
        #expect(program > 0 && (state == nil || state == "Z"), "the program outlived its worker: \(state.map(String.init) ?? "-")")
        survivor = try Harness.start("sweep-worker", ["--connect", endpoint, "--name", "survivor", "--allow-programs", "--give-up-after", "20"], log: "\(dir)/survivor.log")
        #expect(Harness.wait(coordinator, timeout: 120), Comment(rawValue: Harness.read("\(dir)/coordinator.log")))
        let log = Harness.read("\(dir)/coordinator.log")
        #expect(coordinator.terminationStatus == 0 && log.contains("declared lost") && log.contains("resumes from its checkpoint"), Comment(rawValue: log))
        let rows = try Harness.trials("\(dir)/out")
        #expect(rows.count == 1 && rows[0].status == "done" && rows[0].attempts == 2, Comment(rawValue: log))
        let trial = try HDF5File("\(dir)/out/sweep.h5", mode: .readOnly).group("by_id").group(rows[0].id)
        let started = try trial.readTableColumn("history", field: "started_at")
        #expect(try trial.readTableColumn("history", field: "epoch") == Array(1...8).map(Double.init))
        // The first epochs come from the victim's attempt; the survivor started after the last checkpoint.
        #expect(started.first == 1 && started.last! > 1 && started.last! <= Double(lines.count + 1), "\(started)")
        #expect(try trial.stringAttribute("program_stderr").contains("resuming at epoch \(Int(started.last!))"))
    }
}
