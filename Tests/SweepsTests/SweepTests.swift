import Foundation
import Learning
import Sweeps
import Testing

/// Parses a sweep written as YAML lines (joined with newlines), named `sweep.yaml` in errors.
func sweep(_ lines: String...) throws -> Sweep {
    try SweepFile.parse(yaml: lines.joined(separator: "\n") + "\n", source: "sweep.yaml")
}

/// The ConfigError a bad sweep gives (records an issue if it parses or fails otherwise).
func sweepError(_ lines: [String], sourceLocation: Testing.SourceLocation = #_sourceLocation) -> ConfigError? {
    do {
        _ = try SweepFile.parse(yaml: lines.joined(separator: "\n") + "\n", source: "sweep.yaml")
        Issue.record("expected a ConfigError", sourceLocation: sourceLocation)
    } catch let e as ConfigError {
        return e
    } catch {
        Issue.record("unexpected error type: \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

extension Trial {
    subscript(_ key: String) -> ConfigValue? { config.values[key] }
}

/// The repository's root, from this file's path.
let repositoryRoot: String = {
    var parts = String(#filePath).split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)  // Tests/SweepsTests/SweepTests.swift
    return parts.joined(separator: "/")
}()

@Suite struct GridTests {
    @Test func gridIsAProductInFileOrderWithTheLastKeyFastest() throws {
        let s = try sweep(
            "name: toy-grid",
            "base:",
            "  model: quadratic",
            "  optimizer: sgd",
            "grid:",
            "  lr: [0.1, 0.2]",
            "  steps: [10, 20, 30]")
        #expect(s.name == "toy-grid" && s.source == "sweep.yaml" && s.seed == 0)
        #expect(s.trials.count == 6)
        #expect(s.trials.map(\.index) == Array(0..<6))
        #expect(s.trials.map { $0["lr"] } == [0.1, 0.1, 0.1, 0.2, 0.2, 0.2].map { ConfigValue.double($0) })
        #expect(s.trials.map { $0["steps"] } == [10, 20, 30, 10, 20, 30].map { ConfigValue.int($0) })
        #expect(s.trials.allSatisfy { $0.branch == "main" && $0["model"] == .string("quadratic") })
        #expect(s.varied == ["lr", "steps"] && s.trials[3].varied == ["lr", "steps"])
        // Locations point at the sweep file's lines.
        let c = s.trials[0].config
        #expect(c.source == "sweep.yaml")
        #expect(c.locations["model"] == Learning.SourceLocation(file: "sweep.yaml", line: 3))
        #expect(c.locations["lr"]?.line == 6 && c.locations["steps"]?.line == 7)
        #expect(s.trials.allSatisfy { $0.id == TrialID.of($0.config) })
        #expect(Set(s.trials.map(\.id)).count == 6)
    }

    @Test func modelMayBeSwept() throws {
        let s = try sweep(
            "name: models",
            "base: {optimizer: adam, steps: 50}",
            "grid:",
            "  model: [quadratic, rosenbrock]",
            "  lr: [0.01, 0.02]")
        #expect(s.trials.map { $0["model"]?.description } == ["quadratic", "quadratic", "rosenbrock", "rosenbrock"])
    }

    @Test func rangeLogspaceAndLinspaceValues() throws {
        let s = try sweep(
            "name: generated",
            "base: {model: mlp, optimizer: sgd}",
            "grid:",
            "  batch_size: {range: [64, 256, 64]}")
        #expect(s.trials.map { $0["batch_size"] } == [64, 128, 192, 256].map { ConfigValue.int($0) })

        func values(_ spec: String) throws -> [ConfigValue] {
            try sweep("name: g", "base: {model: quadratic, optimizer: sgd}", "grid:", "  lr: \(spec)").trials.compactMap { $0["lr"] }
        }
        #expect(try values("{logspace: [1.0e-5, 1.0e-2, 4]}") == [1e-5, 1e-4, 1e-3, 1e-2].map { ConfigValue.double($0) })
        #expect(try values("{linspace: [0.8, 0.99, 3]}") == [0.8, 0.895, 0.99].map { ConfigValue.double($0) })
        #expect(try values("{linspace: [0.5, 1, 1]}") == [.double(0.5)])
        #expect(try values("{range: [0.1, 0.5, 0.1]}") == [0.1, 0.2, 0.3, 0.4, 0.5].map { ConfigValue.double($0) })
        #expect(try values("{range: [0.1, 0.45, 0.1]}") == [0.1, 0.2, 0.3, 0.4].map { ConfigValue.double($0) })
        #expect(try values("{range: [1, 10, 4]}") == [1, 5, 9].map { ConfigValue.int($0) })  // stop not hit: excluded
        #expect(try values("{range: [3, 1, -1]}") == [3, 2, 1].map { ConfigValue.int($0) })
        #expect(try values("{range: [1, 2, 0.5]}") == [1.0, 1.5, 2.0].map { ConfigValue.double($0) })
    }

    @Test func zipVariesListsTogether() throws {
        let s = try sweep(
            "name: zipped",
            "base: {model: rosenbrock, optimizer: adam, steps: 10}",
            "grid:",
            "  lr: [0.01, 0.02]",
            "zip:",
            "  - {beta1: [0.9, 0.95], beta2: [0.999, 0.99]}",
            "  - eps: [1.0e-8, 1.0e-6, 1.0e-4]")
        #expect(s.trials.count == 2 * 2 * 3)
        for t in s.trials {
            #expect((t["beta1"] == .double(0.9)) == (t["beta2"] == .double(0.999)))
        }
        #expect(s.trials.prefix(4).map { $0["eps"] } == [1e-8, 1e-6, 1e-4, 1e-8].map { ConfigValue.double($0) })
        #expect(s.trials.prefix(6).map { $0["beta1"] } == [0.9, 0.9, 0.9, 0.95, 0.95, 0.95].map { ConfigValue.double($0) })
        #expect(s.trials[0].config.locations["beta2"]?.line == 6 && s.trials[0].config.locations["eps"]?.line == 7)
        #expect(s.varied == ["beta1", "beta2", "eps", "lr"])
    }
}

@Suite struct BranchTests {
    /// The layout of the shampoo-style sweep: a 3×3 grid in one branch, a list in the other.
    let text = [
        "name: mlp-branches",
        "objective: {metric: test_accuracy}",
        "base:",
        "  model: mlp",
        "  hidden: [16]",
        "  epochs: 1",
        "  weight_decay: 0.0",
        "optimizers:",
        "  sgd:",
        "    base: {weight_decay: 1.0e-4}",
        "    grid:",
        "      lr: [0.01, 0.03, 0.1]",
        "      momentum: [0.0, 0.9, 0.99]",
        "  adamw:",
        "    grid: {lr: [1.0e-4, 3.0e-4, 1.0e-3]}",
    ]

    @Test func eachOptimizerIsABranchWithItsOwnSubspace() throws {
        let s = try SweepFile.parse(yaml: text.joined(separator: "\n"), source: "branches.yaml")
        #expect(s.objective.metric == "test_accuracy" && s.objective.maximize)
        #expect(s.trials.count == 9 + 3)
        let sgd = s.trials.filter { $0.branch == "sgd" }, adamw = s.trials.filter { $0.branch == "adamw" }
        #expect(sgd.count == 9 && adamw.count == 3)
        #expect(s.trials.prefix(9).allSatisfy { $0.branch == "sgd" })  // branches in file order
        #expect(sgd.allSatisfy { $0["optimizer"] == .string("sgd") && $0["weight_decay"] == .double(1e-4) && $0["momentum"] != nil })
        #expect(adamw.allSatisfy { $0["optimizer"] == .string("adamw") && $0["weight_decay"] == .double(0) && $0["momentum"] == nil })
        #expect(Array(sgd.map { $0["momentum"] }.prefix(3)) == [0.0, 0.9, 0.99].map { ConfigValue.double($0) })
        #expect(adamw.map { $0["lr"] } == [1e-4, 3e-4, 1e-3].map { ConfigValue.double($0) })
        #expect(s.varied == ["lr", "momentum", "optimizer", "weight_decay"])
        #expect(sgd[0].config.locations["optimizer"]?.line == 9 && adamw[0].config.locations["optimizer"]?.line == 14)
        #expect(sgd[0].config.locations["weight_decay"]?.line == 10 && adamw[0].config.locations["weight_decay"]?.line == 7)
        #expect(sgd[0].config.locations["hidden"]?.line == 5)
    }

    @Test func topLevelGridAppliesToEveryBranch() throws {
        let s = try sweep(
            "name: shared",
            "base: {model: rosenbrock, steps: 20}",
            "grid: {start: [[-1.5, 2], [0, 0]]}",
            "optimizers:",
            "  adam: {grid: {lr: [0.01, 0.1]}}",
            "  sgd:",
            "    base: {lr: 0.001}")
        #expect(s.trials.count == 4 + 2)
        #expect(s.trials.map(\.branch) == ["adam", "adam", "adam", "adam", "sgd", "sgd"])
        #expect(s.trials[0]["start"] == .list([.double(-1.5), .int(2)]) && s.trials[1]["lr"] == .double(0.1))
    }

    @Test func planTableListsVariedKeys() throws {
        let s = try SweepFile.parse(yaml: text.joined(separator: "\n"), source: "branches.yaml")
        let table = s.planTable(limit: nil)
        let lines = table.split(separator: "\n").map(String.init)
        #expect(lines.count == 1 + 1 + 12)
        #expect(lines[0] == "12 trials")
        #expect(lines[1].split(separator: " ") == ["index", "id", "branch", "lr", "momentum", "optimizer", "weight_decay"])
        #expect(lines[2].split(separator: " ") == ["0", Substring(s.trials[0].id), "sgd", "0.01", "0.0", "sgd", "0.0001"])
        #expect(lines[13].split(separator: " ").map(String.init) == ["11", s.trials[11].id, "adamw", "0.001", "-", "adamw", "0.0"])
        let short = s.planTable(limit: 2).split(separator: "\n")
        #expect(short.count == 1 + 1 + 2 + 1 && short.last == "... 10 more")
    }
}

@Suite struct RandomTests {
    func randomSweep(seed: Int, samples: Int) throws -> Sweep {
        try sweep(
            "name: random",
            "seed: \(seed)",
            "base: {model: mlp, hidden: [8]}",
            "random:",
            "  samples: \(samples)",
            "  params:",
            "    lr: {loguniform: [1.0e-4, 1.0e-1]}",
            "    momentum: {uniform: [0.8, 0.99]}",
            "    batch_size: {randint: [32, 36]}",
            "    activation: {choice: [relu, tanh]}")
    }

    @Test func drawsAreReproducibleInRangeAndDependOnTheSeed() throws {
        let a = try randomSweep(seed: 7, samples: 20), b = try randomSweep(seed: 7, samples: 20)
        #expect(a.trials.count == 20 && a.seed == 7)
        #expect(a.trials.map(\.config) == b.trials.map(\.config) && a.trials.map(\.id) == b.trials.map(\.id))
        for t in a.trials {
            let lr = try #require(t["lr"]?.asDouble), m = try #require(t["momentum"]?.asDouble)
            #expect(lr >= 1e-4 && lr < 1e-1 && m >= 0.8 && m < 0.99)
            guard case .int(let bs)? = t["batch_size"] else { Issue.record("batch_size not an int"); continue }
            #expect((32...36).contains(bs))
            #expect(t["activation"] == .string("relu") || t["activation"] == .string("tanh"))
            #expect(t.config.locations["lr"]?.line == 7 && t.config.locations["activation"]?.line == 10)
        }
        #expect(Set(a.trials.compactMap { $0["batch_size"] }).count > 1)
        #expect(Set(a.trials.compactMap { $0["activation"] }).count == 2)
        #expect(a.varied == ["activation", "batch_size", "lr", "momentum"])
        let c = try randomSweep(seed: 8, samples: 20)
        #expect(c.trials.map { $0["lr"] } != a.trials.map { $0["lr"] })
        #expect(Set(c.trials.map(\.id)).isDisjoint(with: a.trials.map(\.id)))
    }

    @Test func addingSamplesKeepsTheEarlierOnes() throws {
        let few = try randomSweep(seed: 3, samples: 4), more = try randomSweep(seed: 3, samples: 9)
        #expect(more.trials.count == 9)
        #expect(Array(more.trials.prefix(4).map(\.config)) == few.trials.map(\.config))
        #expect(Array(more.trials.prefix(4).map(\.id)) == few.trials.map(\.id))
    }

    @Test func branchesDrawFromTheirOwnStreamsAndMayOverrideSamples() throws {
        let s = try sweep(
            "name: branch-random",
            "base: {model: quadratic, steps: 5}",
            "random:",
            "  samples: 3",
            "  params: {lr: {loguniform: [1.0e-3, 1.0]}}",
            "optimizers:",
            "  sgd:",
            "    random: {params: {momentum: {uniform: [0.0, 0.9]}}}",
            "  adam:",
            "    random: {samples: 5}")
        #expect(s.trials.filter { $0.branch == "sgd" }.count == 3 && s.trials.filter { $0.branch == "adam" }.count == 5)
        #expect(s.trials.filter { $0.branch == "sgd" }.allSatisfy { $0["momentum"] != nil })
        #expect(s.trials[0]["lr"] != s.trials[3]["lr"])  // sample 0 of sgd and of adam differ
    }

    @Test func randomTimesGridTimesSeeds() throws {
        let s = try sweep(
            "name: mixed",
            "base: {model: quadratic, optimizer: sgd}",
            "grid: {steps: [10, 20]}",
            "random: {samples: 2, params: {lr: {uniform: [0.01, 0.1]}}}",
            "seeds: [0, 1]")
        #expect(s.trials.count == 2 * 2 * 2)
        #expect(s.trials.map { $0["seed"] } == [0, 1, 0, 1, 0, 1, 0, 1].map { ConfigValue.int($0) })
        #expect(s.trials[0]["lr"] == s.trials[1]["lr"] && s.trials[0]["lr"] != s.trials[2]["lr"])
        #expect(s.trials[0]["lr"] == s.trials[4]["lr"])  // the same draws at every grid point
    }
}

@Suite struct SeedTests {
    @Test func seedsListSetsTheSeedKey() throws {
        let s = try sweep(
            "name: seeds",
            "base: {model: quadratic, optimizer: sgd}",
            "grid: {lr: [0.1, 0.2]}",
            "seeds: [0, 1, 2]")
        #expect(s.trials.map { $0["seed"] } == [0, 1, 2, 0, 1, 2].map { ConfigValue.int($0) })
        #expect(s.trials[0].config.locations["seed"]?.line == 4)
        #expect(s.varied == ["lr", "seed"])
    }

    @Test func repeatsCountFromTheBaseSeed() throws {
        let s = try sweep("name: r", "base: {model: quadratic, seed: 5}", "repeats: 3")
        #expect(s.trials.map { $0["seed"] } == [5, 6, 7].map { ConfigValue.int($0) })
        let z = try sweep("name: r", "base: {model: quadratic}", "repeats: 2")
        #expect(z.trials.map { $0["seed"] } == [0, 1].map { ConfigValue.int($0) })
    }
}

@Suite struct IdentityTests {
    let lines = [
        "name: ids",
        "base: {model: rosenbrock, steps: 10}",
        "optimizers:",
        "  sgd: {grid: {lr: [0.001, 0.002], momentum: [0.0, 0.9]}}",
        "  adam: {grid: {lr: [0.01, 0.05]}}",
    ]

    @Test func idsAreStableAcrossParsesAndWhenValuesAreAdded() throws {
        let a = try SweepFile.parse(yaml: lines.joined(separator: "\n"), source: "a.yaml")
        let b = try SweepFile.parse(yaml: lines.joined(separator: "\n"), source: "b.yaml")
        #expect(a.trials.map(\.id) == b.trials.map(\.id))
        var grown = lines
        grown[3] = "  sgd: {grid: {lr: [0.0005, 0.001, 0.002], momentum: [0.0, 0.5, 0.9]}}"
        grown[4] = "  adam: {grid: {lr: [0.01, 0.02, 0.05]}}"
        grown.append("  adamw: {grid: {lr: [0.01]}}")
        let c = try SweepFile.parse(yaml: grown.joined(separator: "\n"), source: "c.yaml")
        #expect(c.trials.count == 9 + 3 + 1)
        #expect(Set(a.trials.map(\.id)).isSubset(of: c.trials.map(\.id)))
        #expect(a.trials.allSatisfy { t in c.trials.first { $0.id == t.id }?.config == t.config })
    }

    @Test func duplicateConfigurationsCollapse() throws {
        let s = try sweep(
            "name: dups",
            "base: {model: quadratic, optimizer: sgd, lr: 0.1}",
            "grid:",
            "  lr: [0.1, 0.10, 0.2, 0.1]",
            "  steps: [5, 5]")
        #expect(s.trials.count == 2)
        #expect(s.trials.map(\.index) == [0, 1] && s.trials.map { $0["lr"] } == [.double(0.1), .double(0.2)])
        // Different spellings of one configuration are one trial; a random section without params is one sample.
        let r = try sweep("name: d", "base: {model: quadratic}", "random: {samples: 4}", "grid: {optimizer: [sgd, sgd]}")
        #expect(r.trials.count == 1 && r.varied.isEmpty)
    }
}

@Suite struct ErrorTests {
    /// A bad file gives a ConfigError at `line` for `key` whose message contains `fragments`.
    func expectError(_ lines: [String], line: Int?, key: String?, _ fragments: String..., sourceLocation: Testing.SourceLocation = #_sourceLocation) {
        guard let e = sweepError(lines, sourceLocation: sourceLocation) else { return }
        #expect(e.location.file == "sweep.yaml", sourceLocation: sourceLocation)
        #expect(e.location.line == line, "\(e)", sourceLocation: sourceLocation)
        #expect(e.key == key, "\(e)", sourceLocation: sourceLocation)
        for f in fragments { #expect(e.message.contains(f), "\(e)", sourceLocation: sourceLocation) }
    }

    let head = ["name: bad", "base: {model: quadratic, optimizer: sgd}"]

    @Test func unknownSectionsAndKeys() {
        expectError(head + ["gird: {lr: [0.1]}"], line: 3, key: "gird", "unknown section", "did you mean 'grid'", "allowed: base")
        expectError(head + ["steps: 10"], line: 3, key: "steps", "unknown section", "go under 'base'")
        expectError(head + ["random: {samples: 2, parms: {}}"], line: 3, key: "parms", "did you mean 'params'")
        expectError(head + ["objective: {metric: accuracy}"], line: 3, key: "metric", "test_accuracy, test_loss, train_loss")
        expectError(head + ["objective: {metric: test_loss, mode: lowest}"], line: 3, key: "mode", "min or max")
        expectError(head + ["optimizers:", "  sgd:", "    grd: {lr: [0.1]}"], line: 5, key: "grd", "did you mean 'grid'")
        expectError(head + ["grid: {lr: [0.1]}", "grid: {steps: [1]}"], line: 4, key: "grid", "given twice (first at line 3)")
    }

    @Test func nameAndStructure() {
        expectError(["base: {model: quadratic}"], line: 1, key: "name", "needs a 'name'")
        expectError(["name: bad name!", "base: {model: quadratic}"], line: 1, key: "name", "letters, digits")
        expectError(["- name: x"], line: 1, key: nil, "must be a mapping")
        expectError(["name: x", "grid: [1, 2"], line: 3, key: nil, "invalid YAML")
        expectError([""], line: 1, key: nil, "empty sweep file")
        expectError(["name: x", "seed: -1"], line: 2, key: "seed", "at least 0")
        expectError(["name: x", "base: [model, quadratic]"], line: 2, key: "base", "must be a mapping")
    }

    @Test func unknownOptimizerListsTheAllowedOnes() {
        expectError(
            head + ["optimizers:", "  adamw: {}", "  kfac:", "    grid: {lr: [0.1]}"], line: 5, key: "kfac",
            "unknown optimizer 'kfac'", "allowed: " + TrialSchema.optimizerNames.joined(separator: ", "))
        expectError(head + ["optimizers:", "  adamx: {}"], line: 4, key: "adamx", "did you mean 'adam'")
        expectError(head + ["optimizers: {}"], line: 3, key: "optimizers", "at least one")
    }

    @Test func badGridsAndGenerators() {
        expectError(head + ["grid:", "  steps: [10]", "  lr: []"], line: 5, key: "lr", "empty grid")
        expectError(head + ["grid:", "  lr: {range: [1]}"], line: 4, key: "lr", "range needs three numbers", "[start, stop, step]")
        expectError(head + ["grid:", "  lr: {range: [1, 5, 0]}"], line: 4, key: "lr", "step must not be 0")
        expectError(head + ["grid:", "  lr: {range: [5, 1, 1]}"], line: 4, key: "lr", "never reaches")
        expectError(head + ["grid:", "  lr: {range: [1, 100000000, 1]}"], line: 4, key: "lr", "at most")
        expectError(head + ["grid:", "  lr: {logspace: [0, 1, 3]}"], line: 4, key: "lr", "logspace needs a positive start")
        expectError(head + ["grid:", "  lr: {linspace: [0.1, 1, 2.5]}"], line: 4, key: "lr", "count must be an integer")
        expectError(head + ["grid:", "  lr: {linspace: [0.1, x, 3]}"], line: 4, key: "lr", "finite numbers")
        expectError(head + ["grid:", "  lr: {normal: [0, 1]}"], line: 4, key: "lr", "unknown generator 'normal'", "range")
        expectError(head + ["grid:", "  lr: {uniform: [0, 1]}"], line: 4, key: "lr", "random distribution")
        expectError(head + ["grid:", "  lr: 0.1"], line: 4, key: "lr", "belongs under base")
        expectError(head + ["grid:", "  lr: [{a: 1}]"], line: 4, key: "lr", "expected a number, got mapping {a: 1}")
    }

    @Test func badZipGroups() {
        expectError(head + ["zip:", "  - {lr: [0.1, 0.2], steps: [1, 2, 3]}"], line: 4, key: "steps", "same length", "'lr' has 2", "'steps' has 3")
        expectError(head + ["zip:", "  - lr: [0.1, 0.2]", "    steps: [1]"], line: 5, key: "steps", "same length")
        expectError(head + ["zip: {lr: [0.1]}"], line: 3, key: "zip", "list of groups")
        expectError(head + ["zip:", "  - {lr: []}"], line: 4, key: "lr", "empty zip list")
    }

    @Test func badRandomSections() {
        expectError(head + ["random:", "  samples: 0", "  params: {lr: {uniform: [0.1, 0.2]}}"], line: 4, key: "samples", "at least 1")
        expectError(head + ["random:", "  params:", "    lr: {normal: [0, 1]}"], line: 5, key: "lr", "unknown distribution 'normal'", "loguniform")
        expectError(head + ["random:", "  params:", "    lr: {loguniform: [0, 1]}"], line: 5, key: "lr", "0 < low < high")
        expectError(head + ["random:", "  params:", "    steps: {randint: [10, 1]}"], line: 5, key: "steps", "low ≤ high")
        expectError(head + ["random:", "  params:", "    lr: [0.1, 0.2]"], line: 5, key: "lr", "belongs under grid")
        expectError(head + ["random:", "  params:", "    lr: {choice: []}"], line: 5, key: "lr", "at least one value")
        expectError(head + ["random:", "  params:", "    lr: {uniform: [0.1, 0.2]}"], line: 3, key: "samples", "needs 'samples'")
    }

    @Test func badSeeds() {
        expectError(head + ["seeds: [0, 1]", "repeats: 3"], line: 4, key: "repeats", "either 'seeds' or 'repeats'")
        expectError(head + ["repeats: 0"], line: 3, key: "repeats", "at least 1")
        expectError(head + ["seeds: []"], line: 3, key: "seeds", "non-empty list")
        expectError(head + ["seeds: [0, 0]"], line: 3, key: "seeds", "listed twice")
        expectError(head + ["seeds: [0, 1]", "grid: {seed: [3, 4]}"], line: 4, key: "seed", "set by 'seeds'/'repeats'")
        expectError(["name: s", "base:", "  model: quadratic", "  seed: 4", "seeds: [0, 1]"], line: 4, key: "seed", "remove it from base")
    }

    @Test func conflictingKeys() {
        expectError(
            ["name: c", "base: {model: quadratic}", "grid: {lr: [0.1]}", "optimizers:", "  sgd:", "    grid: {lr: [0.2]}"],
            line: 6, key: "lr", "already varied by the top-level grid (line 3)")
        expectError(head + ["grid: {lr: [0.1]}", "random: {samples: 2, params: {lr: {uniform: [0.1, 0.2]}}}"], line: 4, key: "lr", "already varied")
        expectError(head + ["zip:", "  - {lr: [0.1]}", "  - {lr: [0.2]}"], line: 5, key: "lr", "already varied by the zip (line 4)")
        expectError(head + ["optimizers: {adam: {}}"], line: 2, key: "optimizer", "set by the entries under 'optimizers'")
        expectError(["name: o", "base: {model: quadratic}", "grid: {optimizer: [sgd, adam]}", "optimizers: {adam: {}}"], line: 3, key: "optimizer", "set by the entries")
    }

    @Test func trialValidationErrorsPointAtTheSweepFile() {
        // A misspelled hyperparameter in base, in a grid and in a branch.
        expectError(["name: v", "base:", "  model: quadratic", "  momentun: 0.9"], line: 4, key: "momentun", "unknown key", "did you mean 'momentum'")
        expectError(head + ["grid:", "  lr: [0.1]", "  stpes: [1, 2]"], line: 5, key: "stpes", "did you mean 'steps'")
        // A key that does not apply to one branch.
        expectError(
            ["name: v", "base: {model: mlp}", "grid:", "  momentum: [0.0, 0.9]", "optimizers:", "  sgd: {}", "  adamw: {}"],
            line: 4, key: "momentum", "does not apply to optimizer 'adamw'", "in the branch of optimizer 'adamw'")
        // A key of another model, and a bad value drawn at random.
        expectError(["name: v", "base: {model: rosenbrock}", "grid: {epochs: [1, 2]}"], line: 3, key: "epochs", "model 'rosenbrock'")
        expectError(
            ["name: v", "base: {model: mlp}", "random:", "  samples: 50", "  params:", "    batch_size: {randint: [0, 3]}"],
            line: 6, key: "batch_size", "at least 1")
        expectError(["name: v", "base: {model: mlp}", "grid: {lr: [0.1, -0.1]}"], line: 3, key: "lr", "positive")
        expectError(["name: v", "base: {model: mlp}", "grid: {model: [mlp, resnet5]}"], line: 3, key: "model", "unknown model 'resnet5'")
        // No model at all: reported at the base line.
        expectError(["name: v", "description: no model", "base:", "  lr: 0.1"], line: 3, key: nil, "needs 'model'")
        expectError(["name: v", "base: {model: 3}"], line: 2, key: "model", "needs 'model'")
    }

    /// A program trial's reserved keys are checked like built-in ones, at their lines; its own
    /// hyperparameters are passed on.
    @Test func programTrialsReservedKeysAreValidated() throws {
        let p = ["name: p", "base:", "  program: [python3, train.py]"]
        expectError(p + ["  epochs: 0"], line: 4, key: "epochs", "in [1, 100000]")
        expectError(p + ["  epochs: 2", "  timeout: -5"], line: 5, key: "timeout", "in (0, 32000000]")
        expectError(p + ["  epochs: 2", "  env: {SWEEP_SEED: '1'}"], line: 5, key: "env", "SWEEP_SEED is set by the worker")
        expectError(p + ["  epochs: 2", "  env: {1X: a}"], line: 5, key: "env", "not an environment variable's name")
        expectError(p + ["  epochs: 2", "  files: [../secret.py]"], line: 5, key: "files", "paths may not leave the directory")
        expectError(p + ["  epochs: 2", "  files: [/etc/passwd]"], line: 5, key: "files", "an absolute path")
        expectError(p + ["  epochs: 2", "  workdir: /srv", "  files: [a.py]"], line: 6, key: "files", "not both")
        expectError(p + ["  epochs: 2", "  args: flag"], line: 5, key: "args", "none, flags")
        expectError(p + ["  epochs: 2", "  'bad key': 1"], line: 5, key: "bad key", "hyperparameter names")
        expectError(["name: p", "base:", "  program: []", "  epochs: 1"], line: 3, key: "program", "needs at least the executable")
        expectError(p + ["  lr: 0.1"], line: 2, key: nil, "needs 'epochs'")
        expectError(p + ["  epochs: 2", "grid: {timeout: [1, 2]}"], line: 5, key: "timeout", "fixed for the sweep: give it under base")
        expectError(p + ["  epochs: 2", "  files: [missing.py]"], line: 5, key: "files", "not a readable regular file")
        let sweep = try SweepFile.parse(
            yaml: (p + ["  epochs: 2", "  env: {OMP_NUM_THREADS: '1'}", "  model: resnet", "grid: {lr: [0.1, 0.2], depth: [1, 2]}"]).joined(separator: "\n"), source: "s.yaml")
        #expect(sweep.trials.count == 4 && sweep.trials.allSatisfy { $0.config.isProgram && $0.config.modelLabel == "resnet" })
        #expect(sweep.trials[0].config.values["env"] == .list([.string("OMP_NUM_THREADS=1")]))
        #expect(sweep.varied == ["depth", "lr"])
    }

    @Test func hugeSweepsAreRefused() {
        expectError(head + ["grid:", "  lr: {linspace: [0.1, 1, 1000]}", "  steps: {range: [1, 1000, 1]}"], line: 1, key: nil, "more than 100000 trials")
    }

    @Test func trialsHoldingTooManyValuesAreRefused() {
        // 1,000 trials of two 5,000-value lists: 10 million values to validate and hash (2,000
        // such trials took 6 s; 100,000 took minutes). Refused before any trial is built.
        let list = "[" + Array(repeating: "1.0", count: 5000).joined(separator: ", ") + "]"
        expectError(
            ["name: big", "base: {model: quadratic, curvatures: \(list), start: \(list)}", "grid: {steps: {range: [1, 1000, 1]}}"],
            line: 1, key: nil, "more than 10000000 values together", "1000 trials of up to 10004 values")
    }

    @Test func trialsWorkersCouldNotReadAreRefused() {
        // 90,000 curvatures written `9e14` (540 kB of YAML) are `900000000000000.0` in a trial's
        // JSON (1.6 MB): more than a worker parses, so the sweep is refused, not each trial later.
        let list = "[" + Array(repeating: "9e14", count: 90_000).joined(separator: ", ") + "]"
        expectError(["name: long", "base: {model: quadratic, curvatures: \(list)}"], line: 2, key: nil, "bytes of JSON", "at most \(YAMLLimits.maxBytes)")
    }

    @Test func oddInputsNeverCrash() {
        let inputs = [
            "42", "[]", "name: x", "name: x\nbase:", "name: x\nbase: {model: quadratic}\ngrid:", "name: x\nbase: {model: quadratic}\nzip:",
            "name: x\nbase: {model: quadratic}\nrandom:", "name: x\nbase: {model: quadratic}\noptimizers:", "name: x\nbase: {model: quadratic}\nzip: [[1]]",
            "name: x\nbase: {model: quadratic}\ngrid: {lr: {}}", "name: x\nbase: {model: quadratic}\ngrid: {lr: {range: 5}}",
            "name: x\nbase: {model: quadratic}\nrandom: {samples: 1, params: {lr: {randint: [1.5, 2]}}}",
            "name: x\nbase: {model: quadratic}\nrandom: {samples: 1, params: {steps: {randint: [-9223372036854775808, 9223372036854775807]}}}",
            "name: x\nbase: {model: quadratic, seed: 9223372036854775807}\nrepeats: 2",
            "name: x\nbase: {model: quadratic}\ngrid: {steps: {range: [-9223372036854775808, 9223372036854775807, 1]}}",
            "name: x\nbase: {model: quadratic}\ngrid: {lr: {range: [0.1, .inf, 0.1]}}",
            "name: x\n? [a]\n: b", "name: &a x\nbase: *a", "name: x\nbase: {model: quadratic}\nrepeats: 99999999999999999999",
        ]
        for input in inputs {
            do {
                _ = try SweepFile.parse(yaml: input, source: "odd.yaml")
            } catch is ConfigError {
            } catch {
                Issue.record("\(input): unexpected error \(error)")
            }
        }
    }

    @Test func hostileYAMLIsRefusedWithItsLine() {
        // Nesting that overflowed Yams' recursive composer (exit 139), at the line it is on.
        let deep = String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000)
        expectError(head + ["grid: {curvatures: \(deep)}"], line: 3, key: nil, "nested more than \(YAMLLimits.maxDepth) levels")
        // A billion laughs under random (9^9 aborted): refused at the alias that goes over the budget.
        let lol = "[" + Array(repeating: "lol", count: 9).joined(separator: ", ") + "]"
        let bomb = ["        - &l0 \(lol)"] + (1..<7).map { "        - &l\($0) [" + Array(repeating: "*l\($0 - 1)", count: 9).joined(separator: ", ") + "]" }
        expectError(head + ["random:", "  params:", "    curvatures:", "      choice:"] + bomb, line: 12, key: nil, "more than \(YAMLLimits.maxNodes) values")
    }

    @Test func sweepFileMustBeUTF8AndOfBoundedSize() throws {
        let path = NSTemporaryDirectory() + "sweep-\(UUID().uuidString).yaml"
        defer { try? FileManager.default.removeItem(atPath: path) }
        // Invalid UTF-8 was replaced silently ('sg\u{FFFD}d'): now an error at its line.
        #expect(FileManager.default.createFile(atPath: path, contents: Data("name: x\nbase: {model: quadratic, optimizer: sg".utf8 + [0xFF] + "d}\n".utf8)))
        let e = try #require(throws: ConfigError.self) { _ = try SweepFile.load(path: path) }
        #expect(e.location == SourceLocation(file: path, line: 2) && e.message.contains("not valid UTF-8"), "\(e)")
        // A file longer than YAMLLimits.maxBytes is refused; reading stops at the limit.
        let padding = String(repeating: "# padding\n", count: YAMLLimits.maxBytes / 10 + 1)
        #expect(FileManager.default.createFile(atPath: path, contents: Data(("name: x\nbase: {model: quadratic}\n" + padding).utf8)))
        let long = try #require(throws: ConfigError.self) { _ = try SweepFile.load(path: path) }
        #expect(long.location.file == path && long.message.contains("larger than \(YAMLLimits.maxBytes) bytes"), "\(long)")
    }

    @Test func missingFileIsAConfigError() {
        #expect(throws: ConfigError.self) { _ = try SweepFile.load(path: "/nonexistent/sweep.yaml") }
    }
}

@Suite struct SweepFilesTests {
    @Test func quickstartParsesAndValidates() throws {
        let s = try SweepFile.load(path: repositoryRoot + "/sweeps/quickstart.yaml")
        #expect(s.name == "quickstart" && s.source.hasSuffix("sweeps/quickstart.yaml") && s.text.contains("fashion"))
        #expect(s.trials.count == (2 + 2) * 2)
        #expect(Set(s.trials.map(\.branch)) == ["sgd", "adamw"])
        #expect(s.trials.allSatisfy { $0["model"] == .string("mlp") && $0["hidden"] == .list([.int(256), .int(128)]) && $0["epochs"] == .int(3) })
        #expect(s.trials.allSatisfy { $0["limit"] == nil && $0["data"] == .string("fashion-mnist") })
        #expect(s.varied == ["lr", "momentum", "optimizer", "seed"])
        for t in s.trials { try t.config.validate() }
    }

    @Test func everySweepFileParses() throws {
        // Every sweep in sweeps/ (with its `full` profile too) and every trial in examples/, within
        // the limits of YAMLLimits and TrialLimits.
        let names = try FileManager.default.contentsOfDirectory(atPath: repositoryRoot + "/sweeps").filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(names.count >= 10)
        for name in names {
            let path = repositoryRoot + "/sweeps/\(name)"
            let plain = try SweepFile.load(path: path)
            for s in [plain] + (plain.text.contains("\nprofiles:") ? [try SweepFile.load(path: path, profile: "full")] : []) {
                if let search = s.search {
                    // A search's first suggestions are valid trials.
                    for n in 0..<3 {
                        let t = search.pbt != nil ? try search.pbtInitial(member: n) : try search.suggest(number: n, history: []) { _ in false }
                        try t.config.validate()
                    }
                    continue
                }
                #expect(!s.trials.isEmpty)
                #expect(Set(s.trials.map(\.id)).count == s.trials.count)
                for t in s.trials { try t.config.validate() }
            }
        }
        for name in try FileManager.default.contentsOfDirectory(atPath: repositoryRoot + "/examples") where name.hasSuffix(".yaml") {
            let path = repositoryRoot + "/examples/\(name)"
            _ = try TrialConfig.parse(yaml: try readYAMLFile(path, what: "trial file"), source: path)
        }
        let r = try SweepFile.load(path: repositoryRoot + "/sweeps/rosenbrock.yaml")
        #expect(r.trials.allSatisfy { $0["model"] == .string("rosenbrock") && $0["steps"] == .int(500) })
        #expect(Set(r.trials.map(\.branch)) == ["sgd", "adam"])
    }
}

@Suite struct EarlyStoppingSettingsTests {
    func parse(_ text: String) throws -> Sweep { try SweepFile.parse(yaml: text, source: "s.yaml") }

    @Test func ashaSettingsAreParsedWithDefaults() throws {
        let base = "name: s\nbase: {model: quadratic}\n"
        #expect(try parse(base + "early_stopping: {rule: asha}").earlyStopping == .asha(minEpochs: 1, reductionFactor: 3))
        #expect(try parse(base + "early_stopping: {rule: asha, min_epochs: 2, reduction_factor: 4}").earlyStopping == .asha(minEpochs: 2, reductionFactor: 4))
        #expect(try parse(base + "early_stopping: {rule: median}").earlyStopping == .median(graceEpochs: 1, minTrials: 3))
    }

    @Test func wrongAshaSettingsSayWhereAndWhy() {
        let base = "name: s\nbase: {model: quadratic}\n"
        let cases = [
            ("early_stopping: {rule: asha, grace_epochs: 2}", "s.yaml:3: 'grace_epochs': does not apply to rule asha"),
            ("early_stopping: {rule: asha, reduction_factor: 1}", "s.yaml:3: 'reduction_factor': must be an integer of at least 2"),
            ("early_stopping: {rule: hyperband}", "must be median or asha"),
            ("early_stopping: {min_epochs: 2}", "needs a rule"),
        ]
        for (line, expected) in cases {
            #expect(throws: (any Error).self) { try parse(base + line) }
            do { _ = try parse(base + line) } catch { #expect("\(error)".contains(expected), "\(error)") }
        }
    }
}

@Suite struct LimitsDocumentationTests {
    /// The tables of limits in docs/sweep-files.md give each constant's value as its definition writes it.
    @Test func docsStateEachLimitAsDefined() throws {
        let page = try String(contentsOfFile: repositoryRoot + "/docs/sweep-files.md", encoding: .utf8)
        var checked = 0
        for (prefix, file) in [("YAMLLimits.", "SweepCore/YAML.swift"), ("TrialLimits.", "Learning/Config/TrialLimits.swift"), ("", "Sweeps/Spaces.swift")] {
            let source = try String(contentsOfFile: repositoryRoot + "/Sources/\(file)", encoding: .utf8)
            for line in source.split(separator: "\n") where line.contains("let max") && line.contains(" = ") {
                let definition = line[try #require(line.range(of: "let max")).lowerBound...].dropFirst(4).split(separator: " = ", maxSplits: 1)
                let (name, value) = (definition[0], definition[1])
                #expect(page.contains("| `\(prefix)\(name)` | `\(value)` |"), "docs/sweep-files.md should state \(prefix)\(name) = \(value)")
                checked += 1
            }
        }
        #expect(checked == 12)
    }
}
