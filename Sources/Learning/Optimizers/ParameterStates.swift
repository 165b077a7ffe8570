import Linalg

/// The state an optimizer keeps for one parameter tensor, as mlx-swift's `OptimizerBase<State>`
/// keeps it: a small struct whose named slots (`exp_avg`, `exp_avg_sq`, …) a checkpoint holds as
/// `<parameter>/<slot>`, in the order of `slots`. A slot the state does not have (an optional that
/// is nil, such as `max_exp_avg_sq` without amsgrad) is neither exported nor read back.
protocol ParameterState {
    associatedtype Scalar: BLASScalar
    /// The named arrays, in checkpoint order.
    static var slots: [StateSlot<Self>] { get }
}

/// One named array of a `ParameterState`: its value in a checkpoint, and how to read it back.
struct StateSlot<State: ParameterState> {
    typealias Scalar = State.Scalar
    let name: String
    /// The slot as a checkpoint array, nil when the state does not have it.
    let value: (State) -> StateArray<Scalar>?
    /// Replaces the slot by the checkpoint's array `key`, which must have the slot's current kind
    /// and shape (`OptimizerStateError` otherwise).
    let load: (inout State, OptimizerState<Scalar>, _ key: String) throws -> Void

    static func tensor(_ name: String, _ path: WritableKeyPath<State, Tensor<Scalar>>) -> Self {
        Self(name: name, value: { .real($0[keyPath: path]) }) { s, state, key in
            s[keyPath: path] = try state.tensor(key, shape: s[keyPath: path].shape)
        }
    }

    static func tensor(_ name: String, _ path: WritableKeyPath<State, Tensor<Scalar>?>) -> Self {
        Self(name: name, value: { $0[keyPath: path].map { .real($0) } }) { s, state, key in
            s[keyPath: path] = try state.tensor(key, shape: s[keyPath: path]!.shape)
        }
    }

    static func integer(_ name: String, _ path: WritableKeyPath<State, Int>) -> Self {
        Self(name: name, value: { .int64([Int64($0[keyPath: path])], shape: []) }) { s, state, key in
            s[keyPath: path] = try state.integer(key)
        }
    }

    static func integer(_ name: String, _ path: WritableKeyPath<State, Int?>) -> Self {
        Self(name: name, value: { s in s[keyPath: path].map { .int64([Int64($0)], shape: []) } }) { s, state, key in
            s[keyPath: path] = try state.integer(key)
        }
    }

    /// 8-bit codes, stored with the shape at `shape`.
    static func bytes(_ name: String, _ path: WritableKeyPath<State, [UInt8]?>, shape: KeyPath<State, [Int]>) -> Self {
        Self(name: name, value: { s in s[keyPath: path].map { .uint8($0, shape: s[keyPath: shape]) } }) { s, state, key in
            s[keyPath: path] = try state.bytes(key, shape: s[keyPath: shape])
        }
    }
}

/// Every parameter's state, in the parameters' order (nil for a parameter that has none yet):
/// made from the parameters' shapes, exported and imported by one implementation.
struct ParameterStates<State: ParameterState> {
    typealias Scalar = State.Scalar
    var states: [State?] = []

    init() {}

    init(_ states: [State?]) { self.states = states }

    /// No state yet for any of `count` parameters (each made on its first update).
    init(count: Int) { states = Array(repeating: nil, count: count) }

    /// A state for every parameter, made from its shape.
    init(_ parameters: Parameters<Scalar>, _ make: (_ shape: [Int]) -> State) {
        states = parameters.values.map { make($0.shape) }
    }

    /// Every parameter's state read back from a checkpoint: `make(shape)` gives a new state of the
    /// kind the parameter has (its slots, their shapes), and each of its slots must be there.
    init(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>, _ make: (_ shape: [Int]) -> State) throws {
        states = try parameters.names.indices.map { i in
            try Self.load(make(parameters.values[i].shape), parameters.names[i], from: state)
        }
    }

