import Foundation

/// Where the dashboard listens: `HOST:PORT`, `[IPv6]:PORT`, `:PORT` or `PORT` (the loopback
/// address), or `HOST` (a free port). Port 0 lets the system choose; the address is printed.
public struct DashboardAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    /// `--dashboard` and `--serve` without a value: the loopback address and a free port.
    public static let defaultHost = "127.0.0.1"
    public static let defaultPort = 0
    public static let `default` = DashboardAddress(host: defaultHost, port: defaultPort)

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init(parsing text: String) throws {
        func port(_ s: Substring) throws -> Int {
            guard let p = Int(s), (0...65535).contains(p) else { throw DashboardError("\(text): the port must be a number from 0 to 65535") }
            return p
        }
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            self.port = rest.isEmpty ? Self.defaultPort : try port(rest.hasPrefix(":") ? rest.dropFirst() : rest)
        } else if let colon = text.lastIndex(of: ":"), text.firstIndex(of: ":") == colon {
            host = colon == text.startIndex ? Self.defaultHost : String(text[..<colon])
            self.port = try port(text[text.index(after: colon)...])
        } else if text.allSatisfy(\.isNumber), !text.isEmpty {
            host = Self.defaultHost
            self.port = try port(Substring(text))
        } else {
            host = text
            self.port = Self.defaultPort
        }
        guard !host.isEmpty, host.count <= 253, host.allSatisfy({ $0.isLetter || $0.isNumber || ".-:_".contains($0) }) else {
            throw DashboardError("\(text): not a HOST:PORT address (e.g. 127.0.0.1:8700, [::1]:8700, 0.0.0.0:8700)")
        }
    }

    /// Whether only this machine can reach it: 127.0.0.0/8, ::1 or localhost.
    public var isLoopback: Bool {
        host == "localhost" || host == "::1" || host.split(separator: ".").first == "127" && host.split(separator: ".").count == 4
    }

    var hostForURL: String { host.contains(":") ? "[\(host)]" : host }

    public var description: String { "\(hostForURL):\(port)" }

    /// Whether `text` reads as an address (what `--dashboard`/`--serve` may be followed by).
    public static func looksLikeAddress(_ text: String) -> Bool {
        guard !text.hasPrefix("-"), (try? DashboardAddress(parsing: text)) != nil else { return false }
        return text.contains(":") || text.allSatisfy(\.isNumber) || text == "localhost"
    }

    /// The command line with the value of each option in `options` (e.g. `--dashboard`) filled in
    /// with the default address when it is left out: the next argument is not an address, or
    /// there is none. (Argument parsers need a value for an option that has one.)
    public static func fillingDefaults(of options: Set<String>, in arguments: [String]) -> [String] {
        var out: [String] = []
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            out.append(a)
            if a == "--" {
                out += arguments[(i + 1)...]
                break
            }
            if options.contains(a) && (i + 1 == arguments.count || !looksLikeAddress(arguments[i + 1])) { out.append(Self.default.description) }
            i += 1
        }
        return out
    }
}
