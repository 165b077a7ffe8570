import Learning
import Linalg

/// A sweep's `search:` section as parsed (before the branches are known).
struct SearchSettings: Sendable {
    var line: Int?
    var algorithm = Search.Algorithm.random
    var budget = 0
    var parallel: Int?
    var tpe = TPE.Settings()
    var gp = GP.Settings()
    /// pbt: population, interval, quantile, resample probability (the length comes from the trials).
    var pbt: (population: Int, interval: Int, quantile: Double, resample: Double)?
}

/// An adaptive search: instead of a list expanded up front, the coordinator asks for trials one
/// at a time (`suggest`), each from what the trials before it found. The sweep file's
/// distributions (`search.params`, and each optimizer entry's own `search.params`) span the
/// space; with several optimizer entries the entry is itself a choice, and an entry's parameters
/// are sampled and modelled only among that entry's trials.
///
/// Suggestion `n` depends only on the sweep's seed, `n` and the trials it is shown (with their
/// outcomes), so a restarted coordinator that replays the same history continues the same search.
///
/// `algorithm` is `random` (independent draws), `tpe` (`TPE`; settings `startup_trials`, default
/// 10, and `candidates`, default 24) or `gp` (`GP`: a Gaussian process with a Matérn 5/2 kernel
/// and expected improvement; setting `startup_trials`, default 10 — random draws until that many
/// trials are complete). GP suits budgets up to a few hundred trials on a handful of continuous
/// parameters; each suggestion refits the model, about a second at 500 trials.
public struct Search: Sendable {
    public enum Algorithm: String, CaseIterable, Sendable {
        /// Independent draws from the distributions.
        case random
        /// The tree-structured Parzen estimator (`TPE`).
        case tpe
        /// Gaussian-process Bayesian optimisation: Matérn 5/2, expected improvement (`GP`).
        case gp
        /// Population-based training (`PopulationBasedTraining`).
        case pbt
    }

    /// The most trials one search may run.
    public static let maxBudget = 10_000

    public let algorithm: Algorithm
    /// Trials to run in all.
    public let budget: Int
    /// Trials in flight at once; nil: as many as the workers have free slots.
    public let parallel: Int?
    let tpe: TPE.Settings
    let gp: GP.Settings
    /// Population-based training's settings (`algorithm: pbt`).
    public let pbt: PopulationBasedTraining?
    public let space: SearchSpace
    let seed: UInt64
    let maximize: Bool
    let source: String
    /// The keys that differ between trials (every sampled key, and `optimizer` with several entries).
    public let varied: [String]

    /// What became of a trial the search suggested earlier.
    public enum Outcome: Sendable, Equatable {
        /// Finished with the objective's final value.
        case complete(Double)
        /// Stopped early (median rule) at `epoch` with the objective's value there.
        case pruned(epoch: Int, value: Double)
        case running
        /// No value (the attempts failed): not modelled.
        case failed
    }

    public struct Record: Sendable {
        public var trial: Trial
        public var outcome: Outcome
        public init(trial: Trial, outcome: Outcome) {
            self.trial = trial
            self.outcome = outcome
        }
    }

    public enum SuggestionError: Error, CustomStringConvertible {
        /// Every draw repeated a configuration already in the sweep: the space is used up.
        case exhausted(Int)
        /// A draw made a configuration that does not validate (a key's range, a combination).
        case invalid(String)

        public var description: String {
            switch self {
            case .exhausted(let n): "the search space is used up: \(n) draws in a row repeated configurations already in the sweep"
            case .invalid(let why): why
            }
        }
    }

    /// Finished trials the model needs before it is used (random draws until then).
    public var startupTrials: Int {
        switch algorithm {
        case .tpe: tpe.startupTrials
        case .gp: gp.startupTrials
        case .random, .pbt: 1
        }
    }

