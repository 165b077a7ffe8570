import Foundation
import Learning
import Linalg
import Testing

/// Optimizers on the parameter shapes of convolutional nets and transformers: 4-D kernels, 1-D
/// norm parameters, embeddings and an output layer, each registered with its role.
///
/// `Fixtures/shapes.json` (`generate_shapes.py`) holds reference trajectories from the authors'
/// Muon, SOAP and DistributedShampoo and the teaching variants on such shapes; tolerances as in
/// the suites of the same references (`MatrixOptimizerTests`, `ShampooTests`): 1e-9 relative in
/// Double where only rounding separates the two sides, 1e-8 for Shampoo's inverse roots.
struct ShapeFixture {
    let fixture: OptimizerFixture
    let order: [String]
    let roles: [String: ParameterRole]

    struct Set: Decodable {
        let parameter_order: [String]
        let roles: [String: String]
    }
    struct File: Decodable {
        let sets: [String: OptimizerFixture]
    }
    struct Layouts: Decodable {
        let sets: [String: Set]
    }

    static let sets: [ShapeFixture] = {
        let data = try! Data(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/shapes.json"))
        let fixtures = try! JSONDecoder().decode(File.self, from: data).sets
        let layouts = try! JSONDecoder().decode(Layouts.self, from: data).sets
        return fixtures.keys.sorted().map { name in
            let layout = layouts[name]!
            return ShapeFixture(
                fixture: fixtures[name]!, order: layout.parameter_order, roles: layout.roles.mapValues { ParameterRole(rawValue: $0)! })
        }
    }()

    static func of(_ name: String) -> (ShapeFixture, OptimizerFixture.Case) {
        for set in sets { if let c = set.fixture.cases.first(where: { $0.name == name }) { return (set, c) } }
        fatalError("no fixture case \(name)")
    }

    func parameters<T: BLASScalar>(_: T.Type) -> Parameters<T> {
        Parameters(order.map { (name: $0, value: Tensor<T>(shape: fixture.shapes[$0]!, storage: fixture.start[$0]!.map { T($0) }), role: roles[$0]!) })
    }

    static func tolerance(_ optimizer: String) -> Tolerance {
        ["shampoo", "shampoo-simple"].contains(optimizer) ? Tolerance(1e-8, floor: 1e-2) : Tolerance(1e-9, floor: 1e-2)
    }
}

@Suite struct ParameterShapeTests {
    static let caseNames = ShapeFixture.sets.flatMap { $0.fixture.cases.map(\.name) }

    /// Every step of every case on the reference's trajectory. The optimizer is built without the
    /// trial's parameter groups (the references decay every tensor), but steps tensors that carry
    /// their roles (which Muon splits by).
    @Test(arguments: caseNames)
    func matchesTheReferenceInDouble(name: String) throws {
        let (set, c) = ShapeFixture.of(name)
        let optimizer: any Optimizer<Double> = try Builders.optimizer(set.fixture.config(c))
        let worst = set.fixture.expectTrajectory(c, optimizer, from: set.parameters(Double.self), ShapeFixture.tolerance(c.optimizer), everyStep: true)
        #expect(worst.isFinite)
    }

    @Test(arguments: caseNames)
    func resumesExactly(name: String) throws {
        let (set, c) = ShapeFixture.of(name)
        try set.fixture.expectResumesExactly(name, make: { try Builders.optimizer(set.fixture.config(c)) as any Optimizer<Float> }, parameters: { set.parameters(Float.self) })
    }

    /// The reference scales a kernel's update by its last two dimensions (kh/kw, 1 for the 1×1
    /// kernel [6, 4, 1, 1]), not by the flattened 6×4 matrix's √1.5: the case would fail at the
    /// first step with the other convention. Here the factors themselves.
    @Test func muonScalesKernelsByTheirLastTwoDimensions() throws {
        let keller = Muon<Double>(scaling: .keller), rms = Muon<Double>(scaling: .rms)
        #expect(keller.updateScale([6, 4, 1, 1]) == 1)
        #expect(keller.updateScale([6, 4]) == 1.5.squareRoot())
        #expect(keller.updateScale([4, 3, 5, 3]) == (5.0 / 3).squareRoot())
        #expect(rms.updateScale([6, 4, 3, 3]) == 0.2 * 36.0.squareRoot())
    }

