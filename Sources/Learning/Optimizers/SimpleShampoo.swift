import Linalg

/// The source document's Shampoo (`ShampooSolution` of the modern-optimizers notebook), step for
/// step, including its behaviour on the VAE (it diverges there with the document's settings):
///
///     g ← g + λ·p                                   (coupled weight decay)
///     1-D: b ← μ·b + g;  p ← p − η·b                 (SGD with momentum, buffer even for μ = 0)
///     otherwise, G = g as rows × rest (a convolution kernel [out, in, kh, kw] as out × in·kh·kw,
///     the document's `grad.view(grad.size(0), -1)`):
///         L ← β·L + (1 − β)·G·Gᵀ,  R ← β·R + (1 − β)·Gᵀ·G       (L, R start at ε·I)
///         when the global step % update_freq == 0:
///             L⁻ = L^(−1/4), R⁻ = R^(−1/4)          (eigh, eigenvalues clamped at ε; I before)
///         D = (L⁻·G)·R⁻;  b ← μ·b + D (if μ > 0), D = b;  p ← p − η·D
public final class SimpleShampoo<Scalar: BLASScalar>: Optimizer {
    public let name = "shampoo-simple"
    public var learningRate: Double
    public let momentum: Double
    public let weightDecay: Double
    public let epsilon: Double
    public let updateFrequency: Int
    public let beta: Double
    public private(set) var step = 0

    struct State: ParameterState {
        var left: Tensor<Scalar>?, right: Tensor<Scalar>?
        var leftInverse: Tensor<Scalar>?, rightInverse: Tensor<Scalar>?
        var momentum: Tensor<Scalar>?
        static var slots: [StateSlot<Self>] {
            [.tensor("L", \.left), .tensor("R", \.right), .tensor("L_inv", \.leftInverse), .tensor("R_inv", \.rightInverse), .tensor("momentum_buffer", \.momentum)]
        }
    }
    var states = ParameterStates<State>()
    let eigen = SymmetricEigenSolver<Scalar>()

    public init(learningRate: Double = 0.1, momentum: Double = 0, weightDecay: Double = 0, epsilon: Double = 1e-4, updateFrequency: Int = 1, beta: Double = 0.9) {
        precondition(updateFrequency >= 1, "update_freq must be at least 1")
        self.learningRate = learningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.epsilon = epsilon
        self.updateFrequency = updateFrequency
        self.beta = beta
    }

    static func isVector(_ shape: [Int]) -> Bool { shape.count <= 1 }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func update(_ parameters: Parameters<Scalar>) {
        if states.count != parameters.count { states = ParameterStates(count: parameters.count) }
        step += 1
        let lr = Scalar(-learningRate), wd = Scalar(weightDecay), mu = Scalar(momentum)
        for i in 0..<parameters.count {
            let shape = parameters.values[i].shape
            var g = parameters.gradients[i]
            if weightDecay != 0 {
                parameters.values[i].storage.withUnsafeBufferPointer { p in
                    g.storage.withUnsafeMutableBufferPointer { g in
                        for j in 0..<g.count { g[j] = g[j] + wd * p[j] }
                    }
                }
            }
            if Self.isVector(shape) {
                var s = states[i] ?? State(momentum: Tensor(zeros: shape))
                for j in 0..<g.count { s.momentum!.storage[j] = s.momentum!.storage[j] * mu + g.storage[j] }
                parameters.values[i].storage.withUnsafeMutableBufferPointer { p in
                    for j in 0..<p.count { p[j] = p[j] + lr * s.momentum!.storage[j] }
                }
                states[i] = s
                continue
            }
            let (m, n) = (g.rows, g.cols)
            g.reshape([m, n])
            var s =
                states[i]
                ?? {
                    let eps = Scalar(epsilon)
                    var l = Tensor<Scalar>(zeros: [m, m]), r = Tensor<Scalar>(zeros: [n, n])
                    for j in 0..<m { l.storage[j * m + j] = eps }
                    for j in 0..<n { r.storage[j * n + j] = eps }
                    return State(left: l, right: r, leftInverse: .identity(m), rightInverse: .identity(n), momentum: momentum > 0 ? Tensor(zeros: [m, n]) : nil)
                }()
            let b = Scalar(beta), w = Scalar(1 - beta)
            let ggt = matmul(g, g, transposeB: true), gtg = matmul(g, transposeA: true, g)
            for j in 0..<(m * m) { s.left!.storage[j] = b * s.left!.storage[j] + w * ggt.storage[j] }
            for j in 0..<(n * n) { s.right!.storage[j] = b * s.right!.storage[j] + w * gtg.storage[j] }
            if step % updateFrequency == 0 {
                // The document's matrix_power_solution(·, −0.25, ε); a non-finite factor keeps the
                // previous root.
                eigen.clampedPower(s.left!, -0.25, epsilon: Scalar(epsilon), into: &s.leftInverse!)
                eigen.clampedPower(s.right!, -0.25, epsilon: Scalar(epsilon), into: &s.rightInverse!)
            }
            var direction = matmul(matmul(s.leftInverse!, g), s.rightInverse!)
            if momentum > 0 {
                for j in 0..<(m * n) { s.momentum!.storage[j] = s.momentum!.storage[j] * mu + direction.storage[j] }
                direction = s.momentum!
            }
            parameters.values[i].storage.withUnsafeMutableBufferPointer { p in
                direction.storage.withUnsafeBufferPointer { d in
                    for j in 0..<p.count { p[j] = p[j] + lr * d[j] }
                }
            }
            states[i] = s
        }
    }

    public func exportState(names: [String]) -> OptimizerState<Scalar> { states.exported(step: step, names: names) }

    public func importState(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws {
        step = try state.integer("step")
        states = try ParameterStates(whereSaved: state, parameters: parameters) { i in
            let shape = parameters.values[i].shape
            if Self.isVector(shape) { return State(momentum: Tensor(zeros: shape)) }
            let (m, n) = (parameters.values[i].rows, parameters.values[i].cols)
            return State(
                left: Tensor(zeros: [m, m]), right: Tensor(zeros: [n, n]), leftInverse: Tensor(zeros: [m, m]), rightInverse: Tensor(zeros: [n, n]),
                momentum: momentum > 0 ? Tensor(zeros: [m, n]) : nil)
        }
    }
}
