import Linalg

/// `shampoo`: Meta's DistributedShampoo (see `Shampoo`). Keys are the reference's arguments.
enum ShampooDefinition: OptimizerDefinition {
    static let name = "shampoo"
    static let keys: [TrialSchema.Key] = [
        .lr(1e-2),
        .number("beta1", 0.9, .unit, "filtered-gradient (first moment) decay; 0 disables"),
        .number("beta2", 1, .fraction, "factor-matrix decay; leave unset for 1 = sums of outer products, below 1 = moving average"),
        .number("beta3", -1, "weight of the current gradient in the filtered gradient; -1 means beta1"),
        .number("epsilon", 1e-12, .positive, "added to the factor matrices before the inverse root"),
        .number("weight_decay", 0, "weight decay"),
        .flag("use_decoupled_weight_decay", true, "decoupled (AdamW-style) rather than L2 decay"),
        .integer("max_preconditioner_dim", 1024, "dimensions above this are split into blocks; also caps merging of small dimensions"),
        .integer("precondition_frequency", 1, "steps between inverse-root refreshes"),
        .integer("start_preconditioning_step", -1, "first step preconditioned by Shampoo; grafting alone before; -1 means precondition_frequency"),
        .flag("use_bias_correction", true, "bias corrections of the filtered gradient and EMA factors"),
        .numbers("inv_root_override", [], "root r of the preconditioner F^(-1/r): one number, or a list by tensor order; 0 = default 2·order"),
        .choice("grafting", ShampooGrafting.none, "per-block step size taken from that method"),
        .number("grafting_beta2", 0.999, "second-moment decay of rmsprop/adam grafting"),
        .number("grafting_epsilon", 1e-10, "epsilon of adagrad/rmsprop/adam grafting"),
        .number("momentum", 0, "momentum of the search direction; 0 disables"),
        .number("dampening", 0, "dampening of momentum"),
        .flag("use_nesterov", false, "Nesterov momentum"),
        .choice("preconditioner", ShampooPreconditionerKind.rootInv, "root_inv: inverse roots kept; eigendecomposed: eigenvectors and eigenvalues kept"),
        .choice("eigendecomposition", ShampooEigendecomposition.eigh, "eigendecomposed only: eigh (syevd) or qr (QR iterations warm-started from the last basis)"),
        .number("eigendecomposition_tolerance", 0, "eigendecomposed only: keep the basis while its off-diagonal ‖QᵀFQ − diag‖ ≤ this × ‖QᵀFQ‖, in [0, 1]"),
        .integer("qr_max_iterations", 1, "eigendecomposition qr: QR iterations per refresh at most"),
    ]

    static func validate(_ config: TrialConfig) throws { _ = try configuration(config) }

