import Analysis
import Dashboard
import Foundation
import SweepCore
import Telemetry
import TestSupport
import Testing

/// The dashboard's server in this process, over real sockets: what it serves, what it pushes as
/// the coordinator's status changes, and what it refuses.
@Suite(.serialized) struct DashboardServerTests {
    /// A coordinator's status with one running trial that has reported `points` epochs.
    static func status(points: Int, sequence: Int, finished: Bool = false) -> LiveStatus {
        var curve: [LiveStatus.Point] = []
        for e in 0..<points {
            let loss = 1 / Double(e + 2)
            curve.append(LiveStatus.Point(epoch: Double(e + 1), trainLoss: loss, testLoss: loss + 0.1, testAccuracy: 0.5, objective: loss + 0.1))
        }
        return LiveStatus(
            sweep: "live<test>", objectiveMetric: "test_loss", maximize: false, search: nil, total: 4, counts: ["running": 1, "queued": 2, "done": 1],
            elapsedSeconds: 12, etaSeconds: 30, best: (id: "feedbeef", value: 0.25),
            workers: [.init(name: "w<1>", host: "node-1", slots: 2, threads: 1, kernel: "Haswell", trials: ["abc123"], silentSeconds: 0.2)],
            departed: [.init(name: "w0", host: "node-0", reason: "lost", at: 5)], workersLost: 1,
            running: [.init(id: "abc123", branch: "sgd", worker: "w<1>", length: 10, unit: "epoch", points: curve)], committed: 1, finished: finished, sequence: sequence)
    }

    func serve(_ feed: LiveFeed?, token: String? = nil, maxStreams: Int = 4, metrics: (@Sendable () -> String)? = nil) throws -> (DashboardServer, Int) {
        var c = DashboardServer.Configuration(address: .init(host: "127.0.0.1", port: 0), token: token)
        c.maxStreams = maxStreams
        c.streamPoll = 0.05
        var settings = DashboardModel.Settings(results: Harness.temporaryDirectory("no-results"))
        settings.liveInterval = 0.05
        let server = try DashboardServer.start(model: DashboardModel(settings: settings, feed: feed), metrics: metrics, configuration: c)
        return (server, Int(server.url.split(separator: ":").last!.dropLast())!)
    }