    /// Muon orthogonalises hidden weights only: embeddings, the head (without `muon_output`),
    /// norms and biases keep AdamW's state.
    @Test func muonSplitsByRole() throws {
        let (set, c) = ShapeFixture.of("muon_conv_embedding")
        let optimizer: any Optimizer<Double> = try Builders.optimizer(set.fixture.config(c))
        let p = set.parameters(Double.self)
        set.fixture.setGradients(p, step: 0)
        optimizer.update(p)
        let names = optimizer.exportState(names: p.names).names
        #expect(names == ["step", "conv/momentum_buffer", "pointwise/momentum_buffer"] + ["norm", "embedding", "head"].flatMap { ["\($0)/exp_avg", "\($0)/exp_avg_sq", "\($0)/step"] })
    }

    /// A tensor Muon would orthogonalise but cannot (a 3-D weight) is refused when the optimizer
    /// is built for the model, naming it; as an embedding the same tensor takes AdamW.
    @Test func muonRefusesWeightsItCannotOrthogonalise() throws {
        let config = TrialConfig(values: ["model": .string("quadratic"), "optimizer": .string("muon")])
        let weird = Parameters<Double>([(name: "mix.weight", value: Tensor(zeros: [2, 3, 4]), role: .weight), (name: "head.weight", value: Tensor(zeros: [3, 4]), role: .head)])
        #expect(
            throws: UnsupportedParameterError(
                optimizer: "muon", parameter: "mix.weight", shape: [2, 3, 4], role: .weight,
                reason: "Muon orthogonalises matrices and 4-D convolution kernels; give this tensor another role or use another optimizer")
        ) {
            let _: any Optimizer<Double> = try Builders.optimizer(config, parameters: weird)
        }
        let fine = Parameters<Double>([(name: "mix.weight", value: Tensor(zeros: [2, 3, 4]), role: .embedding)])
        let _: any Optimizer<Double> = try Builders.optimizer(config, parameters: fine)
    }

    /// SOAP's reference `merge_dims` shapes, and which dimensions it rotates.
    @Test func soapMergesDimensionsAsTheReference() {
        #expect(SOAP<Double>.mergedDims([4, 3, 3, 3], threshold: 9) == [4, 9, 3])
        #expect(SOAP<Double>.mergedDims([9, 1, 3, 3], threshold: 9) == [9, 9])
        #expect(SOAP<Double>.mergedDims([8, 3, 3, 3], threshold: 10_000) == [216])
        #expect(SOAP<Double>.mergedDims([64, 64, 3, 3], threshold: 10_000) == [4096, 9])
        #expect(SOAP<Double>.mergedDims([20_000, 2], threshold: 10_000) == [20_000, 2])
        #expect(SOAP<Double>.mergedDims([1, 1], threshold: 10) == [1])
        let merged = SOAP<Double>(maxPreconditionDim: 10_000, mergeDims: true)
        #expect(merged.layout([8, 3, 3, 3]).dims == [1, 216])
        #expect(merged.layout([8, 3, 3, 3]).rotated == [false, true])
        let perDimension = SOAP<Double>(maxPreconditionDim: 4)
        #expect(perDimension.layout([8, 3, 3, 3]).rotated == [false, true, true, true])
        #expect(perDimension.layout([8]).rotated == [false, false])
        #expect(SOAP<Double>(precondition1D: true).layout([8]).rotated == [false, true])
    }
}

