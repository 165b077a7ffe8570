import Yams

/// The vocabulary of trial keys: what each model, data set and optimizer accepts. Sweep files
/// use the same keys, so validation here is validation there.
public enum TrialSchema {
    /// Keys every trial may use (`lr` is each optimizer's: its default differs).
    public static let common: [Key] = [
        .choice("model", nil, modelNames, note: "required", "the model or toy objective"),
        .string("optimizer", "sgd", "optimizer name (see optimizers)"),
        .integer("seed", 0, "seed for initialisation, data order and sampling noise"),
        .choice("precision", "float32", ["float32", "float64"], "floating-point type of models trained on data"),
        .number("max_loss", .infinity, note: nil, "end the trial as diverged when a training loss exceeds this (NaN/Inf always do)"),
        .number("clip_grad_norm", nil, .positive, note: "no clipping", "clip the global gradient norm to this (torch clip_grad_norm_)"),
        .number("clip_grad_value", nil, .positive, note: "no clipping", "clamp every gradient component to [-v, v] (torch clip_grad_value_)"),
    ]

    /// Keys of models trained on a data set.
    public static let data: [Key] = [
        .string("data", "fashion-mnist", "fashion-mnist | idx:DIR | hdf5:FILE | cifar10:DIR | text:FILE"),
        .integer("epochs", 1, .atLeast(1), "passes over the training set (at most \(TrialLimits.maxEpochs), and at most \(TrialLimits.maxExamplesSeen) examples in all)"),
        .integer("batch_size", 128, .atLeast(1), "examples per step (at most \(TrialLimits.maxBatchSize))"),
        .integer("limit", nil, .atLeast(1), note: "all", "use only the first N training examples"),
        .integer("test_limit", nil, .atLeast(1), note: "all", "use only the first N test examples"),
        .integer(
            "eval_batch_size", 1000, .atLeast(1),
            "examples per evaluation batch (at most \(TrialLimits.maxBatchSize); networks evaluate in smaller chunks when a batch's layer outputs would exceed \(TrialLimits.maxBatchValues) values)"),
        .integer("accumulation_steps", 1, .atLeast(1), "micro-batches of batch_size averaged per optimizer step"),
        .flag("bias_weight_decay", false, "apply weight decay to biases and norm parameters too (false: neither is decayed; weights, embeddings and the head always are)"),
        .numbers("layer_lr_multipliers", nil, .positive, note: "all 1", "one learning-rate multiplier per layer, in order (fc1, fc2, …)"),
        .number("layer_lr_decay", nil, .positive, note: "none", "layer-wise lr decay γ: the last layer gets lr, each one below γ times the next"),
        .number("sharpness_rho", nil, .positive, note: "not measured", "at the end, measure L(w + ρ·g/‖g‖) − L(w) on 2,048 training examples (SAM's sharpness)"),
        .flag("diagnostics", false, "record per-layer update norms and activation deltas each epoch"),
        .choice("mode", "train", ["train", "lr_range_test"], "train, or run an LR range test"),
        .number("range_start_lr", 1e-7, .positive, "LR range test: first learning rate"),
        .number("range_end_lr", 10, .positive, "LR range test: last learning rate"),
        .integer("range_steps", 100, .atLeast(1), "LR range test: steps (at most \(TrialLimits.maxSteps))"),
        .number("range_smoothing", 0.05, .fraction, "LR range test: loss smoothing factor"),
        .integer("augment_crop", 0, .atLeast(0), "images: shift each training image by up to this many pixels, zero-filled (random crop after padding; 0: none)"),
        .flag("augment_flip", false, "images: flip each training image horizontally with probability ½"),
        .integer("block_size", 64, .between(1, 65_536), "text: tokens per window (the model's context length)"),
        .choice("tokens", "bytes", ["bytes", "characters"], "text: a token per byte (vocabulary 256), or per character (the text's own characters)"),
        .number("validation_fraction", 0.1, .openUnit, "text: the last fraction of the text, held out for evaluation"),
    ]

    /// The keys of the networks built from layers (a `layers` list or a preset).
    static let networks: [String: [Key]] = [
        "sequential": [Key("layers", .layers, default: nil, note: "required", help: "the network, layer by layer (see docs/models.md)")],
        "lenet5": [
            .choice("activation", Activation.relu, "activation after each convolution and hidden layer"),
            .choice("pool", "max", ["max", "avg"], "2×2 pooling after each convolution"),
        ],
        "resnet": [
            .integer("depth", 20, .between(8, 1202), "layers: 6n + 2 (8, 14, 20, 32, 44, 56, 110, …)"),
            .integer("width", 16, .between(1, 1024), "channels of the first stage (then 2× and 4×)"),
        ],
        "cnn": [
            .integers("channels", [32, 64], .between(1, 4096), "channels of each 3×3 convolution stage (each halves the image)"),
            .integer("hidden", 128, .between(1, 1_048_576), "width of the hidden fully connected layer"),
        ],
        "gpt": [
            .integer("n_layer", 4, .between(1, 256), "transformer blocks"),
            .integer("n_head", 4, .between(1, 256), "attention heads (dividing n_embd)"),
            .integer("n_embd", 128, .between(1, 16_384), "embedding width"),
            .number("dropout", 0, .unit, "dropout after the embeddings, on attention weights and on each residual branch"),
            .flag("tied", true, "the head's weight is the token embedding's"),
        ],
    ]

