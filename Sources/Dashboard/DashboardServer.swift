import Analysis
import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The dashboard's HTTP server (Hummingbird, on threads of its own: an event-loop thread and a
/// `ThreadExecutor` for its tasks, never the coordinator's event loop): the page, its script and style,
/// `/events` (server-sent events: the `DashboardModel`'s fragments as they change), `/metrics`
/// (Prometheus' text format) and `/healthz`.
///
/// Read-only and bounded: only GET, no request body, a short URI and small headers, at most
/// `maxConnections` connections and `maxStreams` event streams at once, idle connections closed.
/// With a token every request but the static assets and `/healthz` must carry it (`?token=` or
/// `Authorization: Bearer`), compared in constant time; an address off the loopback needs one.
/// There is no TLS: put a reverse proxy in front (docs/deployment-and-security.md).
public final class DashboardServer: @unchecked Sendable {
    public struct Configuration: Sendable {
        public var address: DashboardAddress
        public var token: String?
        public var maxConnections = DashboardServer.defaultMaxConnections
        public var maxStreams = DashboardServer.defaultMaxStreams
        /// Seconds between two looks at the model for a stream, and between keep-alive comments.
        public var streamPoll = 0.25
        public var keepAliveSeconds = 15.0
        /// Seconds a connection may stay idle (no request in progress).
        public var idleTimeoutSeconds = 30.0

        public init(address: DashboardAddress, token: String? = nil) {
            self.address = address
            self.token = token
        }
    }

    public static let defaultMaxConnections = 64
    public static let defaultMaxStreams = 16
    /// Request limits: the URI, one header field, all header fields, how many.
    public static let maxURIBytes = 2048
    public static let maxHeaderFieldBytes = 8 * 1024
    public static let maxHeaderBytes = 16 * 1024
    public static let maxHeaderFields = 64
    /// What a token must look like: 16 to 256 characters of A–Z, a–z, 0–9, '-', '_', '.', '~'
    /// (it travels in URLs).
    public static let tokenLength = 16...256

    /// Where it listens, e.g. http://127.0.0.1:41234/ (the port the system chose for port 0).
    public let url: String
    public let configuration: Configuration
    private let group: MultiThreadedEventLoopGroup
    private let executor: ThreadExecutor
    private let services: ServiceGroup
    private let task: Task<Void, any Error>
    private let streams: StreamGate

    /// Starts serving and returns once the socket is bound (or throws why it could not be).
    /// `logger`: the server's own lines (by default warnings and errors only).
    public static func start(
        model: DashboardModel, metrics: (@Sendable () -> String)?, configuration: Configuration, logger: Logger = DashboardServer.quietLogger
    ) throws -> DashboardServer {
        try check(configuration)
        return try DashboardServer(model: model, metrics: metrics, configuration: configuration, logger: logger)
    }

    public static var quietLogger: Logger {
        var logger = Logger(label: "dashboard")
        logger.logLevel = .warning
        return logger
    }

