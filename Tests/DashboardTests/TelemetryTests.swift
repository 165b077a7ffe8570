import Foundation
import Logging
import Telemetry
import Testing

/// The metrics' samples as Prometheus text, and the log lines' two formats.
@Suite struct TelemetryTests {
    /// The value of one series in an exposition, e.g. `sweep_trials{status="done"}`.
    static func value(_ series: String, in text: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(series + " ") }.flatMap { Double($0.split(separator: " ").last!) }
    }

    @Test func samplesBecomeLevelsAndGrowingCounters() {
        let metrics = SweepMetrics()
        var s = SweepMetrics.Sample()
        s.trials = ["done": 3, "running": 2]
        s.trialsPlanned = 10
        s.leasesOutstanding = 2
        s.workersConnected = 2
        s.messagesReceived = 40
        s.messagesSent = 30
        s.messagesRejected = ["decode": 2]
        metrics.record(s)
        s.trials = ["done": 5]
        s.messagesReceived = 55
        s.messagesRejected = ["decode": 2, "rate": 7]
        s.workersLost = 1
        metrics.record(s)
        metrics.observeCommit(seconds: 0.003)
        metrics.observeCommit(seconds: 0.2)
        metrics.observeIndexRebuild(seconds: 0.01)
        let text = metrics.exposition()
        typealias N = SweepMetrics.Name
        #expect(Self.value("\(N.trials){status=\"done\"}", in: text) == 5)
        // A status no trial has any more reads 0, not its last count.
        #expect(Self.value("\(N.trials){status=\"running\"}", in: text) == 0)
        #expect(Self.value(N.trialsPlanned, in: text) == 10)
        #expect(Self.value(N.messagesReceived, in: text) == 55)
        #expect(Self.value(N.messagesSent, in: text) == 30)
        #expect(Self.value("\(N.messagesRejected){reason=\"decode\"}", in: text) == 2)
        #expect(Self.value("\(N.messagesRejected){reason=\"rate\"}", in: text) == 7)
        #expect(Self.value(N.workersLost, in: text) == 1)
        #expect(Self.value("\(N.commitSeconds)_count", in: text) == 2)
        #expect(Self.value("\(N.commitSeconds)_bucket{le=\"0.005\"}", in: text) == 1)
        #expect(Self.value("\(N.indexRebuildSeconds)_count", in: text) == 1)
        #expect(text.contains("# TYPE \(N.commitSeconds) histogram"))
        #expect(text.contains("# TYPE \(N.messagesReceived) counter"))
    }

    @Test func plainLinesKeepTheirWordingAndJSONLinesParse() throws {
        let time = Date(timeIntervalSince1970: 1_700_000_000.25)
        let message = "worker w1 on \"node\"\tsilent for 6 s: declared lost\n"
        #expect(LineLogHandler.line(message, level: .warning, label: "sweep-coordinator", metadata: [:], format: .plain, time: time) == message)
        let line = LineLogHandler.line(message, level: .warning, label: "sweep-coordinator", metadata: ["trial": "abc"], format: .json, time: time)
        #expect(!line.contains("\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        #expect(object == ["time": "2023-11-14T22:13:20.250Z", "level": "warning", "logger": "sweep-coordinator", "message": message, "trial": "abc"])
    }
}
