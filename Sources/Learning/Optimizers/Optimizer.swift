import Linalg

/// One named array of optimizer state, as a checkpoint stores it.
public enum StateArray<Scalar: BLASScalar>: Equatable, Sendable {
    /// Moments, statistics, preconditioners, slow weights.
    case real(Tensor<Scalar>)
    /// Step counters and other integers (shape `[]` for a scalar).
    case int64([Int64], shape: [Int])
    /// Quantised moments (8-bit optimizers).
    case uint8([UInt8], shape: [Int])

    public var byteCount: Int {
        switch self {
        case .real(let t): t.count * MemoryLayout<Scalar>.stride
        case .int64(let v, _): v.count * 8
        case .uint8(let v, _): v.count
        }
    }
}

/// An optimizer's complete state as ordered named arrays: `fc1.weight/exp_avg`, `step`, …
/// Everything needed to continue exactly where it stopped, and nothing derivable.
public struct OptimizerState<Scalar: BLASScalar>: Equatable, Sendable {
    public private(set) var names: [String] = []
    public private(set) var arrays: [String: StateArray<Scalar>] = [:]

    public init() {}

    public mutating func set(_ name: String, _ value: StateArray<Scalar>) {
        if arrays[name] == nil { names.append(name) }
        arrays[name] = value
    }

    public mutating func set(_ name: String, _ tensor: Tensor<Scalar>) { set(name, .real(tensor)) }
    public mutating func set(_ name: String, integer: Int) { set(name, .int64([Int64(integer)], shape: [])) }

    public subscript(name: String) -> StateArray<Scalar>? { arrays[name] }

    public func tensor(_ name: String, shape: [Int]) throws -> Tensor<Scalar> {
        guard let value = arrays[name] else { throw OptimizerStateError.missing(name) }
        guard case .real(let t) = value else { throw OptimizerStateError.wrongKind(name, expected: "real tensor") }
        guard t.shape == shape else { throw OptimizerStateError.wrongShape(name, expected: shape, found: t.shape) }
        return t
    }

    /// An array of 8-bit codes (quantised moments) of the given shape.
    public func bytes(_ name: String, shape: [Int]) throws -> [UInt8] {
        guard let value = arrays[name] else { throw OptimizerStateError.missing(name) }
        guard case .uint8(let v, let s) = value else { throw OptimizerStateError.wrongKind(name, expected: "uint8 array") }
        guard s == shape, v.count == shape.reduce(1, *) else { throw OptimizerStateError.wrongShape(name, expected: shape, found: s) }
        return v
    }

    public func integer(_ name: String) throws -> Int {
        guard let value = arrays[name] else { throw OptimizerStateError.missing(name) }
        guard case .int64(let v, _) = value, v.count == 1 else { throw OptimizerStateError.wrongKind(name, expected: "integer") }
        return Int(v[0])
    }

    public var byteCount: Int { arrays.values.reduce(0) { $0 + $1.byteCount } }

    /// Bytes per parameter tensor, in the order of `names`: an array belongs to the parameter
    /// whose name prefixes it (`fc1.weight/exp_avg`, `fc1.weight/block_0/L`); the rest (step
    /// counters, wrappers' global state) is reported under `TensorStateBytes.global`.
    public func bytesByTensor(_ names: [String]) -> [TensorStateBytes] {
        var bytes = [Int](repeating: 0, count: names.count)
        var global = 0
        for (key, array) in arrays {
            if let i = names.indices.filter({ key.hasPrefix(names[$0] + "/") }).max(by: { names[$0].count < names[$1].count }) {
                bytes[i] += array.byteCount
            } else {
                global += array.byteCount
            }
        }
        return zip(names, bytes).map { TensorStateBytes(tensor: $0, bytes: $1) } + (global > 0 ? [TensorStateBytes(tensor: TensorStateBytes.global, bytes: global)] : [])
    }
}

