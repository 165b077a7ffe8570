import Linalg

/// Turns a validated trial configuration into the objects that train.
public enum Builders {
    /// The optimizer a trial names, with its hyperparameters (its reference's defaults where unset).
    ///
    /// Given the model's parameters it also builds the trial's parameter groups: biases and norm
    /// parameters without weight decay (unless `bias_weight_decay: true`) and per-layer
    /// learning-rate multipliers (`layer_lr_multipliers`, `layer_lr_decay`), each group with its own
    /// instance of the optimizer (see `ParameterGroups`), which sees its tensors' names and roles.
    /// Wrappers (SAM, Lookahead) wrap the grouped optimizer. An optimizer that cannot step one of
    /// the tensors (`ShapeChecking`) is refused here, naming it.
    public static func optimizer<T: BLASScalar>(_ config: TrialConfig, parameters: Parameters<T>? = nil) throws -> any Optimizer<T> {
        guard let definition = OptimizerCatalog.definition(config.optimizerName) else {
            throw config.error("optimizer", "unknown optimizer '\(config.optimizerName)'")
        }
        guard let parameters else { return try definition.make(config, T.self) }
        if let wrapper = definition as? any WrapperDefinition.Type {
            let baseName = try config.string(wrapper.keys["base_optimizer"])
            let base: any Optimizer<T> = try optimizer(config.setting("optimizer", .string(baseName)), parameters: parameters)
            return try wrapper.wrap(base, config)
        }
        let decayKeys = definition.weightDecayKeys
        let groups = try parameterGroups(config, names: parameters.names, roles: parameters.roles, decays: !decayKeys.isEmpty)
        guard groups.count > 1 || groups.first?.learningRateScale != 1 || groups.first?.weightDecay == false else {
            let optimizer = try definition.make(config, T.self)
            try (optimizer as? any ShapeChecking)?.check(ParameterLayout(parameters))
            return optimizer
        }
        let lr = try OptimizerCatalog.learningRate(config)
        let built = try groups.map { g in
            let inner = g.weightDecay ? config : decayKeys.reduce(config) { $0.setting($1, .double(0)) }
            let optimizer = try definition.make(inner, T.self)
            try (optimizer as? any ShapeChecking)?.check(ParameterLayout(parameters, indices: g.indices))
            return (indices: g.indices, learningRateScale: g.learningRateScale, weightDecay: g.weightDecay, optimizer: optimizer)
        }
        return ParameterGroups(name: built[0].optimizer.name, learningRate: lr, groups: built, parameters: parameters)
    }

    /// The roles whose parameters take no weight decay unless `bias_weight_decay: true` (as
    /// nanoGPT's and timm's parameter groups: gains and shifts are not decayed; embeddings are).
    static let undecayedRoles: Set<ParameterRole> = [.bias, .norm]

    /// The groups of parameters that share a learning-rate multiplier and weight-decay setting,
    /// in order of first appearance. A parameter's layer is its name up to the last dot.
    static func parameterGroups(
        _ config: TrialConfig, names: [String], roles: [ParameterRole], decays: Bool
    ) throws -> [(indices: [Int], learningRateScale: Double, weightDecay: Bool)] {
        var layers: [String] = []
        for name in names {
            let layer = name.split(separator: ".").dropLast().joined(separator: ".")
            if !layers.contains(layer) { layers.append(layer) }
        }
        var scales = Array(repeating: 1.0, count: layers.count)
        if config.values["layer_lr_multipliers"] != nil {
            let m = try config.doubleList(TrialSchema.data["layer_lr_multipliers"], otherwise: [])
            guard m.count == layers.count else {
                throw config.error("layer_lr_multipliers", "needs one multiplier per layer: \(layers.count) (\(layers.joined(separator: ", "))), got \(m.count)")
            }
            scales = m
        } else if config.values["layer_lr_decay"] != nil {
            let gamma = try config.double(TrialSchema.data["layer_lr_decay"], otherwise: 1)
            scales = layers.indices.map { Double.pow(gamma, Double(layers.count - 1 - $0)) }
        }
        let decayAll = try config.bool(TrialSchema.data["bias_weight_decay"]) || !decays
        var groups: [(indices: [Int], learningRateScale: Double, weightDecay: Bool)] = []
        for (i, name) in names.enumerated() {
            let layer = name.split(separator: ".").dropLast().joined(separator: ".")
            let scale = scales[layers.firstIndex(of: layer)!]
            let decay = decayAll || !undecayedRoles.contains(roles[i])
            if let k = groups.firstIndex(where: { $0.learningRateScale == scale && $0.weightDecay == decay }) {
                groups[k].indices.append(i)
            } else {
                groups.append((indices: [i], learningRateScale: scale, weightDecay: decay))
            }
        }
        return groups
    }

