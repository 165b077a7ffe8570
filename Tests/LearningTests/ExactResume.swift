import Learning
import Linalg
import Testing

/// The check every optimizer's fixture suite makes of its exported state: `steps` updates made
/// straight equal `split` updates, an export, an import into a fresh optimizer and the remaining
/// updates, in parameters and in state, bit for bit. `step(optimizer, parameters, k)` makes update
/// k (setting that step's gradients, and whatever else the fixture's loop does).
func expectExactResume<T: BLASScalar>(
    _ label: String, steps: Int = 10, split: Int = 5,
    make: () throws -> any Optimizer<T>, parameters: () -> Parameters<T>,
    step: (any Optimizer<T>, Parameters<T>, Int) -> Void
) throws {
    let straight = try make()
    let a = parameters()
    for k in 0..<steps { step(straight, a, k) }

    let first = try make()
    let b = parameters()
    for k in 0..<split { step(first, b, k) }
    let state = first.exportState(names: b.names)
    let resumed = try make()
    try resumed.importState(state, parameters: b)
    #expect(resumed.step == split, "\(label) in \(T.self)")
    #expect(resumed.exportState(names: b.names) == state, "\(label) in \(T.self): the state reads back as written")
    for k in split..<steps { step(resumed, b, k) }
    #expect(a.values == b.values, "\(label) in \(T.self)")
    #expect(straight.exportState(names: a.names) == resumed.exportState(names: b.names), "\(label) in \(T.self)")
}
