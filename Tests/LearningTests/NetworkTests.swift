import Learning
import Linalg
import Testing

/// Central finite differences of the *training* loss (batch statistics, dropout masks drawn
/// from the same noise every time) against the network's backward pass, in Double.
func checkTrainingGradients(_ model: any Model<Double>, x: Tensor<Double>, labels: [Int32], samplesPerTensor: Int = 10) -> [(name: String, worst: Double)] {
    let noise = Xoshiro256(seed: 5, stream: "dropout")
    var rng = noise
    _ = model.lossAndGradients(x: x, labels: labels, rng: &rng)
    return finiteDifferenceReport(model.parameters, samplesPerTensor: samplesPerTensor) {
        var r = noise
        return model.lossAndGradients(x: x, labels: labels, rng: &r)
    } error: { numeric, analytic in
        abs(numeric - analytic) / max(1e-3, abs(numeric) + abs(analytic))
    }
}

/// A random batch for `layout`: normal values (images, vectors) or token ids, and labels.
func randomBatch(_ layout: ExampleLayout, features: Int, classes: Int, batch: Int, seed: UInt64 = 3) -> (Tensor<Double>, [Int32]) {
    var rng = Xoshiro256(seed: seed, stream: "batch")
    var x = Tensor<Double>(zeros: [batch, features])
    if case .tokens = layout {
        for i in 0..<x.count { x.storage[i] = Double(rng.next() % UInt64(classes)) }
    } else {
        x.storage.withUnsafeMutableBufferPointer { rng.fillNormal($0) }
    }
    let labels = (0..<(batch * layout.labelsPerExample)).map { _ in Int32(rng.next() % UInt64(classes)) }
    return (x, labels)
}

func conv(_ out: Int, _ k: Int, stride: Int = 1, padding: Int = 0, bias: Bool = true, name: String? = nil) -> LayerSpec {
    LayerSpec(.conv2d(outputs: out, kernel: k, stride: stride, padding: padding, bias: bias), name: name)
}
func linear(_ out: Int? = nil) -> LayerSpec { LayerSpec(.linear(outputs: out, bias: true, tied: nil)) }
func act(_ a: Activation) -> LayerSpec { LayerSpec(.activation(a)) }
let batchNorm = LayerSpec(.batchNorm(momentum: 0.1, epsilon: 1e-5))

@Suite struct NetworkGradientTests {
    func expectGradients(
        _ label: String, _ specs: [LayerSpec], layout: ExampleLayout, features: Int, classes: Int, batch: Int = 3, initialization: Initialization = .pytorch,
        tolerance: Double = 1e-6
    ) throws {
        var rng = Xoshiro256(seed: 1, stream: "init")
        let model = try Network<Double>(specs, layout: layout, features: features, classes: classes, initialization: initialization, rng: &rng)
        let (x, labels) = randomBatch(layout, features: features, classes: classes, batch: batch)
        for (name, worst) in checkTrainingGradients(model, x: x, labels: labels) {
            #expect(worst < tolerance, "\(label): \(name) relative error \(worst)")
        }
    }

    @Test func convolutions() throws {
        try expectGradients(
            "conv", [conv(3, 3, padding: 1), act(.tanh), conv(4, 3, stride: 2, padding: 1, bias: false), act(.sigmoid), conv(2, 1), LayerSpec(.flatten), linear()],
            layout: .image(channels: 2, height: 7, width: 7), features: 98, classes: 3)
    }

    @Test func pooling() throws {
        try expectGradients(
            "pool",
            [
                conv(2, 3, padding: 1), LayerSpec(.maxPool(kernel: 2, stride: 2)), conv(2, 3), LayerSpec(.avgPool(kernel: 2, stride: 1)), LayerSpec(.globalAvgPool),
                linear(),
            ], layout: .image(channels: 1, height: 8, width: 8), features: 64, classes: 3)
    }

    @Test func batchNormalization() throws {
        try expectGradients(
            "batchnorm", [conv(3, 3, padding: 1), batchNorm, act(.gelu), LayerSpec(.flatten), linear(5), batchNorm, act(.tanh), linear()],
            layout: .image(channels: 2, height: 5, width: 5), features: 50, classes: 4, batch: 4)
    }

