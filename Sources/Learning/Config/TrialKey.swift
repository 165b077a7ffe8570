/// One trial key, declared once: its name, value type, default, allowed values and help. The
/// declaration is what validation checks, what the engine reads (`TrialConfig.double(_:)` and
/// friends take a `Key` and fall back to its default), what `sweep-worker keys` prints and what
/// `docs/trial-keys.md` is generated from (`TrialSchema.markdown`).
extension TrialSchema {
    public struct Key: Sendable {
        public enum Kind: String, Sendable {
            case number, integer, boolean, string
            case numbers = "list of numbers"
            case integers = "list of integers"
            case strings = "list of strings"
            /// A mapping `NAME: value` in YAML, held as a list of `NAME=value` strings
            /// (`ProgramContract.mappingKeys`).
            case environment = "mapping of NAME: value"
            case layers = "list of layers"
        }

        /// Allowed numbers: `lower`/`upper` bounds, each open or closed (for lists, every element).
        public struct Bounds: Sendable, Equatable {
            public var lower: Double?, lowerOpen = false, upper: Double?, upperOpen = false

            public static let any = Bounds()
            public static let positive = Bounds(lower: 0, lowerOpen: true)
            public static let nonNegative = Bounds(lower: 0)
            /// [0, 1): decay rates (β, momentum-like averages).
            public static let unit = Bounds(lower: 0, upper: 1, upperOpen: true)
            /// [0, 1].
            public static let closedUnit = Bounds(lower: 0, upper: 1)
            /// (0, 1].
            public static let fraction = Bounds(lower: 0, lowerOpen: true, upper: 1)
            /// (0, 1).
            public static let openUnit = Bounds(lower: 0, lowerOpen: true, upper: 1, upperOpen: true)
            public static func atLeast(_ x: Double) -> Bounds { Bounds(lower: x) }
            public static func between(_ a: Double, _ b: Double) -> Bounds { Bounds(lower: a, upper: b) }

            public func contains(_ x: Double) -> Bool {
                if let lower, lowerOpen ? !(x > lower) : !(x >= lower) { return false }
                if let upper, upperOpen ? !(x < upper) : !(x <= upper) { return false }
                return x.isFinite || (lower == nil && upper == nil && !x.isNaN)
            }

            static func number(_ x: Double) -> String { x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : formatDouble(x) }

            /// "in [0, 1)", "at least 1", "positive", or "" for any.
            public var text: String {
                switch (lower, upper) {
                case (nil, nil): return ""
                case (0?, nil) where lowerOpen: return "positive"
                case (let l?, nil): return lowerOpen ? "greater than \(Bounds.number(l))" : "at least \(Bounds.number(l))"
                case (nil, let u?): return upperOpen ? "less than \(Bounds.number(u))" : "at most \(Bounds.number(u))"
                case (let l?, let u?): return "in \(lowerOpen ? "(" : "[")\(Bounds.number(l)), \(Bounds.number(u))\(upperOpen ? ")" : "]")"
                }
            }
        }

        public let name: String
        public let kind: Kind
        /// The value used when the trial does not give the key; nil when it has none (`defaultNote`
        /// then says what happens: "required", "the whole run", …).
        public let defaultValue: ConfigValue?
        public let defaultNote: String?
        public let bounds: Bounds
        /// For string keys with a fixed vocabulary.
        public let choices: [String]?
        public let help: String

        public init(
            _ name: String, _ kind: Kind, default defaultValue: ConfigValue?, note: String? = nil, bounds: Bounds = .any, choices: [String]? = nil,
            help: String
        ) {
            if let defaultValue {
                precondition(defaultValue.fits(kind), "the default of '\(name)' is not a \(kind.rawValue)")
                if let x = defaultValue.asDouble { precondition(bounds.contains(x), "the default of '\(name)' is outside its bounds") }
                if case .string(let s) = defaultValue, let choices { precondition(choices.contains(s), "the default of '\(name)' is not one of its choices") }
            }
            self.name = name
            self.kind = kind
            self.defaultValue = defaultValue
            self.defaultNote = note
            self.bounds = bounds
            self.choices = choices
            self.help = help
        }

        // The declarations, by type.

        public static func number(_ name: String, _ d: Double?, _ bounds: Bounds = .any, note: String? = nil, _ help: String) -> Key {
            Key(name, .number, default: d.map(ConfigValue.double), note: note, bounds: bounds, help: help)
        }

        public static func integer(_ name: String, _ d: Int?, _ bounds: Bounds = .any, note: String? = nil, _ help: String) -> Key {
            Key(name, .integer, default: d.map(ConfigValue.int), note: note, bounds: bounds, help: help)
        }

