import Yams

/// One trial's resolved configuration: flat keys to values, plus where each came from. The
/// trial keys' vocabulary and the validation against it (`TrialSchema`, `TrialConfig.parse`,
/// `validate()`) are the training engine's, in Learning; this is the value and its typed access.
public struct TrialConfig: Sendable, Equatable {
    public package(set) var values: [String: ConfigValue]
    public package(set) var locations: [String: SourceLocation]
    public let source: String

    public init(values: [String: ConfigValue], locations: [String: SourceLocation] = [:], source: String = "<trial>") {
        self.values = values
        self.locations = locations
        self.source = source
    }

    public static func == (a: TrialConfig, b: TrialConfig) -> Bool { a.values == b.values }

    /// Reads a YAML mapping of trial keys without checking them against the trial schema
    /// (`TrialConfig.parse` in Learning reads and validates).
    public static func read(yaml text: String, source: String) throws -> TrialConfig {
        guard let node = try composeYAML(text, source: source) else { throw ConfigError(location: SourceLocation(file: source, line: nil), key: nil, message: "empty trial file") }
        guard case .mapping(let mapping) = node else {
            throw ConfigError(location: SourceLocation(node: node, file: source), key: nil, message: "a trial file must be a mapping of keys to values")
        }
        var values: [String: ConfigValue] = [:]
        var locations: [String: SourceLocation] = [:]
        for (k, v) in mapping {
            guard let key = k.string else { throw ConfigError(location: SourceLocation(node: k, file: source), key: nil, message: "keys must be strings") }
            let location = SourceLocation(node: k, file: source)
            if values[key] != nil { throw ConfigError(location: location, key: key, message: "given twice") }
            do {
                values[key] = try ProgramContract.mappingKeys.contains(key) && v.mapping != nil ? ConfigValue(mappingNode: v) : ConfigValue(node: v)
            } catch var error as ConfigError {
                error.location.file = source
                error.key = key
                throw error
            }
            locations[key] = location
        }
        return TrialConfig(values: values, locations: locations, source: source)
    }

    public func setting(_ key: String, _ value: ConfigValue) -> TrialConfig {
        var copy = self
        copy.values[key] = value
        return copy
    }

    package func location(_ key: String) -> SourceLocation { locations[key] ?? SourceLocation(file: source, line: nil) }

    package func error(_ key: String?, _ message: String) -> ConfigError {
        ConfigError(location: key.map(location) ?? SourceLocation(file: source, line: nil), key: key, message: message)
    }

    package func hint(_ name: String, _ candidates: [String]) -> String {
        let s = suggestions(for: name, among: candidates)
        return s.isEmpty ? "" : " (did you mean \(s.prefix(2).map { "'\($0)'" }.joined(separator: " or "))?)"
    }

    // MARK: Typed access

    public func string(_ key: String, default d: String) throws -> String {
        guard let v = values[key] else { return d }
        guard case .string(let s) = v else { throw error(key, "expected a string, got \(v.typeName) \(v)") }
        return s
    }

    /// One of an enumeration's raw values, named in the error otherwise.
    public func choice<E: RawRepresentable & CaseIterable>(_ key: String, default d: E) throws -> E where E.RawValue == String {
        let name = try string(key, default: d.rawValue)
        guard let value = E(rawValue: name) else {
            throw error(key, "must be one of \(E.allCases.map(\.rawValue).joined(separator: ", ")), not '\(name)'")
        }
        return value
    }

    public func int(_ key: String, default d: Int) throws -> Int {
        guard let v = values[key] else { return d }
        switch v {
        case .int(let i): return i
        case .double(let x) where x == x.rounded() && abs(x) < 1e15: return Int(x)
        default: throw error(key, "expected an integer, got \(v.typeName) \(v)")
        }
    }

    public func optionalInt(_ key: String) throws -> Int? { values[key] == nil ? nil : try int(key, default: 0) }
    public func optionalDouble(_ key: String) throws -> Double? { values[key] == nil ? nil : try double(key, default: 0) }

    public func double(_ key: String, default d: Double) throws -> Double {
        guard let v = values[key] else { return d }
        guard let x = v.asDouble else { throw error(key, "expected a number, got \(v.typeName) \(v)") }
        return x
    }

    package func positiveDouble(_ key: String, default d: Double) throws -> Double {
        let x = try double(key, default: d)
        guard x > 0, x.isFinite else { throw error(key, "must be a positive number, got \(x)") }
        return x
    }

    public func bool(_ key: String, default d: Bool) throws -> Bool {
        guard let v = values[key] else { return d }
        guard case .bool(let b) = v else { throw error(key, "expected true or false, got \(v.typeName) \(v)") }
        return b
    }

    public func doubleList(_ key: String, default d: [Double]) throws -> [Double] {
        guard let v = values[key] else { return d }
        if let x = v.asDouble { return [x] }
        guard case .list(let items) = v else { throw error(key, "expected a list of numbers, got \(v.typeName) \(v)") }
        return try items.map { item in
            guard let x = item.asDouble else { throw error(key, "expected a list of numbers, found \(item.typeName) \(item)") }
            return x
        }
    }

    public func intList(_ key: String, default d: [Int]) throws -> [Int] {
        guard let v = values[key] else { return d }
        if case .int(let i) = v { return [i] }
        guard case .list(let items) = v else { throw error(key, "expected a list of integers, got \(v.typeName) \(v)") }
        return try items.map { item in
            guard case .int(let i) = item else { throw error(key, "expected a list of integers, found \(item.typeName) \(item)") }
            return i
        }
    }

    /// A list of strings (a single string counts as a list of one).
    public func stringList(_ key: String) throws -> [String] {
        guard let v = values[key] else { return [] }
        if case .string(let s) = v { return [s] }
        guard case .list(let items) = v else { throw error(key, "expected a list of strings, got \(v.typeName) \(v)") }
        return try items.map { item in
            guard case .string(let s) = item else { throw error(key, "expected a list of strings, found \(item.typeName) \(item)") }
            return s
        }
    }

    // MARK: Common fields

    public var model: String { (try? string("model", default: "")) ?? "" }
    public var isToyObjective: Bool { model == "quadratic" || model == "rosenbrock" || model == "polyfit" }

    /// Canonical JSON of the resolved configuration (keys sorted): the trial's identity.
    public var canonicalJSON: String {
        "{" + values.keys.sorted().map { "\(jsonQuote($0)):\(values[$0]!.json)" }.joined(separator: ",") + "}"
    }
}
