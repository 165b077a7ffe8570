import Foundation
import Learning
import Linalg
import Testing

/// The PyTorch trajectories written by `Fixtures/generate_optimizers.py`.
struct OptimizerFixture: Decodable {
    struct Case: Decodable {
        let name: String
        let optimizer: String
        let hyperparameters: [String: HyperValue]
        let trajectory: [String: [[Double]]]
    }
    enum HyperValue: Decodable {
        case number(Double), bool(Bool), list([Double]), string(String)
        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let b = try? c.decode(Bool.self) {
                self = .bool(b)
            } else if let d = try? c.decode(Double.self) {
                self = .number(d)
            } else if let s = try? c.decode(String.self) {
                self = .string(s)
            } else {
                self = .list(try c.decode([Double].self))
            }
        }
        var config: ConfigValue {
            switch self {
            case .number(let d): .double(d)
            case .bool(let b): .bool(b)
            case .list(let l): .list(l.map { .double($0) })
            case .string(let s): .string(s)
            }
        }
    }
    let steps: Int
    let shapes: [String: [Int]]
    let start: [String: [Double]]
    let gradients: [String: [[Double]]]
    let cases: [Case]

    static let shared = load("optimizers.json")

    /// A fixture file of `Fixtures/` in this format (`optimizers.json`, `zoo.json`, …).
    static func load(_ file: String) -> OptimizerFixture {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(file)")
        return try! JSONDecoder().decode(OptimizerFixture.self, from: Data(contentsOf: url))
    }

    func config(_ c: Case) -> TrialConfig {
        var values: [String: ConfigValue] = ["model": .string("quadratic"), "optimizer": .string(c.optimizer)]
        for (k, v) in c.hyperparameters { values[k] = v.config }
        return TrialConfig(values: values)
    }

    /// Fresh parameters (vector and matrix) at the fixture's start point.
    func parameters<T: BLASScalar>(_: T.Type) -> Parameters<T> {
        Parameters(["vector", "matrix"].map { (name: $0, value: Tensor<T>(shape: shapes[$0]!, storage: start[$0]!.map { T($0) })) })
    }

    func setGradients<T: BLASScalar>(_ p: Parameters<T>, step: Int) {
        for (i, name) in p.names.enumerated() { p.gradients[i].storage = gradients[name]![step].map { T($0) } }
    }
}

@Suite struct OptimizerReferenceTests {
    static let caseNames = OptimizerFixture.shared.cases.map(\.name)

    @Test(arguments: caseNames)
    func matchesPyTorchInDouble(name: String) throws {
        let fixture = OptimizerFixture.shared
        let c = fixture.cases.first { $0.name == name }!
        let optimizer: any Optimizer<Double> = try Builders.optimizer(fixture.config(c))
        fixture.expectTrajectory(c, optimizer, from: fixture.parameters(Double.self), Tolerance(1e-9, floor: 1e-3), everyStep: true)
    }

    @Test(arguments: caseNames)
    func matchesPyTorchInFloat(name: String) throws {
        let fixture = OptimizerFixture.shared
        let c = fixture.cases.first { $0.name == name }!
        let optimizer: any Optimizer<Float> = try Builders.optimizer(fixture.config(c))
        fixture.expectTrajectory(c, optimizer, from: fixture.parameters(Float.self), Tolerance(1e-5, floor: 1e-1), everyStep: false)
    }

    /// 5 steps, export, import into a fresh optimizer, 5 more = 10 straight, bit for bit.
    @Test(arguments: caseNames)
    func exportImportResumesExactly(name: String) throws {
        let fixture = OptimizerFixture.shared
        let c = fixture.cases.first { $0.name == name }!
        try fixture.expectResumesExactly(name, make: { try Builders.optimizer(fixture.config(c)) as any Optimizer<Float> }, parameters: { fixture.parameters(Float.self) })
    }

    @Test func importRejectsMismatchedState() throws {
        let adam = Adam<Double>.adamW()
        let p = Parameters<Double>([(name: "w", value: Tensor(zeros: [2, 2]))])
        adam.update(p)
        var state = adam.exportState(names: p.names)
        let other = Parameters<Double>([(name: "w", value: Tensor(zeros: [3]))])
        #expect(throws: OptimizerStateError.wrongShape("w/exp_avg", expected: [3], found: [2, 2])) {
            try Adam<Double>.adamW().importState(state, parameters: other)
        }
        state = OptimizerState()
        #expect(throws: OptimizerStateError.missing("step")) { try Adam<Double>.adamW().importState(state, parameters: p) }
    }

    @Test func zeroGradientsLeaveAdamParametersStillAndSGDDecaying() {
        let p = Parameters<Double>([(name: "w", value: Tensor(vector: [1, -2]))])
        Adam<Double>(learningRate: 0.1, weightDecay: 0, decoupled: false).update(p)
        #expect(p.values[0].storage == [1, -2])
        SGD<Double>(learningRate: 0.1, weightDecay: 0.5).update(p)
        #expect(p.values[0].storage == [1 - 0.1 * 0.5, -2 + 0.1 * 1.0])
    }

    @Test func stateBytesCountMoments() {
        let p = Parameters<Float>([(name: "w", value: Tensor(zeros: [10, 10])), (name: "b", value: Tensor(zeros: [10]))])
        let adam = Adam<Float>.adamW()
        adam.update(p)
        // Two Float moments per parameter plus an 8-byte step counter.
        #expect(adam.stateBytes(names: p.names) == 2 * 110 * 4 + 8)
        let sgd = SGD<Float>(learningRate: 0.1, momentum: 0.9)
        sgd.update(p)
        #expect(sgd.stateBytes(names: p.names) == 110 * 4 + 8)
    }
}
