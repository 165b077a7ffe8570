import Linalg

enum SOAPDefinition: OptimizerDefinition {
    static let name = "soap"
    static let keys: [TrialSchema.Key] = [
        .init(name: "beta1", help: "Adam's first-moment decay (default 0.95)"),
        .init(name: "beta2", help: "Adam's second-moment decay (default 0.95)"),
        .init(name: "betas", help: "[beta1, beta2] together"),
        .init(name: "shampoo_beta", help: "decay of the L/R statistics; negative means beta2 (default -1)"),
        .init(name: "eps", help: "added to √v (default 1e-8)"),
        .init(name: "weight_decay", help: "decoupled weight decay (default 0.01)"),
        .init(name: "precondition_frequency", help: "steps between eigenbasis refreshes (default 10)"),
        .init(name: "max_precond_dim", help: "dimensions above this stay unrotated (default 10000)"),
        .init(name: "precondition_1d", help: "rotate 1-D parameters too (default false)"),
        .init(name: "normalize_grads", help: "normalise each update to unit RMS (default false)"),
        .init(name: "correct_bias", help: "Adam's bias correction (default true)"),
    ]

    static func validate(_ config: TrialConfig) throws { _ = try make(config, Double.self) }

    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> {
        let (b1, b2) = try betas(config, 0.95, 0.95)
        let frequency = try config.int("precondition_frequency", default: 10)
        guard frequency >= 1 else { throw config.error("precondition_frequency", "must be at least 1") }
        let maxDim = try config.int("max_precond_dim", default: 10_000)
        guard maxDim >= 1 else { throw config.error("max_precond_dim", "must be at least 1") }
        return SOAP<T>(
            learningRate: try config.double("lr", default: 3e-3), beta1: b1, beta2: b2, shampooBeta: try config.double("shampoo_beta", default: -1),
            epsilon: try config.double("eps", default: 1e-8), weightDecay: try config.double("weight_decay", default: 0.01),
            preconditionFrequency: frequency, maxPreconditionDim: maxDim, precondition1D: try config.bool("precondition_1d", default: false),
            normalizeGrads: try config.bool("normalize_grads", default: false), correctBias: try config.bool("correct_bias", default: true))
    }
}

enum SimpleSOAPDefinition: OptimizerDefinition {
    static let name = "soap-simple"
    static let keys: [TrialSchema.Key] = [.init(name: "beta1", help: "momentum decay b1 (default 0.9)")]
    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> {
        SimpleSOAP<T>(learningRate: try config.double("lr", default: 0.1), beta1: try config.double("beta1", default: 0.9))
    }
}

enum MuonDefinition: OptimizerDefinition {
    static let name = "muon"
    static let keys: [TrialSchema.Key] = [
        .init(name: "momentum", help: "momentum (default 0.95)"),
        .init(name: "nesterov", help: "Nesterov-style update (default true)"),
        .init(name: "ns_steps", help: "Newton–Schulz iterations (default 5)"),
        .init(name: "weight_decay", help: "decoupled weight decay of the Muon matrices (default 0)"),
        .init(name: "muon_scaling", help: "keller: √max(1, rows/cols) (default) | rms: 0.2·√max(rows, cols)"),
        .init(name: "muon_output", help: "use Muon for the output layer too (default false: AdamW)"),
        .init(name: "aux_lr", help: "AdamW learning rate for biases and the output layer (default 3e-4)"),
        .init(name: "aux_beta1", help: "AdamW beta1 (default 0.9)"),
        .init(name: "aux_beta2", help: "AdamW beta2 (default 0.95)"),
        .init(name: "aux_eps", help: "AdamW epsilon (default 1e-10)"),
        .init(name: "aux_weight_decay", help: "AdamW weight decay (default 0)"),
    ]

    static func validate(_ config: TrialConfig) throws { _ = try make(config, Double.self) }

    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> {
        let scalingName = try config.string("muon_scaling", default: "keller")
        guard let scaling = Muon<T>.Scaling(rawValue: scalingName) else {
            throw config.error("muon_scaling", "must be keller or rms, not '\(scalingName)'")
        }
        let steps = try config.int("ns_steps", default: 5)
        guard steps >= 1 else { throw config.error("ns_steps", "must be at least 1") }
        for key in ["aux_beta1", "aux_beta2"] where !(0..<1).contains(try config.double(key, default: 0.9)) {
            throw config.error(key, "must be in [0, 1)")
        }
        return Muon<T>(
            learningRate: try config.double("lr", default: 0.02), momentum: try config.double("momentum", default: 0.95),
            nesterov: try config.bool("nesterov", default: true), nsSteps: steps, weightDecay: try config.double("weight_decay", default: 0),
            scaling: scaling, muonOutput: try config.bool("muon_output", default: false), auxLearningRate: try config.double("aux_lr", default: 3e-4),
            auxBeta1: try config.double("aux_beta1", default: 0.9), auxBeta2: try config.double("aux_beta2", default: 0.95),
            auxEpsilon: try config.double("aux_eps", default: 1e-10), auxWeightDecay: try config.double("aux_weight_decay", default: 0))
    }
}
