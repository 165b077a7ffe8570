import Linalg

/// `shampoo`: Meta's DistributedShampoo (see `Shampoo`). Keys are the reference's arguments.
enum ShampooDefinition: OptimizerDefinition {
    static let name = "shampoo"
    static let keys: [TrialSchema.Key] = [
        .init(name: "beta1", help: "filtered-gradient (first moment) decay; 0 disables (default 0.9)"),
        .init(name: "beta2", help: "factor-matrix decay; leave unset for 1 = sums of outer products, below 1 = moving average (default 1)"),
        .init(name: "beta3", help: "weight of the current gradient in the filtered gradient; -1 means beta1 (default -1)"),
        .init(name: "epsilon", help: "added to the factor matrices before the inverse root (default 1e-12)"),
        .init(name: "weight_decay", help: "weight decay (default 0)"),
        .init(name: "use_decoupled_weight_decay", help: "decoupled (AdamW-style) rather than L2 decay (default true)"),
        .init(name: "max_preconditioner_dim", help: "dimensions above this are split into blocks; also caps merging of small dimensions (default 1024)"),
        .init(name: "precondition_frequency", help: "steps between inverse-root refreshes (default 1)"),
        .init(name: "start_preconditioning_step", help: "first step preconditioned by Shampoo; grafting alone before; -1 means precondition_frequency (default -1)"),
        .init(name: "use_bias_correction", help: "bias corrections of the filtered gradient and EMA factors (default true)"),
        .init(name: "inv_root_override", help: "root r of the preconditioner F^(-1/r): one number, or a list by tensor order; 0 = default 2·order (default 0)"),
        .init(name: "grafting", help: "none, sgd, adagrad, rmsprop or adam: per-block step size taken from that method (default none)"),
        .init(name: "grafting_beta2", help: "second-moment decay of rmsprop/adam grafting (default 0.99 rmsprop, 0.999 adam)"),
        .init(name: "grafting_epsilon", help: "epsilon of adagrad/rmsprop/adam grafting (default 1e-10)"),
        .init(name: "momentum", help: "momentum of the search direction; 0 disables (default 0)"),
        .init(name: "dampening", help: "dampening of momentum (default 0)"),
        .init(name: "use_nesterov", help: "Nesterov momentum (default false)"),
        .init(name: "preconditioner", help: "root_inv (inverse roots kept) or eigendecomposed (eigenvectors and eigenvalues kept) (default root_inv)"),
        .init(name: "eigendecomposition", help: "eigendecomposed only: eigh (syevd) or qr (QR iterations warm-started from the last basis) (default eigh)"),
        .init(name: "eigendecomposition_tolerance", help: "eigendecomposed only: keep the basis while its off-diagonal ‖QᵀFQ − diag‖ ≤ this × ‖QᵀFQ‖, in [0, 1] (default 0 for eigh, 0.01 for qr)"),
        .init(name: "qr_max_iterations", help: "eigendecomposition qr: QR iterations per refresh at most (default 1)"),
    ]

    static func validate(_ config: TrialConfig) throws { _ = try configuration(config) }

