import Foundation
import Learning
import Linalg
import Testing

/// SOAP, SimpleSOAP and Muon against the authors' code (`Fixtures/generate_matrix_optimizers.py`).
///
/// Tolerances: in Double 1e-9 relative. Eigenvectors and QR factors from LAPACK (here OpenBLAS's,
/// there PyTorch's) may differ in sign, but SOAP's rotate–precondition–rotate-back and the
/// SVD's U·Vᵀ are invariant to those signs, so only rounding separates the two; Float to 1e-4
/// (eigendecompositions amplify Float rounding more than element-wise optimizers do). Muon's
/// original Newton–Schulz runs in bfloat16: against it only to 2e-2 (bf16 has 8 significand bits).
///
/// SOAP's statistics start rank-deficient, and LAPACK builds may pick different eigenvectors for
/// a repeated eigenvalue (Adam in the rotated basis is not invariant to that choice), so the
/// fixtures use matrices whose rotated sides have full-rank statistics (see the generator).
struct MatrixFixture {
    static func load(_ name: String) -> OptimizerFixture {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)")
        return try! JSONDecoder().decode(OptimizerFixture.self, from: Data(contentsOf: url))
    }
    static let files = [load("matrix_optimizers.json"), load("matrix_optimizers_wide.json")]
    struct BF16: Decodable { let bf16_cases: [OptimizerFixture.Case] }
    static let bf16: [OptimizerFixture.Case] = try! JSONDecoder().decode(
        BF16.self,
        from: Data(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/matrix_optimizers.json"))
    ).bf16_cases

    /// The fixture file holding a case, and the case.
    static func find(_ name: String) -> (OptimizerFixture, OptimizerFixture.Case) {
        for f in files { if let c = f.cases.first(where: { $0.name == name }) { return (f, c) } }
        if let c = bf16.first(where: { $0.name == name }) { return (files[0], c) }
        fatalError("no fixture case \(name)")
    }

    static func run<T: BLASScalar>(_ c: OptimizerFixture.Case, _: T.Type, steps: Int? = nil) throws -> (Parameters<T>, any Optimizer<T>) {
        let fixture = find(c.name).0
        let optimizer: any Optimizer<T> = try Builders.optimizer(fixture.config(c))
        let params = fixture.parameters(T.self)
        for step in 0..<(steps ?? fixture.steps) {
            fixture.setGradients(params, step: step)
            optimizer.update(params)
        }
        return (params, optimizer)
    }
}

@Suite struct MatrixOptimizerTests {
    static let names = MatrixFixture.files.flatMap { $0.cases.map(\.name) }

    @Test(arguments: names)
    func matchesTheAuthorsCodeInDouble(name: String) throws {
        let (fixture, c) = MatrixFixture.find(name)
        let optimizer: any Optimizer<Double> = try Builders.optimizer(fixture.config(c))
        fixture.expectTrajectory(c, optimizer, from: fixture.parameters(Double.self), Tolerance(1e-9, floor: 1e-2), everyStep: true)
    }

    @Test(arguments: names)
    func matchesInFloat(name: String) throws {
        let (fixture, c) = MatrixFixture.find(name)
        let optimizer: any Optimizer<Float> = try Builders.optimizer(fixture.config(c))
        fixture.expectTrajectory(c, optimizer, from: fixture.parameters(Float.self), Tolerance(1e-4, floor: 1e-1), everyStep: false)
    }

    /// bf16 keeps 8 significand bits, so each Newton–Schulz output is off by up to a few percent;
    /// the quintic iteration amplifies them (slope 3.4 at zero); compare the total displacement over
    /// 12 steps: within 10% of its norm (measured: about 7%).
    @Test func muonAgreesWithTheBFloat16OriginalWithinItsRounding() throws {
        for c in MatrixFixture.bf16 {
            let (fixture, _) = MatrixFixture.find(c.name)
            let (params, _) = try MatrixFixture.run(c, Double.self)
            for (i, pname) in params.names.enumerated() {
                let start = fixture.start[pname]!, want = c.trajectory[pname]!.last!
                var diff = 0.0, moved = 0.0
                for j in 0..<start.count {
                    diff += (params.values[i].storage[j] - want[j]) * (params.values[i].storage[j] - want[j])
                    moved += (want[j] - start[j]) * (want[j] - start[j])
                }
                #expect(diff.squareRoot() <= 0.10 * moved.squareRoot(), "\(pname): off by \(diff.squareRoot()) of \(moved.squareRoot())")
            }
        }
    }