        public static func number(_ name: String, _ d: Double?, note: String? = nil, _ help: String) -> Key { .number(name, d, .any, note: note, help) }
        public static func integer(_ name: String, _ d: Int?, note: String? = nil, _ help: String) -> Key { .integer(name, d, .any, note: note, help) }
        public static func numbers(_ name: String, _ d: [Double]?, note: String? = nil, _ help: String) -> Key { .numbers(name, d, .any, note: note, help) }
        public static func integers(_ name: String, _ d: [Int]?, note: String? = nil, _ help: String) -> Key { .integers(name, d, .any, note: note, help) }

        public static func flag(_ name: String, _ d: Bool, _ help: String) -> Key { Key(name, .boolean, default: .bool(d), help: help) }

        public static func strings(_ name: String, note: String? = nil, _ help: String) -> Key { Key(name, .strings, default: nil, note: note, help: help) }

        public static func string(_ name: String, _ d: String?, note: String? = nil, _ help: String) -> Key {
            Key(name, .string, default: d.map(ConfigValue.string), note: note, help: help)
        }

        public static func choice(_ name: String, _ d: String?, _ choices: [String], note: String? = nil, _ help: String) -> Key {
            Key(name, .string, default: d.map(ConfigValue.string), note: note, choices: choices, help: help)
        }

        public static func numbers(_ name: String, _ d: [Double]?, _ bounds: Bounds = .any, note: String? = nil, _ help: String) -> Key {
            Key(name, .numbers, default: d.map { .list($0.map(ConfigValue.double)) }, note: note, bounds: bounds, help: help)
        }

        public static func integers(_ name: String, _ d: [Int]?, _ bounds: Bounds = .any, note: String? = nil, _ help: String) -> Key {
            Key(name, .integers, default: d.map { .list($0.map(ConfigValue.int)) }, note: note, bounds: bounds, help: help)
        }

        /// An optimizer's learning rate, with its own default.
        public static func lr(_ d: Double) -> Key { .number("lr", d, .positive, "learning rate") }

        /// The default as documentation shows it.
        public var defaultText: String {
            if case .double(let x)? = defaultValue { return x.isFinite ? Bounds.number(x) : "\(x)" }
            if let defaultValue { return defaultValue.description }
            return defaultNote ?? "none"
        }

        /// What values it takes, for documentation: "number in [0, 1)", "cos | linear", …
        public var typeText: String {
            if let choices { return choices.joined(separator: " | ") }
            let b = bounds.text
            return b.isEmpty ? kind.rawValue : "\(kind.rawValue), \(kinds == 1 ? "" : "each ")\(b)"
        }

        private var kinds: Int { kind == .numbers || kind == .integers ? 2 : 1 }

        /// The one-line summary `sweep-worker keys` prints.
        public var summary: String {
            "\(help) (\(typeText); default \(defaultText))"
        }

        /// Checks a given value's type and range; throws an error naming the key and its line.
        func check(_ config: TrialConfig) throws {
            guard config.values[name] != nil else { return }
            let numbers: [Double]
            switch kind {
            case .number: numbers = [try config.double(name, default: 0)]
            case .integer: numbers = [Double(try config.int(name, default: 0))]
            case .boolean: _ = try config.bool(name, default: false); numbers = []
            case .string:
                let s = try config.string(name, default: "")
                if let choices, !choices.contains(s) {
                    throw config.error(name, "must be one of \(choices.joined(separator: ", ")), not '\(s)'\(config.hint(s, choices))")
                }
                numbers = []
            case .numbers: numbers = try config.doubleList(name, default: [])
            case .integers: numbers = try config.intList(name, default: []).map(Double.init)
            case .strings, .environment: _ = try config.stringList(name); numbers = []
            case .layers:
                _ = try config.layers(name)
                numbers = []
            }
            for x in numbers where !bounds.contains(x) {
                throw config.error(name, "must be \(kinds == 1 ? "" : "all ")\(bounds.text), got \(formatDouble(x))")
            }
        }
    }
}

extension ConfigValue {
    func fits(_ kind: TrialSchema.Key.Kind) -> Bool {
        switch (kind, self) {
        case (.number, .double), (.number, .int), (.integer, .int), (.boolean, .bool), (.string, .string): true
        case (.numbers, .list(let items)): items.allSatisfy { $0.asDouble != nil }
        case (.integers, .list(let items)): items.allSatisfy { if case .int = $0 { true } else { false } }
        case (.strings, .list(let items)), (.environment, .list(let items)): items.allSatisfy { if case .string = $0 { true } else { false } }
        case (.layers, .list): true
        default: false
        }
    }
}

extension Array where Element == TrialSchema.Key {
    /// The declaration named `name`: reading a key the list does not declare is a programming error.
    public subscript(name: String) -> TrialSchema.Key {
        guard let key = first(where: { $0.name == name }) else { preconditionFailure("trial key '\(name)' is not declared here") }
        return key
    }
}

