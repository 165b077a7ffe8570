import Yams

/// A value of a trial configuration: what a YAML scalar, list or mapping resolves to. Most keys
/// take scalars or lists; mappings describe structures such as a network's layers.
public enum ConfigValue: Sendable, Hashable, CustomStringConvertible {
    case int(Int)
    case double(Double)
    case string(String)
    case bool(Bool)
    case list([ConfigValue])
    case mapping([String: ConfigValue])

    public var description: String {
        switch self {
        case .int(let v): String(v)
        case .double(let v): formatDouble(v)
        case .string(let v): v
        case .bool(let v): String(v)
        case .list(let vs): "[" + vs.map(\.description).joined(separator: ", ") + "]"
        case .mapping(let m): "{" + m.keys.sorted().map { "\($0): \(m[$0]!.description)" }.joined(separator: ", ") + "}"
        }
    }

    /// Canonical JSON (numbers in shortest round-trip form), used for trial ids and results.
    public var json: String {
        switch self {
        case .int(let v): String(v)
        case .double(let v): v.isFinite ? formatDouble(v) : "\"\(v)\""
        case .string(let v): jsonQuote(v)
        case .bool(let v): v ? "true" : "false"
        case .list(let vs): "[" + vs.map(\.json).joined(separator: ",") + "]"
        case .mapping(let m): "{" + m.keys.sorted().map { "\(jsonQuote($0)):\(m[$0]!.json)" }.joined(separator: ",") + "}"
        }
    }

    public var typeName: String {
        switch self {
        case .int: "integer"
        case .double: "number"
        case .string: "string"
        case .bool: "boolean"
        case .list: "list"
        case .mapping: "mapping"
        }
    }

    public var asDouble: Double? {
        switch self {
        case .int(let v): Double(v)
        case .double(let v): v
        default: nil
        }
    }

    /// Resolves a YAML node the way YAML 1.2's core schema does (quoted scalars stay strings).
    public init(node: Node) throws {
        switch node {
        case .scalar(let scalar):
            if scalar.style == .plain {
                if let i = Int(scalar.string) { self = .int(i); return }
                if let b = node.bool { self = .bool(b); return }
                if let d = node.float, scalar.string.first.map({ $0.isNumber || $0 == "-" || $0 == "+" || $0 == "." }) == true {
                    self = .double(d)
                    return
                }
            }
            self = .string(scalar.string)
        case .sequence(let seq):
            self = .list(try seq.map { try ConfigValue(node: $0) })
        case .mapping(let mapping):
            var entries: [String: ConfigValue] = [:]
            for (k, v) in mapping {
                guard let key = k.string else { throw ConfigError(location: SourceLocation(node: k), key: nil, message: "mapping keys must be strings") }
                guard entries[key] == nil else { throw ConfigError(location: SourceLocation(node: k), key: key, message: "given twice") }
                entries[key] = try ConfigValue(node: v)
            }
            self = .mapping(entries)
        }
    }
}

package func formatDouble(_ v: Double) -> String {
    if v == v.rounded(), abs(v) < 1e15 { return String(format1: v) }
    return "\(v)"
}

extension String {
    /// `1.0` for integral doubles, so that a float stays visibly a float.
    init(format1 v: Double) { self = "\(Int(v)).0" }
}

/// A JSON string literal: quotes, backslashes and control characters escaped, and the line and
/// paragraph separators U+2028/U+2029 (valid JSON, but not JavaScript before ES2019).
package func jsonQuote(_ s: String) -> String {
    var out = "\""
    for c in s.unicodeScalars {
        switch c {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        case "\r": out += "\\r"
        default:
            if c.value < 0x20 || c.value == 0x2028 || c.value == 0x2029 {
                let hex = String(c.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(c)
            }
        }
    }
    return out + "\""
}

/// Where a value came from: a file and a line (1-based), for error messages.
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int?

    public init(file: String, line: Int?) {
        self.file = file
        self.line = line
    }

    package init(node: Node, file: String = "") {
        self.file = file
        self.line = node.mark?.line
    }

    public var description: String { line.map { "\(file):\($0)" } ?? file }
}

/// A configuration error that says where (file, line, key) and what is allowed.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public var location: SourceLocation
    public var key: String?
    public var message: String

    public init(location: SourceLocation, key: String?, message: String) {
        self.location = location
        self.key = key
        self.message = message
    }

    public var description: String {
        "\(location): " + (key.map { "'\($0)': " } ?? "") + message
    }
}

/// The closest candidates to a misspelled name (edit distance ≤ 2, or a shared prefix).
public func suggestions(for name: String, among candidates: [String]) -> [String] {
    func distance(_ a: [Character], _ b: [Character]) -> Int {
        var prev = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var cur = [i] + Array(repeating: 0, count: b.count)
            for j in 1...max(b.count, 1) where !b.isEmpty {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            prev = cur
        }
        return prev[b.count]
    }
    let n = Array(name.lowercased())
    return
        candidates
        .map { ($0, distance(n, Array($0.lowercased()))) }
        .filter { $0.1 <= 2 || ($0.0.hasPrefix(name) && name.count >= 3) }
        .sorted { $0.1 < $1.1 }
        .map(\.0)
}

/// Parses a JSON (or YAML flow) list of strings, e.g. a checkpoint's list of state names.
public func parseStringList(_ text: String) throws -> [String] {
    guard let node = try composeYAML(text, source: "<list>"), case .sequence(let items) = node else {
        throw ConfigError(location: SourceLocation(file: "<list>", line: nil), key: nil, message: "expected a list of strings")
    }
    return items.map { $0.string ?? "" }
}
