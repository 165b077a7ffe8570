import Learning
import Linalg
import Testing

/// The names checkpoints hold optimizer state under are a file format: renaming a slot, or
/// reordering them, would break resuming from checkpoints already written (and the fixtures'
/// comparisons with PyTorch's state). Each optimizer here, configured to have every optional
/// slot, exports exactly these names, in this order, after two steps on a vector `b` and a
/// matrix `w`.
@Suite struct OptimizerStateNamesTests {
    static let cases: [(config: [String: ConfigValue], names: [String])] = [
        (["optimizer": .string("adamw"), "amsgrad": .bool(true)], ["step"] + perTensor("exp_avg", "exp_avg_sq", "max_exp_avg_sq")),
        (["optimizer": .string("sgd"), "momentum": .double(0.9)], ["step"] + perTensor("momentum_buffer")),
        (["optimizer": .string("rmsprop"), "centered": .bool(true), "momentum": .double(0.9)], ["step"] + perTensor("square_avg", "grad_avg", "momentum_buffer")),
        (["optimizer": .string("adagrad")], ["step"] + perTensor("sum")),
        (["optimizer": .string("nadam")], ["step", "mu_product"] + perTensor("exp_avg", "exp_avg_sq")),
        (["optimizer": .string("lion")], ["step"] + perTensor("exp_avg")),
        (["optimizer": .string("lion-simple")], ["step"] + perTensor("momentum")),
        (["optimizer": .string("lamb")], ["step"] + perTensor("exp_avg", "exp_avg_sq")),
        (["optimizer": .string("lars")], ["step"] + perTensor("trace")),
        (["optimizer": .string("adafactor"), "beta1": .double(0.9)], ["step", "b/exp_avg_sq", "w/exp_avg_sq_row", "w/exp_avg_sq_col", "b/exp_avg", "w/exp_avg"]),
        (["optimizer": .string("adafactor-simple")], ["step", "b/exp_avg_sq", "w/exp_avg_sq_row", "w/exp_avg_sq_col"]),
        (["optimizer": .string("sophia")], ["step", "bs"] + perTensor("exp_avg", "hessian")),
        (["optimizer": .string("schedule-free-adamw")], ["step", "lr_max_bits", "weight_sum_bits", "train_mode"] + perTensor("z", "exp_avg_sq")),
        // b (3 elements) keeps 32-bit moments, w (6) 8-bit codes and block maxima.
        (["optimizer": .string("adamw8bit"), "min_8bit_size": .int(4)], ["step", "b/state1", "b/state2", "w/state1", "w/absmax1", "w/state2", "w/absmax2"]),
        (["optimizer": .string("muon"), "muon_output": .bool(true)], ["step", "b/exp_avg", "b/exp_avg_sq", "b/step", "w/momentum_buffer"]),
        (["optimizer": .string("soap")], ["step", "b/step", "b/exp_avg", "b/exp_avg_sq", "w/step", "w/exp_avg", "w/exp_avg_sq", "w/L", "w/R", "w/Q_L", "w/Q_R"]),
        (["optimizer": .string("soap-simple")], ["step"] + perTensor("momentum", "step")),
        (["optimizer": .string("shampoo-simple"), "momentum": .double(0.9)], ["step", "b/momentum_buffer", "w/L", "w/R", "w/L_inv", "w/R_inv", "w/momentum_buffer"]),
        (["optimizer": .string("lookahead"), "base_optimizer": .string("lion")], ["step"] + perTensor("exp_avg") + ["lookahead/step"] + perTensor("slow")),
    ]

    static func perTensor(_ slots: String...) -> [String] { ["b", "w"].flatMap { t in slots.map { "\(t)/\($0)" } } }

    /// The optimizer of case `config`, stepped twice.
    static func stepped<T: BLASScalar>(_ config: [String: ConfigValue], _: T.Type) throws -> (any Optimizer<T>, Parameters<T>) {
        var values = config
        values["model"] = .string("quadratic")
        let trial = TrialConfig(values: values)
        try trial.validate()
        let optimizer: any Optimizer<T> = try Builders.optimizer(trial)
        let p = Parameters<T>([(name: "b", value: Tensor(vector: [0.5, -1, 2])), (name: "w", value: Tensor(shape: [2, 3], storage: [1, -2, 0.5, 0.25, -0.75, 3]))])
        for k in 0..<2 {
            p.gradients = [Tensor(vector: [0.1, -0.2, 0.3].map { T($0 * Double(k + 1)) }), Tensor(shape: [2, 3], storage: [0.3, 0.1, -0.2, 0.4, -0.5, 0.6].map { T($0 / Double(k + 1)) })]
            optimizer.update(p)
            if let sophia = optimizer as? any HessianEstimating<T>, k == 1 { sophia.updateHessian(p, batchSize: 4) }
        }
        return (optimizer, p)
    }

    @Test(arguments: cases.indices)
    func exportedNamesAreTheCheckpointNames(index: Int) throws {
        let (config, names) = Self.cases[index]
        let (optimizer, p) = try Self.stepped(config, Float.self)
        let state = optimizer.exportState(names: p.names)
        #expect(state.names == names, "\(config)")
        // A checkpoint reads back into a fresh optimizer as it was written.
        let (fresh, _) = try Self.stepped(config, Float.self)
        try fresh.importState(state, parameters: p)
        #expect(fresh.exportState(names: p.names) == state, "\(config)")
    }

    @Test func eightBitStateKeepsItsKinds() throws {
        let (optimizer, p) = try Self.stepped(["optimizer": .string("adamw8bit"), "min_8bit_size": .int(4)], Double.self)
        let state = optimizer.exportState(names: p.names)
        #expect(state["w/state1"].map { if case .uint8(let v, let shape) = $0 { v.count == 6 && shape == [2, 3] } else { false } } == true)
        #expect(state["w/absmax1"].map { if case .real(let t) = $0 { t.shape == [1] } else { false } } == true)
        #expect(state["b/state1"].map { if case .real(let t) = $0 { t.shape == [3] } else { false } } == true)
        #expect(state["step"] == .int64([2], shape: []))
    }
}