    /// The `data-points` of the running trial in the last `live` event of an event stream (its
    /// data is JSON: the attribute's quotes are escaped).
    static func pointsInLastLiveEvent(_ stream: String) -> Int? {
        guard let event = stream.components(separatedBy: "event: live\ndata: ").last, event != stream else { return nil }
        guard let range = event.range(of: #"data-points=\\"\d+"#, options: .regularExpression) else { return nil }
        return Int(event[range].filter(\.isNumber))
    }

    @Test func thePageShowsTheStatusEscapedAndTheStreamPushesEachNewOne() throws {
        let feed = LiveFeed()
        feed.publish(Self.status(points: 3, sequence: 1))
        let (server, port) = try serve(feed)
        defer { server.stop() }

        let page = try HTTPProbe.request(port: port, "/")
        #expect(page.status == 200)
        #expect(page.text.contains("<title>Sweep live&lt;test&gt; — dashboard</title>"))
        #expect(page.text.contains("data-trial=\"abc123\" data-points=\"3\""), Comment(rawValue: page.text))
        #expect(page.text.contains("w&lt;1&gt;") && !page.text.contains("w<1>"))
        #expect(page.text.contains("Haswell") && page.text.contains("node-0: lost"))
        #expect(page.text.contains("<figure class=\"chart\" id=\"chart-live-curves\"><svg"))
        #expect(page.text.contains("Content-Security-Policy: default-src 'none'; script-src 'self'"))
        #expect(page.text.contains("<script src=\"dashboard.js\"></script>"))
        let script = try HTTPProbe.request(port: port, "/dashboard.js")
        #expect(script.status == 200 && script.text.contains("new EventSource(\"events\""))

        let stream = try HTTPProbe(port: port)
        try stream.send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        stream.read(timeout: 10) { Self.pointsInLastLiveEvent($0) == 3 && $0.contains("event: report") }
        #expect(stream.text.contains("Content-Type: text/event-stream"))
        #expect(Self.pointsInLastLiveEvent(stream.text) == 3, Comment(rawValue: stream.text))
        // The loop publishes a new status: the open stream carries it, without a new request.
        feed.publish(Self.status(points: 5, sequence: 2))
        stream.read(timeout: 10) { Self.pointsInLastLiveEvent($0) == 5 }
        #expect(Self.pointsInLastLiveEvent(stream.text) == 5)
        feed.publish(Self.status(points: 5, sequence: 3, finished: true))
        stream.read(timeout: 10) { $0.components(separatedBy: "event: live").last!.contains("state finished") }
        #expect(stream.text.components(separatedBy: "event: live").last!.contains("state finished"))
    }

    @Test func aTokenIsRequiredOnceGivenAndComparedWhole() throws {
        let token = "0123456789abcdef0123"
        let (server, port) = try serve(LiveFeed(), token: token, metrics: { "sweep_trials 1\n" })
        defer { server.stop() }
        for target in ["/", "/events", "/metrics"] {
            let response = try HTTPProbe.request(port: port, target)
            #expect(response.status == 401 && response.text.contains("WWW-Authenticate: Bearer"), Comment(rawValue: target))
        }
        #expect(try HTTPProbe.request(port: port, "/?token=\(token.dropLast())").status == 401)
        #expect(try HTTPProbe.request(port: port, "/?token=\(token)x").status == 401)
        #expect(try HTTPProbe.request(port: port, "/", headers: ["Authorization: Bearer wrong-token-wrong-token"]).status == 401)
        #expect(try HTTPProbe.request(port: port, "/?token=\(token)").status == 200)
        let metrics = try HTTPProbe.request(port: port, "/metrics", headers: ["Authorization: Bearer \(token)"])
        #expect(metrics.status == 200 && metrics.text.hasSuffix("sweep_trials 1\n"))
        // The assets hold nothing of the sweep: the page can load them without the token.
        #expect(try HTTPProbe.request(port: port, "/dashboard.css").status == 200)
        #expect(try HTTPProbe.request(port: port, "/healthz").status == 200)
    }

    @Test func offTheLoopbackATokenIsRequiredAndItsFormChecked() throws {
        #expect(throws: DashboardError.self) { try DashboardServer.check(.init(address: .init(host: "0.0.0.0", port: 0))) }
        #expect(throws: DashboardError.self) { try DashboardServer.check(.init(address: .init(host: "0.0.0.0", port: 0), token: "short")) }
        #expect(throws: DashboardError.self) { try DashboardServer.check(.init(address: .init(host: "0.0.0.0", port: 0), token: "has spaces in it, sixteen+")) }
        try DashboardServer.check(.init(address: .init(host: "0.0.0.0", port: 0), token: "0123456789abcdef"))
        try DashboardServer.check(.init(address: .init(host: "127.0.0.2", port: 0)))
        try DashboardServer.check(.init(address: .init(host: "::1", port: 0)))
        #expect(!DashboardAddress(host: "127.evil.com", port: 1).isLoopback)
        #expect(!DashboardAddress(host: "10.0.0.1", port: 1).isLoopback)
    }

    @Test func readOnlyAndBounded() throws {
        let (server, port) = try serve(LiveFeed(), maxStreams: 1, metrics: nil)
        defer { server.stop() }
        let post = try HTTPProbe.request(port: port, "/", method: "POST", headers: ["Content-Length: 2"], body: "{}")
        #expect(post.status == 405 && post.text.contains("Allow: GET"))
        #expect(try HTTPProbe.request(port: port, "/events", method: "DELETE").status == 405)
        #expect(try HTTPProbe.request(port: port, "/", method: "GET", headers: ["Content-Length: 5"], body: "hello").status == 413)
        #expect(try HTTPProbe.request(port: port, "/?q=" + String(repeating: "a", count: 3000)).status == 414)
        #expect(try HTTPProbe.request(port: port, "/metrics").status == 404)
        #expect(try HTTPProbe.request(port: port, "/../../etc/passwd").status == 404)
        // Headers past the limit: the connection is refused a response or closed, never served.
        let huge = try HTTPProbe.request(port: port, "/", headers: (0..<40).map { "X-Filler-\($0): " + String(repeating: "b", count: 1000) })
        #expect(huge.status != 200)

        // One stream at a time here: a second is turned away until the first ends.
        let first = try HTTPProbe(port: port)
        try first.send("GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        first.read(timeout: 10) { $0.contains("event: live") }
        let second = try HTTPProbe.request(port: port, "/events")
        #expect(second.status == 503 && second.text.contains("Retry-After: 10"))
    }

    @Test func addressesAndTheOptionalValue() throws {
        #expect(try DashboardAddress(parsing: "0.0.0.0:8700") == .init(host: "0.0.0.0", port: 8700))
        #expect(try DashboardAddress(parsing: ":8700") == .init(host: "127.0.0.1", port: 8700))
        #expect(try DashboardAddress(parsing: "8700") == .init(host: "127.0.0.1", port: 8700))
        #expect(try DashboardAddress(parsing: "[::1]:8700") == .init(host: "::1", port: 8700))
        #expect(try DashboardAddress(parsing: "localhost") == .init(host: "localhost", port: 0))
        #expect(throws: DashboardError.self) { try DashboardAddress(parsing: "host:99999") }
        #expect(throws: DashboardError.self) { try DashboardAddress(parsing: "a b:80") }
        let d = "127.0.0.1:0"
        #expect(DashboardAddress.fillingDefaults(of: ["--dashboard"], in: ["start", "s.yaml", "--dashboard"]) == ["start", "s.yaml", "--dashboard", d])
        #expect(DashboardAddress.fillingDefaults(of: ["--dashboard"], in: ["start", "--dashboard", "s.yaml"]) == ["start", "--dashboard", d, "s.yaml"])
        #expect(DashboardAddress.fillingDefaults(of: ["--dashboard"], in: ["start", "--dashboard", "--plain"]) == ["start", "--dashboard", d, "--plain"])
        #expect(DashboardAddress.fillingDefaults(of: ["--dashboard"], in: ["--dashboard", "0.0.0.0:80", "s.yaml"]) == ["--dashboard", "0.0.0.0:80", "s.yaml"])
        #expect(DashboardAddress.fillingDefaults(of: ["--serve"], in: ["results/x", "--serve", "8700"]) == ["results/x", "--serve", "8700"])
    }

    @Test func tokensCompareWholeInTimeOfTheExpectedLength() {
        let expected = Array("0123456789abcdef".utf8)
        #expect(constantTimeEqual(expected, expected))
        #expect(!constantTimeEqual(Array("0123456789abcdeF".utf8), expected))
        #expect(!constantTimeEqual(Array("0123456789abcde".utf8), expected))
        #expect(!constantTimeEqual(Array("0123456789abcdef0".utf8), expected))
        #expect(!constantTimeEqual([], expected))
    }
}
