import Learning
import Linalg

extension SweepSpec {
    func location(_ line: Int?) -> SourceLocation { SourceLocation(file: source, line: line) }

    func error(_ line: Int?, _ key: String?, _ message: String) -> ConfigError {
        ConfigError(location: location(line), key: key, message: message)
    }

    /// Expands every branch into validated trials, removes duplicates and numbers them.
    func expand(text: String) throws -> Sweep {
        if let search { return try searchSweep(search, text: text) }
        let branchList = branches ?? [Branch(name: "main", line: nil, section: Section())]
        var configs: [(branch: String, config: TrialConfig)] = []
        var seen = Set<String>()
        var total = 0
        var values = 0
        for branch in branchList {
            let plan = try self.plan(branch)
            let (sum, overflow) = total.addingReportingOverflow(plan.count)
            guard !overflow, sum <= maxTrials else {
                throw error(branch.line ?? rootLine, nil, "the sweep expands to more than \(maxTrials) trials; make the grid or the number of samples smaller")
            }
            total = sum
            // Every trial's configuration is validated and identified: bound the values they hold together.
            let (planValues, tooMany) = plan.count.multipliedReportingOverflow(by: plan.valuesPerTrial)
            let (allValues, tooManyInAll) = values.addingReportingOverflow(planValues)
            guard !tooMany, !tooManyInAll, allValues <= maxSweepValues else {
                throw error(
                    branch.line ?? rootLine, nil,
                    "the sweep's trials would hold more than \(maxSweepValues) values together (\(plan.count) trials of up to \(plan.valuesPerTrial) values each); make the lists or the sweep smaller")
            }
            values = allValues
            try plan.forEach { config in
                do {
                    try config.validate()
                } catch var e as ConfigError {
                    if e.location.line == nil {
                        e.location = location(branch.section.baseLine ?? top.baseLine ?? branch.line ?? rootLine)
                    }
                    e.location.file = source
                    if branches != nil { e.message += " (in the branch of optimizer '\(branch.name)')" }
                    throw e
                }
                // Workers receive it as JSON and parse it as YAML: within what they accept.
                let json = config.canonicalJSON
                guard json.utf8.count <= YAMLLimits.maxBytes else {
                    throw error(
                        branch.section.baseLine ?? top.baseLine ?? branch.line ?? rootLine, nil,
                        "a trial's configuration would be \(json.utf8.count) bytes of JSON; workers accept at most \(YAMLLimits.maxBytes) (make its lists shorter)")
                }
                if seen.insert(json).inserted { configs.append((branch.name, config)) }
            }
        }

        var keys = Set<String>()
        for c in configs { keys.formUnion(c.config.values.keys) }
        let varied = keys.filter { key in
            let first = configs.first?.config.values[key]
            return configs.contains { $0.config.values[key] != first }
        }.sorted()
        let trials = configs.enumerated().map { i, c in
            Trial(id: TrialID.of(c.config), index: i, branch: c.branch, config: c.config, varied: varied)
        }
        var sweep = Sweep(name: name, description: description, seed: seed, objective: objective, text: text, source: source, trials: trials)
        sweep.checkpoints = checkpoints
        sweep.earlyStopping = earlyStopping
        return sweep
    }

    /// A branch's trials before validation: fixed values and the dimensions of the product.
    struct Plan {
        let source: String
        let values: [String: ConfigValue]
        let locations: [String: SourceLocation]
        /// Each dimension is a list of rows; a row assigns one or more keys.
        let dimensions: [[[Assignment]]]

        var count: Int {
            var n = 1
            for d in dimensions {
                let (m, overflow) = n.multipliedReportingOverflow(by: d.count)
                if overflow { return Int.max }
                n = m
            }
            return n
        }

        /// The most values one trial's configuration can hold (a list counts itself and its items):
        /// the fixed ones, and the largest row of each dimension.
        var valuesPerTrial: Int {
            values.values.reduce(0) { $0 + $1.valueCount }
                + dimensions.reduce(0) { sum, rows in
                    sum + (rows.map { $0.reduce(0) { $0 + $1.value.valueCount } }.max() ?? 0)
                }
        }

        /// Calls `body` with every combination, the last dimension varying fastest.
        func forEach(_ body: (TrialConfig) throws -> Void) throws {
            if dimensions.contains(where: \.isEmpty) { return }
            var counters = Array(repeating: 0, count: dimensions.count)
            while true {
                var values = self.values
                var locations = self.locations
                for (d, i) in zip(dimensions, counters) {
                    for a in d[i] {
                        values[a.key] = a.value
                        locations[a.key] = SourceLocation(file: source, line: a.line)
                    }
                }
                try body(TrialConfig(values: values, locations: locations, source: source))
                var k = dimensions.count - 1
                while k >= 0 {
                    counters[k] += 1
                    if counters[k] < dimensions[k].count { break }
                    counters[k] = 0
                    k -= 1
                }
                if k < 0 { return }
            }
        }
    }