    /// What `sweep-coordinator plan` prints: the algorithm, the budget and the space.
    public var plan: String {
        var lines = ["search: \(algorithm.rawValue), \(budget) trials suggested as the sweep runs, \(parallel.map { "at most \($0)" } ?? "as many as the workers' free slots") at once"]
        if let pbt {
            lines = [
                "search: pbt, a population of \(pbt.population) in \(pbt.generations) generations of \(pbt.interval) \(pbt.lengthKey) (\(budget) trials); the bottom \(pbt.quantileCount) exploit the top \(pbt.quantileCount) and explore (resample probability \(pbt.resampleProbability))"
            ]
        }
        if !space.shared.isEmpty { lines.append("  " + space.shared.map { "\($0.key): \($0.distribution)" }.joined(separator: ", ")) }
        for branch in space.branches where space.branches.count > 1 || !branch.params.isEmpty {
            lines.append("  \(branch.name)" + (branch.params.isEmpty ? "" : ": " + branch.params.map { "\($0.key): \($0.distribution)" }.joined(separator: ", ")))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Suggestion number `n` (from 0) given the trials so far. `isTaken` tells a configuration
    /// already in the sweep (by trial id): such draws are repeated with a fresh stream, so a
    /// configuration never runs twice. GP fits its models once per call; after 8 of its suggestions
    /// in a row were taken (a small discrete space), the further attempts are random draws.
    public func suggest(number n: Int, history: [Record], isTaken: (String) -> Bool) throws -> Trial {
        let attempts = 64
        let planner = algorithm == .gp ? GPPlanner(space: space, history: history, maximize: maximize, settings: gp) : nil
        for k in 0..<attempts {
            var rng = Xoshiro256(seed: seed, stream: "search/\(algorithm.rawValue)/\(n)/\(k)")
            let point: SearchSpace.Point
            switch algorithm {
            case .random: point = space.draw(&rng)
            case .tpe: point = tpeSuggestion(history: history, &rng)
            case .gp: point = k < 8 && !planner!.isStarting ? planner!.suggest(&rng) : space.draw(&rng)
            case .pbt: throw SuggestionError.invalid("population-based training suggests whole generations (pbtInitial, pbtNextGeneration)")
            }
            let trial = try space.trial(point, index: n, varied: varied, source: source)
            if !isTaken(trial.id) { return trial }
        }
        throw SuggestionError.exhausted(attempts)
    }

    /// A trial the coordinator journaled earlier (its branch and canonical JSON), checked as any
    /// sweep file is: it must validate and belong to this search's space.
    public func trial(branch: String, configJSON: String, index: Int) throws -> Trial {
        guard let b = space.branches.firstIndex(where: { $0.name == branch }) else {
            throw SuggestionError.invalid("no optimizer entry '\(branch.prefix(64))' in this search")
        }
        let config = try TrialConfig.parse(yaml: configJSON, source: "\(source) (journaled trial \(index))")
        try config.validate()
        guard let point = space.point(of: config, branch: b) else {
            throw SuggestionError.invalid("journaled trial \(index) is not a point of this search's space")
        }
        let trial = try space.trial(point, index: index, varied: varied, source: source)
        guard trial.config.canonicalJSON == config.canonicalJSON else {
            throw SuggestionError.invalid("journaled trial \(index) differs from the configuration its point gives")
        }
        return trial
    }

    func tpeSuggestion(history: [Record], _ rng: inout Xoshiro256) -> SearchSpace.Point {
        let considered = history.filter { $0.outcome != .failed }.sorted { $0.trial.index < $1.trial.index }
        let finished = considered.filter { $0.outcome != .running }
        guard finished.count >= tpe.startupTrials, !finished.isEmpty else { return space.draw(&rng) }
        let (below, above) = Self.split(considered, below: TPE.gamma(finished.count), maximize: maximize)
        let belowPoints = below.compactMap { r in space.branches.firstIndex { $0.name == r.trial.branch }.flatMap { space.point(of: r.trial.config, branch: $0) } }
        let abovePoints = above.compactMap { r in space.branches.firstIndex { $0.name == r.trial.branch }.flatMap { space.point(of: r.trial.config, branch: $0) } }
        var point = SearchSpace.Point(branch: 0, values: [:])
        // The groups in a fixed order: the entry choice with the shared parameters, then each entry's own.
        for group in space.groups {
            let dims = group.map(\.dimension)
            let l = TPE.ParzenEstimator(observations: belowPoints.compactMap { space.coordinates($0, group) }, dimensions: dims, settings: tpe)
            let g = TPE.ParzenEstimator(observations: abovePoints.compactMap { space.coordinates($0, group) }, dimensions: dims, settings: tpe)
            let candidates = l.sample(tpe.candidates, &rng)
            var best = candidates[0], bestScore = -Double.infinity
            for c in candidates {
                let score = l.logDensity(c) - g.logDensity(c)
                if score > bestScore {
                    best = c
                    bestScore = score
                }
            }
            space.assign(best, group, to: &point)
        }
        return point
    }

    /// The good ("below") and other trials, each in trial order: complete trials by value, then
    /// pruned ones (the furthest first, then by value), then complete ones without a finite value
    /// (divergences) fill the `below` best; running trials are always above (the constant liar).
    public static func split(_ records: [Record], below nBelow: Int, maximize: Bool) -> (below: [Record], above: [Record]) {
        var complete: [(record: Record, key: Double)] = [], pruned: [(record: Record, epoch: Int, key: Double)] = []
        var worst: [Record] = [], running: [Record] = []
        for r in records {
            switch r.outcome {
            case .complete(let v) where v.isFinite: complete.append((r, maximize ? -v : v))
            case .complete: worst.append(r)
            case .pruned(let epoch, let v): pruned.append((r, epoch, v.isNaN ? .infinity : (maximize ? -v : v)))
            case .running: running.append(r)
            case .failed: continue
            }
        }
        complete.sort { ($0.key, $0.record.trial.index) < ($1.key, $1.record.trial.index) }
        pruned.sort { (-$0.epoch, $0.key, $0.record.trial.index) < (-$1.epoch, $1.key, $1.record.trial.index) }
        let ranked = complete.map(\.record) + pruned.map(\.record) + worst
        let cut = min(nBelow, ranked.count)
        let byIndex: (Record, Record) -> Bool = { $0.trial.index < $1.trial.index }
        return (Array(ranked.prefix(cut)).sorted(by: byIndex), (Array(ranked.dropFirst(cut)) + running).sorted(by: byIndex))
    }
}

/// The space a search samples: its optimizer entries (branches) with their fixed values, the
/// shared parameters and each entry's own.
public struct SearchSpace: Sendable {
    struct Branch: Sendable {
        let name: String
        let line: Int?
        /// The fixed values (top-level base, the entry's base, its optimizer) and where they were written.
        let values: [String: ConfigValue]
        let locations: [String: SourceLocation]
        /// The entry's own parameters, sorted by key.
        let params: [RandomParam]
    }

    /// One sampled dimension: the entry choice, a shared parameter, or an entry's own.
    struct Coordinate: Sendable {
        enum Kind: Sendable {
            case branch
            case shared(RandomParam)
            case own(branch: Int, RandomParam)
        }
        let kind: Kind
        let dimension: TPE.Dimension
    }

    /// A point: the entry and each sampled key's value.
    struct Point: Sendable, Equatable {
        var branch: Int
        var values: [String: ConfigValue]
    }

    let branches: [Branch]
    /// Shared parameters (top-level `search.params`), sorted by key.
    let shared: [RandomParam]
    /// Every sampled key, sorted.
    public var keys: [String] { Set(shared.map(\.key) + branches.flatMap { $0.params.map(\.key) }).sorted() }
    let source: String

    /// The groups TPE models jointly: the entry choice (with several entries) and the shared
    /// parameters, then each entry's own parameters.
    var groups: [[Coordinate]] {
        var first: [Coordinate] = branches.count > 1 ? [Coordinate(kind: .branch, dimension: .categorical(count: branches.count))] : []
        first += shared.map { Coordinate(kind: .shared($0), dimension: $0.distribution.dimension) }
        var out = first.isEmpty ? [] : [first]
        for (b, branch) in branches.enumerated() where !branch.params.isEmpty {
            out.append(branch.params.map { Coordinate(kind: .own(branch: b, $0), dimension: $0.distribution.dimension) })
        }
        return out
    }

    /// An independent draw: the entry uniformly, then its keys in sorted order.
    func draw(_ rng: inout Xoshiro256) -> Point {
        let b = branches.count > 1 ? Int(uniformBelow(UInt64(branches.count), &rng)) : 0
        var values: [String: ConfigValue] = [:]
        for p in (shared + branches[b].params).sorted(by: { $0.key < $1.key }) { values[p.key] = p.distribution.draw(&rng) }
        return Point(branch: b, values: values)
    }

    /// The point a configuration of entry `b` is, or nil if a sampled key is missing or outside
    /// its distribution.
    func point(of config: TrialConfig, branch b: Int) -> Point? {
        var values: [String: ConfigValue] = [:]
        for p in shared + branches[b].params {
            guard let v = config.values[p.key], p.distribution.coordinate(of: v) != nil else { return nil }
            values[p.key] = v
        }
        return Point(branch: b, values: values)
    }

    /// A point's coordinates in a group, or nil when the point has no part in it (another entry's).
    func coordinates(_ point: Point, _ group: [Coordinate]) -> [Double]? {
        var out: [Double] = []
        for c in group {
            switch c.kind {
            case .branch: out.append(Double(point.branch))
            case .shared(let p):
                guard let v = point.values[p.key], let x = p.distribution.coordinate(of: v) else { return nil }
                out.append(x)
            case .own(let b, let p):
                guard point.branch == b, let v = point.values[p.key], let x = p.distribution.coordinate(of: v) else { return nil }
                out.append(x)
            }
        }
        return out
    }

    /// Sets a group's sampled coordinates on a point (an entry's own keys only if it is the
    /// point's entry: groups are assigned in order, the entry choice first).
    func assign(_ x: [Double], _ group: [Coordinate], to point: inout Point) {
        for (c, v) in zip(group, x) {
            switch c.kind {
            case .branch: point.branch = Int(v)
            case .shared(let p): point.values[p.key] = p.distribution.value(at: v)
            case .own(let b, let p): if b == point.branch { point.values[p.key] = p.distribution.value(at: v) }
            }
        }
    }

    /// The trial a point makes: its entry's fixed values with the sampled ones, validated.
    func trial(_ point: Point, index: Int, varied: [String], source: String) throws -> Trial {
        let branch = branches[point.branch]
        var values = branch.values
        var locations = branch.locations
        for p in shared + branch.params {
            guard let v = point.values[p.key] else { continue }
            values[p.key] = v
            locations[p.key] = SourceLocation(file: source, line: p.line)
        }
        let config = TrialConfig(values: values, locations: locations, source: source)
        try config.validate()
        return Trial(id: TrialID.of(config), index: index, branch: branch.name, config: config, varied: varied)
    }
}

extension Distribution {
    /// The dimension TPE models this distribution as.
    var dimension: TPE.Dimension {
        switch self {
        case .uniform(let lo, let hi): .continuous(low: lo, high: hi, log: false)
        case .loguniform(let lo, let hi): .continuous(low: lo, high: hi, log: true)
        case .randint(let lo, let hi): .integer(low: Double(lo), high: Double(hi))
        case .choice(let items): .categorical(count: items.count)
        }
    }

    /// A value's coordinate (a choice's index), or nil if the distribution cannot give it.
    func coordinate(of v: ConfigValue) -> Double? {
        switch self {
        case .uniform(let lo, let hi), .loguniform(let lo, let hi):
            guard let x = v.asDouble, x >= lo, x <= hi else { return nil }
            return x
        case .randint(let lo, let hi):
            guard case .int(let i) = v, i >= lo, i <= hi else { return nil }
            return Double(i)
        case .choice(let items):
            return items.firstIndex(of: v).map(Double.init)
        }
    }

    /// The value at a coordinate.
    func value(at x: Double) -> ConfigValue {
        switch self {
        case .uniform, .loguniform: .double(x)
        case .randint: .int(Int(x.rounded()))
        case .choice(let items): items[min(max(Int(x), 0), items.count - 1)]
        }
    }
}

extension SweepSpec {
    /// A search sweep: its space checked (each key sampled in one place, no grid, zip, random or
    /// seeds beside it) and every distribution's ends validated in every entry, so a draw can only
    /// fail where keys constrain each other.
    func searchSweep(_ settings: SearchSettings, text: String) throws -> Sweep {
        let hasBranches = branches != nil
        let branchList = branches ?? [Branch(name: "main", line: nil, section: Section())]
        for (what, section, line) in [("the top level", top, settings.line)] + branchList.map({ ("optimizer entry '\($0.name)'", $0.section, $0.line) }) {
            if let axis = section.grid.first {
                throw error(axis.line, axis.key, "a search samples its keys: \(what) has a grid too (give the key a distribution under search.params, e.g. {choice: [...]})")
            }
            if let group = section.zips.first { throw error(group.line, "zip", "a search samples its keys: \(what) has a zip too") }
            if section.randomLine != nil { throw error(section.randomLine, "random", "a search samples its keys: \(what) has a random section too (put its params under search.params)") }
            _ = line
        }
        if let seeds { throw error(seeds.line, "seeds", "seeds and repeats are not supported with a search yet (each suggestion is one trial); set 'seed' in base") }

        let shared = top.searchParams.sorted { $0.key < $1.key }
        var spaceBranches: [SearchSpace.Branch] = []
        var sampled = Set(shared.map(\.key))
        for branch in branchList {
            var values: [String: ConfigValue] = [:]
            var locations: [String: SourceLocation] = [:]
            for a in top.base + branch.section.base {
                if hasBranches && a.key == "optimizer" { throw error(a.line, a.key, "the optimizer is set by the entries under 'optimizers'; remove it from base") }
                values[a.key] = a.value
                locations[a.key] = location(a.line)
            }
            if hasBranches {
                values["optimizer"] = .string(branch.optimizer)
                locations["optimizer"] = location(branch.line)
            }
            for p in shared + branch.section.searchParams where hasBranches && p.key == "optimizer" {
                throw error(p.line, p.key, "the optimizer is chosen among the entries under 'optimizers'; remove it from search.params")
            }
            for p in branch.section.searchParams where shared.contains(where: { $0.key == p.key }) {
                throw error(p.line, p.key, "is already sampled by the top-level search.params; a key may be sampled in one place only")
            }
            sampled.formUnion(branch.section.searchParams.map(\.key))
            spaceBranches.append(
                SearchSpace.Branch(name: branch.name, line: branch.line, values: values, locations: locations, params: branch.section.searchParams.sorted { $0.key < $1.key }))
        }
        guard !sampled.isEmpty else { throw error(settings.line, "params", "a search needs at least one key to sample under search.params") }
        let space = SearchSpace(branches: spaceBranches, shared: shared, source: source)
        let varied = (hasBranches && branchList.count > 1 ? sampled.union(["optimizer"]) : sampled).sorted()
        // Each distribution's ends (each choice) with the other keys at their lows, in every entry.
        for (b, branch) in spaceBranches.enumerated() {
            let params = shared + branch.params
            let low = Dictionary(uniqueKeysWithValues: params.map { ($0.key, $0.distribution.ends[0]) })
            for p in params {
                for end in p.distribution.ends {
                    var point = SearchSpace.Point(branch: b, values: low)
                    point.values[p.key] = end
                    do {
                        _ = try space.trial(point, index: 0, varied: varied, source: source)
                    } catch var e as ConfigError {
                        e.location = location(p.line)
                        e.message += " (at \(p.key) = \(end)\(params.count > 1 ? ", the other sampled keys at their lows" : "")\(hasBranches ? ", in optimizer entry '\(branch.name)'" : ""))"
                        throw e
                    }
                }
            }
        }
        var pbt: PopulationBasedTraining?
        if let p = settings.pbt {
            guard branchList.count == 1 else {
                throw error(branches?.dropFirst().first?.line, "optimizers", "population-based training runs one optimizer entry (its members exchange checkpoints)")
            }
            if earlyStopping != nil { throw error(settings.line, "early_stopping", "population-based training does its own stopping and copying; remove early_stopping") }
            var rng = Xoshiro256(seed: seed, stream: "check")
            let sample = try space.trial(space.draw(&rng), index: 0, varied: varied, source: source).config
            let length = try sample.length()
            let lengthKey = sample.isToyObjective ? "steps" : "epochs"
            guard p.interval < length else {
                throw error(settings.line, "interval", "must be less than the trials' \(lengthKey) (\(length)) for members to exchange anything")
            }
            pbt = PopulationBasedTraining(population: p.population, interval: p.interval, quantile: p.quantile, resampleProbability: p.resample, length: length, lengthKey: lengthKey)
            guard p.population * pbt!.generations <= Search.maxBudget else {
                throw error(settings.line, "population", "population × generations = \(p.population * pbt!.generations) trials; at most \(Search.maxBudget)")
            }
        }
        var sweep = Sweep(name: name, description: description, seed: seed, objective: objective, text: text, source: source, trials: [])
        sweep.checkpoints = checkpoints
        sweep.earlyStopping = earlyStopping
        sweep.search = Search(
            algorithm: settings.algorithm, budget: pbt.map { $0.population * $0.generations } ?? settings.budget, parallel: settings.parallel, tpe: settings.tpe,
            gp: settings.gp, pbt: pbt, space: space, seed: seed, maximize: objective.maximize, source: source, varied: varied)
        return sweep
    }
}

extension Distribution {
    /// The values a search checks before it starts: both ends, or every choice.
    var ends: [ConfigValue] {
        switch self {
        case .uniform(let lo, let hi), .loguniform(let lo, let hi): [.double(lo), .double(hi)]
        case .randint(let lo, let hi): [.int(lo), .int(hi)]
        case .choice(let items): items
        }
    }
}
