import Learning
import Linalg
import Testing

/// How close a run must come to its reference: |got − want| ≤ relative·max(|want|, floor).
struct Tolerance {
    let relative: Double
    let floor: Double

    init(_ relative: Double, floor: Double) {
        self.relative = relative
        self.floor = floor
    }

    func error(_ got: Double, _ want: Double) -> Double { abs(got - want) / max(abs(want), floor) }
    func accepts(_ got: Double, _ want: Double) -> Bool { abs(got - want) <= relative * max(abs(want), floor) }
}

/// The comparison every fixture suite makes: each tensor of `values` (in the order of `names`)
/// element by element within `tolerance` of `want(name)`. Returns the worst relative error;
/// `label` says which run and step a failure belongs to.
@discardableResult
func expectClose<T: BLASScalar>(
    _ values: [Tensor<T>], names: [String], to want: (String) -> [Double], _ tolerance: Tolerance, _ label: String,
    sourceLocation: Testing.SourceLocation = #_sourceLocation
) -> Double {
    var worst = 0.0
    for (i, name) in names.enumerated() {
        let reference = want(name)
        #expect(values[i].count == reference.count, "\(label) \(name): \(values[i].count) values, \(reference.count) in the reference", sourceLocation: sourceLocation)
        for (got, w) in zip(values[i].storage, reference) {
            worst = max(worst, tolerance.error(Double(got), w))
            #expect(tolerance.accepts(Double(got), w), "\(label) \(name): \(got) vs \(w)", sourceLocation: sourceLocation)
        }
    }
    return worst
}

extension OptimizerFixture {
    /// Runs `optimizer` through the fixture's gradients from `parameters` and expects them on case
    /// `c`'s trajectory within `tolerance`: after every step, or (`everyStep: false`) after the last.
    /// Returns the worst relative error.
    @discardableResult
    func expectTrajectory<T: BLASScalar>(
        _ c: Case, _ optimizer: any Optimizer<T>, from parameters: Parameters<T>, _ tolerance: Tolerance, everyStep: Bool,
        sourceLocation: Testing.SourceLocation = #_sourceLocation
    ) -> Double {
        var worst = 0.0
        for step in 0..<steps {
            setGradients(parameters, step: step)
            optimizer.update(parameters)
            if everyStep {
                let error = expectClose(
                    parameters.values, names: parameters.names, to: { c.trajectory[$0]![step] }, tolerance, "\(c.name) step \(step + 1)",
                    sourceLocation: sourceLocation)
                worst = max(worst, error)
            }
        }
        if !everyStep {
            worst = expectClose(parameters.values, names: parameters.names, to: { c.trajectory[$0]!.last! }, tolerance, c.name, sourceLocation: sourceLocation)
        }
        return worst
    }

    /// `expectExactResume` over this fixture's gradients (one update per step).
    func expectResumesExactly<T: BLASScalar>(_ name: String, make: () throws -> any Optimizer<T>, parameters: () -> Parameters<T>) throws {
        try expectExactResume(name, make: make, parameters: parameters) { optimizer, p, k in
            setGradients(p, step: k)
            optimizer.update(p)
        }
    }
}