/// Every catalog optimizer on the shapes of a small conv net / transformer: a kernel [8,3,3,3]
/// (weight), a norm scale [8], an embedding [50,16] and an output layer [10,16] (head), built for
/// them as a trial would build it (parameter groups: the norm scale undecayed), stepped on a
/// quadratic ½Σ h·p² with per-element curvatures h in [0.5, 1.5].
@Suite struct CatalogShapeTests {
    static let layout: [(name: String, shape: [Int], role: ParameterRole)] = [
        ("conv1.weight", [8, 3, 3, 3], .weight), ("bn1.weight", [8], .norm), ("wte.weight", [50, 16], .embedding), ("head.weight", [10, 16], .head),
    ]

    static func parameters<T: BLASScalar>(_: T.Type) -> Parameters<T> {
        Parameters(
            layout.enumerated().map { k, entry in
                let n = entry.shape.reduce(1, *)
                let values = (0..<n).map { j in T(sin(Double(7 * j + 3 * k + 1)) * 0.8 + 0.3) }
                return (name: entry.name, value: Tensor(shape: entry.shape, storage: values), role: entry.role)
            })
    }

    static func curvature(_ j: Int) -> Double { 0.5 + Double(j % 11) / 10 }

    /// ½Σ h·p², writing its gradient h·p.
    @discardableResult
    static func lossAndGradients<T: BLASScalar>(_ p: Parameters<T>) -> Double {
        var loss = 0.0
        for i in 0..<p.count {
            for j in 0..<p.values[i].count {
                let x = Double(p.values[i].storage[j]), h = curvature(j)
                loss += 0.5 * h * x * x
                p.gradients[i].storage[j] = T(h * x)
            }
        }
        return loss
    }

    static func loss<T: BLASScalar>(_ p: Parameters<T>) -> Double {
        (0..<p.count).reduce(0.0) { s, i in
            s + p.values[i].storage.enumerated().reduce(0.0) { $0 + 0.5 * curvature($1.offset) * Double($1.element) * Double($1.element) }
        }
    }

    /// One training step as the loop makes it: SAM's second gradient, Sophia's Hessian estimate.
    static func step<T: BLASScalar>(_ optimizer: any Optimizer<T>, _ p: Parameters<T>) {
        lossAndGradients(p)
        if let sam = optimizer as? any SharpnessAware<T> {
            sam.perturb(p)
            lossAndGradients(p)
        }
        optimizer.update(p)
        if let sophia = optimizer as? any HessianEstimating<T>, sophia.wantsHessianEstimate {
            lossAndGradients(p)
            sophia.updateHessian(p, batchSize: 4)
        }
    }

    /// The optimizer's defaults; 8-bit AdamW quantises tensors from 64 elements (its default 4096
    /// would keep every tensor here in 32 bits): the kernel, the embedding and the head in blocks
    /// of their flattened elements, the norm scale in 32 bits.
    static func config(_ name: String) -> TrialConfig {
        var values: [String: ConfigValue] = ["model": .string("quadratic"), "optimizer": .string(name)]
        if name == "adamw8bit" { values["min_8bit_size"] = .int(64) }
        return TrialConfig(values: values)
    }

    static let names = OptimizerCatalog.all.map { $0.name }