// MARK: - Reading through declarations

extension TrialConfig {
    private func declared<V>(_ key: TrialSchema.Key, _ kind: TrialSchema.Key.Kind, _ read: (V) throws -> V, _ unwrap: (ConfigValue) -> V?) throws -> V {
        precondition(key.kind == kind, "trial key '\(key.name)' is a \(key.kind.rawValue), read as a \(kind.rawValue)")
        guard let d = key.defaultValue.flatMap(unwrap) else { preconditionFailure("trial key '\(key.name)' has no default: read it with otherwise:") }
        return try read(d)
    }

    public func double(_ key: TrialSchema.Key) throws -> Double { try declared(key, .number, { try double(key.name, default: $0) }, \.asDouble) }
    public func double(_ key: TrialSchema.Key, otherwise d: Double) throws -> Double {
        precondition(key.kind == .number && key.defaultValue == nil)
        return try double(key.name, default: d)
    }
    public func optionalDouble(_ key: TrialSchema.Key) throws -> Double? {
        precondition(key.kind == .number && key.defaultValue == nil)
        return try optionalDouble(key.name)
    }

    public func int(_ key: TrialSchema.Key) throws -> Int {
        try declared(key, .integer, { try int(key.name, default: $0) }) { if case .int(let i) = $0 { i } else { nil } }
    }
    public func int(_ key: TrialSchema.Key, otherwise d: Int) throws -> Int {
        precondition(key.kind == .integer && key.defaultValue == nil)
        return try int(key.name, default: d)
    }
    public func optionalInt(_ key: TrialSchema.Key) throws -> Int? {
        precondition(key.kind == .integer && key.defaultValue == nil)
        return try optionalInt(key.name)
    }

    public func bool(_ key: TrialSchema.Key) throws -> Bool {
        try declared(key, .boolean, { try bool(key.name, default: $0) }) { if case .bool(let b) = $0 { b } else { nil } }
    }

    public func string(_ key: TrialSchema.Key) throws -> String {
        try declared(key, .string, { try string(key.name, default: $0) }) { if case .string(let s) = $0 { s } else { nil } }
    }
    public func string(_ key: TrialSchema.Key, otherwise d: String) throws -> String {
        precondition(key.kind == .string && key.defaultValue == nil)
        return try string(key.name, default: d)
    }

    public func doubleList(_ key: TrialSchema.Key) throws -> [Double] {
        try declared(key, .numbers, { try doubleList(key.name, default: $0) }) { if case .list(let l) = $0 { l.compactMap(\.asDouble) } else { nil } }
    }
    public func doubleList(_ key: TrialSchema.Key, otherwise d: [Double]) throws -> [Double] {
        precondition(key.kind == .numbers && key.defaultValue == nil)
        return try doubleList(key.name, default: d)
    }

    public func intList(_ key: TrialSchema.Key) throws -> [Int] {
        try declared(key, .integers, { try intList(key.name, default: $0) }) {
            if case .list(let l) = $0 { l.compactMap { if case .int(let i) = $0 { i } else { nil } } } else { nil }
        }
    }
    public func intList(_ key: TrialSchema.Key, otherwise d: [Int]) throws -> [Int] {
        precondition(key.kind == .integers && key.defaultValue == nil)
        return try intList(key.name, default: d)
    }
}

extension TrialSchema.Key {
    /// A string key whose values are an enumeration's raw values.
    public static func choice<E: RawRepresentable & CaseIterable>(_ name: String, _ d: E, _ help: String) -> Self where E.RawValue == String {
        .choice(name, d.rawValue, E.allCases.map(\.rawValue), help)
    }
}

extension TrialConfig {
    public func bool(_ key: TrialSchema.Key, otherwise d: Bool) throws -> Bool {
        precondition(key.kind == .boolean && key.defaultValue == nil)
        return try bool(key.name, default: d)
    }

    public func choice<E: RawRepresentable & CaseIterable>(_ key: TrialSchema.Key, _: E.Type) throws -> E where E.RawValue == String {
        guard case .string(let d)? = key.defaultValue, let value = E(rawValue: d) else { preconditionFailure("trial key '\(key.name)' has no default choice") }
        return try choice(key.name, default: value)
    }
}

extension TrialConfig {
    /// A `layers` list, parsed; an error names the key (its file and line) and the layer's place.
    func layers(_ key: String) throws -> [LayerSpec] {
        guard let value = values[key] else { throw error(key, "is required: the network's layers") }
        var count = 0
        do {
            return try LayerSpec.parseList(value, path: key, count: &count)
        } catch {
            throw self.error(key, "\(error.path): \(error.message)")
        }
    }
}
