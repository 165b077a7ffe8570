import Linalg

/// How a network's parameters start.
public enum Initialization: Sendable, Equatable {
    /// PyTorch's defaults: linear and convolution weights and biases uniform in ±1/√fan_in,
    /// embeddings N(0, 1), norms' scales 1 and shifts 0.
    case pytorch
    /// GPT-2's (as nanoGPT): linear weights and embeddings N(0, 0.02²), biases 0, and the
    /// residual branches' output projections (`*.proj.weight`) N(0, (0.02/√(2·layers))²).
    case gpt2(layers: Int)
}

/// A parameter before it exists: what the resource checks count and `Network` allocates.
struct PlannedTensor: Sendable {
    enum Start: Sendable { case uniform(Double), normal(Double), constant(Double) }
    var name: String
    var shape: [Int]
    /// A parameter's role; nil for a buffer (not trained).
    var role: ParameterRole?
    var start: Start
    var count: Int { shape.reduce(1, *) }
}

/// A network's layers with their parameters' indices, built from `LayerSpec`s without
/// allocating any tensor: enough to check its size, then to allocate it (`Network`).
struct NetworkPlan<T: BLASScalar> {
    var layers: [Layer<T>] = []
    var parameters: [PlannedTensor] = []
    var buffers: [PlannedTensor] = []
    /// Values one example occupies in training: every layer's output and its gradient, the
    /// largest convolution's unrolled patches (and their gradients; the layers share them), and
    /// each attention layer's projections, weights and dropout mask.
    /// Values one example occupies in training, beyond the convolutions' shared scratch.
    var valuesPerExample = 0
    /// The convolutions' unrolled patches and their gradients, one chunk of examples at a time
    /// (`Conv2dLayer.chunk`): the same for every batch size. The layers share it: the largest counts.
    var scratchValues = 0
    let input: FeatureShape
    let workspace = Workspace<T>()
    let bufferStore = ModelBuffers<T>()
    let initialization: Initialization
    /// Embedding layers by name, for tied output weights: their weight's index and shape.
    var embeddings: [String: (index: Int, shape: [Int])] = [:]

    /// Plans `specs` on inputs of `input`; the last layer must output `classes` scores per
    /// example (per position for text).
    init(_ specs: [LayerSpec], input: FeatureShape, classes: Int, initialization: Initialization) throws(LayerSpecError) {
        self.input = input
        self.initialization = initialization
        var shape = input
        layers = try plan(specs, from: &shape, prefix: "", path: "layers", classes: classes)
        let wanted: FeatureShape
        switch input {
        case .tokens(let t, let v): wanted = .sequence(length: t, width: v)
        default: wanted = .vector(classes)
        }
        guard shape == wanted else {
            throw LayerSpecError(path: "layers", message: "the network ends with a \(shape); it must end with a \(wanted): one score per class\(input.isTokens ? " per position" : "")")
        }
        guard !parameters.isEmpty else { throw LayerSpecError(path: "layers", message: "the network has no parameters to train") }
        // The head: the last linear layer's weight, when it is the network's last layer.
        if let head = layers.last as? LinearLayer<T>, parameters[head.weight].role == .weight { parameters[head.weight].role = .head }
        var seen = Set<String>()
        for p in parameters + buffers where !seen.insert(p.name).inserted {
            throw LayerSpecError(path: "layers", message: "two tensors are named '\(p.name)': give the layers distinct names")
        }
    }

