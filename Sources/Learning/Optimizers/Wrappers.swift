import Linalg

// Optimizers that wrap another: SAM/ASAM and Lookahead (each around any catalog optimizer,
// named by `base_optimizer`), and the parameter groups the training loop builds around any
// optimizer (no decay on biases, per-layer learning-rate multipliers, layer-wise decay).

/// SAM (Foret et al. 2021) and ASAM (Kwon et al. 2021), as the authors' PyTorch implementation
/// (github.com/davda54/sam, `SAM.first_step` / `second_step`):
///
///     s  = ρ / (‖T ⊙ g‖ + 1e-12)            (T = |p| for ASAM, 1 for SAM; the norm over all tensors)
///     e  = T² ⊙ g · s,   p ← p + e          (`perturb`: the loop then recomputes g at p + e)
///     p ← p − e, then the base optimizer steps with the gradient taken at p + e   (`update`)
///
/// Weight decay and every other hyperparameter belong to the base optimizer.
public final class SAM<Scalar: BLASScalar>: SharpnessAware, MomentumCycling {
    public let name: String
    public let base: any Optimizer<Scalar>
    public let rho: Double
    public let adaptive: Bool
    /// The perturbation applied by `perturb`, undone by `update`.
    var perturbation: [Tensor<Scalar>] = []
    var perturbed = false

    public init(base: any Optimizer<Scalar>, rho: Double = 0.05, adaptive: Bool = false) {
        self.name = adaptive ? "asam" : "sam"
        self.base = base
        self.rho = rho
        self.adaptive = adaptive
    }

    public var learningRate: Double {
        get { base.learningRate }
        set { base.learningRate = newValue }
    }

    public var step: Int { base.step }

    public var cycledMomentum: Double {
        get { (base as? any MomentumCycling)?.cycledMomentum ?? 0 }
        set { (base as? any MomentumCycling)?.cycledMomentum = newValue }
    }

    public func perturb(_ parameters: Parameters<Scalar>) {
        if perturbation.count != parameters.count { perturbation = parameters.values.map { Tensor(zeros: $0.shape) } }
        var squared = 0.0
        for i in 0..<parameters.count {
            parameters.gradients[i].storage.withUnsafeBufferPointer { g in
                parameters.values[i].storage.withUnsafeBufferPointer { p in
                    for j in 0..<g.count {
                        let t = adaptive ? abs(Double(p[j])) : 1
                        squared += (t * Double(g[j])) * (t * Double(g[j]))
                    }
                }
            }
        }
        let scale = rho / (squared.squareRoot() + 1e-12)
        for i in 0..<parameters.count {
            parameters.gradients[i].storage.withUnsafeBufferPointer { g in
                parameters.values[i].storage.withUnsafeMutableBufferPointer { p in
                    perturbation[i].storage.withUnsafeMutableBufferPointer { e in
                        for j in 0..<g.count {
                            let t2 = adaptive ? Double(p[j]) * Double(p[j]) : 1
                            e[j] = Scalar(t2 * Double(g[j]) * scale)
                            p[j] += e[j]
                        }
                    }
                }
            }
        }
        perturbed = true
    }

    public func update(_ parameters: Parameters<Scalar>) {
        if perturbed {
            for i in 0..<parameters.count {
                parameters.values[i].storage.withUnsafeMutableBufferPointer { p in
                    perturbation[i].storage.withUnsafeBufferPointer { e in
                        for j in 0..<p.count { p[j] -= e[j] }
                    }
                }
            }
            perturbed = false
        }
        base.update(parameters)
    }

    /// The base optimizer's state, under its own names (SAM keeps nothing between steps).
    public func exportState(names: [String]) -> OptimizerState<Scalar> { base.exportState(names: names) }

    public func importState(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws {
        try base.importState(state, parameters: parameters)
    }
}

/// Lookahead (Zhang et al. 2019, "Lookahead Optimizer: k steps forward, 1 step back"), as
/// optax's `lookahead` and the authors' algorithm 1: the base ("fast") optimizer steps as usual;
/// after every `k` of its steps the slow weights move towards the fast ones,
/// `slow ← slow + α(fast − slow)`, and the fast weights restart from them. The slow weights start
/// as the parameters before the first step. Evaluation uses the fast weights, as the authors'
/// PyTorch code does between synchronisations.
public final class Lookahead<Scalar: BLASScalar>: Optimizer, MomentumCycling {
    public let name = "lookahead"
    public let base: any Optimizer<Scalar>
    public let k: Int
    public let alpha: Double
    public private(set) var step = 0