    /// The layers of a network model (`sequential` or a preset) on data of `data`'s shape, and
    /// how its parameters start.
    static func layerSpecs(_ config: TrialConfig, data: DataShape) throws -> (layers: [LayerSpec], initialization: Initialization) {
        let keys = TrialSchema.models[config.model]!
        let image: (channels: Int, height: Int, width: Int)? = if case .image(let c, let h, let w) = data.layout { (c, h, w) } else { nil }
        func needImages() throws {
            guard image != nil else { throw config.error("model", "\(config.model) needs image data (fashion-mnist, idx:, cifar10:, or hdf5: with (N, C, H, W) images), got \(data.layout)s") }
        }
        switch config.model {
        case "sequential":
            return (try config.layers("layers"), .pytorch)
        case "lenet5":
            try needImages()
            return (NetworkPresets.lenet5(activation: try config.choice(keys["activation"], Activation.self), pooling: try config.string(keys["pool"]), height: image!.height), .pytorch)
        case "resnet":
            try needImages()
            return (NetworkPresets.resnet(depth: try config.int(keys["depth"]), width: try config.int(keys["width"])), .pytorch)
        case "cnn":
            try needImages()
            return (NetworkPresets.cnn(channels: try config.intList(keys["channels"]), hidden: try config.int(keys["hidden"])), .pytorch)
        case "gpt":
            guard case .tokens = data.layout else { throw config.error("data", "gpt trains on text: data: text:FILE") }
            let layers = try config.int(keys["n_layer"])
            return (
                NetworkPresets.gpt(
                    layers: layers, heads: try config.int(keys["n_head"]), width: try config.int(keys["n_embd"]), dropout: try config.double(keys["dropout"]), tied: try config.bool(keys["tied"])),
                .gpt2(layers: layers)
            )
        default:
            preconditionFailure("\(config.model) is not a network")
        }
    }

    /// A network model's plan on data of `data`'s shape (no tensor allocated).
    static func networkPlan<T: BLASScalar>(_ config: TrialConfig, data: DataShape, scalar: T.Type = T.self) throws -> NetworkPlan<T> {
        let (specs, initialization) = try layerSpecs(config, data: data)
        return try NetworkPlan<T>(specs, input: FeatureShape(data.layout, features: data.features, classes: data.classes), classes: data.classes, initialization: initialization)
    }

    /// The model a trial names, initialised from the trial's seed (stream "init").
    public static func model<T: BLASScalar>(_ config: TrialConfig, data: DataShape, scalar: T.Type = T.self) throws -> any Model<T> {
        var rng = Xoshiro256(seed: config.seed, stream: "init")
        let (features, classes) = (data.features, data.classes)
        if TrialSchema.networks[config.model] != nil {
            do {
                return Network<T>(try networkPlan(config, data: data), rng: &rng)
            } catch let e as LayerSpecError {
                throw config.error(config.values["layers"] != nil ? "layers" : "model", "\(e.path): \(e.message)")
            }
        }
        switch config.model {
        case "mlp":
            let activation = try config.choice(TrialSchema.models["mlp"]!["activation"], Activation.self)
            return MLPClassifier<T>(inputs: features, hidden: try config.intList(TrialSchema.models["mlp"]!["hidden"]), classes: classes, activation: activation, rng: &rng)
        case "logreg":
            return MLPClassifier<T>(inputs: features, hidden: [], classes: classes, activation: .relu, rng: &rng)
        case "vae":
            return VAE<T>(inputs: features, hidden: try config.int(TrialSchema.models["vae"]!["hidden"]), latent: try config.int(TrialSchema.models["vae"]!["latent"]), rng: &rng)
        default:
            throw config.error("model", "'\(config.model)' is not trained on data")
        }
    }

    public static func objective(_ config: TrialConfig) throws -> any Objective {
        switch config.model {
        case "quadratic":
            let h = try config.doubleList(TrialSchema.models["quadratic"]!["curvatures"])
            return Quadratic(curvatures: h, start: try config.doubleList(TrialSchema.models["quadratic"]!["start"], otherwise: Array(repeating: 1, count: h.count)))
        case "rosenbrock":
            return Rosenbrock(
                a: try config.double(TrialSchema.models["rosenbrock"]!["a"]), b: try config.double(TrialSchema.models["rosenbrock"]!["b"]),
                start: try config.doubleList(TrialSchema.models["rosenbrock"]!["start"]))
        default:
            throw config.error("model", "'\(config.model)' is not a toy objective")
        }
    }
}