    /// 5 steps, export, import, 5 more = 10 straight, bit for bit.
    @Test(arguments: names)
    func exportImportResumesExactly(name: String) throws {
        let (fixture, c) = MatrixFixture.find(name)
        try fixture.expectResumesExactly(name, make: { try Builders.optimizer(fixture.config(c)) as any Optimizer<Float> }, parameters: { fixture.parameters(Float.self) })
    }

    @Test func newtonSchulzApproximatelyOrthogonalises() {
        var rng = Xoshiro256(seed: 3)
        var g = Tensor<Double>(zeros: [6, 4])
        g.storage.withUnsafeMutableBufferPointer { rng.fillNormal($0) }
        let x = newtonSchulzOrthogonalize(g, steps: 10)
        // Singular values land in Muon's band around 1 (about 0.7–1.2 for these coefficients).
        let (_, s, _) = try! svd(x)
        #expect(s.allSatisfy { $0 > 0.6 && $0 < 1.25 }, "\(s)")
        // …with G's singular vectors: XᵀG is symmetric positive definite.
        let xtg = matmul(x, transposeA: true, g)
        #expect(xtg.maxAbsDifference(xtg.transposed) < 1e-6)
    }

    @Test func nanGradientsGiveNaNParametersNotACrash() throws {
        for name in ["soap", "soap-simple", "muon"] {
            let config = TrialConfig(values: ["model": .string("quadratic"), "optimizer": .string(name), "muon_output": name == "muon" ? .bool(true) : nil].compactMapValues { $0 })
            let optimizer: any Optimizer<Double> = try Builders.optimizer(config)
            let p = Parameters<Double>([(name: "w", value: Tensor(repeating: 0.5, shape: [3, 2])), (name: "b", value: Tensor(zeros: [2]))])
            for _ in 0..<3 {
                p.gradients[0] = Tensor(repeating: .nan, shape: [3, 2])
                p.gradients[1] = Tensor(repeating: 1, shape: [2])
                optimizer.update(p)
            }
            #expect(!p.valuesFinite, "\(name)")
        }
    }

    @Test func soapPreconditions1DParametersWhenAsked() throws {
        let soap = SOAP<Double>(learningRate: 0.01, precondition1D: true)
        let p = Parameters<Double>([(name: "b", value: Tensor(vector: [1, 2, 3]))])
        var rng = Xoshiro256(seed: 1)
        for _ in 0..<4 {
            p.gradients[0].storage.withUnsafeMutableBufferPointer { rng.fillNormal($0) }
            soap.update(p)
        }
        let state = soap.exportState(names: p.names)
        #expect(state["b/Q_R"] != nil && state["b/R"] != nil)
        #expect(p.valuesFinite && p.values[0].storage != [1, 2, 3])
    }

    @Test func soapLeavesDimensionsAboveTheLimitUnrotatedAndSkipsItsFirstStep() throws {
        let soap = SOAP<Double>(learningRate: 0.1, maxPreconditionDim: 3)
        let p = Parameters<Double>([(name: "w", value: Tensor(repeating: 1, shape: [5, 2]))])
        p.gradients[0] = Tensor(repeating: 1, shape: [5, 2])
        soap.update(p)
        #expect(p.values[0].storage.allSatisfy { $0 == 1 })  // first step only initialises
        let state = soap.exportState(names: p.names)
        #expect(state["w/Q_L"] == nil && state["w/Q_R"] != nil)  // 5 > 3 stays unrotated, 2 is rotated
        soap.update(p)
        #expect(p.values[0].storage.allSatisfy { $0 < 1 })
    }
}