    var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }

    /// Registers a parameter, refusing one larger than a whole model may be (the product in
    /// floating point: hostile sizes must not overflow).
    private mutating func add(_ name: String, _ shape: [Int], role: ParameterRole, _ start: PlannedTensor.Start, path: String) throws(LayerSpecError) -> Int {
        let size = shape.reduce(1.0) { $0 * Double($1) }
        guard size <= Double(TrialLimits.maxParameters) else {
            throw LayerSpecError(path: path, message: "\(name) would have \(formatCount(size)) values; a model may have at most \(TrialLimits.maxParameters) parameters")
        }
        parameters.append(PlannedTensor(name: name, shape: shape, role: role, start: start))
        return parameters.count - 1
    }

    /// Values per example of a shape whose dimensions come from a layer list, checked before any
    /// integer product is formed.
    static func checkedCount(_ dims: [Int], path: String, what: String) throws(LayerSpecError) -> Int {
        let size = dims.reduce(1.0) { $0 * Double($1) }
        guard size <= Double(TrialLimits.maxBatchValues) else {
            throw LayerSpecError(path: path, message: "\(what) would hold \(formatCount(size)) values per example; at most \(TrialLimits.maxBatchValues) are allowed")
        }
        return Int(size)
    }

    /// PyTorch's default for linear and convolution layers: uniform in ±1/√fan_in.
    private func defaultStart(fanIn: Int) -> PlannedTensor.Start { .uniform(1 / Double(fanIn).squareRoot()) }

    private func weightStart(_ name: String, fanIn: Int) -> PlannedTensor.Start {
        guard case .gpt2(let layers) = initialization else { return defaultStart(fanIn: fanIn) }
        return .normal(name.hasSuffix(".proj.weight") ? 0.02 / Double(2 * layers).squareRoot() : 0.02)
    }

    private func biasStart(fanIn: Int) -> PlannedTensor.Start {
        if case .gpt2 = initialization { return .constant(0) }
        return defaultStart(fanIn: fanIn)
    }

    private var embeddingStart: PlannedTensor.Start { if case .gpt2 = initialization { .normal(0.02) } else { .normal(1) } }

    private mutating func plan(
        _ specs: [LayerSpec], from shape: inout FeatureShape, prefix: String, path: String, classes: Int, defaultName: (Int) -> String = { "\($0)" }
    ) throws(LayerSpecError) -> [Layer<T>] {
        var built: [Layer<T>] = []
        for (i, spec) in specs.enumerated() {
            let name = prefix + (spec.name ?? defaultName(i))
            let here = "\(path)[\(i)]"
            let isLast = i == specs.count - 1 && prefix.isEmpty
            let layer = try plan(spec, from: shape, name: name, path: here, classes: classes, isLast: isLast)
            shape = layer.output
            let dims: [Int] =
                switch shape {
                case .image(let c, let h, let w): [c, h, w]
                case .vector(let f): [f]
                case .tokens(let t, _): [t]
                case .sequence(let t, let e): [t, e]
                }
            // The output and its gradient.
            valuesPerExample += 2 * (try Self.checkedCount(dims, path: here, what: "its output"))
            built.append(layer)
        }
        return built
    }

    private mutating func plan(_ spec: LayerSpec, from x: FeatureShape, name: String, path: String, classes: Int, isLast: Bool) throws(LayerSpecError) -> Layer<T> {
        func fail(_ message: String) -> LayerSpecError { LayerSpecError(path: path, message: message) }
        func needImage() throws(LayerSpecError) -> (Int, Int, Int) {
            guard case .image(let c, let h, let w) = x else { throw fail("needs an image input (channels × height × width), got a \(x)") }
            return (c, h, w)
        }
        func needRows() throws(LayerSpecError) -> Int {
            guard let width = x.width else { throw fail("needs a vector or sequence input, got a \(x)\(x.isImage ? " (flatten first)" : "")") }
            return width
        }
        if x.isTokens, case .embedding = spec.kind {
        } else if x.isTokens {
            throw fail("text input must go through an embedding layer first")
        }
        switch spec.kind {
        case .linear(let outputs, let hasBias, let tied):
            let inputs = try needRows()
            let out = outputs ?? (x.isSequence ? input.vocabulary : classes)
            let weight: Int
            if let tied {
                guard let e = embeddings[tied] else { throw fail("is tied to '\(tied)', which is no embedding layer before it") }
                guard e.shape == [out, inputs] else { throw fail("is tied to '\(tied)' of shape \(e.shape), but maps \(inputs) to \(out)") }
                weight = e.index
            } else {
                weight = try add("\(name).weight", [out, inputs], role: .weight, weightStart("\(name).weight", fanIn: inputs), path: path)
            }
            let bias = hasBias ? try add("\(name).bias", [out], role: .bias, biasStart(fanIn: inputs), path: path) : nil
            let output: FeatureShape = x.isSequence ? .sequence(length: x.positions, width: out) : .vector(out)
            return LinearLayer(input: x, output: output, name: name, weight: weight, bias: bias, inputs: inputs, outputs: out)
        case .conv2d(let out, let k, let stride, let padding, let hasBias):
            let (c, h, w) = try needImage()
            let ho = (h + 2 * padding - k) / stride + 1, wo = (w + 2 * padding - k) / stride + 1
            guard h + 2 * padding >= k, w + 2 * padding >= k else { throw fail("a \(k)×\(k) kernel does not fit a \(x) padded by \(padding)") }
            let fanIn = c * k * k
            let patches = try Self.checkedCount([c, k, k, ho, wo], path: path, what: "the unrolled patches")
            scratchValues = max(scratchValues, 2 * Conv2dLayer<T>.chunk(patchesPerExample: patches) * patches)
            let weight = try add("\(name).weight", [out, c, k, k], role: .weight, weightStart("\(name).weight", fanIn: fanIn), path: path)
            let bias = hasBias ? try add("\(name).bias", [out], role: .bias, biasStart(fanIn: fanIn), path: path) : nil
            return Conv2dLayer(
                input: x, output: .image(channels: out, height: ho, width: wo), name: name, weight: weight, bias: bias, kernel: k, stride: stride,
                padding: padding, workspace: workspace)
        case .maxPool(let k, let stride), .avgPool(let k, let stride):
            let (c, h, w) = try needImage()
            guard h >= k, w >= k else { throw fail("a \(k)×\(k) window does not fit a \(x)") }
            let isMax = if case .maxPool = spec.kind { true } else { false }
            return PoolLayer(
                input: x, output: .image(channels: c, height: (h - k) / stride + 1, width: (w - k) / stride + 1), name: name, kernel: k, stride: stride,
                isMax: isMax)
        case .globalAvgPool:
            let (c, _, _) = try needImage()
            return GlobalAveragePoolLayer(input: x, output: .vector(c), name: name)
        case .flatten:
            if x.isSequence { throw fail("cannot flatten a \(x)") }
            return FlattenLayer(input: x, output: .vector(x.count), name: name)
        case .batchNorm(let momentum, let epsilon):
            let channels: Int
            switch x {
            case .image(let c, _, _): channels = c
            case .vector(let f): channels = f
            default: throw fail("needs an image or vector input, got a \(x)")
            }
            let weight = try add("\(name).weight", [channels], role: .norm, .constant(1), path: path)
            let bias = try add("\(name).bias", [channels], role: .norm, .constant(0), path: path)
            buffers.append(PlannedTensor(name: "\(name).running_mean", shape: [channels], role: nil, start: .constant(0)))
            buffers.append(PlannedTensor(name: "\(name).running_var", shape: [channels], role: nil, start: .constant(1)))
            return BatchNormLayer(
                shape: x, name: name, weight: weight, bias: bias, runningMean: buffers.count - 2, runningVariance: buffers.count - 1, momentum: momentum,
                epsilon: epsilon, buffers: bufferStore)
        case .layerNorm(let epsilon):
            let width = try needRows()
            let weight = try add("\(name).weight", [width], role: .norm, .constant(1), path: path)
            let bias = try add("\(name).bias", [width], role: .norm, .constant(0), path: path)
            return LayerNormLayer(shape: x, name: name, weight: weight, bias: bias, epsilon: epsilon)
        case .dropout(let p):
            return DropoutLayer(p, shape: x, name: name)
        case .activation(let a):
            return ActivationLayer(a, shape: x, name: name)
        case .embedding(let dimension):
            guard case .tokens(let t, let vocabulary) = x else { throw fail("needs token ids (text data) as input, got a \(x)") }
            let weight = try add("\(name).weight", [vocabulary, dimension], role: .embedding, embeddingStart, path: path)
            embeddings[name] = (weight, [vocabulary, dimension])
            return EmbeddingLayer(input: x, output: .sequence(length: t, width: dimension), name: name, weight: weight, dimension: dimension)
        case .positional:
            guard case .sequence(let t, let e) = x else { throw fail("needs a sequence input (after an embedding), got a \(x)") }
            return PositionalLayer(shape: x, name: name, weight: try add("\(name).weight", [t, e], role: .embedding, embeddingStart, path: path))
        case .attention(let heads, let dropout):
            guard case .sequence(_, let e) = x else { throw fail("needs a sequence input (after an embedding), got a \(x)") }
            guard e % heads == 0 else { throw fail("\(heads) heads do not divide the width \(e)") }
            // Projections and their gradients (8·T·E), and per head the T×T weights (and dropout mask).
            guard case .sequence(let t, _) = x else { preconditionFailure() }
            valuesPerExample += 8 * (try Self.checkedCount([t, e], path: path, what: "the projections"))
            valuesPerExample += (dropout > 0 ? 2 : 1) * (try Self.checkedCount([heads, t, t], path: path, what: "the attention weights"))
            let qkv = try add("\(name).qkv.weight", [3 * e, e], role: .weight, weightStart("\(name).qkv.weight", fanIn: e), path: path)
            let qkvBias = try add("\(name).qkv.bias", [3 * e], role: .bias, biasStart(fanIn: e), path: path)
            let proj = try add("\(name).proj.weight", [e, e], role: .weight, weightStart("\(name).proj.weight", fanIn: e), path: path)
            let projBias = try add("\(name).proj.bias", [e], role: .bias, biasStart(fanIn: e), path: path)
            return AttentionLayer(shape: x, name: name, qkvWeight: qkv, qkvBias: qkvBias, projWeight: proj, projBias: projBias, heads: heads, dropout: dropout)
        case .residual(let body, let shortcut):
            guard !body.isEmpty else { throw fail("needs at least one layer in its body") }
            var bodyShape = x, shortcutShape = x
            let b = try plan(body, from: &bodyShape, prefix: "\(name).", path: "\(path).residual.body", classes: classes)
            let s = try plan(shortcut, from: &shortcutShape, prefix: "\(name).", path: "\(path).residual.shortcut", classes: classes) { "shortcut.\($0)" }
            guard bodyShape == shortcutShape else {
                throw fail("the body outputs a \(bodyShape) but the \(shortcut.isEmpty ? "identity shortcut passes" : "shortcut outputs") a \(shortcutShape)")
            }
            return ResidualLayer(shape: x, output: bodyShape, name: name, body: b, shortcut: s)
        }
    }
}