    /// `--dashboard-token`'s value: the token itself, or @FILE (the file's first line, without
    /// surrounding white space), which keeps it out of `ps`.
    public static func token(fromArgument value: String) throws -> String {
        guard value.hasPrefix("@") else { return value }
        let path = String(value.dropFirst())
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw DashboardError("--dashboard-token \(value): cannot read \(path)") }
        return String(text.split(whereSeparator: \.isNewline).first ?? "").trimmingCharacters(in: .whitespaces)
    }

    /// Why this configuration is refused, if it is.
    public static func check(_ configuration: Configuration) throws {
        if let token = configuration.token {
            let allowed = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
            guard tokenLength.contains(token.count), token.allSatisfy(allowed.contains) else {
                throw DashboardError(
                    "the dashboard token must be \(tokenLength.lowerBound) to \(tokenLength.upperBound) characters of A-Z, a-z, 0-9, '-', '_', '.', '~' (e.g. from `openssl rand -hex 16`)")
            }
        } else if !configuration.address.isLoopback {
            throw DashboardError(
                "the dashboard on \(configuration.address) is reachable from other hosts: give --dashboard-token (read-only access for whoever holds it; put TLS in front with a reverse proxy), or serve on 127.0.0.1"
            )
        }
        guard configuration.maxConnections >= 1, configuration.maxStreams >= 1 else { throw DashboardError("the dashboard needs at least one connection and one stream") }
    }

    private init(model: DashboardModel, metrics: (@Sendable () -> String)?, configuration: Configuration, logger: Logger) throws {
        self.configuration = configuration
        let streams = StreamGate(limit: configuration.maxStreams)
        self.streams = streams
        let router = Router()
        router.add(middleware: RequestGuard(token: configuration.token.map { Array($0.utf8) }))
        let page = Self.headers(contentType: "text/html; charset=utf-8")
        router.get("/") { _, _ in Response(status: .ok, headers: page, body: .init(byteBuffer: ByteBuffer(string: model.page()))) }
        let css = Self.headers(contentType: "text/css; charset=utf-8"), script = Self.headers(contentType: "text/javascript; charset=utf-8")
        router.get("/dashboard.css") { _, _ in Response(status: .ok, headers: css, body: .init(byteBuffer: ByteBuffer(string: DashboardModel.css))) }
        router.get("/dashboard.js") { _, _ in Response(status: .ok, headers: script, body: .init(byteBuffer: ByteBuffer(string: DashboardModel.script))) }
        router.get("/healthz") { _, _ in Response(status: .ok, headers: Self.headers(contentType: "text/plain; charset=utf-8"), body: .init(byteBuffer: ByteBuffer(string: "ok\n"))) }
        if let metrics {
            let text = Self.headers(contentType: "text/plain; version=0.0.4; charset=utf-8")
            router.get("/metrics") { _, _ in Response(status: .ok, headers: text, body: .init(byteBuffer: ByteBuffer(string: metrics()))) }
        }
        let poll = configuration.streamPoll, keepAlive = configuration.keepAliveSeconds
        router.get("/events") { _, _ in
            guard streams.enter() else {
                var headers = Self.headers(contentType: "text/plain; charset=utf-8")
                headers[.retryAfter] = "10"
                return Response(
                    status: .serviceUnavailable, headers: headers,
                    body: .init(byteBuffer: ByteBuffer(string: "too many open event streams (\(configuration.maxStreams)); try again later\n")))
            }
            var headers = Self.headers(contentType: "text/event-stream; charset=utf-8")
            headers[.init("X-Accel-Buffering")!] = "no"
            return Response(
                status: .ok, headers: headers,
                body: ResponseBody { writer in
                    defer { streams.leave() }
                    var sent = (live: -1, report: -1)
                    var quiet = 0.0
                    try await writer.write(ByteBuffer(string: "retry: 2000\n\n"))
                    while !streams.isClosed && !Task.isCancelled {
                        let update = model.refresh()
                        var text = ""
                        if update.reportVersion != sent.report {
                            text += "event: report\ndata: \(update.report)\n\n"
                            sent.report = update.reportVersion
                        }
                        if update.liveVersion != sent.live {
                            text += "event: live\ndata: \(update.live)\n\n"
                            sent.live = update.liveVersion
                        }
                        if text.isEmpty && quiet >= keepAlive { text = ": keep-alive\n\n" }
                        if text.isEmpty {
                            quiet += poll
                        } else {
                            quiet = 0
                            try await writer.write(ByteBuffer(string: text))
                        }
                        try await Task.sleep(for: .milliseconds(Int(poll * 1000)))
                    }
                    try await writer.finish(nil)
                })
        }

        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let executor = ThreadExecutor(threads: 2, name: "dashboard")
        self.executor = executor
        let bound = BoundAddress()
        let app = Application(
            router: router,
            server: .http1(
                configuration: .init(
                    idleTimeout: .seconds(Int64(configuration.idleTimeoutSeconds)),
                    httpDecoderConfiguration: .init(maxHeaderFieldSize: Self.maxHeaderFieldBytes, maxHeaderListSize: Self.maxHeaderBytes, maxHeaderFieldCount: Self.maxHeaderFields))),
            configuration: .init(
                address: .hostname(configuration.address.host, port: configuration.address.port), serverName: nil, backlog: 64,
                availableConnectionsDelegate: MaximumAvailableConnections(configuration.maxConnections, logger: logger)),
            onServerRunning: { channel in bound.set(.success(channel.localAddress?.port ?? configuration.address.port)) },
            eventLoopGroupProvider: .shared(group), logger: logger)
        // No signal handling of its own: the coordinator's SignalWatcher owns SIGINT and SIGTERM.
        let services = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: [], logger: logger))
        self.services = services
        task = Task(executorPreference: executor) {
            do { try await services.run() } catch {
                bound.set(.failure(error))
                throw error
            }
        }
        switch bound.wait(seconds: 30) {
        case .success(let port)?:
            url = "http://\(configuration.address.hostForURL):\(port)/"
        case .failure(let error)?:
            try? group.syncShutdownGracefully()
            executor.shutdown()
            throw DashboardError("the dashboard cannot listen on \(configuration.address): \(error)")
        case nil:
            task.cancel()
            executor.shutdown()
            throw DashboardError("the dashboard did not start listening on \(configuration.address) within 30 s")
        }
    }

    /// Ends the event streams, stops the server and waits (at most a few seconds) for it. With
    /// streams open it first waits `linger` seconds, so they send the last update.
    public func stop(linger: Double = 0) {
        if linger > 0 && streams.count > 0 { usleep(UInt32(linger * 1_000_000)) }
        streams.close()
        let done = DispatchSemaphore(value: 0)
        let task = self.task, services = self.services
        Task(executorPreference: executor) {
            await services.triggerGracefulShutdown()
            _ = await task.result
            done.signal()
        }
        if done.wait(timeout: .now() + 5) == .timedOut { task.cancel() }
        try? group.syncShutdownGracefully()
        executor.shutdown()
    }

    /// Headers of every response: its type, never cached, and a content security policy that
    /// allows the page's own script and style and nothing from anywhere else.
    static func headers(contentType: String) -> HTTPFields {
        var h = HTTPFields()
        h[.contentType] = contentType
        h[.cacheControl] = "no-store"
        h[.init("X-Content-Type-Options")!] = "nosniff"
        h[.init("Referrer-Policy")!] = "no-referrer"
        h[.init("X-Frame-Options")!] = "DENY"
        h[.contentSecurityPolicy] =
            "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        return h
    }
}

