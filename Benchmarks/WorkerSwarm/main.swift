import ArgumentParser
import CSpawn
import Foundation
import Glibc
import Learning
import Linalg
import Transport

// The OpenBLAS kernel a worker would choose (re-executes the process if needed).
BLASRuntime.selectKernel()

/// A coordinator serving many workers, measured: starts `sweep-coordinator` on a loopback port
/// with a sweep of trivial trials, connects `--workers` simulated workers to it from
/// `--processes` processes (`Fleet`: a DEALER each, speaking the protocol as `sweep-worker`
/// does), and prints what it took: heartbeat lateness and lease latency as the workers saw
/// them, messages per second, the coordinator's CPU per message and its peak RSS.
struct WorkerSwarm: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker-swarm",
        abstract: "A coordinator under many simulated workers: heartbeat lateness, lease latency, messages/s, CPU per message, peak RSS.",
        subcommands: [Run.self, FleetCommand.self], defaultSubcommand: Run.self)
}

extension WorkerSwarm {
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "run", abstract: "Start a coordinator and the simulated workers; print the table.")

        @Option(help: "Simulated workers in all.") var workers = 1000
        @Option(help: "Processes they are spread over (libzmq opens up to ~1,000 sockets per process here).") var processes = 2
        @Option(help: "The sweep file (trivial trials).") var sweep = "Benchmarks/sweeps/swarm.yaml"
        @Option(help: "Seconds each attempt holds its worker's slot before it is trained and reported.") var trainSeconds = 0.0
        @Option(help: "Working directory for the results and logs (default: a new temporary directory, removed afterwards).") var out: String?
        @Option(help: "The sweep-coordinator executable (default: the one built next to this tool).") var coordinator: String?
        @Option(parsing: .upToNextOption, help: "More arguments for `sweep-coordinator start`.") var coordinatorArguments: [String] = []

        func validate() throws {
            guard workers >= 1, processes >= 1, processes <= workers else { throw ValidationError("need 1 ≤ --processes ≤ --workers") }
            guard trainSeconds >= 0 else { throw ValidationError("--train-seconds must not be negative") }
        }

        func run() throws {
            let files = FileLimit.raiseToHardLimit()
            // The coordinator needs a descriptor per worker; each fleet one per its workers.
            guard files >= workers + 64 else {
                throw ValidationError("the open-file limit is \(files) (hard limit); \(workers) workers need at least \(workers + 64): raise it (ulimit -Hn)")
            }
            let executable = coordinator ?? sibling("sweep-coordinator")
            guard FileManager.default.isExecutableFile(atPath: executable) else {
                throw ValidationError("no sweep-coordinator at \(executable): build it first (swift build -c release --product sweep-coordinator)")
            }
            let work = out ?? NSTemporaryDirectory() + "worker-swarm-\(getpid())"
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
            defer { if out == nil { try? FileManager.default.removeItem(atPath: work) } }
            let coordinatorLog = "\(work)/coordinator.log"
            let coordinator = try Child.spawn(
                executable, ["start", sweep, "--out", "\(work)/results", "--plain"] + coordinatorArguments, stdout: coordinatorLog)
            let sampler = Sampler(pid: coordinator.pid)
            // The endpoint appears once the sweep is expanded and the socket bound.
            var endpoint: String?
            while endpoint == nil {
                if let status = coordinator.poll() {
                    throw ValidationError("sweep-coordinator exited (\(status)) before listening; see \(coordinatorLog):\n" + ((try? String(contentsOfFile: coordinatorLog, encoding: .utf8)) ?? ""))
                }
                endpoint = Self.endpoint(in: (try? String(contentsOfFile: coordinatorLog, encoding: .utf8)) ?? "")
                if endpoint == nil { usleep(50_000) }
            }
            let startup = sampler.sample()
            var fleets: [(child: Child, report: String)] = []
            let base = workers / processes, extra = workers % processes
            var first = 0
            for p in 0..<processes {
                let n = base + (p < extra ? 1 : 0)
                let report = "\(work)/fleet-\(p).json"
                let args = ["fleet", "--connect", endpoint!, "--workers", String(n), "--first", String(first), "--train-seconds", String(trainSeconds)]
                fleets.append((try Child.spawn(sibling("worker-swarm"), args, stdout: report, stderr: "\(work)/fleet-\(p).log"), report))
                first += n
            }
            var usage: rusage
            while true {
                if let (_, u) = coordinator.pollUsage() {
                    usage = u
                    break
                }
                sampler.sample()
                usleep(100_000)
            }
            for f in fleets { _ = f.child.wait(timeout: 60) }
            let reports = try fleets.map { try JSONDecoder().decode(Fleet.Report.self, from: Data(contentsOf: URL(fileURLWithPath: $0.report))) }
            let log = (try? String(contentsOfFile: coordinatorLog, encoding: .utf8)) ?? ""
            let table = Summary(
                workers: workers, processes: processes, trainSeconds: trainSeconds, reports: reports, log: log, startup: startup, samples: sampler.samples,
                usage: usage)
            print(table.markdown())
        }

        /// `listening on tcp://…` in the coordinator's first lines.
        static func endpoint(in log: String) -> String? {
            guard let range = log.range(of: "listening on ") else { return nil }
            let rest = log[range.upperBound...]
            return rest.prefix { !" ;(\n".contains($0) }.description
        }
    }

    struct FleetCommand: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "fleet", abstract: "(Internal) Simulated workers of one process; prints their report as JSON.")

        @Option(help: "The coordinator's endpoint.") var connect: String
        @Option(help: "Workers in this process.") var workers: Int
        @Option(help: "Number of the first (names swarm-N).") var first = 0
        @Option(help: "Seconds each attempt holds its slot.") var trainSeconds = 0.0

        func run() throws {
            FileLimit.raiseToHardLimit()
            BLASRuntime.setThreads(1)
            var settings = Fleet.Settings(endpoint: connect, workers: workers, first: first)
            settings.trainSeconds = trainSeconds
            let fleet = try Fleet(settings)
            try fleet.run()
            FileHandle.standardOutput.write(try JSONEncoder().encode(fleet.report))
        }
    }
}