    @Test(arguments: names)
    func stepsEveryShape(name: String) throws {
        let config = Self.config(name)
        try config.validate()
        let p = Self.parameters(Double.self)
        let optimizer: any Optimizer<Double> = try Builders.optimizer(config, parameters: p)
        let start = Self.loss(p)
        for _ in 0..<20 { Self.step(optimizer, p) }
        let end = Self.loss(p)
        #expect(p.valuesFinite, "\(name)")
        #expect(end < start, "\(name): loss \(start) → \(end)")
        // Every tensor moved.
        let initial = Self.parameters(Double.self)
        for i in 0..<p.count { #expect(p.values[i] != initial.values[i], "\(name): \(p.names[i]) did not move") }
        if name == "adamw8bit" {
            let state = optimizer.exportState(names: p.names)
            #expect(["conv1.weight/state1", "wte.weight/state1", "head.weight/state1"].allSatisfy { if case .uint8 = state[$0] { true } else { false } })
            #expect({ if case .real = state["bn1.weight/state1"] { true } else { false } }())
        }
    }

    @Test(arguments: names)
    func resumesExactlyOnEveryShape(name: String) throws {
        let config = Self.config(name)
        try expectExactResume(
            name, make: { try Builders.optimizer(config, parameters: Self.parameters(Float.self)) as any Optimizer<Float> },
            parameters: { Self.parameters(Float.self) }
        ) { optimizer, p, _ in Self.step(optimizer, p) }
    }
}

/// The networks register their tensors with roles, and every optimizer a trial can name trains
/// them through the trial's parameter groups: a few steps on random data stay finite.
@Suite struct NetworkRoleTests {
    @Test func networksGiveEachParameterItsRole() throws {
        var rng = Xoshiro256(seed: 0)
        let lenet = try Network<Float>(NetworkPresets.lenet5(activation: .relu, pooling: "max", height: 28), layout: .image(channels: 1, height: 28, width: 28), features: 784, classes: 10, rng: &rng)
        #expect(lenet.parameters.roles == [.weight, .bias, .weight, .bias, .weight, .bias, .weight, .bias, .head, .bias])
        let resnet = try Network<Float>(NetworkPresets.resnet(depth: 8, width: 4), layout: .image(channels: 3, height: 8, width: 8), features: 192, classes: 10, rng: &rng)
        let role = { (name: String) in resnet.parameters.roles[resnet.parameters.index(of: name)!] }
        #expect([role("conv1.weight"), role("layer2.0.shortcut.0.weight"), role("bn1.weight"), role("layer2.0.shortcut.1.bias"), role("linear.weight")] == [.weight, .weight, .norm, .norm, .head])
        for tied in [true, false] {
            let gpt = try Network<Float>(
                NetworkPresets.gpt(layers: 1, heads: 2, width: 8, dropout: 0, tied: tied), layout: .tokens(length: 4), features: 4, classes: 11, initialization: .gpt2(layers: 1),
                rng: &rng)
            let role = { (name: String) in gpt.parameters.roles[gpt.parameters.index(of: name)!] }
            #expect([role("wte.weight"), role("wpe.weight"), role("blocks.0.ln1.weight"), role("blocks.0.attn.qkv.weight")] == [.embedding, .embedding, .norm, .weight])
            #expect(gpt.parameters.roles.contains(.head) == !tied, "tied: the head is the token embedding")
        }
    }

    @Test(arguments: OptimizerCatalog.all.map { $0.name })
    func everyOptimizerTrainsAConvNet(name: String) throws {
        var rng = Xoshiro256(seed: 1)
        let net = try Network<Double>(NetworkPresets.cnn(channels: [3], hidden: 5), layout: .image(channels: 2, height: 4, width: 4), features: 32, classes: 3, rng: &rng)
        let p = net.parameters
        let config = TrialConfig(values: ["model": .string("quadratic"), "optimizer": .string(name)])
        let optimizer: any Optimizer<Double> = try Builders.optimizer(config, parameters: p)
        var x = Tensor<Double>(zeros: [6, 32])
        x.storage.withUnsafeMutableBufferPointer { rng.fillNormal($0) }
        let labels: [Int32] = [0, 1, 2, 0, 1, 2]
        for _ in 0..<3 {
            p.zeroGradients()
            let loss = net.lossAndGradients(x: x, labels: labels, rng: &rng)
            #expect(loss.isFinite, "\(name)")
            if let sam = optimizer as? any SharpnessAware<Double> {
                sam.perturb(p)
                p.zeroGradients()
                _ = net.lossAndGradients(x: x, labels: labels, rng: &rng)
            }
            optimizer.update(p)
        }
        #expect(p.valuesFinite, "\(name)")
    }
}
