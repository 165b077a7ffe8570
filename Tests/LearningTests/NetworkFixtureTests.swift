import Foundation
import Learning
import Linalg
import Testing

/// The presets against PyTorch modules written independently with the same names
/// (`Fixtures/generate_networks.py`): LeNet-5, a ResNet-8, the cnn preset and a tiny GPT, tied
/// and untied. Weights and inputs are not stored but computed on both sides from the tensor's
/// name and the element's index (`FixtureValues`); the fixture holds PyTorch's training-mode
/// loss, every gradient, the running statistics after that pass and the evaluation-mode loss.
///
/// Tolerances: Double to 1e-10 relative (the floor, 1e-4 of the tensor's largest entry, covers
/// gradients that cancel to nearly zero); Float's loss to 1e-4.
struct NetworkFixture: Decodable {
    struct Entry: Decodable {
        let name: String
        let shape: [Int]
    }
    struct Layout: Decodable {
        let image: [Int]?
        let tokens: Int?
        let classes: Int
    }
    struct Case: Decodable {
        let name: String
        let trial: [String: OptimizerFixture.HyperValue]
        let layout: Layout
        let batch: Int
        let parameters: [Entry]
        let buffers: [Entry]
        let loss: Double
        let gradients: [String: String]
        let running: [String: String]
        let eval_loss: Double
        let eval_correct: Int
    }
    let cases: [Case]

    static let shared: NetworkFixture = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/networks.json")
        return try! JSONDecoder().decode(NetworkFixture.self, from: Data(contentsOf: url))
    }()

    static func find(_ name: String) -> Case { shared.cases.first { $0.name == name }! }

    /// Little-endian float64 values from base64.
    static func doubles(_ base64: String) -> [Double] {
        let data = Data(base64Encoded: base64)!
        return data.withUnsafeBytes { raw in (0..<data.count / 8).map { Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self))) } }
    }
}

/// The generator's deterministic values: splitmix64 of FNV-1a(name) + index, 53 bits to [-1, 1).
enum FixtureValues {
    static func hash(_ name: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in name.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        return h
    }

