import Linalg

enum SOAPDefinition: OptimizerDefinition {
    static let name = "soap"
    static let keys: [TrialSchema.Key] =
        [
            .lr(3e-3)
        ] + betaKeys(0.95, "Adam's first-moment decay", 0.95, "Adam's second-moment decay") + [
            .number("shampoo_beta", -1, "decay of the L/R statistics; negative means beta2"),
            .number("eps", 1e-8, "added to √v"),
            .number("weight_decay", 0.01, .nonNegative, "decoupled weight decay"),
            .integer("precondition_frequency", 10, "steps between eigenbasis refreshes"),
            .integer("max_precond_dim", 10_000, .atLeast(1), "dimensions above this stay unrotated"),
            .flag("merge_dims", false, "precondition a tensor of rank ≥ 2 along adjacent dimensions merged while their product stays within max_precond_dim (false: along each dimension)"),
            .flag("precondition_1d", false, "rotate 1-D parameters too"),
            .flag("normalize_grads", false, "normalise each update to unit RMS"),
            .flag("correct_bias", true, "Adam's bias correction"),
        ]

    static func validate(_ config: TrialConfig) throws { _ = try make(config, Double.self) }

    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> {
        let (b1, b2) = try betas(config, keys)
        let frequency = try config.int(keys["precondition_frequency"])
        guard frequency >= 1 else { throw config.error("precondition_frequency", "must be at least 1") }
        let maxDim = try config.int(keys["max_precond_dim"])
        guard maxDim >= 1 else { throw config.error("max_precond_dim", "must be at least 1") }
        return SOAP<T>(
            learningRate: try config.double(keys["lr"]), beta1: b1, beta2: b2, shampooBeta: try config.double(keys["shampoo_beta"]),
            epsilon: try config.double(keys["eps"]), weightDecay: try config.double(keys["weight_decay"]),
            preconditionFrequency: frequency, maxPreconditionDim: maxDim, mergeDims: try config.bool(keys["merge_dims"]),
            precondition1D: try config.bool(keys["precondition_1d"]),
            normalizeGrads: try config.bool(keys["normalize_grads"]), correctBias: try config.bool(keys["correct_bias"]))
    }
}

enum SimpleSOAPDefinition: OptimizerDefinition {
    static let name = "soap-simple"
    static let keys: [TrialSchema.Key] = [.lr(0.1), .number("beta1", 0.9, .unit, "momentum decay b1")]
    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> {
        SimpleSOAP<T>(learningRate: try config.double(keys["lr"]), beta1: try config.double(keys["beta1"]))
    }
}

enum MuonDefinition: OptimizerDefinition {
    static let name = "muon"
    static let keys: [TrialSchema.Key] = [
        .lr(0.02),
        .number("momentum", 0.95, .nonNegative, "momentum"),
        .flag("nesterov", true, "Nesterov-style update"),
        .integer("ns_steps", 5, "Newton–Schulz iterations"),
        .number("weight_decay", 0, .nonNegative, "decoupled weight decay of the Muon matrices"),
        .string(
            "muon_scaling", "keller", "keller: √max(1, a/b) of the last two dimensions (default; kh/kw for a conv kernel, as the reference) | rms: 0.2·√max(rows, cols) of the orthogonalised matrix"),
        .flag("muon_output", false, "use Muon for the output layer (role head) too"),
        .number("aux_lr", 3e-4, "AdamW learning rate for everything but hidden weights: embeddings, the output layer, norms, biases"),
        .number("aux_beta1", 0.9, "AdamW beta1"),
        .number("aux_beta2", 0.95, "AdamW beta2"),
        .number("aux_eps", 1e-10, "AdamW epsilon"),
        .number("aux_weight_decay", 0, "AdamW weight decay"),
    ]
    /// Biases and norms are AdamW's: their group without weight decay zeroes its decay too.
    static let weightDecayKeys = ["weight_decay", "aux_weight_decay"]

    static func validate(_ config: TrialConfig) throws { _ = try make(config, Double.self) }

    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> {
        let scalingName = try config.string(keys["muon_scaling"])
        guard let scaling = Muon<T>.Scaling(rawValue: scalingName) else {
            throw config.error("muon_scaling", "must be keller or rms, not '\(scalingName)'")
        }
        let steps = try config.int(keys["ns_steps"])
        guard steps >= 1 else { throw config.error("ns_steps", "must be at least 1") }
        for key in ["aux_beta1", "aux_beta2"] where !(0..<1).contains(try config.double(key, default: 0.9)) {
            throw config.error(key, "must be in [0, 1)")
        }
        return Muon<T>(
            learningRate: try config.double(keys["lr"]), momentum: try config.double(keys["momentum"]),
            nesterov: try config.bool(keys["nesterov"]), nsSteps: steps, weightDecay: try config.double(keys["weight_decay"]),
            scaling: scaling, muonOutput: try config.bool(keys["muon_output"]), auxLearningRate: try config.double(keys["aux_lr"]),
            auxBeta1: try config.double(keys["aux_beta1"]), auxBeta2: try config.double(keys["aux_beta2"]),
            auxEpsilon: try config.double(keys["aux_eps"]), auxWeightDecay: try config.double(keys["aux_weight_decay"]))
    }
}
