import Linalg

/// What a parameter tensor is to its model, which is what optimizers and parameter groups decide
/// by: Muon orthogonalises hidden `weight`s only, and weight decay skips `bias` and `norm`
/// parameters by default. The model says it when it registers the parameter.
public enum ParameterRole: String, Sendable, CaseIterable {
    /// A hidden layer's matrix or convolution kernel (`fc1.weight`, `layer1.0.conv1.weight`).
    case weight
    case bias
    /// A batch- or layer-norm scale or shift (`bn1.weight`, `bn1.bias`, `blocks.0.ln1.weight`).
    case norm
    /// A token or position embedding (`wte.weight`, `wpe.weight`).
    case embedding
    /// The output layer's weight (`head.weight`, `fc3.weight`; with tied embeddings the embedding
    /// is the head and has role `embedding`).
    case head

    /// The roles of tensors registered without one, as the engine decided before models said
    /// them: a name ending `.bias` is a bias, the last tensor of rank ≥ 2 is the head, everything
    /// else (other matrices, and vectors that are not biases) a weight.
    public static func inferred(names: [String], shapes: [[Int]]) -> [ParameterRole] {
        let last = shapes.indices.last { shapes[$0].count >= 2 }
        return names.indices.map { i in
            if names[i].hasSuffix(".bias") { return .bias }
            return i == last ? .head : .weight
        }
    }
}

/// A model's trainable tensors, their gradients and their names (`fc1.weight`, `fc1.bias`, …,
/// the names PyTorch's `state_dict` uses for the same model, so checkpoints line up).
///
/// Values and gradients live in separate arrays so that a layer can read its weights while
/// writing its gradients without overlapping accesses.
public final class Parameters<Scalar: BLASScalar> {
    public let names: [String]
    /// Each tensor's role, in the order of `names`.
    public let roles: [ParameterRole]
    public var values: [Tensor<Scalar>]
    public var gradients: [Tensor<Scalar>]

    /// Tensors with the roles their model gives them.
    public init(_ entries: [(name: String, value: Tensor<Scalar>, role: ParameterRole)]) {
        precondition(Set(entries.map(\.name)).count == entries.count, "duplicate parameter names")
        names = entries.map(\.name)
        roles = entries.map(\.role)
        values = entries.map(\.value)
        gradients = entries.map { Tensor(zeros: $0.value.shape) }
    }

    /// Tensors whose roles are inferred from their names and shapes (`ParameterRole.inferred`).
    public convenience init(_ entries: [(name: String, value: Tensor<Scalar>)]) {
        let roles = ParameterRole.inferred(names: entries.map(\.name), shapes: entries.map(\.value.shape))
        self.init(zip(entries, roles).map { (name: $0.0.name, value: $0.0.value, role: $0.1) })
    }

    /// Empty tensors with these names and roles: the view an optimizer of one parameter group steps
    /// (the group's tensors are moved in for each update).
    convenience init(emptyNamed names: [String], roles: [ParameterRole]) {
        self.init(zip(names, roles).map { (name: $0.0, value: Tensor(zeros: [0]), role: $0.1) })
    }

    public var count: Int { names.count }
    public var scalarCount: Int { values.reduce(0) { $0 + $1.count } }

    public func index(of name: String) -> Int? { names.firstIndex(of: name) }

    /// Global L2 norm of all gradients (reported per epoch; clipping uses it later).
    public var gradientNorm: Double {
        var s = 0.0
        for g in gradients { s += Double(g.storage.withUnsafeBufferPointer { sumOfSquares($0) }) }
        return s.squareRoot()
    }

    public var gradientsFinite: Bool {
        gradients.allSatisfy { g in g.storage.withUnsafeBufferPointer { allFinite($0) } }
    }

    public var valuesFinite: Bool {
        values.allSatisfy { v in v.storage.withUnsafeBufferPointer { allFinite($0) } }
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func zeroGradients() {
        for i in gradients.indices {
            gradients[i].storage.withUnsafeMutableBufferPointer { p in p.update(repeating: 0) }
        }
    }

    /// A deep copy (values and roles; gradients start at zero).
    public func copy() -> Parameters {
        Parameters(names.indices.map { (name: names[$0], value: values[$0], role: roles[$0]) })
    }
}
