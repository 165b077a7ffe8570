import CZeroMQ
import Foundation
import Glibc

/// The coordinator's door: on its own thread, the ZAP handler (RFC 27) that admits only CURVE
/// clients whose public key is in the allow-list, and a monitor of the coordinator's socket that
/// notices handshakes that fail before ZAP is asked (plaintext clients, wrong coordinator key,
/// not ZeroMQ at all). It never touches the coordinator's socket after `init`; the event loop
/// collects its log lines with `take()`.
///
/// It fails closed: the socket enforces its ZAP domain, so if this thread stops (or never
/// started) libzmq refuses every client instead of admitting them.
public final class Gatekeeper: @unchecked Sendable {
    public static let zapEndpoint = "inproc://zeromq.zap.01"
    public static let domain = "optimizer-sweep"

    /// What the event loop learns since its last `take()`.
    public struct Report: Sendable {
        public var lines: [String] = []
        public var refused = 0
    }

    private let lock = NSLock()
    private var report = Report()
    private var stopping = false
    private var error: (any Error)?
    private let finished = DispatchSemaphore(value: 0)
    private var started = false

    /// Starts watching `socket` (before it binds) and, with an allow-list, answering ZAP requests.
    /// `allowList == nil`: a plaintext socket, only watched.
    public init(context: Context, socket: Socket, allowList: AllowList?) throws {
        let monitorEndpoint = "inproc://sweep-gatekeeper-monitor-\(UUID().uuidString)"
        try socket.monitor(monitorEndpoint, events: [.accepted, .disconnected, .handshakeFailedNoDetail, .handshakeFailedProtocol, .handshakeFailedAuth])
        let ready = DispatchSemaphore(value: 0)
        let thread = Thread { [self] in
            var rep: Socket?
            var pair: Socket?
            do {
                let p = try Socket(context, .pair)
                try p.connect(monitorEndpoint)
                pair = p
                if allowList != nil {
                    let r = try Socket(context, .rep)
                    try r.bind(Self.zapEndpoint)
                    rep = r
                }
            } catch {
                lock.withLock { self.error = error }
            }
            ready.signal()
            if let pair, lock.withLock({ self.error == nil }) {
                var door = Door(allowList: allowList)
                do {
                    while !lock.withLock({ stopping }) {
                        let items: [Poller.Item] = rep.map { [.socket(pair), .socket($0)] } ?? [.socket(pair)]
                        let readable = try Poller.poll(items, timeout: 100)
                        if readable.contains(1), let rep, let request = try rep.receive(wait: false) {
                            try rep.send(door.answer(request))
                        }
                        while let frames = try pair.receive(wait: false) {
                            if let event = MonitorEvent(frames: frames) { door.observe(event) }
                        }
                        let (lines, refused) = door.drain()
                        if !lines.isEmpty || refused > 0 {
                            lock.withLock {
                                report.lines += lines
                                report.refused += refused
                            }
                        }
                    }
                } catch {
                    lock.withLock { self.error = error }
                }
            }
            rep?.close()
            pair?.close()
            finished.signal()
        }
        thread.name = "zap-handler"
        thread.start()
        started = true
        ready.wait()
        if let error = lock.withLock({ self.error }) {
            stop()
            throw error
        }
    }

    /// Log lines and the number of refused connections since the last call. Throws if the
    /// thread has failed (no new worker could join: the coordinator should stop).
    public func take() throws -> Report {
        try lock.withLock {
            if let error { throw error }
            defer { report = Report() }
            return report
        }
    }

    /// Stops the thread and closes its sockets (call after closing the watched socket).
    public func stop() {
        guard started else { return }
        started = false
        lock.withLock { stopping = true }
        finished.wait()
    }
}

/// The gatekeeper's decisions and bookkeeping, free of threads and sockets.
struct Door {
    let allowList: AllowList?
    var lines: [String] = []
    var refused = 0
    /// Peer addresses of accepted connections, by descriptor (read when the event arrives).
    var peers: [UInt32: String] = [:]
    /// The failed handshake whose DISCONNECTED event (with the descriptor) comes next.
    var failure: String??
    /// Repeated refusals of one host for one reason are logged once per `quietSeconds`.
    var lastLogged: [String: (time: Double, suppressed: Int)] = [:]
    let quietSeconds = 10.0

