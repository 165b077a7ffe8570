import Foundation
import Glibc
import Results

/// `--local-workers N`: worker processes on this machine, started with the sweep, watched, and
/// replaced when one dies while the sweep still has work (its trials are requeued by the
/// coordinator's heartbeat rules like any lost worker's). A slot whose worker keeps dying is
/// given up after `maxRestarts` replacements; when every slot is given up the sweep cannot go
/// on here, and `watch` says so.
final class LocalWorkerPool {
    struct Slot {
        var name: String
        var process: Process
        var restarts = 0
        var givenUp = false
    }

    let executable: String
    let endpoint: String
    let threads: Int
    let extraArguments: [String]
    let logDirectory: String
    let maxRestarts: Int
    private(set) var slots: [Slot] = []

    init(count: Int, executable: String, endpoint: String, threads: Int, extraArguments: [String], logDirectory: String, maxRestarts: Int = 3) throws {
        self.executable = executable
        self.endpoint = endpoint
        self.threads = threads
        self.extraArguments = extraArguments
        self.logDirectory = logDirectory
        self.maxRestarts = maxRestarts
        try makeDirectories(logDirectory)
        for n in 0..<count {
            let name = "local-\(n + 1)"
            slots.append(Slot(name: name, process: try spawn(name)))
        }
    }

    func logPath(_ name: String) -> String { "\(logDirectory)/\(name).log" }

    private func spawn(_ name: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        // Local workers run this coordinator's sweep only: its program trials too.
        process.arguments = ["--connect", endpoint, "--name", name, "--threads", String(threads), "--give-up-after", "10", "--allow-programs"] + extraArguments
        let path = logPath(name)
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }

    /// How a worker process ended, in words.
    static func describe(_ p: Process) -> String {
        p.terminationReason == .uncaughtSignal
            ? "was killed by signal \(p.terminationStatus)\(p.terminationStatus == SIGKILL ? " (out of memory?)" : "")"
            : "exited with status \(p.terminationStatus)"
    }

    /// Replaces the workers that died; returns a log line for each event, and whether any slot
    /// still has a worker.
    func watch() -> (lines: [String], alive: Bool) {
        var lines: [String] = []
        for k in slots.indices where !slots[k].givenUp && !slots[k].process.isRunning {
            let name = slots[k].name
            let how = Self.describe(slots[k].process)
            if slots[k].restarts >= maxRestarts {
                slots[k].givenUp = true
                lines.append("local worker \(name) \(how) again; giving it up after \(maxRestarts) restarts (see \(logPath(name)))")
                continue
            }
            slots[k].restarts += 1
            do {
                slots[k].process = try spawn(name)
                lines.append("local worker \(name) \(how); started a new one (restart \(slots[k].restarts) of \(maxRestarts); see \(logPath(name)))")
            } catch {
                slots[k].givenUp = true
                lines.append("local worker \(name) \(how) and could not be restarted: \(error)")
            }
        }
        return (lines, slots.contains { !$0.givenUp })
    }

    /// Local workers started again after one died, so far.
    var restarts: Int { slots.reduce(0) { $0 + $1.restarts } }

    func pid(named name: String) -> Int32? {
        slots.first { $0.name == name && $0.process.isRunning }?.process.processIdentifier
    }

    var isEmpty: Bool { slots.isEmpty }

    /// Waits up to `seconds` for the workers to leave (they were sent SHUTDOWN), then ends them.
    func stop(within seconds: Double = 5) {
        let deadline = Date().addingTimeInterval(seconds)
        for slot in slots {
            let p = slot.process
            while p.isRunning && Date() < deadline { usleep(20_000) }
            if p.isRunning { p.terminate() }
            p.waitUntilExit()
        }
    }
}
