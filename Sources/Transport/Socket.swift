import CZeroMQ
import Glibc

/// A ZeroMQ call that failed, with the call, what it concerned and libzmq's message.
public struct ZMQError: Error, CustomStringConvertible {
    public let call: String
    public let detail: String
    public let code: Int32
    public var description: String { "\(call) failed: \(detail)" }
    /// The peer a ROUTER tried to send to is gone (`ZMQ_ROUTER_MANDATORY`).
    public var isUnroutable: Bool { code == EHOSTUNREACH }
    public var isInterrupted: Bool { code == EINTR }
}

/// Every libzmq return code goes through here.
@discardableResult
func check(_ call: @autoclosure () -> String, _ result: Int32) throws -> Int32 {
    if result < 0 {
        let code = zmq_errno()
        throw ZMQError(call: call(), detail: String(cString: zmq_strerror(code)), code: code)
    }
    return result
}

/// A ZeroMQ context; one per process.
public final class Context: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    /// `maxSockets`: sockets it may open (libzmq's default is 1,023; a tool simulating many
    /// workers in one process needs more).
    public init(maxSockets: Int32? = nil) {
        handle = zmq_ctx_new()
        if let maxSockets { zmq_ctx_set(handle, ZMQ_MAX_SOCKETS, maxSockets) }
    }

    deinit { zmq_ctx_term(handle) }
}

/// One ZeroMQ socket. Not thread-safe: exactly one thread owns and uses it.
public final class Socket {
    public enum Kind { case router, dealer, push, pull, pair, rep }

    let handle: UnsafeMutableRawPointer
    public let kind: Kind
    private var closed = false

    public init(_ context: Context, _ kind: Kind) throws {
        let type: Int32 =
            switch kind {
            case .router: ZMQ_ROUTER
            case .dealer: ZMQ_DEALER
            case .push: ZMQ_PUSH
            case .pull: ZMQ_PULL
            case .pair: ZMQ_PAIR
            case .rep: ZMQ_REP
            }
        guard let h = zmq_socket(context.handle, type) else {
            let code = zmq_errno()
            throw ZMQError(call: "zmq_socket", detail: String(cString: zmq_strerror(code)), code: code)
        }
        handle = h
        self.kind = kind
        try setOption(ZMQ_LINGER, Int32(0))
    }

    deinit { close() }

    public func close() {
        if !closed { zmq_close(handle); closed = true }
    }

    /// The socket options the programs set, typed (the raw setters below are this module's).
    public enum Option: Sendable {
        /// ROUTER: a send to a peer that is gone fails (EHOSTUNREACH) instead of vanishing.
        case routerMandatory(Bool)
        /// Inbound messages larger than this drop the connection (libzmq checks it).
        case maxMessageSize(Int64)
        /// How long a blocking send waits for room before failing.
        case sendTimeout(milliseconds: Int32)
        /// Messages queued per peer before sends block or fail (0: no limit).
        case sendHighWaterMark(Int32)
    }

    public func set(_ option: Option) throws {
        switch option {
        case .routerMandatory(let on): try setOption(ZMQ_ROUTER_MANDATORY, Int32(on ? 1 : 0))
        case .maxMessageSize(let bytes): try setOption(ZMQ_MAXMSGSIZE, bytes)
        case .sendTimeout(let ms): try setOption(ZMQ_SNDTIMEO, ms)
        case .sendHighWaterMark(let n): try setOption(ZMQ_SNDHWM, n)
        }
    }

    func setOption(_ option: Int32, _ value: Int32) throws {
        var v = value
        try check("zmq_setsockopt(\(option))", zmq_setsockopt(handle, option, &v, MemoryLayout<Int32>.size))
    }

    func setOption(_ option: Int32, _ value: Int64) throws {
        var v = value
        try check("zmq_setsockopt(\(option))", zmq_setsockopt(handle, option, &v, MemoryLayout<Int64>.size))
    }

    func setOption(_ option: Int32, bytes: [UInt8]) throws {
        try check("zmq_setsockopt(\(option))", bytes.withUnsafeBytes { zmq_setsockopt(handle, option, $0.baseAddress, $0.count) })
    }

    func setOption(_ option: Int32, string: String) throws {
        try setOption(option, bytes: Array(string.utf8))
    }

    func intOption(_ option: Int32) throws -> Int32 {
        var value: Int32 = 0
        var size = MemoryLayout<Int32>.size
        try check("zmq_getsockopt(\(option))", zmq_getsockopt(handle, option, &value, &size))
        return value
    }

    /// Publishes the socket's `events` on a PAIR endpoint, `inproc://…`; read them with a
    /// `.pair` socket connected there and `MonitorEvent.init(frames:)`.
    public func monitor(_ endpoint: String, events: [MonitorEvent.Kind]) throws {
        try monitor(endpoint, mask: events.reduce(0) { $0 | $1.mask })
    }

    func monitor(_ endpoint: String, mask: Int32) throws {
        try check("zmq_socket_monitor(\(endpoint))", zmq_socket_monitor(handle, endpoint, mask))
    }

    public func bind(_ endpoint: String) throws { try check("zmq_bind(\(endpoint))", zmq_bind(handle, endpoint)) }
    public func connect(_ endpoint: String) throws { try check("zmq_connect(\(endpoint))", zmq_connect(handle, endpoint)) }