    func plan(_ branch: Branch) throws -> Plan {
        let section = branch.section
        let hasBranches = branches != nil

        // Fixed values: the top-level base, the branch's base over it, the branch's optimizer.
        var values: [String: ConfigValue] = [:]
        var locations: [String: SourceLocation] = [:]
        for a in top.base + section.base {
            if hasBranches && a.key == "optimizer" {
                throw error(a.line, a.key, "the optimizer is set by the entries under 'optimizers'; remove it from base")
            }
            if a.key == "seed", case .list? = seeds {
                throw error(a.line, a.key, "'seeds' sets the seed; remove it from base (with 'repeats', base's seed is the first of the seeds)")
            }
            values[a.key] = a.value
            locations[a.key] = location(a.line)
        }
        if hasBranches {
            values["optimizer"] = .string(branch.optimizer)
            locations["optimizer"] = location(branch.line)
        }

        // Each key is varied in one place only.
        var claimed: [String: (what: String, line: Int?)] = [:]
        func claim(_ key: String, _ what: String, _ line: Int?) throws {
            if let prior = claimed[key] {
                throw error(line, key, "is already varied by \(prior.what)\(prior.line.map { " (line \($0))" } ?? ""); a key may be varied in one place only")
            }
            if hasBranches && key == "optimizer" {
                throw error(line, key, "the optimizer is set by the entries under 'optimizers'; remove it from \(what)")
            }
            if key == "seed" && seeds != nil {
                throw error(line, key, "the seed is set by 'seeds'/'repeats'; remove it from \(what)")
            }
            claimed[key] = (what, line)
        }
        let topName = hasBranches ? "the top-level " : "the "
        let branchName = "the '\(branch.name)' "
        for a in top.grid { try claim(a.key, topName + "grid", a.line) }
        for a in section.grid { try claim(a.key, branchName + "grid", a.line) }
        for g in top.zips { for a in g.axes { try claim(a.key, topName + "zip", a.line) } }
        for g in section.zips { for a in g.axes { try claim(a.key, branchName + "zip", a.line) } }
        for p in top.params { try claim(p.key, topName + "random params", p.line) }
        for p in section.params { try claim(p.key, branchName + "random params", p.line) }

        var dimensions: [[[Assignment]]] = []
        for a in top.grid + section.grid {
            dimensions.append(a.values.map { [Assignment(key: a.key, value: $0, line: a.line)] })
        }
        for g in top.zips + section.zips {
            dimensions.append((0..<g.count).map { i in g.axes.map { Assignment(key: $0.key, value: $0.values[i], line: $0.line) } })
        }

        // Random samples: sample i of the branch draws the params in sorted key order from its own stream.
        let params = (top.params + section.params).sorted { $0.key < $1.key }
        let samples = section.samples ?? top.samples
        if !params.isEmpty {
            guard let samples else {
                let line = section.params.isEmpty ? top.randomLine : section.randomLine
                throw error(line, "samples", "random needs 'samples' (the number of draws, at least 1)")
            }
            guard samples.count <= maxTrials else {
                throw error(samples.line, "samples", "at most \(maxTrials) samples are allowed, got \(samples.count)")
            }
            dimensions.append(
                (0..<samples.count).map { i in
                    var rng = Xoshiro256(seed: seed, stream: "random/\(branch.name)/\(i)")
                    return params.map { Assignment(key: $0.key, value: $0.distribution.draw(&rng), line: $0.line) }
                })
        }
        // Samples without params would be identical draws: one is enough (duplicates collapse anyway).

        switch seeds {
        case .list(let list, let line):
            dimensions.append(list.map { [Assignment(key: "seed", value: .int($0), line: line)] })
        case .repeats(let n, let line):
            var first = 0
            if let v = values["seed"] {
                guard case .int(let s) = v else {
                    throw error(locations["seed"]?.line, "seed", "expected an integer, got \(v.typeName) \(v)")
                }
                first = s
            }
            guard first <= Int.max - n else { throw error(line, "repeats", "the seeds would overflow") }
            dimensions.append((0..<n).map { [Assignment(key: "seed", value: .int(first + $0), line: line)] })
        case nil:
            break
        }
        return Plan(source: source, values: values, locations: locations, dimensions: dimensions)
    }
}

extension ConfigValue {
    /// The value's size: 1, plus its items' for a list.
    var valueCount: Int {
        guard case .list(let items) = self else { return 1 }
        return items.reduce(1) { $0 + $1.valueCount }
    }
}