    struct State: ParameterState {
        var slow: Tensor<Scalar>
        static var slots: [StateSlot<Self>] { [.tensor("slow", \.slow)] }
    }
    var states = ParameterStates<State>()

    public init(base: any Optimizer<Scalar>, k: Int = 5, alpha: Double = 0.5) {
        self.base = base
        self.k = k
        self.alpha = alpha
    }

    public var learningRate: Double {
        get { base.learningRate }
        set { base.learningRate = newValue }
    }

    public var cycledMomentum: Double {
        get { (base as? any MomentumCycling)?.cycledMomentum ?? 0 }
        set { (base as? any MomentumCycling)?.cycledMomentum = newValue }
    }

    public func update(_ parameters: Parameters<Scalar>) {
        if states.count != parameters.count { states = ParameterStates(parameters.values.map { State(slow: $0) }) }
        base.update(parameters)
        step += 1
        guard step % k == 0 else { return }
        let a = Scalar(alpha)
        for i in 0..<parameters.count {
            parameters.values[i].storage.withUnsafeMutableBufferPointer { p in
                states[i]!.slow.storage.withUnsafeMutableBufferPointer { s in
                    for j in 0..<p.count {
                        s[j] += a * (p[j] - s[j])
                        p[j] = s[j]
                    }
                }
            }
        }
    }

    public func exportState(names: [String]) -> OptimizerState<Scalar> {
        var state = base.exportState(names: names)
        state.set("lookahead/step", integer: step)
        states.export(names: names, into: &state)
        return state
    }

    public func importState(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws {
        try base.importState(state, parameters: parameters)
        step = try state.integer("lookahead/step")
        let saved = state["\(parameters.names[0])/slow"] != nil
        states = saved ? try ParameterStates(state, parameters: parameters) { State(slow: Tensor(zeros: $0)) } : ParameterStates()
    }
}

/// Parameter groups, as `torch.optim` param groups: the parameters are split into groups that
/// each have their own instance of the optimizer, built from the trial with the group's
/// learning-rate multiplier and, for biases and norm parameters, no weight decay. The groups' tensors are moved (not
/// copied) into each group's `Parameters` for its update and moved back.
///
public final class ParameterGroups<Scalar: BLASScalar>: Optimizer, MomentumCycling, HessianEstimating, EvaluationPointSwapping {
    public struct Group {
        public var indices: [Int]
        public var learningRateScale: Double
        public var weightDecay: Bool
        public let optimizer: any Optimizer<Scalar>
        let view: Parameters<Scalar>
    }

    public let name: String
    public let groups: [Group]
    public var learningRate: Double {
        didSet { for g in groups { g.optimizer.learningRate = learningRate * g.learningRateScale } }
    }

    public var step: Int { groups.first?.optimizer.step ?? 0 }

    public init(name: String, learningRate: Double, groups: [(indices: [Int], learningRateScale: Double, weightDecay: Bool, optimizer: any Optimizer<Scalar>)], parameters: Parameters<Scalar>) {
        self.name = name
        self.learningRate = learningRate
        self.groups = groups.map { g in
            let view = Parameters<Scalar>(emptyNamed: g.indices.map { parameters.names[$0] }, roles: g.indices.map { parameters.roles[$0] })
            g.optimizer.learningRate = learningRate * g.learningRateScale
            return Group(indices: g.indices, learningRateScale: g.learningRateScale, weightDecay: g.weightDecay, optimizer: g.optimizer, view: view)
        }
    }

