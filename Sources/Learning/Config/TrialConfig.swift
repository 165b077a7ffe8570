import Yams

/// The vocabulary of trial keys: what each model, data set and optimizer accepts. Sweep files
/// use the same keys, so validation here is validation there.
public enum TrialSchema {
    public struct Key: Sendable {
        public let name: String
        public let help: String
    }

    /// Keys every trial may use.
    public static let common: [Key] = [
        Key(name: "model", help: "mlp | vae | logreg | quadratic | rosenbrock"),
        Key(name: "optimizer", help: "optimizer name (see optimizers)"),
        Key(name: "lr", help: "learning rate"),
        Key(name: "seed", help: "seed for initialisation, data order and sampling noise (default 0)"),
        Key(name: "precision", help: "float32 (default) | float64"),
        Key(name: "max_loss", help: "end the trial as diverged when a training loss exceeds this (default: only NaN/Inf)"),
        Key(name: "clip_grad_norm", help: "clip the global gradient norm to this (torch clip_grad_norm_)"),
        Key(name: "clip_grad_value", help: "clamp every gradient component to [-v, v] (torch clip_grad_value_)"),
    ]

    /// Keys of models trained on a data set.
    public static let data: [Key] = [
        Key(name: "data", help: "fashion-mnist (default) | idx:DIR | hdf5:FILE"),
        Key(name: "epochs", help: "passes over the training set (default 1, at most \(TrialLimits.maxEpochs), and at most \(TrialLimits.maxExamplesSeen) examples in all)"),
        Key(name: "batch_size", help: "examples per step (default 128, at most \(TrialLimits.maxBatchSize))"),
        Key(name: "limit", help: "use only the first N training examples"),
        Key(name: "test_limit", help: "use only the first N test examples"),
        Key(name: "eval_batch_size", help: "examples per evaluation batch (default 1000, at most \(TrialLimits.maxBatchSize))"),
        Key(name: "accumulation_steps", help: "micro-batches of batch_size averaged per optimizer step (default 1)"),
        Key(name: "bias_weight_decay", help: "apply weight decay to biases too (default false: biases are not decayed)"),
        Key(name: "layer_lr_multipliers", help: "one learning-rate multiplier per layer, in order (fc1, fc2, …)"),
        Key(name: "layer_lr_decay", help: "layer-wise lr decay γ: the last layer gets lr, each one below γ times the next"),
        Key(name: "sharpness_rho", help: "at the end, measure L(w + ρ·g/‖g‖) − L(w) on 2,048 training examples (SAM's sharpness)"),
        Key(name: "diagnostics", help: "record per-layer update norms and activation deltas each epoch (default false)"),
        Key(name: "mode", help: "train (default) | lr_range_test"),
        Key(name: "range_start_lr", help: "LR range test: first learning rate (default 1e-7)"),
        Key(name: "range_end_lr", help: "LR range test: last learning rate (default 10)"),
        Key(name: "range_steps", help: "LR range test: steps (default 100, at most \(TrialLimits.maxSteps))"),
        Key(name: "range_smoothing", help: "LR range test: loss smoothing factor (default 0.05)"),
    ]

    public static let models: [String: [Key]] = [
        "mlp": data + [
            Key(name: "hidden", help: "hidden layer sizes (default [256, 128]; at most \(TrialLimits.maxParameters) parameters in all)"),
            Key(name: "activation", help: "relu (default) | tanh | gelu | sigmoid"),
        ],
        "logreg": data,
        "vae": data + [
            Key(name: "hidden", help: "hidden layer size (default 400; at most \(TrialLimits.maxParameters) parameters in all)"),
            Key(name: "latent", help: "latent dimension (default 20)"),
        ],
        "quadratic": [
            Key(name: "steps", help: "optimizer steps (default 100, at most \(TrialLimits.maxSteps))"),
            Key(name: "curvatures", help: "diagonal curvatures h_i of ½Σh_i·x_i² (default [10, 0.1])"),
            Key(name: "start", help: "start point (default [1, 1])"),
        ],
        "polyfit": [
            Key(name: "degree", help: "polynomial degree (default 10; at most \(TrialLimits.maxParameters) coefficients)"),
            Key(name: "points", help: "noisy training samples of sin(πx) (default 20, at most \(TrialLimits.maxBatchSize))"),
            Key(name: "noise", help: "standard deviation of the sample noise (default 0.1)"),
        ],
        "rosenbrock": [
            Key(name: "steps", help: "optimizer steps (default 1000, at most \(TrialLimits.maxSteps))"),
            Key(name: "start", help: "start point (default [-1.5, 2])"),
            Key(name: "a", help: "(a − x)² + b(y − x²)²: a (default 1)"),
            Key(name: "b", help: "b (default 100)"),
        ],
    ]