extension FeatureShape {
    var isImage: Bool { if case .image = self { true } else { false } }
    var isTokens: Bool { if case .tokens = self { true } else { false } }
    var isSequence: Bool { if case .sequence = self { true } else { false } }
    var vocabulary: Int { if case .tokens(_, let v) = self { v } else { 0 } }

    /// The shape a data set's examples enter a network as.
    init(_ layout: ExampleLayout, features: Int, classes: Int) {
        switch layout {
        case .vector: self = .vector(features)
        case .image(let c, let h, let w): self = .image(channels: c, height: h, width: w)
        case .tokens(let t): self = .tokens(length: t, vocabulary: classes)
        }
    }
}

/// A network of layers (a `layers` list or a preset) trained with softmax cross-entropy: one
/// class per example, or for text the next token at every position (the loss in nats per token).
public final class Network<Scalar: BLASScalar>: Model {
    public let parameters: Parameters<Scalar>
    /// Batch norm's running statistics.
    public let runningStatistics: ModelBuffers<Scalar>
    public let isClassifier = true
    public let lossReduction = LossReduction.mean
    let chain: Chain<Scalar>
    let input: FeatureShape
    /// Values one example occupies in the layers' outputs (its input included).
    let valuesPerExample: Int
    let scratchValues: Int
    /// The batch in the layers' layout (channel-major for images).
    var batch = Tensor<Scalar>(zeros: [0])
    var logitGradients = Tensor<Scalar>(zeros: [0])
    var freezesStatistics = false

