import Linalg

/// What one example's activations are between two layers, and how a batch of them is stored.
public enum FeatureShape: Sendable, Equatable, CustomStringConvertible {
    /// Channels × height × width. A batch is stored channel-major, `[C, N, H, W]`: a convolution
    /// is then one GEMM over the whole batch, and batch norm reads each channel contiguously.
    case image(channels: Int, height: Int, width: Int)
    /// A vector; a batch is `[N, F]`.
    case vector(Int)
    /// Token ids (a network's input only); a batch is `[N, T]`, the ids stored as scalars.
    case tokens(length: Int, vocabulary: Int)
    /// A sequence of vectors; a batch is `[N·T, E]`, one row per position.
    case sequence(length: Int, width: Int)

    /// Values per example.
    public var count: Int {
        switch self {
        case .image(let c, let h, let w): c * h * w
        case .vector(let f): f
        case .tokens(let t, _): t
        case .sequence(let t, let e): t * e
        }
    }

    /// The batch tensor's shape for `n` examples.
    func batchShape(_ n: Int) -> [Int] {
        switch self {
        case .image(let c, let h, let w): [c, n, h, w]
        case .vector(let f): [n, f]
        case .tokens(let t, _): [n, t]
        case .sequence(let t, let e): [n * t, e]
        }
    }

    /// Rows of a batch of `n` when the last dimension is the features: vectors and sequences.
    var positions: Int { if case .sequence(let t, _) = self { t } else { 1 } }

    /// The width of the last dimension of vectors and sequences.
    var width: Int? {
        switch self {
        case .vector(let f): f
        case .sequence(_, let e): e
        default: nil
        }
    }

    public var description: String {
        switch self {
        case .image(let c, let h, let w): "\(c)×\(h)×\(w) image"
        case .vector(let f): "vector of \(f)"
        case .tokens(let t, let v): "\(t) tokens (vocabulary \(v))"
        case .sequence(let t, let e): "sequence of \(t)×\(e)"
        }
    }
}

/// How one forward pass runs.
struct ForwardPass {
    /// Training mode: batch statistics in batch norm, dropout active.
    var training: Bool
    /// Batch norm updates its running statistics (not on the extra passes SAM and Sophia make).
    var updatesStatistics: Bool
    var batch: Int
}

/// Scratch memory the layers of one network share (they run one at a time): a convolution's
/// unrolled patches and their gradients, one chunk of examples at a time. The buffers only grow,
/// to the largest chunk any layer asks for.
final class Workspace<T: BLASScalar> {
    var columns: [T] = []
    var columnGradients: [T] = []

    /// Makes both buffers hold at least `count` values.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func reserve(_ count: Int) {
        if columns.count < count { columns = [T](repeating: 0, count: count) }
        if columnGradients.count < count { columnGradients = [T](repeating: 0, count: count) }
    }
}

/// A network's non-trainable state: batch norm's running statistics, saved in checkpoints.
public final class ModelBuffers<Scalar: BLASScalar> {
    public private(set) var names: [String] = []
    public var values: [Tensor<Scalar>] = []

    public init() {}

    func add(_ name: String, _ value: Tensor<Scalar>) -> Int {
        names.append(name)
        values.append(value)
        return values.count - 1
    }
}

/// One layer with hand-written forward and backward passes. A layer reads its parameters from
/// the network's `Parameters` by index and *adds* its parameter gradients to them (the network
/// zeroes them first), so that a tensor used twice (tied embeddings) gets both contributions.
class Layer<T: BLASScalar> {
    let input: FeatureShape
    let output: FeatureShape
    /// The layer's name (its parameters' prefix), for the diagnostics.
    let name: String

    init(input: FeatureShape, output: FeatureShape, name: String) {
        self.input = input
        self.output = output
        self.name = name
    }

    /// Multiply–adds per example of one forward pass.
    var macs: Int { 0 }
    /// Whether the diagnostics report this layer's output (layers with weights).
    var hasWeights: Bool { false }

    func forward(_ x: Tensor<T>, into y: inout Tensor<T>, _ p: Parameters<T>, _ pass: ForwardPass, rng: inout Xoshiro256) {
        fatalError("\(type(of: self)) does not implement forward")
    }

    /// Adds the parameter gradients and, when `wantsInput`, writes ∂L/∂x into `dx`.
    func backward(_ x: Tensor<T>, _ y: Tensor<T>, _ dy: Tensor<T>, into dx: inout Tensor<T>, wantsInput: Bool, _ p: Parameters<T>) {
        fatalError("\(type(of: self)) does not implement backward")
    }
}

/// Layers run one after the other, with their outputs and input gradients kept for backward.
final class Chain<T: BLASScalar> {
    let layers: [Layer<T>]
    /// `outputs[i]`: layer i's output of the last forward pass.
    var outputs: [Tensor<T>]
    /// `inputGradients[i]`: ∂L/∂(layer i's input) of the last backward pass.
    var inputGradients: [Tensor<T>]

    init(_ layers: [Layer<T>]) {
        self.layers = layers
        outputs = layers.map { _ in Tensor(zeros: [0]) }
        inputGradients = outputs
    }

    var macs: Int { layers.reduce(0) { $0 + $1.macs } }

    func forward(_ x: Tensor<T>, _ p: Parameters<T>, _ pass: ForwardPass, rng: inout Xoshiro256) {
        for (i, layer) in layers.enumerated() {
            layer.forward(i == 0 ? x : outputs[i - 1], into: &outputs[i], p, pass, rng: &rng)
        }
    }

    /// Backpropagates `dy` (∂L/∂ the last output); ∂L/∂x ends in `inputGradients[0]` when wanted.
    func backward(_ x: Tensor<T>, _ dy: Tensor<T>, wantsInput: Bool, _ p: Parameters<T>) {
        for i in layers.indices.reversed() {
            let layer = layers[i]
            layer.backward(
                i == 0 ? x : outputs[i - 1], outputs[i], i == layers.count - 1 ? dy : inputGradients[i + 1], into: &inputGradients[i],
                wantsInput: i > 0 || wantsInput, p)
        }
    }

    /// Every layer with weights, nested ones included, with its output of the last forward pass.
    func weightedOutputs() -> [(layer: String, values: [T])] {
        var all: [(layer: String, values: [T])] = []
        for (layer, output) in zip(layers, outputs) {
            if let residual = layer as? ResidualLayer<T> {
                all += residual.body.weightedOutputs() + residual.shortcut.weightedOutputs()
            } else if let attention = layer as? AttentionLayer<T> {
                // Its two linear layers: the queries, keys and values, and the projection.
                all += [("\(layer.name).qkv", attention.qkv.storage), ("\(layer.name).proj", output.storage)]
            } else if layer.hasWeights {
                all.append((layer.name, output.storage))
            }
        }
        return all
    }
}