    /// Each optimizer's keys, from `OptimizerCatalog`.
    public static var optimizers: [String: [Key]] {
        Dictionary(uniqueKeysWithValues: OptimizerCatalog.all.map { ($0.name, $0.keys) })
    }

    public static var modelNames: [String] { models.keys.sorted() }
    public static var optimizerNames: [String] { optimizers.keys.sorted() }

    /// Every key that some model or optimizer accepts.
    public static var allKeys: [String] {
        Set(
            common.map(\.name) + models.values.flatMap { $0.map(\.name) } + optimizers.values.flatMap { $0.map(\.name) }
                + scheduleCommon.map(\.name) + schedules.values.flatMap { $0.map(\.name) }
        ).sorted()
    }
}

/// One trial's resolved configuration: flat keys to values, plus where each came from.
public struct TrialConfig: Sendable, Equatable {
    public private(set) var values: [String: ConfigValue]
    public private(set) var locations: [String: SourceLocation]
    public let source: String

    public init(values: [String: ConfigValue], locations: [String: SourceLocation] = [:], source: String = "<trial>") {
        self.values = values
        self.locations = locations
        self.source = source
    }

    public static func == (a: TrialConfig, b: TrialConfig) -> Bool { a.values == b.values }

    /// Parses a YAML mapping of trial keys.
    public static func parse(yaml text: String, source: String) throws -> TrialConfig {
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
                values[key] = try ConfigValue(node: v)
            } catch var error as ConfigError {
                error.location.file = source
                error.key = key
                throw error
            }
            locations[key] = location
        }
        let config = TrialConfig(values: values, locations: locations, source: source)
        try config.validate()
        return config
    }

    /// Applies `key=value` overrides (the `--set` flag), parsing each value as YAML.
    public func overriding(_ assignments: [String]) throws -> TrialConfig {
        var copy = self
        for assignment in assignments {
            guard let eq = assignment.firstIndex(of: "="), eq != assignment.startIndex else {
                throw ConfigError(location: SourceLocation(file: "--set", line: nil), key: assignment, message: "expected key=value")
            }
            let key = String(assignment[..<eq])
            let text = String(assignment[assignment.index(after: eq)...])
            guard let node = try composeYAML(text.isEmpty ? "''" : text, source: "--set") else { continue }
            copy.values[key] = try ConfigValue(node: node)
            copy.locations[key] = SourceLocation(file: "--set", line: nil)
        }
        try copy.validate()
        return copy
    }

    public func setting(_ key: String, _ value: ConfigValue) -> TrialConfig {
        var copy = self
        copy.values[key] = value
        return copy
    }

    func location(_ key: String) -> SourceLocation { locations[key] ?? SourceLocation(file: source, line: nil) }

    func error(_ key: String?, _ message: String) -> ConfigError {
        ConfigError(location: key.map(location) ?? SourceLocation(file: source, line: nil), key: key, message: message)
    }

    // MARK: Validation

    /// Checks every key against the schema of the chosen model and optimizer, and every value's type.
    public func validate() throws {
        guard case .string(let model)? = values["model"] else {
            throw error(values["model"] == nil ? nil : "model", "a trial needs 'model', one of: \(TrialSchema.modelNames.joined(separator: ", "))")
        }
        guard let modelKeys = TrialSchema.models[model] else {
            throw error("model", "unknown model '\(model)'\(hint(model, TrialSchema.modelNames)); allowed: \(TrialSchema.modelNames.joined(separator: ", "))")
        }
        let optimizer = try string("optimizer", default: "sgd")
        guard var optimizerKeys = TrialSchema.optimizers[optimizer] else {
            throw error("optimizer", "unknown optimizer '\(optimizer)'\(hint(optimizer, TrialSchema.optimizerNames)); allowed: \(TrialSchema.optimizerNames.joined(separator: ", "))")
        }
        if let wrapper = OptimizerCatalog.definition(optimizer) as? any WrapperDefinition.Type {
            let base = try string("base_optimizer", default: wrapper.defaultBase)
            guard let baseKeys = TrialSchema.optimizers[base], base != optimizer else {
                throw error("base_optimizer", "unknown optimizer '\(base)' to wrap\(hint(base, TrialSchema.optimizerNames)); allowed: \(TrialSchema.optimizerNames.filter { $0 != optimizer }.joined(separator: ", "))")
            }
            optimizerKeys += baseKeys
        }
        let scheduleName = try string("schedule", default: "constant")
        let scheduleKeys = TrialSchema.scheduleCommon + (TrialSchema.schedules[scheduleName] ?? [])
        let allowed = Set((TrialSchema.common + modelKeys + optimizerKeys + scheduleKeys).map(\.name))
        for key in values.keys.sorted() where !allowed.contains(key) {
            if TrialSchema.allKeys.contains(key) {
                let owner =
                    TrialSchema.optimizers.values.contains { $0.contains { $0.name == key } } ? "optimizer '\(optimizer)'"
                    : TrialSchema.schedules.values.contains { $0.contains { $0.name == key } } ? "schedule '\(scheduleName)'" : "model '\(model)'"
                throw error(key, "does not apply to \(owner); its keys are: \(allowed.sorted().joined(separator: ", "))")
            }
            throw error(key, "unknown key\(hint(key, Array(allowed))); allowed keys for model '\(model)' with optimizer '\(optimizer)': \(allowed.sorted().joined(separator: ", "))")
        }
        // Types and ranges of the keys the engine reads.
        _ = try positiveDouble("lr", default: 0.01)
        _ = try int("seed", default: 0)
        let precision = try string("precision", default: "float32")
        guard ["float32", "float64"].contains(precision) else { throw error("precision", "must be float32 or float64, not '\(precision)'") }
        for key in ["epochs", "batch_size", "limit", "test_limit", "eval_batch_size", "steps", "latent", "accumulation_steps", "range_steps"] where values[key] != nil {
            guard try int(key, default: 1) >= 1 else { throw error(key, "must be at least 1") }
        }
        if values["activation"] != nil {
            let a = try string("activation", default: "relu")
            guard Activation(rawValue: a) != nil else {
                throw error("activation", "unknown activation '\(a)'; allowed: \(Activation.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }
        if values["data"] != nil {
            do { _ = try DataSource(parsing: try string("data", default: "")) } catch let e as DataError { throw error("data", e.description) }
        }
        for key in ["momentum", "dampening", "weight_decay", "beta1", "beta2", "eps", "a", "b", "max_loss"] where values[key] != nil {
            _ = try double(key, default: 0)
        }
        for key in ["beta1", "beta2", "momentum", "dampening"] where values[key] != nil {
            let v = try double(key, default: 0)
            // Shampoo's beta2 = 1 means summed (AdaGrad-style) statistics, as in the reference.
            let summedStatistics = key == "beta2" && optimizer == "shampoo" && v == 1
            guard (0..<1).contains(v) || summedStatistics || (key == "momentum" && v >= 0) || (key == "dampening" && v <= 1 && v >= 0) else {
                throw error(key, "must be in [0, 1)\(key == "beta2" && optimizer == "shampoo" ? " or 1 (summed statistics)" : ""), got \(v)")
            }
        }
        if values["betas"] != nil {
            let b = try doubleList("betas", default: [])
            guard b.count == 2, b.allSatisfy({ (0..<1).contains($0) }) else { throw error("betas", "must be two numbers in [0, 1), e.g. [0.9, 0.999]") }
            if values["beta1"] != nil || values["beta2"] != nil { throw error("betas", "give either betas or beta1/beta2, not both") }
        }
        for key in ["nesterov", "amsgrad"] where values[key] != nil { _ = try bool(key, default: false) }
        if model == "mlp" && values["hidden"] != nil {
            guard try intList("hidden", default: []).allSatisfy({ $0 >= 1 }) else { throw error("hidden", "layer sizes must be at least 1") }
        }
        if model == "vae" && values["hidden"] != nil { guard try int("hidden", default: 400) >= 1 else { throw error("hidden", "must be at least 1") } }
        if model == "quadratic" {
            let h = try doubleList("curvatures", default: [10, 0.1])
            let s = try doubleList("start", default: Array(repeating: 1, count: h.count))
            guard !h.isEmpty, h.count == s.count else { throw error(values["start"] != nil ? "start" : "curvatures", "curvatures and start need the same, non-zero length (\(h.count) vs \(s.count))") }
        }
        if model == "polyfit" {
            guard try int("degree", default: 10) >= 0 else { throw error("degree", "must be at least 0") }
            guard try int("points", default: 20) >= 1 else { throw error("points", "must be at least 1") }
            guard try double("noise", default: 0.1) >= 0 else { throw error("noise", "must be at least 0") }
        }
        if model == "rosenbrock" {
            guard try doubleList("start", default: [-1.5, 2]).count == 2 else { throw error("start", "the Rosenbrock function is 2-D: start needs two numbers") }
        }
        for key in ["clip_grad_norm", "clip_grad_value", "range_start_lr", "range_end_lr", "layer_lr_decay", "sharpness_rho"] where values[key] != nil {
            guard try double(key, default: 1) > 0 else { throw error(key, "must be positive") }
        }
        if values["range_smoothing"] != nil {
            let f = try double("range_smoothing", default: 0.05)
            guard f > 0 && f <= 1 else { throw error("range_smoothing", "must be in (0, 1], got \(f)") }
        }
        for key in ["bias_weight_decay", "diagnostics"] where values[key] != nil { _ = try bool(key, default: false) }
        let mode = try string("mode", default: "train")
        guard ["train", "lr_range_test"].contains(mode) else { throw error("mode", "must be train or lr_range_test, not '\(mode)'") }
        if try double("range_end_lr", default: 10) <= (try double("range_start_lr", default: 1e-7)) {
            throw error("range_end_lr", "must be larger than range_start_lr")
        }
        if values["layer_lr_multipliers"] != nil {
            guard try doubleList("layer_lr_multipliers", default: []).allSatisfy({ $0 > 0 }) else { throw error("layer_lr_multipliers", "multipliers must be positive") }
            if values["layer_lr_decay"] != nil { throw error("layer_lr_decay", "give either layer_lr_multipliers or layer_lr_decay, not both") }
        }
        let baseOptimizer = try string("base_optimizer", default: "")
        if ["sam", "asam"].contains(optimizer) || (optimizer == "lookahead" && ["sam", "asam"].contains(baseOptimizer)),
            try int("accumulation_steps", default: 1) > 1
        {
            throw error("accumulation_steps", "SAM recomputes the gradient of the step's batch; it does not combine with gradient accumulation")
        }
        try OptimizerCatalog.definition(optimizer)?.validate(self)
        _ = try TrialSchedule.from(self, epochs: 1, stepsPerEpoch: 1)
        let trainsOnData = modelKeys.contains { $0.name == "data" }
        try checkResources(data: trainsOnData ? try DataSource(parsing: try string("data", default: "fashion-mnist")).knownShape : nil)
    }

    func hint(_ name: String, _ candidates: [String]) -> String {
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

    func positiveDouble(_ key: String, default d: Double) throws -> Double {
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

    // MARK: Common fields

    public var model: String { (try? string("model", default: "")) ?? "" }
    public var optimizerName: String { (try? string("optimizer", default: "sgd")) ?? "sgd" }
    public var seed: UInt64 { UInt64(truncatingIfNeeded: (try? int("seed", default: 0)) ?? 0) }
    public var isToyObjective: Bool { model == "quadratic" || model == "rosenbrock" || model == "polyfit" }

    /// How long the trial trains: epochs for models on data, steps for toy objectives.
    public func length() throws -> Int {
        model == "polyfit" ? 1 : isToyObjective ? try int("steps", default: model == "rosenbrock" ? 1000 : 100) : try int("epochs", default: 1)
    }

    /// Canonical JSON of the resolved configuration (keys sorted): the trial's identity.
    public var canonicalJSON: String {
        "{" + values.keys.sorted().map { "\(jsonQuote($0)):\(values[$0]!.json)" }.joined(separator: ",") + "}"
    }
}
