import Learning
import Linalg
import Testing

/// Central finite differences against the hand-written backward pass, in Double.
func checkGradients(
    _ model: any Model<Double>, x: Tensor<Double>, labels: [Int32], seed: UInt64 = 9, samplesPerTensor: Int = 25
) -> [(name: String, worst: Double)] {
    let noise = Xoshiro256(seed: seed)
    var rng = noise
    _ = model.lossAndGradients(x: x, labels: labels, rng: &rng)
    let scale = model.lossReduction == .mean ? 1 / Double(x.rows) : 1
    return finiteDifferenceReport(model.parameters, samplesPerTensor: samplesPerTensor) {
        var r = noise
        return model.evaluate(x: x, labels: labels, rng: &r).lossSum * scale
    } error: { numeric, analytic in
        abs(numeric - analytic) / max(1, abs(numeric))
    }
}

/// For each tensor, the worst `error(numeric, analytic)` over `samplesPerTensor` random entries,
/// the numeric derivative a central difference of `objective` (step 1e-6) and the analytic one the
/// gradient the parameters hold when called.
func finiteDifferenceReport(
    _ params: Parameters<Double>, samplesPerTensor: Int, objective: () -> Double, error: (Double, Double) -> Double
) -> [(name: String, worst: Double)] {
    let analytic = params.gradients
    var pick = Xoshiro256(seed: 77)
    var report: [(String, Double)] = []
    for i in 0..<params.count {
        var worst = 0.0
        let n = params.values[i].count
        for _ in 0..<min(samplesPerTensor, n) {
            let j = Int(pick.next() % UInt64(n))
            let original = params.values[i].storage[j]
            let h = 1e-6
            params.values[i].storage[j] = original + h
            let up = objective()
            params.values[i].storage[j] = original - h
            let down = objective()
            params.values[i].storage[j] = original
            worst = max(worst, error((up - down) / (2 * h), analytic[i].storage[j]))
        }
        report.append((params.names[i], worst))
    }
    return report
}

func batch(rows: Int, features: Int, classes: Int, seed: UInt64, unit: Bool = false) -> (Tensor<Double>, [Int32]) {
    var rng = Xoshiro256(seed: seed)
    var x = Tensor<Double>(zeros: [rows, features])
    x.storage.withUnsafeMutableBufferPointer { unit ? rng.fillUniform($0, low: 0, high: 1) : rng.fillNormal($0) }
    let labels = (0..<rows).map { _ in Int32(rng.next() % UInt64(classes)) }
    return (x, labels)
}