    /// Runs `body` with group g's tensors moved into its view.
    func moved<R>(_ g: Group, _ parameters: Parameters<Scalar>, _ body: () throws -> R) rethrows -> R {
        for (k, i) in g.indices.enumerated() {
            swap(&g.view.values[k], &parameters.values[i])
            swap(&g.view.gradients[k], &parameters.gradients[i])
        }
        defer {
            for (k, i) in g.indices.enumerated() {
                swap(&g.view.values[k], &parameters.values[i])
                swap(&g.view.gradients[k], &parameters.gradients[i])
            }
        }
        return try body()
    }

    func forEachGroup(_ parameters: Parameters<Scalar>, _ body: (Group) -> Void) {
        for g in groups { moved(g, parameters) { body(g) } }
    }

    public func update(_ parameters: Parameters<Scalar>) {
        forEachGroup(parameters) { $0.optimizer.update($0.view) }
    }

    public var cycledMomentum: Double {
        get { (groups.first?.optimizer as? any MomentumCycling)?.cycledMomentum ?? 0 }
        set { for g in groups { (g.optimizer as? any MomentumCycling)?.cycledMomentum = newValue } }
    }

    public var wantsHessianEstimate: Bool { groups.contains { ($0.optimizer as? any HessianEstimating<Scalar>)?.wantsHessianEstimate ?? false } }

    public func updateHessian(_ parameters: Parameters<Scalar>, batchSize: Int) {
        forEachGroup(parameters) { ($0.optimizer as? any HessianEstimating<Scalar>)?.updateHessian($0.view, batchSize: batchSize) }
    }

    public func useEvaluationPoint(_ parameters: Parameters<Scalar>) {
        forEachGroup(parameters) { ($0.optimizer as? any EvaluationPointSwapping<Scalar>)?.useEvaluationPoint($0.view) }
    }

    public func useTrainingPoint(_ parameters: Parameters<Scalar>) {
        forEachGroup(parameters) { ($0.optimizer as? any EvaluationPointSwapping<Scalar>)?.useTrainingPoint($0.view) }
    }

    /// Per-tensor state keeps its name (`fc1.weight/exp_avg`), and global state every group
    /// agrees on (the step counter) is stored once under its own name, so the checkpoint layout
    /// is the same with or without groups; global state that differs is prefixed `groupN/`.
    public func exportState(names: [String]) -> OptimizerState<Scalar> {
        var state = OptimizerState<Scalar>()
        let inners = groups.map { g in (own: g.indices.map { names[$0] }, state: g.optimizer.exportState(names: g.indices.map { names[$0] })) }
        for (n, inner) in inners.enumerated() {
            for key in inner.state.names {
                if inner.own.contains(where: { key.hasPrefix($0 + "/") }) {
                    state.set(key, inner.state[key]!)
                } else if inners.allSatisfy({ $0.state[key] == inner.state[key] }) {
                    if n == 0 { state.set(key, inner.state[key]!) }
                } else {
                    state.set("group\(n)/\(key)", inner.state[key]!)
                }
            }
        }
        return state
    }

    public func importState(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws {
        let everyName = Set(parameters.names)
        for (n, g) in groups.enumerated() {
            let own = g.indices.map { parameters.names[$0] }
            var inner = OptimizerState<Scalar>()
            let prefix = "group\(n)/"
            for key in state.names {
                let tensor = key.split(separator: "/").first.map { everyName.contains(String($0)) } ?? false
                if key.hasPrefix(prefix) {
                    inner.set(String(key.dropFirst(prefix.count)), state[key]!)
                } else if own.contains(where: { key.hasPrefix($0 + "/") }) || (!tensor && !key.hasPrefix("group")) {
                    inner.set(key, state[key]!)
                }
            }
            try moved(g, parameters) { try g.optimizer.importState(inner, parameters: g.view) }
        }
    }
}

// MARK: - Definitions

/// Wrappers name the optimizer they wrap with `base_optimizer`; its keys are theirs too.
public protocol WrapperDefinition: OptimizerDefinition {
    static var defaultBase: String { get }
    /// This wrapper around an optimizer built for the trial.
    static func wrap<T: BLASScalar>(_ base: any Optimizer<T>, _ config: TrialConfig) throws -> any Optimizer<T>
}

extension WrapperDefinition {
    static func baseName(_ config: TrialConfig) throws -> String { try config.string(keys["base_optimizer"]) }