    /// The endpoint actually bound (resolves `tcp://127.0.0.1:*` to its port).
    public var lastEndpoint: String {
        var buf = [CChar](repeating: 0, count: 512)
        var size = buf.count
        zmq_getsockopt(handle, ZMQ_LAST_ENDPOINT, &buf, &size)
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Sends a multipart message. Throws `ZMQError` (e.g. unroutable with ROUTER_MANDATORY).
    public func send(_ frames: [[UInt8]], dontWait: Bool = false) throws {
        for (i, frame) in frames.enumerated() {
            var flags: Int32 = i < frames.count - 1 ? ZMQ_SNDMORE : 0
            if dontWait { flags |= ZMQ_DONTWAIT }
            let rc = frame.withUnsafeBytes { zmq_send(handle, $0.baseAddress, $0.count, flags) }
            try check("zmq_send", rc)
        }
    }

    /// Receives one multipart message, or nil if none is waiting (`wait: false`).
    public func receive(wait: Bool = true) throws -> [[UInt8]]? {
        var frames: [[UInt8]] = []
        while true {
            var msg = zmq_msg_t()
            zmq_msg_init(&msg)
            defer { zmq_msg_close(&msg) }
            let rc = zmq_msg_recv(&msg, handle, (wait || !frames.isEmpty) ? 0 : ZMQ_DONTWAIT)
            if rc < 0 {
                let code = zmq_errno()
                if code == EAGAIN && frames.isEmpty { return nil }
                throw ZMQError(call: "zmq_msg_recv", detail: String(cString: zmq_strerror(code)), code: code)
            }
            let size = zmq_msg_size(&msg)
            let data = zmq_msg_data(&msg)!
            frames.append(Array(UnsafeRawBufferPointer(start: data, count: size)))
            if zmq_msg_more(&msg) == 0 { return frames }
        }
    }

    var pollHandle: UnsafeMutableRawPointer { handle }
}

/// One event of a socket monitor: the event (ZMQ_EVENT_*), its value (a descriptor for
/// ACCEPTED/DISCONNECTED, an error or status code for the HANDSHAKE_FAILED events) and the
/// endpoint (for a bound socket, its own address: libzmq 4.3 does not tell the peer's).
public struct MonitorEvent: Sendable {
    /// The events this project watches.
    public enum Kind: Sendable, Equatable {
        case accepted, disconnected
        case handshakeSucceeded
        /// The peer's key was refused (ZAP said no).
        case handshakeFailedAuth
        /// The handshake broke the protocol (`value` says how, e.g. a mechanism mismatch).
        case handshakeFailedProtocol
        /// The connection closed during the handshake.
        case handshakeFailedNoDetail
        case other(Int32)

        var mask: Int32 {
            switch self {
            case .accepted: ZMQ_EVENT_ACCEPTED
            case .disconnected: ZMQ_EVENT_DISCONNECTED
            case .handshakeSucceeded: ZMQ_EVENT_HANDSHAKE_SUCCEEDED
            case .handshakeFailedAuth: ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
            case .handshakeFailedProtocol: ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
            case .handshakeFailedNoDetail: ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
            case .other(let e): e
            }
        }

        init(_ e: Int32) {
            self = [.accepted, .disconnected, .handshakeSucceeded, .handshakeFailedAuth, .handshakeFailedProtocol, .handshakeFailedNoDetail].first { $0.mask == e } ?? .other(e)
        }
    }

    public let event: Int32
    public let value: UInt32
    public let endpoint: String
    public var kind: Kind { Kind(event) }
    /// A protocol failure because the two sides use different security mechanisms (CURVE vs NULL).
    public var isMechanismMismatch: Bool { kind == .handshakeFailedProtocol && Int32(bitPattern: value) == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH }

    public init?(frames: [[UInt8]]) {
        guard frames.count == 2, frames[0].count == 6 else { return nil }
        let f = frames[0]
        event = Int32(UInt16(f[0]) | UInt16(f[1]) << 8)
        value = UInt32(f[2]) | UInt32(f[3]) << 8 | UInt32(f[4]) << 16 | UInt32(f[5]) << 24
        endpoint = String(decoding: frames[1], as: UTF8.self)
    }
}

/// Waits until any of the sockets (or plain file descriptors) is readable.
public struct Poller {
    public enum Item {
        case socket(Socket)
        case fd(Int32)
    }

    /// Returns the indices of readable items; empty on timeout. `timeout` in milliseconds, -1 = forever.
    public static func poll(_ items: [Item], timeout: Int) throws -> [Int] {
        var raw = items.map { item -> zmq_pollitem_t in
            switch item {
            case .socket(let s): zmq_pollitem_t(socket: s.pollHandle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
            case .fd(let fd): zmq_pollitem_t(socket: nil, fd: fd, events: Int16(ZMQ_POLLIN), revents: 0)
            }
        }
        let rc = zmq_poll(&raw, Int32(raw.count), timeout)
        if rc < 0 {
            let code = zmq_errno()
            if code == EINTR { return [] }
            throw ZMQError(call: "zmq_poll", detail: String(cString: zmq_strerror(code)), code: code)
        }
        return raw.indices.filter { raw[$0].revents & Int16(ZMQ_POLLIN) != 0 }
    }
}