    @Test func residualBlocks() throws {
        let identity = LayerSpec(.residual(body: [conv(4, 3, padding: 1), batchNorm, act(.tanh), conv(4, 3, padding: 1)], shortcut: []))
        let projected = LayerSpec(.residual(body: [conv(6, 3, stride: 2, padding: 1), batchNorm], shortcut: [conv(6, 1, stride: 2, bias: false), batchNorm]))
        try expectGradients(
            "residual", [conv(4, 3, padding: 1), identity, act(.tanh), projected, LayerSpec(.globalAvgPool), linear()],
            layout: .image(channels: 1, height: 6, width: 6), features: 36, classes: 3)
    }

    @Test func normsAndDropoutOnVectors() throws {
        try expectGradients(
            "layernorm", [linear(6), LayerSpec(.layerNorm(epsilon: 1e-5)), LayerSpec(.dropout(0.3)), act(.gelu), linear()], layout: .vector, features: 5, classes: 3,
            batch: 4)
    }

    @Test(arguments: [true, false]) func transformer(tied: Bool) throws {
        try expectGradients(
            "gpt tied \(tied)", NetworkPresets.gpt(layers: 2, heads: 2, width: 8, dropout: 0.2, tied: tied), layout: .tokens(length: 5), features: 5, classes: 7,
            initialization: .gpt2(layers: 2))
    }

    @Test func presets() throws {
        try expectGradients(
            "lenet5", NetworkPresets.lenet5(activation: .tanh, pooling: "avg", height: 28), layout: .image(channels: 1, height: 28, width: 28), features: 784,
            classes: 10, batch: 2)
        try expectGradients("resnet8", NetworkPresets.resnet(depth: 8, width: 2), layout: .image(channels: 1, height: 8, width: 8), features: 64, classes: 3)
        try expectGradients("cnn", NetworkPresets.cnn(channels: [2, 3], hidden: 5), layout: .image(channels: 1, height: 8, width: 8), features: 64, classes: 3)
    }
}

@Suite struct NetworkTests {
    /// The layer names PyTorch's modules give: what checkpoints and fixtures match on.
    @Test func presetNamesAndSizes() throws {
        var rng = Xoshiro256(seed: 0)
        let lenet = try Network<Float>(NetworkPresets.lenet5(activation: .relu, pooling: "max", height: 28), layout: .image(channels: 1, height: 28, width: 28), features: 784, classes: 10, rng: &rng)
        #expect(lenet.parameters.names == ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"])
        #expect(lenet.parameters.scalarCount == 61_706)
        let resnet = try Network<Float>(NetworkPresets.resnet(depth: 20, width: 16), layout: .image(channels: 3, height: 32, width: 32), features: 3072, classes: 10, rng: &rng)
        #expect(resnet.parameters.names.contains("layer2.0.shortcut.0.weight"))
        #expect(resnet.parameters.names.contains("layer3.2.bn2.bias"))
        #expect(resnet.buffers?.names.contains("layer1.0.bn1.running_mean") == true)
        let gpt = try Network<Float>(
            NetworkPresets.gpt(layers: 2, heads: 2, width: 16, dropout: 0, tied: true), layout: .tokens(length: 8), features: 8, classes: 30, initialization: .gpt2(layers: 2), rng: &rng)
        #expect(gpt.parameters.names.first == "wte.weight")
        #expect(gpt.parameters.names.contains("blocks.1.attn.qkv.weight"))
        #expect(!gpt.parameters.names.contains("head.weight"), "tied: the head is the token embedding")
        #expect(gpt.parameters.roles[gpt.parameters.index(of: "blocks.0.ln1.weight")!] == .norm)
    }

