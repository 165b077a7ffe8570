import Foundation
import Glibc

/// A raw HTTP/1.1 client over a TCP socket: it sends exactly the bytes a test writes (hostile
/// requests included) and reads what comes back, whole or a stream at a time.
final class HTTPProbe {
    let fd: Int32
    private(set) var received: [UInt8] = []

    init(port: Int, host: String = "127.0.0.1") throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ProbeError("socket: \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &address.sin_addr)
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard connected == 0 else {
            close(fd)
            throw ProbeError("connect to \(host):\(port): errno \(errno)")
        }
    }

    deinit { close(fd) }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw ProbeError("send: errno \(errno)") }
            offset += n
        }
    }

    /// Reads until `done` holds for what arrived so far, the peer closes, or `timeout` passes.
    @discardableResult
    func read(timeout: Double, until done: (String) -> Bool = { _ in false }) -> String {
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while Date() < deadline && !done(text) {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32(max(1, deadline.timeIntervalSinceNow * 1000))) > 0 else { continue }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            received += buffer[0..<n]
        }
        return text
    }

    var text: String { String(decoding: received, as: UTF8.self) }

    /// The status code of the response read so far.
    var status: Int? {
        guard let line = text.split(separator: "\r\n").first, line.hasPrefix("HTTP/1.1 ") else { return nil }
        return Int(line.dropFirst(9).prefix(3))
    }

    /// One GET (or other method) on a new connection, read to its end.
    static func request(
        port: Int, _ target: String, method: String = "GET", headers: [String] = [], body: String = "", timeout: Double = 10
    ) throws -> (status: Int?, text: String) {
        let probe = try HTTPProbe(port: port)
        try probe.send("\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + headers.map { $0 + "\r\n" }.joined() + "\r\n" + body)
        probe.read(timeout: timeout)
        return (probe.status, probe.text)
    }
}

struct ProbeError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
