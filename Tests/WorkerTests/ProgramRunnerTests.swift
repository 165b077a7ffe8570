import Foundation
import Glibc
import Learning
import Testing
import Worker

/// Program trials run by `ProgramRunner`: real processes (sh and python3 with the standard
/// library only), each test a few tenths of a second.
@Suite struct ProgramRunnerTests {
    /// The repository's root (for python/sweep_report.py).
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// A folder holding `files` (name → text), and a trial running `program` there.
    func job(_ yaml: String, files: [String: String] = [:], objective: Metric? = .testLoss) throws -> ProgramRunner.Job {
        let folder = NSTemporaryDirectory() + "program-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        for (name, text) in files { try text.write(toFile: "\(folder)/\(name)", atomically: true, encoding: .utf8) }
        let config = try TrialConfig.parse(yaml: yaml, source: "test")
        var job = ProgramRunner.Job(config: config, trialID: TrialID.of(config))
        job.folder = folder
        job.objective = objective
        return job
    }

    var fast: ProgramRunner.Settings {
        var s = ProgramRunner.Settings()
        s.stopGrace = 0.3
        return s
    }

    /// A Python program using the helper: three epochs with a metric of its own, a checkpoint each.
    static let python = """
        import os, sys
        import sweep_report as sweep
        cfg = sweep.config()
        start = 1
        if sweep.resume_dir():
            start = int((sweep.resume_dir() / "epoch.txt").read_text()) + 1
        for epoch in range(start, cfg["epochs"] + 1):
            loss = 1.0 / (epoch * cfg["lr"])
            sweep.report(epoch=epoch, train_loss=loss, test_loss=2 * loss, test_accuracy=0.5, started_at=start, seed=sweep.seed())
            (sweep.checkpoint_dir() / "state").mkdir()
            (sweep.checkpoint_dir() / "state" / "epoch.txt").write_text(str(epoch))
            sweep.checkpoint("state")
        print("trained", sweep.trial_id(), cfg["lr"])
        """

    @Test func aPythonProgramReportsEpochsMetricsAndCheckpointsAndResumes() throws {
        var job = try job(
            "program: [python3, train.py]\nepochs: 3\nlr: 0.5\nseed: 7\nenv: {PYTHONPATH: \(Self.repository)/python}\n", files: ["train.py": Self.python])
        job.checkpointEvery = 1
        var epochs: [Int] = []
        var checkpoints: [TrainingCheckpoint] = []
        let result = ProgramRunner.run(job, settings: fast, onEpoch: { epochs.append($0.epoch) }, onCheckpoint: { checkpoints.append($0) })
        #expect(result.status == .done, "\(result.message ?? "") \(result.programOutput?.stderrTail ?? "")")
        #expect(epochs == [1, 2, 3])
        #expect(result.history.map(\.testLoss) == [4, 2, 4.0 / 3])
        #expect(result.history.allSatisfy { $0.testAccuracy == 0.5 && $0.gradientNorm.isNaN })
        #expect(result.extraHistory["started_at"] == [1, 1, 1] && result.extraHistory["seed"] == [7, 7, 7])
        #expect(result.programOutput?.ending == "exit 0")
        #expect(result.programOutput?.stdoutTail == "trained \(job.trialID) 0.5\n")
        #expect(checkpoints.map(\.epoch) == [1, 2, 3])
        guard case .files(let files)? = checkpoints.last?.payload else {
            Issue.record("no checkpoint files")
            return
        }
        #expect(files == [PackedFile(path: "epoch.txt", bytes: Array("3".utf8))])

        // Continued from epoch 1's checkpoint (on another worker, as far as it knows): epochs 2
        // and 3 only, after the history it brings.
        var resumed = try self.job(job.config.canonicalJSON, files: ["train.py": Self.python])
        resumed.resume = checkpoints[0]
        epochs = []
        let second = ProgramRunner.run(resumed, settings: fast, onEpoch: { epochs.append($0.epoch) })
        #expect(second.status == .done, "\(second.message ?? "") \(second.programOutput?.stderrTail ?? "")")
        #expect(epochs == [2, 3])
        #expect(second.history.map(\.epoch) == [1, 2, 3])
        #expect(second.extraHistory["started_at"] == [1, 2, 2])
    }

