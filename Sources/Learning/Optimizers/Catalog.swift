import Linalg

/// An optimizer as trials name it: its trial keys (with help text, for errors and README) and how
/// to build it from a validated trial. One type per optimizer, listed in `OptimizerCatalog.all`.
public protocol OptimizerDefinition {
    /// The `optimizer:` value that selects it.
    static var name: String { get }
    /// Its hyperparameter keys (besides `lr`), with their defaults in the help text.
    static var keys: [TrialSchema.Key] { get }
    /// Checks values beyond their types (ranges, combinations); throws `config.error(key, …)`.
    static func validate(_ config: TrialConfig) throws
    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T>
}

extension OptimizerDefinition {
    public static func validate(_ config: TrialConfig) throws {}
}

public enum OptimizerCatalog {
    /// Every optimizer a trial can name.
    public static let all: [any OptimizerDefinition.Type] = [
        SGDDefinition.self, AdamDefinition.self, AdamWDefinition.self,
        SOAPDefinition.self, SimpleSOAPDefinition.self, MuonDefinition.self,
        AdagradDefinition.self, RMSpropDefinition.self, NAdamDefinition.self, LionDefinition.self, SimpleLionDefinition.self,
        LAMBDefinition.self, LARSDefinition.self, AdafactorDefinition.self, SimpleAdafactorDefinition.self,
        ShampooDefinition.self, SimpleShampooDefinition.self,
        SophiaDefinition.self, AdamW8bitDefinition.self, ScheduleFreeAdamWDefinition.self,
        SAMDefinition.self, ASAMDefinition.self, LookaheadDefinition.self,
    ]

    public static func definition(_ name: String) -> (any OptimizerDefinition.Type)? {
        all.first { $0.name == name }
    }
}

// MARK: - The torch.optim basics

enum SGDDefinition: OptimizerDefinition {
    static let name = "sgd"
    static let keys: [TrialSchema.Key] = [
        .init(name: "momentum", help: "momentum factor (default 0)"),
        .init(name: "dampening", help: "dampening of momentum (default 0)"),
        .init(name: "nesterov", help: "Nesterov momentum (default false)"),
        .init(name: "weight_decay", help: "L2 penalty added to the gradient (default 0)"),
    ]

    static func validate(_ config: TrialConfig) throws {
        if try config.bool("nesterov", default: false) {
            let momentum = try config.double("momentum", default: 0), dampening = try config.double("dampening", default: 0)
            guard momentum > 0, dampening == 0 else { throw config.error("nesterov", "Nesterov momentum requires momentum > 0 and dampening 0") }
        }
    }

    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> {
        SGD<T>(
            learningRate: try config.double("lr", default: 0.01), momentum: try config.double("momentum", default: 0),
            dampening: try config.double("dampening", default: 0), nesterov: try config.bool("nesterov", default: false),
            weightDecay: try config.double("weight_decay", default: 0))
    }
}

/// Shared by `adam` and `adamw`.
func adamKeys(weightDecayDefault: String) -> [TrialSchema.Key] {
    [
        .init(name: "beta1", help: "first-moment decay (default 0.9)"),
        .init(name: "beta2", help: "second-moment decay (default 0.999)"),
        .init(name: "betas", help: "[beta1, beta2] together"),
        .init(name: "eps", help: "denominator epsilon (default 1e-8)"),
        .init(name: "weight_decay", help: "weight decay (default \(weightDecayDefault))"),
        .init(name: "amsgrad", help: "AMSGrad variant (default false)"),
    ]
}

/// `betas` or `beta1`/`beta2`, with defaults.
func betas(_ config: TrialConfig, _ d1: Double = 0.9, _ d2: Double = 0.999) throws -> (Double, Double) {
    let b = try config.doubleList("betas", default: [try config.double("beta1", default: d1), try config.double("beta2", default: d2)])
    return (b[0], b[1])
}

func makeAdam<T: BLASScalar>(_ config: TrialConfig, decoupled: Bool) throws -> Adam<T> {
    let (b1, b2) = try betas(config)
    return Adam<T>(
        learningRate: try config.double("lr", default: 1e-3), beta1: b1, beta2: b2, epsilon: try config.double("eps", default: 1e-8),
        weightDecay: try config.double("weight_decay", default: decoupled ? 1e-2 : 0), decoupled: decoupled,
        amsgrad: try config.bool("amsgrad", default: false))
}

enum AdamDefinition: OptimizerDefinition {
    static let name = "adam"
    static let keys = adamKeys(weightDecayDefault: "0")
    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> { try makeAdam(config, decoupled: false) as Adam<T> }
}

enum AdamWDefinition: OptimizerDefinition {
    static let name = "adamw"
    static let keys = adamKeys(weightDecayDefault: "0.01")
    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> { try makeAdam(config, decoupled: true) as Adam<T> }
}
