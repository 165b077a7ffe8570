import Linalg

/// A model's trainable tensors, their gradients and their names (`fc1.weight`, `fc1.bias`, …,
/// the names PyTorch's `state_dict` uses for the same model, so checkpoints line up).
///
/// Values and gradients live in separate arrays so that a layer can read its weights while
/// writing its gradients without overlapping accesses.
public final class Parameters<Scalar: BLASScalar> {
    public let names: [String]
    public var values: [Tensor<Scalar>]
    public var gradients: [Tensor<Scalar>]

    public init(_ entries: [(name: String, value: Tensor<Scalar>)]) {
        precondition(Set(entries.map(\.name)).count == entries.count, "duplicate parameter names")
        names = entries.map(\.name)
        values = entries.map(\.value)
        gradients = entries.map { Tensor(zeros: $0.value.shape) }
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

    public func zeroGradients() {
        for i in gradients.indices {
            gradients[i].storage.withUnsafeMutableBufferPointer { p in p.update(repeating: 0) }
        }
    }

    /// A deep copy (values only; gradients start at zero).
    public func copy() -> Parameters {
        Parameters(Array(zip(names, values)).map { (name: $0.0, value: $0.1) })
    }
}