/// Every request, before its route: GET only, no body, a bounded URI, and the token.
struct RequestGuard<Context: RequestContext>: RouterMiddleware {
    let token: [UInt8]?
    /// Served without the token: they hold nothing of the sweep.
    static var open: Set<String> { ["/dashboard.css", "/dashboard.js", "/healthz"] }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.method == .get else {
            var headers = DashboardServer.headers(contentType: "text/plain; charset=utf-8")
            headers[.allow] = "GET"
            return Self.refuse(.methodNotAllowed, "read-only: only GET is served\n", headers: headers)
        }
        if request.uri.string.utf8.count > DashboardServer.maxURIBytes { return Self.refuse(.uriTooLong, "URI longer than \(DashboardServer.maxURIBytes) bytes\n") }
        if let length = request.headers[.contentLength], length != "0" { return Self.refuse(.contentTooLarge, "requests have no body here\n") }
        if request.headers[.transferEncoding] != nil { return Self.refuse(.contentTooLarge, "requests have no body here\n") }
        if let token, !Self.open.contains(request.uri.path) {
            guard let given = Self.presentedToken(request), constantTimeEqual(Array(given.utf8), token) else {
                var headers = DashboardServer.headers(contentType: "text/plain; charset=utf-8")
                headers[.wwwAuthenticate] = "Bearer realm=\"sweep dashboard\""
                return Self.refuse(.unauthorized, "this dashboard needs its token: ?token=… or Authorization: Bearer …\n", headers: headers)
            }
        }
        return try await next(request, context)
    }

    static func presentedToken(_ request: Request) -> String? {
        if let header = request.headers[.authorization], header.hasPrefix("Bearer ") { return String(header.dropFirst("Bearer ".count)) }
        return request.uri.queryParameters["token"].map(String.init)
    }

    static func refuse(_ status: HTTPResponse.Status, _ text: String, headers: HTTPFields = DashboardServer.headers(contentType: "text/plain; charset=utf-8")) -> Response {
        Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}

/// Whether `given` equals `expected`, in time that depends on `expected`'s length alone.
public func constantTimeEqual(_ given: [UInt8], _ expected: [UInt8]) -> Bool {
    var difference: UInt8 = given.count == expected.count ? 0 : 1
    for i in expected.indices { difference |= (i < given.count ? given[i] : 0) ^ expected[i] }
    return difference == 0
}

/// The open event streams, at most `limit`; `close` ends them all.
final class StreamGate: @unchecked Sendable {
    private let lock = NSLock()
    private let limit: Int
    private var open = 0
    private var closed = false

    init(limit: Int) { self.limit = limit }

    func enter() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard !closed, open < limit else { return false }
        open += 1
        return true
    }

    func leave() {
        lock.lock()
        open -= 1
        lock.unlock()
    }

    func close() {
        lock.lock()
        closed = true
        lock.unlock()
    }

    var isClosed: Bool {
        lock.lock()
        defer { lock.unlock() }
        return closed
    }

    var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return open
    }
}

/// The port the server bound, or why it could not, handed from its task to `start`.
final class BoundAddress: @unchecked Sendable {
    private let condition = NSCondition()
    private var result: Result<Int, any Error>?

    func set(_ value: Result<Int, any Error>) {
        condition.lock()
        if result == nil { result = value }
        condition.broadcast()
        condition.unlock()
    }

    func wait(seconds: Double) -> Result<Int, any Error>? {
        let deadline = Date().addingTimeInterval(seconds)
        condition.lock()
        defer { condition.unlock() }
        while result == nil && condition.wait(until: deadline) {}
        return result
    }
}

public struct DashboardError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
