import Linalg

/// An optimizer as trials name it: its trial keys (with help text, for errors and README) and how
/// to build it from a validated trial. One type per optimizer, listed in `OptimizerCatalog.all`.
public protocol OptimizerDefinition: Sendable {
    /// The `optimizer:` value that selects it.
    static var name: String { get }
    /// Its hyperparameter keys (besides `lr`), with their defaults in the help text.
    static var keys: [TrialSchema.Key] { get }
    /// Old key names and the names that replaced them: given, they are refused naming the new one.
    static var renamedKeys: [String: String] { get }
    /// The keys that decay weights: parameter groups without weight decay (biases, norms) set
    /// them all to 0. By default `weight_decay`, if the optimizer has it.
    static var weightDecayKeys: [String] { get }
    /// Checks values beyond their types (ranges, combinations); throws `config.error(key, …)`.
    static func validate(_ config: TrialConfig) throws
    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T>
}

extension OptimizerDefinition {
    public static var weightDecayKeys: [String] { keys.contains { $0.name == "weight_decay" } ? ["weight_decay"] : [] }
    public static func validate(_ config: TrialConfig) throws {}
    public static var renamedKeys: [String: String] { [:] }
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

    /// The optimizer that takes the trial's `lr` (for a wrapper, the one it wraps) and its keys.
    static func learningRateOwner(_ config: TrialConfig) throws -> any OptimizerDefinition.Type {
        let name = try config.string(TrialSchema.common["optimizer"])
        guard let definition = definition(name) else { throw config.error("optimizer", "unknown optimizer '\(name)'") }
        if let wrapper = definition as? any WrapperDefinition.Type {
            let base = try config.string(wrapper.keys["base_optimizer"])
            guard let inner = self.definition(base), base != name else { throw config.error("base_optimizer", "unknown optimizer '\(base)' to wrap") }
            guard !(inner is any WrapperDefinition.Type) else { throw config.error("base_optimizer", "'\(name)' cannot wrap the wrapper '\(base)'") }
            return inner
        }
        return definition
    }

    /// The trial's learning rate: `lr`, or the default its optimizer declares (a wrapper's base's).
    /// The schedule scales this base rate, so it is where a missing `lr` gets its default.
    public static func learningRate(_ config: TrialConfig) throws -> Double {
        try config.double(try learningRateOwner(config).keys["lr"])
    }
}

// MARK: - The torch.optim basics

enum SGDDefinition: OptimizerDefinition {
    static let name = "sgd"
    static let keys: [TrialSchema.Key] = [
        .lr(0.01),
        .number("momentum", 0, .nonNegative, "momentum factor"),
        .number("dampening", 0, .closedUnit, "dampening of momentum"),
        .flag("nesterov", false, "Nesterov momentum"),
        .number("weight_decay", 0, "L2 penalty added to the gradient"),
    ]

    static func validate(_ config: TrialConfig) throws {
        if try config.bool(keys["nesterov"]) {
            let momentum = try config.double(keys["momentum"]), dampening = try config.double(keys["dampening"])
            guard momentum > 0, dampening == 0 else { throw config.error("nesterov", "Nesterov momentum requires momentum > 0 and dampening 0") }
        }
    }

    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> {
        SGD<T>(
            learningRate: try config.double(keys["lr"]), momentum: try config.double(keys["momentum"]),
            dampening: try config.double(keys["dampening"]), nesterov: try config.bool(keys["nesterov"]),
            weightDecay: try config.double(keys["weight_decay"]))
    }
}

/// Shared by `adam` and `adamw`.
func adamKeys(weightDecayDefault: Double) -> [TrialSchema.Key] {
    [
        .lr(1e-3)
    ] + betaKeys(0.9, "first-moment decay", 0.999, "second-moment decay") + [
        .number("eps", 1e-8, .nonNegative, "denominator epsilon"),
        .number("weight_decay", weightDecayDefault, .nonNegative, "weight decay"),
        .flag("amsgrad", false, "AMSGrad variant"),
    ]
}

/// `beta1`, `beta2` and `betas` (both together), declared with an optimizer's defaults.
func betaKeys(_ d1: Double, _ help1: String, _ d2: Double, _ help2: String) -> [TrialSchema.Key] {
    [
        .number("beta1", d1, .unit, help1),
        .number("beta2", d2, .unit, help2),
        .numbers("betas", nil, .unit, note: "[beta1, beta2]", "[beta1, beta2] together"),
    ]
}

/// `betas` or `beta1`/`beta2`, with the defaults `keys` declares.
func betas(_ config: TrialConfig, _ keys: [TrialSchema.Key]) throws -> (Double, Double) {
    let b = try config.doubleList(keys["betas"], otherwise: [try config.double(keys["beta1"]), try config.double(keys["beta2"])])
    return (b[0], b[1])
}

func makeAdam<T: BLASScalar>(_ config: TrialConfig, _ keys: [TrialSchema.Key], decoupled: Bool) throws -> Adam<T> {
    let (b1, b2) = try betas(config, keys)
    return Adam<T>(
        learningRate: try config.double(keys["lr"]), beta1: b1, beta2: b2, epsilon: try config.double(keys["eps"]),
        weightDecay: try config.double(keys["weight_decay"]), decoupled: decoupled,
        amsgrad: try config.bool(keys["amsgrad"]))
}

enum AdamDefinition: OptimizerDefinition {
    static let name = "adam"
    static let keys = adamKeys(weightDecayDefault: 0)
    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> { try makeAdam(config, keys, decoupled: false) as Adam<T> }
}

enum AdamWDefinition: OptimizerDefinition {
    static let name = "adamw"
    static let keys = adamKeys(weightDecayDefault: 0.01)
    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> { try makeAdam(config, keys, decoupled: true) as Adam<T> }
}