@Suite struct GradientTests {
    @Test(arguments: Activation.allCases)
    func mlpGradientsMatchFiniteDifferences(activation: Activation) {
        var rng = Xoshiro256(seed: 1)
        let model = MLPClassifier<Double>(inputs: 6, hidden: [5, 4], classes: 3, activation: activation, rng: &rng)
        let (x, labels) = batch(rows: 7, features: 6, classes: 3, seed: 2)
        let report = checkGradients(model, x: x, labels: labels)
        #expect(report.map(\.name) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"])
        for (name, worst) in report { #expect(worst < 1e-6, "\(activation) \(name): relative error \(worst)") }
    }

    @Test func logisticRegressionGradients() {
        var rng = Xoshiro256(seed: 3)
        let model = MLPClassifier<Double>(inputs: 8, hidden: [], classes: 4, activation: .relu, rng: &rng)
        let (x, labels) = batch(rows: 5, features: 8, classes: 4, seed: 4)
        for (name, worst) in checkGradients(model, x: x, labels: labels) { #expect(worst < 1e-7, "\(name): \(worst)") }
    }

    @Test func vaeGradientsIncludingReparameterisationAndKL() {
        var rng = Xoshiro256(seed: 5)
        let model = VAE<Double>(inputs: 12, hidden: 7, latent: 3, rng: &rng)
        let (x, labels) = batch(rows: 4, features: 12, classes: 1, seed: 6, unit: true)
        let report = checkGradients(model, x: x, labels: labels)
        #expect(report.map(\.name) == ["fc1.weight", "fc1.bias", "fc_mu.weight", "fc_mu.bias", "fc_logvar.weight", "fc_logvar.bias", "fc3.weight", "fc3.bias", "fc4.weight", "fc4.bias"])
        for (name, worst) in report { #expect(worst < 1e-6, "\(name): relative error \(worst)") }
    }

    @Test func vaeLossMatchesTheDocumentsFormula() {
        // BCE(sigmoid(a), x) + KL computed directly from the definitions, in Double.
        var rng = Xoshiro256(seed: 8)
        let model = VAE<Double>(inputs: 5, hidden: 4, latent: 2, rng: &rng)
        let (x, labels) = batch(rows: 3, features: 5, classes: 1, seed: 9, unit: true)
        var noise = Xoshiro256(seed: 10)
        let loss = model.evaluate(x: x, labels: labels, rng: &noise).lossSum
        // Recompute by hand with the same noise.
        let p = model.parameters
        func linear(_ input: [Double], _ w: Tensor<Double>, _ b: Tensor<Double>) -> [Double] {
            (0..<w.rows).map { o in b.storage[o] + (0..<w.cols).reduce(0) { $0 + w[o, $1] * input[$1] } }
        }
        var eps = [Double](repeating: 0, count: 3 * 2)
        var n2 = Xoshiro256(seed: 10)
        eps.withUnsafeMutableBufferPointer { n2.fillNormal($0) }
        var expected = 0.0
        for r in 0..<3 {
            let xr = Array(x.storage[(r * 5)..<(r * 5 + 5)])
            let h = linear(xr, p.values[0], p.values[1]).map { max($0, 0) }
            let mu = linear(h, p.values[2], p.values[3]), lv = linear(h, p.values[4], p.values[5])
            let z = (0..<2).map { mu[$0] + eps[r * 2 + $0] * Double.exp(0.5 * lv[$0]) }
            let h3 = linear(z, p.values[6], p.values[7]).map { max($0, 0) }
            let recon = linear(h3, p.values[8], p.values[9]).map { 1 / (1 + Double.exp(-$0)) }
            for j in 0..<5 { expected -= xr[j] * Double.log(recon[j]) + (1 - xr[j]) * Double.log(1 - recon[j]) }
            for k in 0..<2 { expected += -0.5 * (1 + lv[k] - mu[k] * mu[k] - Double.exp(lv[k])) }
        }
        #expect(abs(loss - expected) < 1e-10 * max(1, abs(expected)))
    }

    @Test func floatKernelsAgreeWithDouble() {
        // The Float SIMD BCE (polynomial exp/log1p) against libm in Double.
        var rng = Xoshiro256(seed: 11)
        let n = 1003
        var a = [Float](repeating: 0, count: n), x = [Float](repeating: 0, count: n)
        a.withUnsafeMutableBufferPointer { rng.fillNormal($0) }
        for i in 0..<n { a[i] *= 12 }
        x.withUnsafeMutableBufferPointer { rng.fillUniform($0, low: 0, high: 1) }
        var d = [Float](repeating: 0, count: n)
        let loss = a.withUnsafeBufferPointer { ap in
            x.withUnsafeBufferPointer { xp in
                d.withUnsafeMutableBufferPointer { dp in
                    binaryCrossEntropyWithLogits(logits: ap.baseAddress!, targets: xp.baseAddress!, count: n, gradient: dp.baseAddress!)
                }
            }
        }
        var expected = 0.0
        for i in 0..<n {
            let ai = Double(a[i]), xi = Double(x[i])
            expected += max(ai, 0) + Double.log1p(Double.exp(-abs(ai))) - xi * ai
            let sig = 1 / (1 + Double.exp(-ai))
            #expect(abs(Double(d[i]) - (sig - xi)) < 1e-6)
        }
        #expect(abs(loss - expected) / expected < 1e-6)
    }

    @Test func toyObjectiveGradients() {
        let objectives: [any Objective] = [Rosenbrock(start: [-1.2, 1]), Quadratic(curvatures: [10, 0.1, 3], start: [1, -2, 0.5])]
        for objective in objectives {
            let x = objective.start
            let (_, g) = objective.evaluate(x)
            for i in x.indices {
                var up = x, down = x
                up[i] += 1e-6
                down[i] -= 1e-6
                let numeric = (objective.evaluate(up).value - objective.evaluate(down).value) / 2e-6
                #expect(abs(numeric - g[i]) < 1e-5 * max(1, abs(numeric)), "\(objective.name) ∂x\(i)")
            }
        }
        #expect(Rosenbrock().evaluate([1, 1]).value == 0)
    }

    @Test func linearLayersInitialiseLikePyTorch() {
        var rng = Xoshiro256(seed: 0)
        let model = MLPClassifier<Double>(inputs: 784, hidden: [256], classes: 10, activation: .relu, rng: &rng)
        let bound = 1 / 784.0.squareRoot()
        let w = model.parameters.values[0].storage
        #expect(w.allSatisfy { abs($0) <= bound })
        #expect(w.max()! > 0.95 * bound && w.min()! < -0.95 * bound)
        // Uniform on ±b has variance b²/3.
        let variance = w.map { $0 * $0 }.reduce(0, +) / Double(w.count)
        #expect(abs(variance / (bound * bound / 3) - 1) < 0.02)
        #expect(model.parameters.values[1].storage.allSatisfy { abs($0) <= bound })
    }
}
