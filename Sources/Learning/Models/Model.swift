import Linalg

/// A model trained on mini-batches of a data set, with hand-written backpropagation.
public protocol Model<Scalar>: AnyObject {
    associatedtype Scalar: BLASScalar
    var parameters: Parameters<Scalar> { get }
    /// Whether `evaluate` reports an accuracy.
    var isClassifier: Bool { get }
    /// Forward and backward pass on one batch: fills `parameters.gradients` with the gradient of
    /// the training objective and returns the objective's value (summed or averaged over the
    /// batch, as the model defines its loss). `rng` supplies any sampling noise (the VAE's).
    func lossAndGradients(x: Tensor<Scalar>, labels: [Int32], rng: inout Xoshiro256) -> Double
    /// Loss and metrics without gradients: loss summed over the batch's examples, and the number
    /// classified correctly (classifiers only).
    func evaluate(x: Tensor<Scalar>, labels: [Int32], rng: inout Xoshiro256) -> (lossSum: Double, correct: Int)
    /// How the training objective relates to the per-example loss that is reported: the VAE
    /// minimises the batch sum, classifiers the batch mean.
    var lossReduction: LossReduction { get }
    /// Multiply–adds per example for one forward pass (the benchmark's GFLOP/s).
    var forwardMACsPerExample: Int { get }
    /// Sophia's Gauss–Newton–Bartlett estimator: fills `parameters.gradients` with the gradient of
    /// the loss *averaged* over the batch, on targets sampled from the model's own predictive
    /// distribution (classifiers: labels from the softmax; the VAE: pixels from the decoder's
    /// Bernoulli), drawing from `rng`.
    func sampledTargetGradients(x: Tensor<Scalar>, rng: inout Xoshiro256)
    /// Each layer's output on a batch (classifiers: post-activation; the VAE: h1, mu, logvar, h3,
    /// logits), named after the layer's parameters (`fc1`, …), for the per-layer diagnostics.
    func layerOutputs(x: Tensor<Scalar>, rng: inout Xoshiro256) -> [(layer: String, values: [Scalar])]
    /// Labels per example: 1, or a language model's positions (its accuracy is per token).
    var labelsPerExample: Int { get }
    /// While frozen, training passes leave running statistics (batch norm's) alone: SAM's second
    /// gradient and Sophia's estimator pass the same batch again.
    func freezeRunningStatistics(_ frozen: Bool)
    /// Non-trainable state saved in checkpoints (batch norm's running statistics), if any.
    var buffers: ModelBuffers<Scalar>? { get }
}

extension Model {
    public var labelsPerExample: Int { 1 }
    public func freezeRunningStatistics(_ frozen: Bool) {}
    public var buffers: ModelBuffers<Scalar>? { nil }
}

public enum LossReduction: Sendable { case mean, sum }

/// A multi-layer perceptron classifier with softmax cross-entropy (mean over the batch, as
/// `nn.CrossEntropyLoss`). With no hidden layers it is multinomial logistic regression.
public final class MLPClassifier<Scalar: BLASScalar>: Model {
    public let parameters: Parameters<Scalar>
    public let activation: Activation
    public let isClassifier = true
    public let lossReduction = LossReduction.mean
    let layers: [Linear]
    /// Per-layer workspace: outputs (post-activation), pre-activations (GELU only), deltas.
    var outputs: [Tensor<Scalar>]
    var pres: [Tensor<Scalar>]
    var deltas: [Tensor<Scalar>]

    public init(inputs: Int, hidden: [Int], classes: Int, activation: Activation, rng: inout Xoshiro256) {
        var entries: [(name: String, value: Tensor<Scalar>, role: ParameterRole)] = []
        let sizes = [inputs] + hidden + [classes]
        var layers: [Linear] = []
        for i in 0..<(sizes.count - 1) {
            let role: ParameterRole = i == sizes.count - 2 ? .head : .weight
            layers.append(.make("fc\(i + 1)", inputs: sizes[i], outputs: sizes[i + 1], role: role, into: &entries, rng: &rng))
        }
        self.layers = layers
        self.activation = activation
        self.parameters = Parameters(entries)
        outputs = Array(repeating: Tensor(zeros: [0]), count: layers.count)
        pres = outputs
        deltas = outputs
    }

    public var forwardMACsPerExample: Int { layers.reduce(0) { $0 + $1.inputs * $1.outputs } }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    func forward(_ x: Tensor<Scalar>) {
        for (i, layer) in layers.enumerated() {
            let isLast = i == layers.count - 1
            layer.forward(i == 0 ? x : outputs[i - 1], parameters, into: &outputs[i], activation: isLast ? nil : activation, pre: &pres[i])
        }
    }

