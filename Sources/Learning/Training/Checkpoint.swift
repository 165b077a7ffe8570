import Linalg

/// The model and optimizer of a checkpoint, in the trial's precision.
public struct CheckpointTensors<Scalar: BLASScalar>: Sendable {
    public var names: [String]
    public var parameters: [Tensor<Scalar>]
    public var optimizer: OptimizerState<Scalar>
    /// The model's buffers (batch norm's running statistics), by name.
    public var bufferNames: [String]
    public var buffers: [Tensor<Scalar>]

    public init(names: [String], parameters: [Tensor<Scalar>], optimizer: OptimizerState<Scalar>, bufferNames: [String] = [], buffers: [Tensor<Scalar>] = []) {
        precondition(bufferNames.count == buffers.count)
        self.names = names
        self.parameters = parameters
        self.optimizer = optimizer
        self.bufferNames = bufferNames
        self.buffers = buffers
    }
}

public enum CheckpointPayload: Sendable {
    case float32(CheckpointTensors<Float>)
    case float64(CheckpointTensors<Double>)
    /// A program trial's checkpoint: the files of its checkpoint directory (`ProgramContract`).
    case files([PackedFile])
}

/// A file with its path relative to a directory (checked with `RelativePath`) and its bytes: one
/// file of a program's checkpoint directory, or of a program trial's `files`.
public struct PackedFile: Sendable, Equatable {
    public var path: String
    public var bytes: [UInt8]

    public init(path: String, bytes: [UInt8]) {
        self.path = path
        self.bytes = bytes
    }
}

/// Everything a trial needs to continue exactly as if it had never stopped: parameters, the
/// complete optimizer state, the schedule's state, both random streams (data order and sampling
/// noise) and the position (epochs and steps done; checkpoints are taken between epochs, or
/// between steps for toy objectives), plus the history so far.
public struct TrainingCheckpoint: Sendable {
    public var config: TrialConfig
    /// Epochs completed (steps for toy objectives).
    public var epoch: Int
    /// Optimizer steps taken.
    public var step: Int
    public var shuffle: Xoshiro256
    public var noise: Xoshiro256
    public var plateau: PlateauState?
    public var history: [EpochRecord]
    public var trajectory: [[Double]]
    public var payload: CheckpointPayload
    /// The per-layer diagnostics so far (`diagnostics: true`).
    public var layerStatistics: [LayerStatistics]
    /// A program trial's own metrics so far, by name, aligned with `history` (NaN where an epoch
    /// did not report one).
    public var extraHistory: [String: [Double]] = [:]

    public init(
        config: TrialConfig, epoch: Int, step: Int, shuffle: Xoshiro256, noise: Xoshiro256, plateau: PlateauState?, history: [EpochRecord],
        trajectory: [[Double]], payload: CheckpointPayload, layerStatistics: [LayerStatistics] = []
    ) {
        self.layerStatistics = layerStatistics
        self.config = config
        self.epoch = epoch
        self.step = step
        self.shuffle = shuffle
        self.noise = noise
        self.plateau = plateau
        self.history = history
        self.trajectory = trajectory
        self.payload = payload
    }

    public var precision: String {
        switch payload {
        case .float32: "float32"
        case .float64: "float64"
        case .files: "program"
        }
    }

    func tensors<T: BLASScalar>(_: T.Type) throws -> CheckpointTensors<T> {
        switch payload {
        case .float32(let t as CheckpointTensors<T>): return t
        case .float64(let t as CheckpointTensors<T>): return t
        default: throw CheckpointError.precision(expected: T.precisionName, found: precision)
        }
    }
}

public enum CheckpointError: Error, CustomStringConvertible, Equatable {
    case precision(expected: String, found: String)
    case configuration(String)
    case parameters(String)

    public var description: String {
        switch self {
        case .precision(let e, let f): "checkpoint holds \(f) tensors, the trial trains in \(e)"
        case .configuration(let why): "checkpoint belongs to another trial: \(why)"
        case .parameters(let why): "checkpoint does not fit the model: \(why)"
        }
    }
}

/// When and how a run saves and restores checkpoints.
public struct CheckpointPolicy {
    /// Save after every this many epochs (steps for toy objectives) and at the end; nil: never.
    public var every: Int?
    public var resume: TrainingCheckpoint?
    /// Keys whose values may differ between `resume` and the run's configuration (population-based
    /// training: the checkpoint is another trial's, continued with new hyperparameters). The
    /// optimizer is built from the new values and then takes the checkpoint's state.
    public var mayDiffer: Set<String> = []
    public var save: (TrainingCheckpoint) throws -> Void

    public init(every: Int? = nil, resume: TrainingCheckpoint? = nil, mayDiffer: Set<String> = [], save: @escaping (TrainingCheckpoint) throws -> Void = { _ in }) {
        self.every = every
        self.resume = resume
        self.mayDiffer = mayDiffer
        self.save = save
    }

    public static var none: CheckpointPolicy { CheckpointPolicy() }

    func due(_ done: Int, of total: Int) -> Bool {
        guard let every else { return false }
        return done % every == 0 || done == total
    }

    /// Checks that a checkpoint belongs to this trial: same configuration apart from its length
    /// (and the keys in `mayDiffer`).
    public static func check(_ checkpoint: TrainingCheckpoint, against config: TrialConfig, mayDiffer: Set<String> = []) throws {
        let ignored = mayDiffer.union(["epochs", "steps"])
        let a = checkpoint.config.values.filter { !ignored.contains($0.key) }
        let b = config.values.filter { !ignored.contains($0.key) }
        guard a == b else {
            let differing = Set(a.keys).union(b.keys).filter { a[$0] != b[$0] }.sorted()
            throw CheckpointError.configuration("keys differ: \(differing.joined(separator: ", "))")
        }
    }
}

extension Parameters {
    /// Overwrites the values from a checkpoint, checking names and shapes.
    func restore(_ saved: CheckpointTensors<Scalar>) throws {
        guard saved.names == names else {
            throw CheckpointError.parameters("parameters \(saved.names) vs the model's \(names)")
        }
        for i in 0..<count {
            guard saved.parameters[i].shape == values[i].shape else {
                throw CheckpointError.parameters("\(names[i]) has shape \(saved.parameters[i].shape), the model's is \(values[i].shape)")
            }
            values[i] = saved.parameters[i]
        }
    }
}

extension ModelBuffers {
    /// Overwrites the buffers from a checkpoint, checking names and shapes.
    func restore(_ saved: CheckpointTensors<Scalar>) throws {
        guard saved.bufferNames == names else {
            throw CheckpointError.parameters("buffers \(saved.bufferNames) vs the model's \(names)")
        }
        for i in values.indices {
            guard saved.buffers[i].shape == values[i].shape else {
                throw CheckpointError.parameters("\(names[i]) has shape \(saved.buffers[i].shape), the model's is \(values[i].shape)")
            }
            values[i] = saved.buffers[i]
        }
    }
}

extension CheckpointPayload {
    static func make<T: BLASScalar>(_ params: Parameters<T>, _ optimizer: any Optimizer<T>, buffers: ModelBuffers<T>? = nil) -> CheckpointPayload {
        let tensors = CheckpointTensors(
            names: params.names, parameters: params.values, optimizer: optimizer.exportState(names: params.names), bufferNames: buffers?.names ?? [],
            buffers: buffers?.values ?? [])
        if let t = tensors as? CheckpointTensors<Float> { return .float32(t) }
        return .float64(tensors as! CheckpointTensors<Double>)
    }
}