    init(_ plan: NetworkPlan<Scalar>, rng: inout Xoshiro256) {
        var entries: [(name: String, value: Tensor<Scalar>, role: ParameterRole)] = []
        for p in plan.parameters {
            var t = Tensor<Scalar>(zeros: p.shape)
            switch p.start {
            case .uniform(let bound): t.storage.withUnsafeMutableBufferPointer { rng.fillUniform($0, low: -bound, high: bound) }
            case .normal(let std):
                t.storage.withUnsafeMutableBufferPointer { rng.fillNormal($0) }
                t.storage = t.storage.map { $0 * Scalar(std) }
            case .constant(let c): t.storage = [Scalar](repeating: Scalar(c), count: p.count)
            }
            entries.append((p.name, t, p.role!))
        }
        parameters = Parameters(entries)
        runningStatistics = plan.bufferStore
        for b in plan.buffers {
            guard case .constant(let c) = b.start else { preconditionFailure("buffers start constant") }
            _ = runningStatistics.add(b.name, Tensor(repeating: Scalar(c), shape: b.shape))
        }
        chain = Chain(plan.layers)
        input = plan.input
        valuesPerExample = plan.input.count + plan.valuesPerExample
        scratchValues = plan.scratchValues
    }

    /// Builds `specs` for examples of `layout`, initialised from `rng`.
    public convenience init(
        _ specs: [LayerSpec], layout: ExampleLayout, features: Int, classes: Int, initialization: Initialization = .pytorch, rng: inout Xoshiro256
    ) throws {
        let plan = try NetworkPlan<Scalar>(specs, input: FeatureShape(layout, features: features, classes: classes), classes: classes, initialization: initialization)
        self.init(plan, rng: &rng)
    }