    func crossEntropy(labels: [Int32], delta: UnsafeMutableBufferPointer<Scalar>?) -> (Double, Int) {
        softmaxCrossEntropy(outputs[layers.count - 1], labels: labels, delta: delta)
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func lossAndGradients(x: Tensor<Scalar>, labels: [Int32], rng: inout Xoshiro256) -> Double {
        forward(x)
        let last = layers.count - 1
        deltas[last].resize(outputs[last].shape)
        let (total, _) = deltas[last].storage.withUnsafeMutableBufferPointer { crossEntropy(labels: labels, delta: $0) }
        for i in stride(from: last, through: 0, by: -1) {
            let input = i == 0 ? x : outputs[i - 1]
            layers[i].parameterGradients(input: input, delta: deltas[i], parameters)
            if i > 0 {
                layers[i].inputGradient(delta: deltas[i], parameters, into: &deltas[i - 1])
                Linear.activationBackward(activation, output: outputs[i - 1], pre: pres[i - 1], delta: &deltas[i - 1])
            }
        }
        return total / Double(x.rows)
    }

    public func sampledTargetGradients(x: Tensor<Scalar>, rng: inout Xoshiro256) {
        forward(x)
        let sampled = sampleFromSoftmax(outputs[layers.count - 1], rng: &rng)
        _ = lossAndGradients(x: x, labels: sampled, rng: &rng)
    }

    public func layerOutputs(x: Tensor<Scalar>, rng: inout Xoshiro256) -> [(layer: String, values: [Scalar])] {
        forward(x)
        return layers.indices.map { (layer: "fc\($0 + 1)", values: outputs[$0].storage) }
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func evaluate(x: Tensor<Scalar>, labels: [Int32], rng: inout Xoshiro256) -> (lossSum: Double, correct: Int) {
        forward(x)
        let (total, correct) = crossEntropy(labels: labels, delta: nil)
        return (total, correct)
    }
}

/// Softmax cross-entropy of each row of `logits` against its label; writes (softmax − onehot)/rows
/// into `delta` when given (the gradient of the mean). Returns the summed loss and the number of
/// rows whose largest logit is the label's.
@_specialize(where T == Float)
@_specialize(where T == Double)
func softmaxCrossEntropy<T: BLASScalar>(_ logits: Tensor<T>, labels: [Int32], delta: UnsafeMutableBufferPointer<T>?) -> (Double, Int) {
    let (rows, cols) = (logits.rows, logits.cols)
    precondition(labels.count == rows, "\(labels.count) labels for \(rows) rows of logits")
    let invB = T(1) / T(rows)
    var total = 0.0
    var correct = 0
    logits.storage.withUnsafeBufferPointer { z in
        for r in 0..<rows {
            let row = z.baseAddress! + r * cols
            var maxV = row[0], arg = 0
            for c in 1..<cols where row[c] > maxV { maxV = row[c]; arg = c }
            var sum: T = 0
            for c in 0..<cols { sum += T.exp(row[c] - maxV) }
            let y = Int(labels[r])
            let lse = maxV + T.log(sum)
            total += Double(lse - row[y])
            if arg == y { correct += 1 }
            if let delta {
                let d = delta.baseAddress! + r * cols
                for c in 0..<cols { d[c] = T.exp(row[c] - lse) * invB }
                d[y] -= invB
            }
        }
    }
    return (total, correct)
}

/// A label per row of `logits`, drawn from its softmax (inverse-CDF sampling from `rng`).
func sampleFromSoftmax<T: BLASScalar>(_ logits: Tensor<T>, rng: inout Xoshiro256) -> [Int32] {
    var sampled = [Int32](repeating: 0, count: logits.rows)
    logits.storage.withUnsafeBufferPointer { z in
        for r in 0..<logits.rows {
            let row = z.baseAddress! + r * logits.cols
            var maxV = row[0]
            for c in 1..<logits.cols { maxV = Swift.max(maxV, row[c]) }
            var sum = 0.0
            for c in 0..<logits.cols { sum += Double(T.exp(row[c] - maxV)) }
            var u = rng.nextUnit() * sum, c = 0
            while c < logits.cols - 1 {
                u -= Double(T.exp(row[c] - maxV))
                if u < 0 { break }
                c += 1
            }
            sampled[r] = Int32(c)
        }
    }
    return sampled
}