    /// The states a checkpoint has, for optimizers that make a parameter's state on its first
    /// update: `make(i)` gives a new state of the kind parameter i has (nil: none), which stays
    /// nil when the checkpoint has none of its slots, and is read back in full otherwise.
    init(whereSaved state: OptimizerState<Scalar>, parameters: Parameters<Scalar>, _ make: (_ index: Int) -> State?) throws {
        let slots = State.slots
        states = try parameters.names.indices.map { i in
            let name = parameters.names[i]
            guard let prototype = make(i), slots.contains(where: { $0.value(prototype) != nil && state["\(name)/\($0.name)"] != nil }) else { return nil }
            return try Self.load(prototype, name, from: state)
        }
    }

    static func load(_ prototype: State, _ name: String, from state: OptimizerState<Scalar>) throws -> State {
        var s = prototype
        for slot in State.slots where slot.value(s) != nil { try slot.load(&s, state, "\(name)/\(slot.name)") }
        return s
    }

    var count: Int { states.count }

    subscript(i: Int) -> State? {
        _read { yield states[i] }
        _modify { yield &states[i] }
    }

    /// Runs `body` on parameter i's state in place (so that it can reach several of its tensors' storage at once).
    @inline(__always)
    mutating func with<R>(_ i: Int, _ body: (inout State) -> R) -> R { body(&states[i]!) }

    /// Runs `body` on the storage of parameter i's `tensor` when the parameter has a state (there
    /// are states at all), else on nil: optional state such as a momentum buffer.
    @inline(__always)
    mutating func withStorage<R>(_ i: Int, _ tensor: WritableKeyPath<State, Tensor<Scalar>>, _ body: (UnsafeMutablePointer<Scalar>?) -> R) -> R {
        guard i < states.count, states[i] != nil else { return body(nil) }
        return states[i]![keyPath: tensor].storage.withUnsafeMutableBufferPointer { body($0.baseAddress) }
    }

    /// Adds every state's arrays to `state`, parameter by parameter.
    func export(names: [String], into state: inout OptimizerState<Scalar>) {
        let slots = State.slots
        for (i, s) in states.enumerated() {
            guard let s else { continue }
            for slot in slots {
                if let value = slot.value(s) { state.set("\(names[i])/\(slot.name)", value) }
            }
        }
    }

    /// The state of an optimizer whose only other state is its step count: `step`, then the arrays.
    func exported(step: Int, names: [String]) -> OptimizerState<Scalar> {
        var state = OptimizerState<Scalar>()
        state.set("step", integer: step)
        export(names: names, into: &state)
        return state
    }

    /// Calls `body` for each non-empty parameter with its shape, gradient, values, element count
    /// and state, updated in place (mlx-swift's `applySingle`); every parameter must have a state.
    @inline(__always)
    mutating func forEach(
        _ parameters: Parameters<Scalar>,
        _ body: (_ shape: [Int], _ g: UnsafePointer<Scalar>, _ p: UnsafeMutablePointer<Scalar>, _ n: Int, _ state: inout State) -> Void
    ) {
        for i in 0..<parameters.count {
            let n = parameters.values[i].count, shape = parameters.values[i].shape
            if n == 0 { continue }
            parameters.gradients[i].storage.withUnsafeBufferPointer { g in
                parameters.values[i].storage.withUnsafeMutableBufferPointer { p in
                    body(shape, g.baseAddress!, p.baseAddress!, n, &states[i]!)
                }
            }
        }
    }
}

/// Runs `body` on the storage of `tensor`, or on nil when there is none (an optional slot such
/// as a momentum buffer).
@inline(__always)
func withStorage<T: BLASScalar, R>(_ tensor: inout Tensor<T>?, _ body: (UnsafeMutablePointer<T>?) -> R) -> R {
    tensor == nil ? body(nil) : tensor!.storage.withUnsafeMutableBufferPointer { body($0.baseAddress) }
}