    static func configuration(_ config: TrialConfig) throws -> ShampooConfiguration {
        var c = ShampooConfiguration()
        c.beta1 = try config.double("beta1", default: 0.9)
        guard (0..<1).contains(c.beta1) else { throw config.error("beta1", "must be in [0, 1)") }
        c.beta2 = try config.double("beta2", default: 1)
        guard c.beta2 > 0 && c.beta2 <= 1 else { throw config.error("beta2", "must be in (0, 1]") }
        c.beta3 = try config.double("beta3", default: -1)
        guard c.beta3 == -1 || (0..<1).contains(c.beta3) else { throw config.error("beta3", "must be -1 or in [0, 1)") }
        c.epsilon = try config.double("epsilon", default: 1e-12)
        guard c.epsilon > 0 else { throw config.error("epsilon", "must be positive") }
        c.weightDecay = try config.double("weight_decay", default: 0)
        guard c.weightDecay >= 0 else { throw config.error("weight_decay", "must be at least 0") }
        c.decoupledWeightDecay = try config.bool("use_decoupled_weight_decay", default: true)
        c.maxPreconditionerDim = try config.int("max_preconditioner_dim", default: 1024)
        guard c.maxPreconditionerDim >= 1 else { throw config.error("max_preconditioner_dim", "must be at least 1") }
        c.preconditionFrequency = try config.int("precondition_frequency", default: 1)
        guard c.preconditionFrequency >= 1 else { throw config.error("precondition_frequency", "must be at least 1") }
        c.startPreconditioningStep = try config.int("start_preconditioning_step", default: -1)
        guard c.startPreconditioningStep == -1 || c.startPreconditioningStep >= c.preconditionFrequency else {
            throw config.error("start_preconditioning_step", "must be -1 or at least precondition_frequency (\(c.preconditionFrequency))")
        }
        c.useBiasCorrection = try config.bool("use_bias_correction", default: true)
        c.inverseRootOverride = try config.doubleList("inv_root_override", default: [])
        guard c.inverseRootOverride.allSatisfy({ $0 >= 0 && $0.isFinite }) else { throw config.error("inv_root_override", "roots must be positive (0 = default)") }
        let g = try config.choice("grafting", default: ShampooGrafting.none)
        c.grafting = g
        if config.values["grafting_beta2"] != nil {
            let b = try config.double("grafting_beta2", default: 0.999)
            guard b > 0 && b <= 1 else { throw config.error("grafting_beta2", "must be in (0, 1]") }
            guard g == .rmsprop || g == .adam else { throw config.error("grafting_beta2", "applies to rmsprop or adam grafting only") }
            c.graftingBeta2 = b
        }
        c.graftingEpsilon = try config.double("grafting_epsilon", default: 1e-10)
        guard c.graftingEpsilon > 0 else { throw config.error("grafting_epsilon", "must be positive") }
        c.momentum = try config.double("momentum", default: 0)
        guard (0..<1).contains(c.momentum) else { throw config.error("momentum", "must be in [0, 1)") }
        c.dampening = try config.double("dampening", default: 0)
        guard (0..<1).contains(c.dampening) else { throw config.error("dampening", "must be in [0, 1)") }
        c.useNesterov = try config.bool("use_nesterov", default: false)
        if c.useNesterov && c.momentum == 0 { throw config.error("use_nesterov", "Nesterov momentum needs momentum > 0") }
        let k = try config.choice("preconditioner", default: ShampooPreconditionerKind.rootInv)
        c.preconditioner = k
        for key in ["eigendecomposition", "eigendecomposition_tolerance", "qr_max_iterations"] where config.values[key] != nil && k != .eigendecomposed {
            throw config.error(key, "applies to preconditioner: eigendecomposed only")
        }
        let m = try config.choice("eigendecomposition", default: ShampooEigendecomposition.eigh)
        c.eigendecomposition = m
        if config.values["eigendecomposition_tolerance"] != nil {
            let tolerance = try config.double("eigendecomposition_tolerance", default: 0)
            guard (0...1).contains(tolerance) else { throw config.error("eigendecomposition_tolerance", "must be in [0, 1]") }
            c.eigendecompositionTolerance = tolerance
        }
        c.qrMaxIterations = try config.int("qr_max_iterations", default: 1)
        guard c.qrMaxIterations >= 1 else { throw config.error("qr_max_iterations", "must be at least 1") }
        if config.values["qr_max_iterations"] != nil && m != .qr { throw config.error("qr_max_iterations", "applies to eigendecomposition: qr only") }
        return c
    }

    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> {
        let c = try configuration(config)
        return Shampoo<T>(learningRate: try config.double("lr", default: 1e-2), configuration: c)
    }
}

/// `shampoo-simple`: the source document's `ShampooSolution` (see `SimpleShampoo`).
enum SimpleShampooDefinition: OptimizerDefinition {
    static let name = "shampoo-simple"
    static let keys: [TrialSchema.Key] = [
        .init(name: "momentum", help: "momentum of the preconditioned gradient (default 0)"),
        .init(name: "weight_decay", help: "L2 penalty added to the gradient (default 0)"),
        .init(name: "epsilon", help: "L and R start at epsilon·I; eigenvalue floor (default 1e-4)"),
        .init(name: "update_freq", help: "steps between inverse fourth-root refreshes (default 1)"),
        .init(name: "beta", help: "decay of L and R (default 0.9)"),
    ]

    static func validate(_ config: TrialConfig) throws {
        guard try config.int("update_freq", default: 1) >= 1 else { throw config.error("update_freq", "must be at least 1") }
        guard try config.double("epsilon", default: 1e-4) > 0 else { throw config.error("epsilon", "must be positive") }
        guard (0..<1).contains(try config.double("beta", default: 0.9)) else { throw config.error("beta", "must be in [0, 1)") }
    }

    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> {
        SimpleShampoo<T>(
            learningRate: try config.double("lr", default: 0.1), momentum: try config.double("momentum", default: 0),
            weightDecay: try config.double("weight_decay", default: 0), epsilon: try config.double("epsilon", default: 1e-4),
            updateFrequency: try config.int("update_freq", default: 1), beta: try config.double("beta", default: 0.9))
    }
}