    init(allowList: AllowList?) { self.allowList = allowList }

    mutating func drain() -> ([String], Int) {
        defer {
            lines.removeAll()
            refused = 0
        }
        return (lines, refused)
    }

    /// Answers one ZAP request: 200 for an allowed CURVE key, 400 for anything else.
    mutating func answer(_ frames: [[UInt8]]) -> [[UInt8]] {
        func reply(_ id: [UInt8], _ status: String, _ text: String, user: String = "") -> [[UInt8]] {
            [Array("1.0".utf8), id, Array(status.utf8), Array(text.utf8), Array(user.utf8), []]
        }
        func text(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self) }
        guard frames.count >= 6, text(frames[0]) == "1.0" else {
            refuse(key: "malformed", host: "?", "refused a connection: malformed ZAP request (\(frames.count) frames)")
            return reply(frames.count > 1 ? frames[1] : [], "400", "malformed request")
        }
        let (id, domain, address, mechanism) = (frames[1], text(frames[2]), text(frames[3]), text(frames[5]))
        guard domain == Gatekeeper.domain, mechanism == "CURVE", frames.count == 7, frames[6].count == 32, let allowList else {
            refuse(key: "mechanism \(mechanism)", host: address, "refused a connection from \(address): \(mechanism) in ZAP domain '\(domain)' (only CURVE clients with an allowed key may join)")
            return reply(id, "400", "only allowed CURVE keys")
        }
        let key = Curve.encode(frames[6])
        guard let name = allowList.name(of: key) else {
            refuse(key: key, host: address, "refused a connection from \(address): CURVE key \(key) is not in the allow-list")
            return reply(id, "400", "key not allowed")
        }
        lines.append("authenticated worker key '\(name)' from \(address)")
        return reply(id, "200", "OK", user: name)
    }

    /// Follows ACCEPTED → (HANDSHAKE_FAILED_*) → DISCONNECTED for each connection.
    mutating func observe(_ event: MonitorEvent) {
        switch event.event {
        case ZMQ_EVENT_ACCEPTED:
            peers[event.value] = peerAddress(Int32(bitPattern: event.value))
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
            // Refused by the ZAP handler, which has logged it with the key.
            failure = .some(nil)
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
            failure = .some(reason(protocolError: event.value))
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            failure = .some("the connection ended during the handshake (\(String(cString: strerror(Int32(bitPattern: event.value)))))")
        case ZMQ_EVENT_DISCONNECTED:
            let address = peers.removeValue(forKey: event.value)
            if case .some(let reason?) = failure {
                let host = address.map { String($0[..<($0.lastIndex(of: ":") ?? $0.endIndex)]) } ?? "?"
                refuse(key: reason, host: host, "refused a connection from \(address ?? "an unknown address"): \(reason)")
            }
            failure = nil
        default:
            break
        }
    }

    func reason(protocolError code: UInt32) -> String {
        switch Int32(bitPattern: code) {
        case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            allowList != nil
                ? "it does not use CURVE (a plaintext client, or a worker started without --key and --server-key)"
                : "it uses a security mechanism (CURVE?) but this coordinator runs in plaintext"
        case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
            "its CURVE handshake does not decrypt: it does not hold this coordinator's public key (check the worker's --server-key)"
        default:
            "protocol error 0x\(String(code, radix: 16)) in the handshake (not a sweep worker?)"
        }
    }

    mutating func refuse(key: String, host: String, _ line: String) {
        refused += 1
        let t = Date().timeIntervalSince1970
        let k = "\(key)|\(host)"
        if let last = lastLogged[k], t - last.time < quietSeconds {
            lastLogged[k] = (last.time, last.suppressed + 1)
            return
        }
        let suppressed = lastLogged[k]?.suppressed ?? 0
        lines.append(line + (suppressed > 0 ? " (and \(suppressed) more like it since the last such line)" : ""))
        lastLogged[k] = (t, 0)
    }
}