/// An executable next to this one (the build's products directory).
func sibling(_ name: String) -> String {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    let me = n > 0 ? String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
    return (me as NSString).deletingLastPathComponent + "/" + name
}

/// A child process started with `sweep_spawn` (killed if this one dies), reaped with `wait4` so
/// that its own CPU time and peak RSS are known.
struct Child {
    let pid: pid_t

    static func spawn(_ path: String, _ arguments: [String], stdout: String, stderr: String? = nil) throws -> Child {
        let out = open(stdout, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        let err = stderr.map { open($0, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644) } ?? out
        defer {
            close(out)
            if err != out { close(err) }
        }
        guard out >= 0, err >= 0 else { throw ValidationError("cannot create \(stdout)") }
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = ProcessInfo.processInfo.environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in argv + envp { free(p) } }
        let pid = sweep_spawn(path, argv, envp, FileManager.default.currentDirectoryPath, out, err, err, 3)
        guard pid > 0 else { throw ValidationError("cannot start \(path): \(String(cString: strerror(-pid)))") }
        return Child(pid: pid)
    }

    /// The exit status once it has exited (reaped), else nil.
    func poll() -> Int32? { pollUsage().map { $0.status } }

    func pollUsage() -> (status: Int32, usage: rusage)? {
        var status: Int32 = 0
        var usage = rusage()
        return wait4(pid, &status, WNOHANG, &usage) == pid ? (status, usage) : nil
    }

    /// Waits up to `timeout` seconds, then kills it.
    func wait(timeout: Double) -> Int32? {
        let end = now() + timeout
        while now() < end {
            if let s = poll() { return s }
            usleep(50_000)
        }
        kill(pid, SIGKILL)
        return poll()
    }
}

/// The coordinator's CPU time (all threads, and its event loop: the main thread) and memory,
/// read from /proc while it runs.
final class Sampler {
    struct Sample {
        var at: Double
        var cpuSeconds: Double
        var loopCpuSeconds: Double
        var rssBytes: Int
    }

    let pid: pid_t
    private(set) var samples: [Sample] = []
    let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))

    init(pid: pid_t) { self.pid = pid }

    /// utime + stime of a /proc stat file, in seconds.
    func cpu(_ path: String) -> Double? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8), let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After the command: state is field 3, utime 14, stime 15.
        guard fields.count > 13, let u = Double(fields[11]), let s = Double(fields[12]) else { return nil }
        return (u + s) / ticks
    }

    @discardableResult
    func sample() -> Sample? {
        guard let all = cpu("/proc/\(pid)/stat"), let loop = cpu("/proc/\(pid)/task/\(pid)/stat") else { return nil }
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let rss = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }.flatMap { Int($0.split(separator: " ")[1]) } ?? 0
        let s = Sample(at: now(), cpuSeconds: all, loopCpuSeconds: loop, rssBytes: rss * 1024)
        samples.append(s)
        return s
    }
}

WorkerSwarm.main()