    public var forwardMACsPerExample: Int { chain.macs }
    public var buffers: ModelBuffers<Scalar>? { runningStatistics.names.isEmpty ? nil : runningStatistics }
    public var labelsPerExample: Int { if case .tokens(let t, _) = input { t } else { 1 } }

    /// The largest evaluation batch, up to `requested`, whose layer outputs fit `TrialLimits.maxBatchValues`
    /// (evaluation results do not depend on it: batch norm evaluates with its running statistics).
    public func evaluationBatch(_ requested: Int) -> Int {
        max(1, min(requested, (TrialLimits.maxBatchValues - scratchValues) / max(valuesPerExample, 1)))
    }

    public func freezeRunningStatistics(_ frozen: Bool) { freezesStatistics = frozen }

    /// Runs the layers on a batch in the data's layout `[N, features]`.
    func forward(_ x: Tensor<Scalar>, training: Bool, rng: inout Xoshiro256) {
        let n = x.rows
        let pass = ForwardPass(training: training, updatesStatistics: training && !freezesStatistics, batch: n)
        if case .image(let c, let h, let w) = input {
            FlattenLayer<Scalar>.toChannelMajor(x, into: &batch, channels: c, batch: n, plane: h * w)
            batch.reshape([c, n, h, w])
            chain.forward(batch, parameters, pass, rng: &rng)
        } else {
            chain.forward(x, parameters, pass, rng: &rng)
        }
    }

    var logits: Tensor<Scalar> { chain.outputs[chain.layers.count - 1] }

    public func lossAndGradients(x: Tensor<Scalar>, labels: [Int32], rng: inout Xoshiro256) -> Double {
        forward(x, training: true, rng: &rng)
        let out = logits
        logitGradients.resize([out.rows, out.cols])
        let (total, _) = logitGradients.storage.withUnsafeMutableBufferPointer { softmaxCrossEntropy(out, labels: labels, delta: $0) }
        parameters.zeroGradients()
        chain.backward(input.isImage ? batch : x, logitGradients, wantsInput: false, parameters)
        return total / Double(out.rows)
    }

    public func evaluate(x: Tensor<Scalar>, labels: [Int32], rng: inout Xoshiro256) -> (lossSum: Double, correct: Int) {
        forward(x, training: false, rng: &rng)
        let (total, correct) = softmaxCrossEntropy(logits, labels: labels, delta: nil)
        // Per example: the mean over its positions (text), so that test_loss is nats per token.
        return (total / Double(labelsPerExample), correct)
    }

    public func sampledTargetGradients(x: Tensor<Scalar>, rng: inout Xoshiro256) {
        forward(x, training: true, rng: &rng)
        let sampled = sampleFromSoftmax(logits, rng: &rng)
        let frozen = freezesStatistics
        freezesStatistics = true
        _ = lossAndGradients(x: x, labels: sampled, rng: &rng)
        freezesStatistics = frozen
    }

    public func layerOutputs(x: Tensor<Scalar>, rng: inout Xoshiro256) -> [(layer: String, values: [Scalar])] {
        forward(x, training: false, rng: &rng)
        return chain.weightedOutputs()
    }
}
