import Foundation
import Glibc
import Telemetry
import TestSupport
import Testing

/// A real coordinator with `--dashboard`, its local worker and program trials (python3 with the
/// standard library): /metrics scraped while the sweep runs, the event stream's curves growing,
/// and its log lines as JSON.
@Suite(.serialized) struct LiveSweepTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// `epochs` epochs of `sleep` seconds each, reporting a falling loss.
    static let program = """
        import time
        import sweep_report as sweep
        cfg = sweep.config()
        for epoch in range(1, cfg["epochs"] + 1):
            time.sleep(cfg["sleep"])
            loss = 1.0 / (1.0 + cfg["lr"] * epoch)
            sweep.report(epoch=epoch, train_loss=loss, test_loss=loss + 0.1, test_accuracy=1 - loss / 2)
        """

    static func sweep(in dir: String, epochs: Int, sleep: Double) -> String {
        Harness.write(program, to: "\(dir)/train.py")
        Harness.write(
            """
            name: live
            objective: {metric: test_loss}
            base:
              program: [python3, train.py]
              env: {PYTHONPATH: \(repository)/python}
              epochs: \(epochs)
              sleep: \(sleep)
            grid: {lr: [0.5, 1.0, 2.0]}
            """, to: "\(dir)/sweep.yaml")
        return "\(dir)/sweep.yaml"
    }

    /// The port of the dashboard a coordinator's log announces.
    static func dashboardPort(_ log: String) -> Int? {
        guard let range = log.range(of: #"dashboard: http://127\.0\.0\.1:\d+/"#, options: .regularExpression) else { return nil }
        return Int(log[range].split(separator: ":").last!.dropLast())
    }

    static func scrape(_ port: Int) -> String? {
        guard let r = try? HTTPProbe.request(port: port, "/metrics", timeout: 5), r.status == 200 else { return nil }
        return r.text.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
    }

    @Test func metricsAreScrapedWhileTheSweepRunsAndLogLinesAreJSON() throws {
        let dir = Harness.temporaryDirectory("live-sweep")
        let log = "\(dir)/coordinator.log"
        let coordinator = try Harness.startCoordinator(
            [Self.sweep(in: dir, epochs: 8, sleep: 0.25), "--local-workers", "1", "--out", "\(dir)/out", "--dashboard", "--log-format", "json"], log: log)
        defer { Harness.stop(coordinator) }
        let port = try #require(Self.dashboardPort(Harness.read(log)), Comment(rawValue: Harness.read(log)))
        typealias N = SweepMetrics.Name
        func value(_ series: String, _ text: String) -> Double? { TelemetryTests.value(series, in: text) }

        // While a trial runs: one worker, one lease, messages flowing, and its curve growing on
        // the event stream without a new request.
        var running: String?
        let deadline = Date().addingTimeInterval(60)
        while running == nil && Date() < deadline && coordinator.isRunning {
            if let text = Self.scrape(port), value("\(N.trials){status=\"running\"}", text) == 1 { running = text } else { usleep(100_000) }
        }
        let during = try #require(running, Comment(rawValue: Harness.read(log)))
        #expect(value(N.workersConnected, during) == 1)
        #expect(value(N.leasesOutstanding, during) == 1)
        #expect(value(N.trialsPlanned, during) == 3)
        #expect((value(N.messagesReceived, during) ?? 0) > 0 && (value(N.messagesSent, during) ?? 0) > 0)
        let stream = try HTTPProbe(port: port)
        try stream.send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        stream.read(timeout: 20) { (DashboardServerTests.pointsInLastLiveEvent($0) ?? 0) >= 2 }
        let first = try #require(DashboardServerTests.pointsInLastLiveEvent(stream.text), Comment(rawValue: stream.text))
        stream.read(timeout: 20) { (DashboardServerTests.pointsInLastLiveEvent($0) ?? 0) > first }
        #expect((DashboardServerTests.pointsInLastLiveEvent(stream.text) ?? 0) > first)

        // Once a trial is committed: its status, and the commit latency's histogram.
        var committed: String?
        while committed == nil && Date() < deadline && coordinator.isRunning {
            if let text = Self.scrape(port), (value("\(N.trials){status=\"done\"}", text) ?? 0) >= 1 { committed = text } else { usleep(100_000) }
        }
        let after = try #require(committed, Comment(rawValue: Harness.read(log)))
        #expect((value("\(N.commitSeconds)_count", after) ?? 0) >= 1)
        #expect((value("\(N.indexRebuildSeconds)_count", after) ?? 0) >= 1)

        #expect(Harness.wait(coordinator, timeout: 90) && coordinator.terminationStatus == 0, Comment(rawValue: Harness.read(log)))
        // Every line is a JSON object; the messages keep their wording.
        var messages: [String] = []
        for line in Harness.read(log).split(separator: "\n") {
            let object = try #require(try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String], Comment(rawValue: String(line)))
            #expect(object["logger"] == "sweep-coordinator" && object["level"] != nil && object["time"] != nil)
            messages.append(object["message"] ?? "")
        }
        #expect(messages.contains { $0.hasPrefix("sweep live: 3 trials, 3 to run; listening on tcp://127.0.0.1:") })
        #expect(messages.contains { $0.hasPrefix("sweep live: 3 done in ") })
        #expect(messages.contains { $0.hasPrefix("trial ") && $0.contains(" [main] done after 8 epochs: train_loss ") })
    }
}