    static func validateBase(_ config: TrialConfig) throws {
        let base = try baseName(config)
        guard base != name, let definition = OptimizerCatalog.definition(base) else {
            throw config.error("base_optimizer", "unknown optimizer '\(base)' to wrap; allowed: \(OptimizerCatalog.all.map { $0.name }.filter { $0 != name }.joined(separator: ", "))")
        }
        try definition.validate(config)
    }

    /// The wrapped optimizer, built from the same trial.
    static func makeBase<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> {
        try OptimizerCatalog.definition(try baseName(config))!.make(config, T.self)
    }

    public static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> { try wrap(try makeBase(config, T.self), config) }
}

enum SAMDefinition: WrapperDefinition {
    static let name = "sam"
    static let defaultBase = "sgd"
    static let keys: [TrialSchema.Key] = [
        .string("base_optimizer", defaultBase, "the optimizer SAM wraps; its keys apply"),
        .number("rho", 0.05, .positive, "neighbourhood radius ρ"),
        .flag("adaptive", false, "ASAM's scale-invariant neighbourhood"),
    ]

    static func validate(_ config: TrialConfig) throws {
        guard try config.double(keys["rho"]) > 0 else { throw config.error("rho", "must be positive") }
        _ = try config.bool(keys["adaptive"])
        try validateBase(config)
    }

    static func wrap<T: BLASScalar>(_ base: any Optimizer<T>, _ config: TrialConfig) throws -> any Optimizer<T> {
        SAM(base: base, rho: try config.double(keys["rho"]), adaptive: try config.bool(keys["adaptive"]))
    }
}

enum ASAMDefinition: WrapperDefinition {
    static let name = "asam"
    static let defaultBase = "sgd"
    static let keys: [TrialSchema.Key] = [
        .string("base_optimizer", defaultBase, "the optimizer ASAM wraps; its keys apply"),
        .number("rho", 0.5, .positive, "neighbourhood radius ρ (the ASAM paper's default)"),
    ]

    static func validate(_ config: TrialConfig) throws {
        guard try config.double(keys["rho"]) > 0 else { throw config.error("rho", "must be positive") }
        try validateBase(config)
    }

    static func wrap<T: BLASScalar>(_ base: any Optimizer<T>, _ config: TrialConfig) throws -> any Optimizer<T> {
        SAM(base: base, rho: try config.double(keys["rho"]), adaptive: true)
    }
}

enum LookaheadDefinition: WrapperDefinition {
    static let name = "lookahead"
    static let defaultBase = "adamw"
    static let keys: [TrialSchema.Key] = [
        .string("base_optimizer", defaultBase, "the fast optimizer; its keys apply"),
        .integer("lookahead_k", 5, "fast steps per synchronisation"),
        .number("lookahead_alpha", 0.5, "slow-weight step size α"),
    ]

    static func validate(_ config: TrialConfig) throws {
        guard try config.int(keys["lookahead_k"]) >= 1 else { throw config.error("lookahead_k", "must be at least 1") }
        let alpha = try config.double(keys["lookahead_alpha"])
        guard alpha > 0 && alpha <= 1 else { throw config.error("lookahead_alpha", "must be in (0, 1], got \(alpha)") }
        try validateBase(config)
    }

    static func wrap<T: BLASScalar>(_ base: any Optimizer<T>, _ config: TrialConfig) throws -> any Optimizer<T> {
        Lookahead(base: base, k: try config.int(keys["lookahead_k"]), alpha: try config.double(keys["lookahead_alpha"]))
    }
}

extension SAM: WorkCounting {
    public var workCounters: [String: Int] { (base as? any WorkCounting)?.workCounters ?? [:] }
}

extension Lookahead: WorkCounting {
    public var workCounters: [String: Int] { (base as? any WorkCounting)?.workCounters ?? [:] }
}

extension ParameterGroups: WorkCounting {
    /// The groups' counters, summed.
    public var workCounters: [String: Int] {
        groups.reduce(into: [:]) { total, g in
            for (k, v) in (g.optimizer as? any WorkCounting)?.workCounters ?? [:] { total[k, default: 0] += v }
        }
    }
}