/// Bytes of optimizer state held for one parameter tensor.
public struct TensorStateBytes: Codable, Sendable, Equatable {
    /// The name under which state that belongs to no single tensor is reported.
    public static let global = "(global)"
    public var tensor: String
    public var bytes: Int
    public init(tensor: String, bytes: Int) {
        self.tensor = tensor
        self.bytes = bytes
    }
}

/// An optimizer that counts the expensive work it does (eigendecompositions and the like), so that
/// a trial's result says how much of it there was.
public protocol WorkCounting {
    /// Counter name → count since the optimizer was made (not part of its state).
    var workCounters: [String: Int] { get }
}

/// The names, shapes and roles of the tensors an optimizer is to step: what `ShapeChecking`
/// optimizers are checked against before a trial trains.
public struct ParameterLayout: Sendable, Equatable {
    public var names: [String]
    public var shapes: [[Int]]
    public var roles: [ParameterRole]

    /// The tensors of `parameters` at `indices` (all of them by default).
    public init<T>(_ parameters: Parameters<T>, indices: [Int]? = nil) {
        let indices = indices ?? Array(parameters.names.indices)
        names = indices.map { parameters.names[$0] }
        shapes = indices.map { parameters.values[$0].shape }
        roles = indices.map { parameters.roles[$0] }
    }

    public var entries: [(name: String, shape: [Int], role: ParameterRole)] {
        names.indices.map { (names[$0], shapes[$0], roles[$0]) }
    }
}

/// An optimizer that cannot step every tensor (a shape its method does not define, for a role it
/// would apply the method to). `Builders.optimizer` checks the model's tensors before training,
/// so that such a trial fails at once, naming the tensor, instead of the optimizer quietly
/// stepping it some other way.
public protocol ShapeChecking {
    /// Throws `UnsupportedParameterError` for the first tensor it cannot step.
    func check(_ layout: ParameterLayout) throws
}

/// A tensor an optimizer refuses, and why.
public struct UnsupportedParameterError: Error, CustomStringConvertible, Equatable {
    public var optimizer: String
    public var parameter: String
    public var shape: [Int]
    public var role: ParameterRole
    public var reason: String

    public init(optimizer: String, parameter: String, shape: [Int], role: ParameterRole, reason: String) {
        self.optimizer = optimizer
        self.parameter = parameter
        self.shape = shape
        self.role = role
        self.reason = reason
    }

    public var description: String {
        "optimizer '\(optimizer)' cannot step parameter '\(parameter)' (role \(role.rawValue), shape \(shape)): \(reason)"
    }
}

public enum OptimizerStateError: Error, CustomStringConvertible, Equatable {
    case missing(String)
    case wrongKind(String, expected: String)
    case wrongShape(String, expected: [Int], found: [Int])
    case wrongOptimizer(expected: String, found: String)

    public var description: String {
        switch self {
        case .missing(let n): "optimizer state has no array named '\(n)'"
        case .wrongKind(let n, let e): "optimizer state '\(n)' should be a \(e)"
        case .wrongShape(let n, let e, let f): "optimizer state '\(n)' has shape \(f), expected \(e)"
        case .wrongOptimizer(let e, let f): "optimizer state was saved by '\(f)', cannot load into '\(e)'"
        }
    }
}

/// An optimizer updates parameters in place from their gradients and can export and import
/// its whole state as named arrays (for checkpoints and exact resume).
///
/// The learning rate is a property so that a schedule (owned by the training loop) can set it
/// before each step; `step` counts the updates applied so far.
public protocol Optimizer<Scalar>: AnyObject {
    associatedtype Scalar: BLASScalar
    /// The name trials use to select it (`adamw`, `sgd`).
    var name: String { get }
    var learningRate: Double { get set }
    var step: Int { get }
    /// Applies one update to `parameters.values` from `parameters.gradients`.
    func update(_ parameters: Parameters<Scalar>)
    func exportState(names: [String]) -> OptimizerState<Scalar>
    func importState(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws
}

extension Optimizer {
    /// Bytes of optimizer state, from the exported arrays.
    public func stateBytes(names: [String]) -> Int { exportState(names: names).byteCount }
}