    public static let models: [String: [Key]] = networks.mapValues { data + $0 }.merging([
        "mlp": data + [
            .integers("hidden", [256, 128], .atLeast(1), "hidden layer sizes (at most \(TrialLimits.maxParameters) parameters in all)"),
            .choice("activation", Activation.relu, "hidden-layer activation"),
        ],
        "logreg": data,
        "vae": data + [
            .integer("hidden", 400, .atLeast(1), "hidden layer size (at most \(TrialLimits.maxParameters) parameters in all)"),
            .integer("latent", 20, .atLeast(1), "latent dimension"),
        ],
        "quadratic": [
            .integer("steps", 100, .atLeast(1), "optimizer steps (at most \(TrialLimits.maxSteps))"),
            .numbers("curvatures", Quadratic.defaultCurvatures, "diagonal curvatures h_i of ½Σh_i·x_i²"),
            .numbers("start", nil, note: "all 1", "start point"),
        ],
        "polyfit": [
            .integer("degree", 10, .atLeast(0), "polynomial degree (at most \(TrialLimits.maxParameters) coefficients)"),
            .integer("points", 20, .atLeast(1), "noisy training samples of sin(πx) (at most \(TrialLimits.maxBatchSize))"),
            .number("noise", 0.1, .nonNegative, "standard deviation of the sample noise"),
        ],
        "rosenbrock": [
            .integer("steps", 1000, .atLeast(1), "optimizer steps (at most \(TrialLimits.maxSteps))"),
            .numbers("start", Rosenbrock.defaultStart, "start point"),
            .number("a", Rosenbrock.defaultA, "(a − x)² + b(y − x²)²: a"),
            .number("b", Rosenbrock.defaultB, "b"),
        ],
    ]) { a, _ in a }