    static func bits(_ name: String, _ count: Int) -> [UInt64] {
        let base = hash(name)
        return (0..<count).map { i in
            var z = base &+ UInt64(i) &+ 0x9E37_79B9_7F4A_7C15
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static func uniform(_ name: String, _ count: Int) -> [Double] { bits(name, count).map { 2 * (Double($0 >> 11) * 0x1p-53) - 1 } }

    /// A parameter's values: matrices and kernels ±√(6/fan_in), norm scales 1 ± 0.25, biases ±0.2.
    static func start(_ name: String, shape: [Int]) -> [Double] {
        let r = uniform(name, shape.reduce(1, *))
        if shape.count >= 2 {
            let bound = (6.0 / Double(shape.dropFirst().reduce(1, *))).squareRoot()
            return r.map { $0 * bound }
        }
        return name.hasSuffix("weight") ? r.map { 1 + 0.25 * $0 } : r.map { 0.2 * $0 }
    }
}

@Suite struct NetworkFixtureTests {
    static let names = NetworkFixture.shared.cases.map(\.name)

    /// The case's network as its trial builds it, the weights set, and its input batch.
    static func build<T: BLASScalar>(_ c: NetworkFixture.Case, _: T.Type) throws -> (Network<T>, Tensor<T>, [Int32]) {
        var values = c.trial.mapValues(\.config)
        // Integer settings arrive as numbers; the trial wants integers.
        for (key, value) in values {
            if case .double(let d) = value, d == d.rounded() { values[key] = .int(Int(d)) }
            if case .list(let l) = value { values[key] = .list(l.map { if case .double(let d) = $0 { .int(Int(d)) } else { $0 } }) }
        }
        let config = TrialConfig(values: values)
        let layout: ExampleLayout
        let features: Int
        if let image = c.layout.image {
            layout = .image(channels: image[0], height: image[1], width: image[2])
            features = image.reduce(1, *)
        } else {
            layout = .tokens(length: c.layout.tokens!)
            features = c.layout.tokens!
        }
        let shape = DataShape(features: features, classes: c.layout.classes, trainingExamples: c.batch, layout: layout)
        let network = try #require(try Builders.model(config, data: shape, scalar: T.self) as? Network<T>)
        for (i, name) in network.parameters.names.enumerated() {
            network.parameters.values[i].storage = FixtureValues.start(name, shape: network.parameters.values[i].shape).map { T($0) }
        }
        var x = Tensor<T>(zeros: [c.batch, features])
        let labels: [Int32]
        if c.layout.image != nil {
            x.storage = FixtureValues.uniform("input", x.count).map { T($0) }
            labels = FixtureValues.bits("labels", c.batch).map { Int32($0 % UInt64(c.layout.classes)) }
        } else {
            x.storage = FixtureValues.bits("input", x.count).map { T($0 % UInt64(c.layout.classes)) }
            labels = FixtureValues.bits("labels", x.count).map { Int32($0 % UInt64(c.layout.classes)) }
        }
        return (network, x, labels)
    }

    @Test func valuesMatchTheGenerator() {
        // Values numpy gives for the generator's formula, so that a change on either side shows
        // here rather than as a mismatch of every gradient.
        #expect(FixtureValues.hash("conv1.weight") == 0x69A2_9A2C_EE47_D254)
        #expect(FixtureValues.bits("labels", 3) == [373_025_546_366_163_575, 13_424_901_422_126_517_316, 5_109_947_076_253_334_339])
        #expect(FixtureValues.uniform("input", 3) == [-0x1.9bd582255909ep-1, -0x1.68fb5e70bd1d6p-1, 0x1.2f732caa1d8e0p-3])
    }

    @Test func namesAndShapesArePyTorchs() throws {
        for c in NetworkFixture.shared.cases {
            let (network, _, _) = try Self.build(c, Double.self)
            #expect(network.parameters.names == c.parameters.map(\.name), "\(c.name)")
            #expect(network.parameters.values.map(\.shape) == c.parameters.map(\.shape), "\(c.name)")
            #expect(network.runningStatistics.names == c.buffers.map(\.name), "\(c.name)")
            #expect(network.runningStatistics.values.map(\.shape) == c.buffers.map(\.shape), "\(c.name)")
        }
    }

    @Test(arguments: names)
    func matchesPyTorchInDouble(name: String) throws {
        let c = NetworkFixture.find(name)
        let (network, x, labels) = try Self.build(c, Double.self)
        var rng = Xoshiro256(seed: 1, stream: "dropout")
        let loss = network.lossAndGradients(x: x, labels: labels, rng: &rng)
        let tight = Tolerance(1e-10, floor: 1e-12)
        #expect(tight.accepts(loss, c.loss), "\(name) loss \(loss) vs \(c.loss)")
        for (i, pname) in network.parameters.names.enumerated() {
            let want = NetworkFixture.doubles(c.gradients[pname]!)
            let scale = want.map(abs).max() ?? 0
            expectClose([network.parameters.gradients[i]], names: [pname], to: { _ in want }, Tolerance(1e-10, floor: 1e-4 * scale), "\(name) gradient")
        }
        expectClose(
            network.runningStatistics.values, names: network.runningStatistics.names, to: { NetworkFixture.doubles(c.running[$0]!) }, Tolerance(1e-10, floor: 1e-6),
            "\(name) running statistics")
        let (lossSum, correct) = network.evaluate(x: x, labels: labels, rng: &rng)
        #expect(tight.accepts(lossSum / Double(c.batch), c.eval_loss), "\(name) evaluation loss \(lossSum / Double(c.batch)) vs \(c.eval_loss)")
        #expect(correct == c.eval_correct, "\(name) correct predictions")
    }

    @Test(arguments: names)
    func lossMatchesInFloat(name: String) throws {
        let c = NetworkFixture.find(name)
        let (network, x, labels) = try Self.build(c, Float.self)
        var rng = Xoshiro256(seed: 1, stream: "dropout")
        let loss = network.lossAndGradients(x: x, labels: labels, rng: &rng)
        #expect(Tolerance(1e-4, floor: 1).accepts(loss, c.loss), "\(name) Float loss \(loss) vs \(c.loss)")
        let (lossSum, _) = network.evaluate(x: x, labels: labels, rng: &rng)
        #expect(Tolerance(1e-4, floor: 1).accepts(lossSum / Double(c.batch), c.eval_loss), "\(name) Float evaluation loss")
    }
}