    static func configuration(_ config: TrialConfig) throws -> ShampooConfiguration {
        var c = ShampooConfiguration()
        c.beta1 = try config.double(keys["beta1"])
        guard (0..<1).contains(c.beta1) else { throw config.error("beta1", "must be in [0, 1)") }
        c.beta2 = try config.double(keys["beta2"])
        guard c.beta2 > 0 && c.beta2 <= 1 else { throw config.error("beta2", "must be in (0, 1]") }
        c.beta3 = try config.double(keys["beta3"])
        guard c.beta3 == -1 || (0..<1).contains(c.beta3) else { throw config.error("beta3", "must be -1 or in [0, 1)") }
        c.epsilon = try config.double(keys["epsilon"])
        guard c.epsilon > 0 else { throw config.error("epsilon", "must be positive") }
        c.weightDecay = try config.double(keys["weight_decay"])
        guard c.weightDecay >= 0 else { throw config.error("weight_decay", "must be at least 0") }
        c.decoupledWeightDecay = try config.bool(keys["use_decoupled_weight_decay"])
        c.maxPreconditionerDim = try config.int(keys["max_preconditioner_dim"])
        guard c.maxPreconditionerDim >= 1 else { throw config.error("max_preconditioner_dim", "must be at least 1") }
        c.preconditionFrequency = try config.int(keys["precondition_frequency"])
        guard c.preconditionFrequency >= 1 else { throw config.error("precondition_frequency", "must be at least 1") }
        c.startPreconditioningStep = try config.int(keys["start_preconditioning_step"])
        guard c.startPreconditioningStep == -1 || c.startPreconditioningStep >= c.preconditionFrequency else {
            throw config.error("start_preconditioning_step", "must be -1 or at least precondition_frequency (\(c.preconditionFrequency))")
        }
        c.useBiasCorrection = try config.bool(keys["use_bias_correction"])
        c.inverseRootOverride = try config.doubleList(keys["inv_root_override"])
        guard c.inverseRootOverride.allSatisfy({ $0 >= 0 && $0.isFinite }) else { throw config.error("inv_root_override", "roots must be positive (0 = default)") }
        let g = try config.choice(keys["grafting"], ShampooGrafting.self)
        c.grafting = g
        if config.values["grafting_beta2"] != nil {
            let b = try config.double(keys["grafting_beta2"])
            guard b > 0 && b <= 1 else { throw config.error("grafting_beta2", "must be in (0, 1]") }
            guard g == .rmsprop || g == .adam else { throw config.error("grafting_beta2", "applies to rmsprop or adam grafting only") }
            c.graftingBeta2 = b
        }
        c.graftingEpsilon = try config.double(keys["grafting_epsilon"])
        guard c.graftingEpsilon > 0 else { throw config.error("grafting_epsilon", "must be positive") }
        c.momentum = try config.double(keys["momentum"])
        guard (0..<1).contains(c.momentum) else { throw config.error("momentum", "must be in [0, 1)") }
        c.dampening = try config.double(keys["dampening"])
        guard (0..<1).contains(c.dampening) else { throw config.error("dampening", "must be in [0, 1)") }
        c.useNesterov = try config.bool(keys["use_nesterov"])
        if c.useNesterov && c.momentum == 0 { throw config.error("use_nesterov", "Nesterov momentum needs momentum > 0") }
        let k = try config.choice(keys["preconditioner"], ShampooPreconditionerKind.self)
        c.preconditioner = k
        for key in ["eigendecomposition", "eigendecomposition_tolerance", "qr_max_iterations"] where config.values[key] != nil && k != .eigendecomposed {
            throw config.error(key, "applies to preconditioner: eigendecomposed only")
        }
        let m = try config.choice(keys["eigendecomposition"], ShampooEigendecomposition.self)
        c.eigendecomposition = m
        if config.values["eigendecomposition_tolerance"] != nil {
            let tolerance = try config.double(keys["eigendecomposition_tolerance"])
            guard (0...1).contains(tolerance) else { throw config.error("eigendecomposition_tolerance", "must be in [0, 1]") }
            c.eigendecompositionTolerance = tolerance
        }
        c.qrMaxIterations = try config.int(keys["qr_max_iterations"])
        guard c.qrMaxIterations >= 1 else { throw config.error("qr_max_iterations", "must be at least 1") }
        if config.values["qr_max_iterations"] != nil && m != .qr { throw config.error("qr_max_iterations", "applies to eigendecomposition: qr only") }
        return c
    }

    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> {
        let c = try configuration(config)
        return Shampoo<T>(learningRate: try config.double(keys["lr"]), configuration: c)
    }
}

/// `shampoo-simple`: the source document's `ShampooSolution` (see `SimpleShampoo`).
enum SimpleShampooDefinition: OptimizerDefinition {
    static let name = "shampoo-simple"
    static let keys: [TrialSchema.Key] = [
        .lr(0.1),
        .number("momentum", 0, .nonNegative, "momentum of the preconditioned gradient"),
        .number("weight_decay", 0, "L2 penalty added to the gradient"),
        .number("epsilon", 1e-4, .positive, "L and R start at epsilon·I; eigenvalue floor"),
        .integer("update_freq", 1, "steps between inverse fourth-root refreshes"),
        .number("beta", 0.9, "decay of L and R"),
    ]

    static func validate(_ config: TrialConfig) throws {
        guard try config.int(keys["update_freq"]) >= 1 else { throw config.error("update_freq", "must be at least 1") }
        guard try config.double(keys["epsilon"]) > 0 else { throw config.error("epsilon", "must be positive") }
        guard (0..<1).contains(try config.double(keys["beta"])) else { throw config.error("beta", "must be in [0, 1)") }
    }

    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> {
        SimpleShampoo<T>(
            learningRate: try config.double(keys["lr"]), momentum: try config.double(keys["momentum"]),
            weightDecay: try config.double(keys["weight_decay"]), epsilon: try config.double(keys["epsilon"]),
            updateFrequency: try config.int(keys["update_freq"]), beta: try config.double(keys["beta"]))
    }
}