    /// Each optimizer's keys, from `OptimizerCatalog`: built once (every trial's validation
    /// looks its optimizer up; building the table each time cost a trivial trial ~10 µs).
    public static let optimizers: [String: [Key]] = Dictionary(uniqueKeysWithValues: OptimizerCatalog.all.map { ($0.name, $0.keys) })

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

/// Reading with validation, and the fields whose defaults are trial-key declarations.
extension TrialConfig {
    /// Parses a YAML mapping of trial keys and validates it against the schema.
    public static func parse(yaml text: String, source: String) throws -> TrialConfig {
        let config = try read(yaml: text, source: source)
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

    // MARK: Validation

    /// Checks every key against the schema of the chosen model and optimizer, and every value's type.
    public func validate() throws {
        if isProgram { return try validateProgram() }
        guard case .string(let model)? = values["model"] else {
            throw error(
                values["model"] == nil ? nil : "model",
                "a trial needs 'model', one of: \(TrialSchema.modelNames.joined(separator: ", ")) (or 'program' to run a training program of your own)")
        }
        guard let modelKeys = TrialSchema.models[model] else {
            throw error("model", "unknown model '\(model)'\(hint(model, TrialSchema.modelNames)); allowed: \(TrialSchema.modelNames.joined(separator: ", "))")
        }
        let optimizer = try string(TrialSchema.common["optimizer"])
        guard var optimizerKeys = TrialSchema.optimizers[optimizer] else {
            throw error("optimizer", "unknown optimizer '\(optimizer)'\(hint(optimizer, TrialSchema.optimizerNames)); allowed: \(TrialSchema.optimizerNames.joined(separator: ", "))")
        }
        if let wrapper = OptimizerCatalog.definition(optimizer) as? any WrapperDefinition.Type {
            let base = try string(wrapper.keys["base_optimizer"])
            guard let baseKeys = TrialSchema.optimizers[base], base != optimizer else {
                throw error(
                    "base_optimizer",
                    "unknown optimizer '\(base)' to wrap\(hint(base, TrialSchema.optimizerNames)); allowed: \(TrialSchema.optimizerNames.filter { $0 != optimizer }.joined(separator: ", "))")
            }
            optimizerKeys += baseKeys
        }
        let scheduleName = try string("schedule", default: "constant")
        let scheduleKeys = TrialSchema.scheduleCommon + (TrialSchema.schedules[scheduleName] ?? [])
        let declarations = TrialSchema.common + modelKeys + optimizerKeys + scheduleKeys
        let allowed = Set(declarations.map(\.name))
        for definition in [optimizer, try string("base_optimizer", default: "")].compactMap(OptimizerCatalog.definition) {
            for (old, new) in definition.renamedKeys.sorted(by: { $0.key < $1.key }) where values[old] != nil && !allowed.contains(old) {
                throw error(old, "was renamed: optimizer '\(definition.name)' calls it '\(new)'")
            }
        }
        for key in values.keys.sorted() where !allowed.contains(key) {
            if TrialSchema.allKeys.contains(key) {
                let owner =
                    TrialSchema.optimizers.values.contains { $0.contains { $0.name == key } }
                    ? "optimizer '\(optimizer)'"
                    : TrialSchema.schedules.values.contains { $0.contains { $0.name == key } } ? "schedule '\(scheduleName)'" : "model '\(model)'"
                throw error(key, "does not apply to \(owner); its keys are: \(allowed.sorted().joined(separator: ", "))")
            }
            throw error(key, "unknown key\(hint(key, Array(allowed))); allowed keys for model '\(model)' with optimizer '\(optimizer)': \(allowed.sorted().joined(separator: ", "))")
        }
        // Types, ranges and choices, as declared.
        for key in declarations { try key.check(self) }
        if values["data"] != nil {
            do { _ = try DataSource(parsing: try string("data", default: "")) } catch let e as DataError { throw error("data", e.description) }
        }
        if values["betas"] != nil {
            guard try doubleList("betas", default: []).count == 2 else { throw error("betas", "must be two numbers in [0, 1), e.g. [0.9, 0.999]") }
            if values["beta1"] != nil || values["beta2"] != nil { throw error("betas", "give either betas or beta1/beta2, not both") }
        }
        if model == "quadratic" {
            let h = try doubleList(modelKeys["curvatures"])
            let s = try doubleList(modelKeys["start"], otherwise: Array(repeating: 1, count: h.count))
            guard !h.isEmpty, h.count == s.count else { throw error(values["start"] != nil ? "start" : "curvatures", "curvatures and start need the same, non-zero length (\(h.count) vs \(s.count))") }
        }
        if model == "resnet", (try int(modelKeys["depth"]) - 2) % 6 != 0 {
            throw error("depth", "a CIFAR ResNet has 6n + 2 layers (8, 14, 20, 32, …), not \(try int(modelKeys["depth"]))")
        }
        if model == "gpt", try int(modelKeys["n_embd"]) % int(modelKeys["n_head"]) != 0 {
            throw error("n_head", "\(try int(modelKeys["n_head"])) heads do not divide n_embd \(try int(modelKeys["n_embd"]))")
        }
        if model == "rosenbrock" {
            guard try doubleList(modelKeys["start"]).count == 2 else { throw error("start", "the Rosenbrock function is 2-D: start needs two numbers") }
        }
        if modelKeys.contains(where: { $0.name == "mode" }),
            try double(modelKeys["range_end_lr"]) <= (try double(modelKeys["range_start_lr"]))
        {
            throw error("range_end_lr", "must be larger than range_start_lr")
        }
        if values["layer_lr_multipliers"] != nil && values["layer_lr_decay"] != nil {
            throw error("layer_lr_decay", "give either layer_lr_multipliers or layer_lr_decay, not both")
        }
        let baseOptimizer = try string("base_optimizer", default: "")
        if ["sam", "asam"].contains(optimizer) || (optimizer == "lookahead" && ["sam", "asam"].contains(baseOptimizer)),
            (try optionalInt("accumulation_steps") ?? 1) > 1
        {
            throw error("accumulation_steps", "SAM recomputes the gradient of the step's batch; it does not combine with gradient accumulation")
        }
        try OptimizerCatalog.definition(optimizer)?.validate(self)
        _ = try TrialSchedule.from(self, epochs: 1, stepsPerEpoch: 1)
        let trainsOnData = modelKeys.contains { $0.name == "data" }
        try checkResources(data: trainsOnData ? try DataSource(parsing: try string("data", default: "fashion-mnist")).knownShape : nil)
    }

    // MARK: Common fields

    /// The optimizer's name; a program trial's `optimizer` hyperparameter if it has one, else "".
    public var optimizerName: String {
        if isProgram { return values["optimizer"]?.description ?? "" }
        return (try? string(TrialSchema.common["optimizer"])) ?? "sgd"
    }
    public var seed: UInt64 { UInt64(truncatingIfNeeded: (try? int(TrialSchema.common["seed"])) ?? 0) }

    /// How long the trial trains: epochs for models on data, steps for toy objectives.
    public func length() throws -> Int {
        if isProgram { return try int(ProgramContract.Key.epochs, default: 1) }
        return model == "polyfit" ? 1 : isToyObjective ? try int(TrialSchema.models[model]!["steps"]) : try int(TrialSchema.data["epochs"])
    }
}
