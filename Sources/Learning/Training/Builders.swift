import Linalg

/// Turns a validated trial configuration into the objects that train.
public enum Builders {
    /// The optimizer a trial names, with its hyperparameters (torch's defaults where unset).
    public static func optimizer<T: BLASScalar>(_ config: TrialConfig, scalar: T.Type = T.self) throws -> any Optimizer<T> {
        let lr = try config.double("lr", default: 0.01)
        switch config.optimizerName {
        case "sgd":
            return SGD<T>(
                learningRate: lr, momentum: try config.double("momentum", default: 0),
                dampening: try config.double("dampening", default: 0), nesterov: try config.bool("nesterov", default: false),
                weightDecay: try config.double("weight_decay", default: 0))
        case "adam", "adamw":
            let decoupled = config.optimizerName == "adamw"
            let betas = try config.doubleList("betas", default: [try config.double("beta1", default: 0.9), try config.double("beta2", default: 0.999)])
            return Adam<T>(
                learningRate: lr, beta1: betas[0], beta2: betas[1], epsilon: try config.double("eps", default: 1e-8),
                weightDecay: try config.double("weight_decay", default: decoupled ? 1e-2 : 0), decoupled: decoupled,
                amsgrad: try config.bool("amsgrad", default: false))
        default:
            throw config.error("optimizer", "unknown optimizer '\(config.optimizerName)'")
        }
    }

    /// The model a trial names, initialised from the trial's seed (stream "init").
    public static func model<T: BLASScalar>(_ config: TrialConfig, features: Int, classes: Int, scalar: T.Type = T.self) throws -> any Model<T> {
        var rng = Xoshiro256(seed: config.seed, stream: "init")
        switch config.model {
        case "mlp":
            let activation = Activation(rawValue: try config.string("activation", default: "relu"))!
            return MLPClassifier<T>(inputs: features, hidden: try config.intList("hidden", default: [256, 128]), classes: classes, activation: activation, rng: &rng)
        case "logreg":
            return MLPClassifier<T>(inputs: features, hidden: [], classes: classes, activation: .relu, rng: &rng)
        case "vae":
            return VAE<T>(inputs: features, hidden: try config.int("hidden", default: 400), latent: try config.int("latent", default: 20), rng: &rng)
        default:
            throw config.error("model", "'\(config.model)' is not trained on data")
        }
    }

    public static func objective(_ config: TrialConfig) throws -> any Objective {
        switch config.model {
        case "quadratic":
            let h = try config.doubleList("curvatures", default: [10, 0.1])
            return Quadratic(curvatures: h, start: try config.doubleList("start", default: Array(repeating: 1, count: h.count)))
        case "rosenbrock":
            return Rosenbrock(a: try config.double("a", default: 1), b: try config.double("b", default: 100), start: try config.doubleList("start", default: [-1.5, 2]))
        default:
            throw config.error("model", "'\(config.model)' is not a toy objective")
        }
    }
}