    @Test func aShellProgramWritesItsReportWithPrintf() throws {
        let script = """
            for e in 1 2; do printf '{"epoch": %d, "test_loss": 0.%d, "lr": 0.01}\\n' $e $e >&$SWEEP_REPORT_FD; done
            echo "config at $SWEEP_TRIAL_CONFIG"; test -d "$SWEEP_CHECKPOINT_DIR" || exit 9
            """
        let result = ProgramRunner.run(try job("program: [sh, train.sh]\nepochs: 2\nwidth: 3\n", files: ["train.sh": script]), settings: fast)
        #expect(result.status == .done, "\(result.message ?? "")")
        #expect(result.history.map(\.testLoss) == [0.1, 0.2] && result.history.map(\.learningRate) == [0.01, 0.01])
        #expect(result.programOutput?.stdoutTail.hasPrefix("config at /") == true)
    }

    @Test func flagsFilesAndTheConfigurationReachTheProgram() throws {
        var job = try job(
            "program: [sh, run.sh, fixed]\nepochs: 1\nargs: flags\nfiles: [run.sh, lib/data.txt]\nlr: 0.001\nname: x y\n",
            objective: nil)
        job.files = [
            PackedFile(path: "run.sh", bytes: Array("echo \"$@\"; cat lib/data.txt; cat $SWEEP_TRIAL_CONFIG; echo '{\"epoch\": 1}' >&3\n".utf8)),
            PackedFile(path: "lib/data.txt", bytes: Array("shipped\n".utf8)),
        ]
        let result = ProgramRunner.run(job, settings: fast)
        #expect(result.status == .done, "\(result.message ?? "")")
        let out = result.programOutput?.stdoutTail ?? ""
        #expect(out.hasPrefix("fixed --epochs=1 --lr=0.001 --name=x y --seed=0\nshipped\n{"), "\(out)")
        #expect(out.contains("\"lr\":0.001") && out.contains("\"program\":[\"sh\",\"run.sh\",\"fixed\"]"))
    }

    @Test func aCrashIsAFailureWithItsStandardError() throws {
        let script = "echo '{\"epoch\": 1, \"test_loss\": 1}' >&3; echo 'Traceback: out of cheese' >&2; exit 3\n"
        let result = ProgramRunner.run(try job("program: [sh, crash.sh]\nepochs: 2\n", files: ["crash.sh": script]), settings: fast)
        #expect(result.status == .failed)
        #expect(result.message == "the program ended with exit 3 after epoch 1 of 2; last line of stderr: Traceback: out of cheese")
        #expect(result.history.count == 1 && result.programOutput?.stderrTail == "Traceback: out of cheese\n")
    }

    @Test func aProgramPastItsTimeoutIsStoppedAndOneIgnoringSIGTERMIsKilled() throws {
        let started = Date()
        let hang = ProgramRunner.run(try job("program: [sleep, '30']\nepochs: 1\ntimeout: 0.5\n"), settings: fast)
        #expect(hang.status == .failed && hang.message?.hasPrefix("timed out: still running after 0.5 s") == true, "\(hang.message ?? "")")
        #expect(hang.programOutput?.ending == "signal 15")
        let stubborn = ProgramRunner.run(try job("program: [sh, -c, \"trap '' TERM; sleep 30 & wait; sleep 30\"]\nepochs: 1\ntimeout: 0.3\n"), settings: fast)
        #expect(stubborn.status == .failed && stubborn.programOutput?.ending == "signal 9", "\(stubborn.message ?? "")")
        #expect(Date().timeIntervalSince(started) < 10)
    }

