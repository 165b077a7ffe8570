import Foundation
import Glibc

/// The fleets' reports, the coordinator's log and its resource use, as the table of
/// docs/performance.md ("A thousand workers").
struct Summary {
    let workers: Int
    let processes: Int
    let trainSeconds: Double
    let reports: [Fleet.Report]
    let log: String
    /// The coordinator when it started listening (its sweep expanded), then every 100 ms.
    let startup: Sampler.Sample?
    let samples: [Sampler.Sample]
    let usage: rusage

    /// The p-th percentile (0…100) of the values, nearest rank.
    static func percentile(_ values: [Float], _ p: Double) -> Double {
        guard !values.isEmpty else { return .nan }
        let sorted = values.sorted()
        let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
        return Double(sorted[min(sorted.count, max(1, rank)) - 1])
    }

    func count(_ phrase: String) -> Int { log.components(separatedBy: phrase).count - 1 }

    /// The coordinator's own "event loop:" line: its passes' and its heartbeats' lateness
    /// ("p50 a / p99 b / max c ms" each, as `DurationHistogram.summary` prints them).
    func loopLine() -> (passes: String, heartbeats: String) {
        guard let line = log.split(separator: "\n").last(where: { $0.hasPrefix("event loop: ") }) else { return ("n/a", "n/a") }
        let parts = line.components(separatedBy: "p50 ").dropFirst().map { "p50 " + $0.prefix { $0 != ";" && $0 != "\n" } }
        func short(_ s: String) -> String {
            s.replacingOccurrences(of: "p50 ", with: "").replacingOccurrences(of: " p99 ", with: " ").replacingOccurrences(of: " max ", with: " ").replacingOccurrences(of: " ms", with: "")
        }
        return parts.count == 2 ? (short(parts[0]), short(parts[1])) : ("n/a", "n/a")
    }

    func markdown() -> String {
        let sent = reports.reduce(0) { $0 + $1.sent.values.reduce(0, +) }
        let received = reports.reduce(0) { $0 + $1.received.values.reduce(0, +) }
        let messages = sent + received
        let lateness = reports.flatMap(\.heartbeatLatenessMs)
        let leases = reports.flatMap(\.leaseLatencyMs)
        let welcomes = reports.flatMap(\.welcomeLatencyMs)
        let trials = reports.reduce(0) { $0 + ($1.received["TRIAL"] ?? 0) }
        let results = reports.reduce(0) { $0 + ($1.sent["RESULT"] ?? 0) }
        // The sweep's own seconds, from the coordinator's last line ("… in 81.2 s; results in …").
        let seconds = log.range(of: " in [0-9.]+ s; results", options: .regularExpression).flatMap { Double(log[$0].dropFirst(4).prefix { $0 != " " }) } ?? .nan
        let cpuAll = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        let cpuServing = cpuAll - (startup?.cpuSeconds ?? 0)
        let loopServing = (samples.last?.loopCpuSeconds ?? .nan) - (startup?.loopCpuSeconds ?? 0)
        let peakMB = Double(usage.ru_maxrss) / 1024
        let perMessage = { (cpu: Double) in String(format: "%.1f", cpu / Double(messages) * 1e6) }
        let f1 = { (x: Double) in String(format: "%.1f", x) }
        let loop = loopLine()
        var lines: [String] = []
        lines.append(
            "| workers (processes), s per attempt | trials | sweep s | trials/s | messages/s | heartbeats sent late, p50 / p99 / max (ms) | loop passes, p50 / p99 / max (ms) | heartbeat gaps past 1 beat at the workers, p50 / p99 / max (ms) | lease latency p50 / p99 (ms) | coordinator CPU s: all threads / event loop | CPU µs per message: all / loop | peak RSS (MB) | workers lost |"
        )
        lines.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        lines.append(
            "| \(workers) (\(processes)), \(trainSeconds) | \(results.formatted()) | \(f1(seconds)) | \(Int(Double(results) / seconds).formatted()) | \(Int(Double(messages) / seconds).formatted()) | "
                + "\(loop.heartbeats) | \(loop.passes) | "
                + "\(f1(Self.percentile(lateness, 50))) / \(f1(Self.percentile(lateness, 99))) / \(f1(Self.percentile(lateness, 100))) | "
                + "\(f1(Self.percentile(leases, 50))) / \(f1(Self.percentile(leases, 99))) | \(f1(cpuServing)) / \(f1(loopServing)) | "
                + "\(perMessage(cpuServing)) / \(perMessage(loopServing)) | \(Int(peakMB)) | \(count("declared lost")) |")
        lines.append("")
        lines.append(
            "\(messages.formatted()) messages (\(received.formatted()) from the coordinator: \(trials.formatted()) TRIAL, "
                + "\(reports.reduce(0) { $0 + ($1.received["HEARTBEAT"] ?? 0) }.formatted()) HEARTBEAT; \(sent.formatted()) to it: "
                + "\(results.formatted()) RESULT, \(reports.reduce(0) { $0 + ($1.sent["PROGRESS"] ?? 0) }.formatted()) PROGRESS, "
                + "\(reports.reduce(0) { $0 + ($1.sent["HEARTBEAT"] ?? 0) }.formatted()) HEARTBEAT); \(lateness.count.formatted()) heartbeat gaps, "
                + "\(leases.count.formatted()) leases timed; READY → WELCOME p99 \(f1(Self.percentile(welcomes, 99))) ms.")
        lines.append(
            "Coordinator start-up (expanding the sweep, binding): \(f1(startup?.cpuSeconds ?? .nan)) CPU s, not counted above; "
                + "each attempt held its slot \(trainSeconds) s; REGISTER sent to a worker it had forgotten: \(reports.reduce(0) { $0 + ($1.received["REGISTER"] ?? 0) }); "
                + "rejected messages: \(count("rejected")); the simulators' longest pass: \(f1(reports.map(\.longestPassMs).max() ?? .nan)) ms.")
        return lines.joined(separator: "\n")
    }
}