    @Test func layerListsAreValidatedWithTheirPlace() throws {
        func failure(_ yaml: String) -> String {
            do {
                _ = try TrialConfig.parse(yaml: "model: sequential\ndata: fashion-mnist\nlayers:\n" + yaml, source: "t.yaml")
                return "accepted"
            } catch { return "\(error)" }
        }
        #expect(failure("  - {conv2d: {out: 4, kernal: 3}}\n").contains("layers[0].conv2d: unknown setting 'kernal' (did you mean 'kernel'?)"))
        #expect(failure("  - relu\n  - {linea: 10}\n").contains("layers[1]: unknown layer 'linea'"))
        #expect(failure("  - {conv2d: {out: 4, kernel: 3}}\n  - {linear: 10}\n").contains("layers[1]: needs a vector or sequence input, got a 4×26×26 image (flatten first)"))
        #expect(failure("  - flatten\n  - {linear: 7}\n").contains("must end with a vector of 10"))
        #expect(
            failure("  - {residual: [{conv2d: {out: 3, kernel: 3, padding: 1}}]}\n  - flatten\n  - linear\n").contains(
                "the body outputs a 3×28×28 image but the identity shortcut passes a 1×28×28 image"))
        #expect(failure("  - {dropout: 1.5}\n").contains("layers[0].dropout.p: must be in [0, 1)"))
        #expect(failure("  - flatten\n  - linear\n") == "accepted")
        #expect(failure("  - flatten\n  - {linear: {out: 10000000}}\n  - linear\n").contains("parameters"))
        // Hostile sizes: refused before any integer product can overflow, scratch memory counted.
        #expect(failure("  - {conv2d: {out: 16777216, kernel: 1, padding: 16777216}}\n  - flatten\n  - linear\n").contains("values per example"))
        #expect(failure("  - {conv2d: {out: 512, kernel: 1}}\n  - {conv2d: {out: 1, kernel: 28, padding: 13}}\n  - flatten\n  - linear\n").contains("at most 268435456 are allowed"))
        var rng = Xoshiro256(seed: 0)
        #expect(throws: (any Error).self) { try Network<Float>([act(.relu)], layout: .vector, features: 3, classes: 3, rng: &rng) }
    }

    /// Float and Double agree, and evaluation uses the running statistics.
    @Test func precisionsAgreeAndEvaluationUsesRunningStatistics() throws {
        let specs = NetworkPresets.resnet(depth: 8, width: 2)
        var r1 = Xoshiro256(seed: 4), r2 = Xoshiro256(seed: 4)
        let layout = ExampleLayout.image(channels: 1, height: 8, width: 8)
        let d = try Network<Double>(specs, layout: layout, features: 64, classes: 3, rng: &r1)
        let f = try Network<Float>(specs, layout: layout, features: 64, classes: 3, rng: &r2)
        let (x, labels) = randomBatch(layout, features: 64, classes: 3, batch: 5)
        var n1 = Xoshiro256(seed: 0), n2 = Xoshiro256(seed: 0)
        let ld = d.lossAndGradients(x: x, labels: labels, rng: &n1)
        let lf = f.lossAndGradients(x: x.converted(to: Float.self), labels: labels, rng: &n2)
        #expect(abs(ld - lf) < 1e-5 * max(1, abs(ld)))
        // One training pass moved the running mean away from 0 (momentum 0.1 of the batch mean).
        let mean = d.buffers!.values[d.buffers!.names.firstIndex(of: "bn1.running_mean")!].storage
        #expect(mean.contains { $0 != 0 })
        // Evaluation is deterministic and independent of the batch's other examples.
        let single = Tensor<Double>(shape: [1, 64], storage: Array(x.storage[0..<64]))
        let alone = d.evaluate(x: single, labels: [labels[0]], rng: &n1).lossSum
        let inBatch = d.evaluate(x: x, labels: labels, rng: &n1)
        var perExample = 0.0
        for i in 0..<5 {
            perExample += d.evaluate(x: Tensor(shape: [1, 64], storage: Array(x.storage[(i * 64)..<((i + 1) * 64)])), labels: [labels[i]], rng: &n1).lossSum
        }
        #expect(abs(inBatch.lossSum - perExample) < 1e-9 && alone.isFinite)
    }
}