    @Test func floodingOrMalformedReportsStopTheProgramWithTheReason() throws {
        let cases: [(script: String, message: String)] = [
            ("head -c 100000 /dev/zero | tr '\\\\0' x >&3; sleep 30", "report line 1 is longer than 65536 bytes"),
            ("while true; do echo '{\"epoch\": 1, \"test_loss\": 1}'; done >&3", "report line 2 is for epoch 1, but epoch 2 was due"),
            ("yes '' | head -c 4000 >&3; sleep 30", "the program wrote report lines faster than 100 per second"),
            ("echo 'epoch 1: loss 0.3' >&3; sleep 30", "report line 1 is not a JSON object (it must start with '{')"),
            ("echo '{\"epoch\": 1, \"test_loss\": \"low\"}' >&3", "report line 1 metric 'test_loss' is the string \"low\"; metrics are numbers (or null)"),
            ("echo '{\"epoch\": 1, \"test_loss\": {\"a\": 1}}' >&3", "report line 1 has a nested object or list"),
            ("echo '{\"epoch\": 1, \"train_loss\": 1}' >&3", "report line 1 (epoch 1) lacks 'test_loss', the sweep's objective"),
            ("echo '{\"epoch\": 1, \"test_loss\": 1, \"test_accuracy\": 87.5}' >&3", "test_accuracy must be a fraction in [0, 1]"),
            ("echo '{\"epoch\": 2, \"test_loss\": 1}' >&3", "report line 1 is for epoch 2, but epoch 1 was due"),
            ("echo '{\"epoch\": 1, \"test_loss\": 1}' >&3; echo '{\"checkpoint\": \"../config.json\"}' >&3", "is not inside SWEEP_CHECKPOINT_DIR"),
            (
                "echo '{\"epoch\": 1, \"test_loss\": 1}' >&3; mkdir $SWEEP_CHECKPOINT_DIR/c; ln -s /etc/passwd $SWEEP_CHECKPOINT_DIR/c/p; echo '{\"checkpoint\": \"c\"}' >&3",
                "the checkpoint holds p, which is not a regular file or a directory"
            ),
            (
                "echo '{\"epoch\": 1, \"test_loss\": 1}' >&3; mkdir $SWEEP_CHECKPOINT_DIR/c; mkfifo $SWEEP_CHECKPOINT_DIR/c/f; echo '{\"checkpoint\": \"c\"}' >&3",
                "the checkpoint holds f, which is not a regular file or a directory"
            ),
            (
                // Empty directories only, past the bound on entries (no file count or byte limit applies).
                "echo '{\"epoch\": 1, \"test_loss\": 1}' >&3; "
                    + "python3 -c 'import os, sys; [os.makedirs(sys.argv[1] + \"/c/%d\" % i) for i in range(\(ProgramLimits.maxCheckpointEntries + 1))]' $SWEEP_CHECKPOINT_DIR; "
                    + "echo '{\"checkpoint\": \"c\"}' >&3",
                "the checkpoint holds more than \(ProgramLimits.maxCheckpointEntries) entries"
            ),
        ]
        for (script, expected) in cases {
            var job = try job("program: [sh, p.sh]\nepochs: 3\n", files: ["p.sh": script])
            job.checkpointEvery = 1
            let result = ProgramRunner.run(job, settings: fast)
            #expect(result.status == .failed, "\(script)")
            #expect(result.message?.contains(expected) == true, "\(script): \(result.message ?? "nil")")
        }
    }

    @Test func aNonFiniteObjectiveIsADivergenceAndAnEarlyExitAFailure() throws {
        let nan = ProgramRunner.run(
            try job("program: [sh, p.sh]\nepochs: 3\n", files: ["p.sh": "echo '{\"epoch\": 1, \"test_loss\": NaN}' >&3; sleep 30\n"]), settings: fast)
        #expect(nan.status == .diverged && nan.message == "test_loss is nan at epoch 1" && nan.history.count == 1)
        let early = ProgramRunner.run(try job("program: [sh, p.sh]\nepochs: 3\n", files: ["p.sh": "echo '{\"epoch\": 1, \"test_loss\": 1}' >&3\n"]), settings: fast)
        #expect(early.status == .failed && early.message == "the program exited with status 0 after reporting 1 of 3 epochs")
        let missing = ProgramRunner.run(try job("program: [no-such-trainer-here]\nepochs: 1\n"), settings: fast)
        #expect(missing.status == .failed && missing.message?.hasPrefix("program \"no-such-trainer-here\" is not on this worker's PATH") == true, "\(missing.message ?? "")")
    }

    @Test func aCancelStopsAndAPauseWaitsForThePauseEpochsCheckpoint() throws {
        let script = """
            e=1; while [ $e -le 5 ]; do
              echo "{\\"epoch\\": $e, \\"test_loss\\": 1}" >&3; sleep 0.1
              echo $e > $SWEEP_CHECKPOINT_DIR/epoch; echo '{"checkpoint": "epoch"}' >&3
              while [ -e $SWEEP_CHECKPOINT_DIR/epoch ]; do sleep 0.01; done; e=$((e+1)); done
            """
        var epochs = 0
        let cancelled = ProgramRunner.run(
            try job("program: [sh, p.sh]\nepochs: 5\n", files: ["p.sh": script]), settings: fast, shouldStop: { epochs >= 2 }, onEpoch: { epochs = $0.epoch })
        #expect(cancelled.status == .stopped && cancelled.history.count == 2 && cancelled.programOutput?.ending == "signal 15")
        var pausing = try job("program: [sh, p.sh]\nepochs: 5\n", files: ["p.sh": script])
        pausing.pauseAfter = 2
        pausing.checkpointEvery = 5
        var checkpoints: [Int] = []
        let paused = ProgramRunner.run(pausing, settings: fast, onCheckpoint: { checkpoints.append($0.epoch) })
        #expect(paused.status == .stopped && paused.message == "paused after epoch 2", "\(paused.message ?? "")")
        #expect(checkpoints == [2] && paused.history.count == 2)
    }
}
