import Linalg

/// Turns a validated trial configuration into the objects that train.
public enum Builders {
    /// The optimizer a trial names, with its hyperparameters (its reference's defaults where unset).
    public static func optimizer<T: BLASScalar>(_ config: TrialConfig, scalar: T.Type = T.self) throws -> any Optimizer<T> {
        guard let definition = OptimizerCatalog.definition(config.optimizerName) else {
            throw config.error("optimizer", "unknown optimizer '\(config.optimizerName)'")
        }
        return try definition.make(config, T.self)
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
