import Learning
import Linalg

/// Population-based training (Jaderberg et al., "Population Based Training of Neural Networks",
/// 2017), synchronous: a population of `population` members trains in generations of `interval`
/// epochs (steps for toy objectives). When every member has finished a generation, the members
/// are ranked by the objective at its end; each member in the bottom `quantile` (and every member
/// without a usable result) **exploits** a member drawn from the top `quantile` — it continues
/// from that member's checkpoint (parameters, full optimizer state, schedule and random streams)
/// — and **explores**: each searched key is redrawn from its distribution with probability
/// `resample_probability`, else multiplied by 0.8 or 1.2 (an integer rounded, a choice moved to a
/// neighbouring value), kept within its distribution. The others continue from their own
/// checkpoint with their own values.
///
/// Each member's generation is a trial of its own: its configuration (the member's values, and
/// its length up to the generation's end) and a lineage (member, generation, parent trial and
/// the parent's epoch). Decisions depend only on the sweep's seed, the generation and the
/// results, so a sweep is reproducible whatever the timing, and restartable.
public struct PopulationBasedTraining: Sendable, Equatable {
    public let population: Int
    public let interval: Int
    public let quantile: Double
    public let resampleProbability: Double
    /// The trials' full length (`epochs`, or `steps` for toy objectives) and its key.
    public let length: Int
    public let lengthKey: String

    public var generations: Int { (length + interval - 1) / interval }
    /// The epoch at which generation g ends.
    public func end(of generation: Int) -> Int { min((generation + 1) * interval, length) }
    /// Members exploited (and exploiting) per generation: ⌈population · quantile⌉, at most half.
    public var quantileCount: Int { min(Int((Double(population) * quantile).rounded(.up)), population / 2) }
}

extension Search {
    /// Generation 0: member m's values drawn from the distributions.
    public func pbtInitial(member m: Int) throws -> Trial {
        var rng = Xoshiro256(seed: seed, stream: "search/pbt/initial/\(m)")
        return try pbtTrial(space.draw(&rng), member: m, generation: 0, parent: nil, exploited: false)
    }

    /// The next generation from each member's last trial (in member order), what it achieved and
    /// whether its checkpoint is stored; nil when no member has a usable result.
    public func pbtNextGeneration(_ last: [Trial], outcomes: [Outcome], checkpointed: [Bool]) throws -> [Trial]? {
        guard let pbt, last.count == pbt.population, let generation = last.first?.lineage?.generation else { return nil }
        let usable: [Int] = last.indices.filter { m in
            guard checkpointed[m], case .complete(let v) = outcomes[m], v.isFinite else { return false }
            return true
        }
        guard !usable.isEmpty else { return nil }
        func value(_ m: Int) -> Double {
            guard case .complete(let v) = outcomes[m] else { return .nan }
            return maximize ? -v : v
        }
        let ranked = usable.sorted { (value($0), $0) < (value($1), $1) }
        let k = max(pbt.quantileCount, 0)
        let top = Array(ranked.prefix(max(k, 1)))
        let bottom = Set(ranked.suffix(k)).union(last.indices.filter { !usable.contains($0) }).subtracting(top)
        return try last.indices.map { m in
            guard bottom.contains(m) else {
                return try pbtTrial(
                    space.point(of: last[m].config, branch: 0)!, member: m, generation: generation + 1, parent: last[m], exploited: false)
            }
            var rng = Xoshiro256(seed: seed, stream: "search/pbt/exploit/\(generation + 1)/\(m)")
            let donor = top[Int(uniformBelow(UInt64(top.count), &rng))]
            let point = explore(space.point(of: last[donor].config, branch: 0)!, &rng, probability: pbt.resampleProbability)
            return try pbtTrial(point, member: m, generation: generation + 1, parent: last[donor], exploited: true)
        }
    }

    /// A member's trial of a generation: the point's configuration up to the generation's end,
    /// with an id told apart by member and generation.
    func pbtTrial(_ point: SearchSpace.Point, member m: Int, generation g: Int, parent: Trial?, exploited: Bool) throws -> Trial {
        guard let pbt else { throw SuggestionError.invalid("not a population-based search") }
        let base = try space.trial(point, index: 0, varied: varied, source: source)
        var values = base.config.values
        values[pbt.lengthKey] = .int(pbt.end(of: g))
        let config = TrialConfig(values: values, locations: base.config.locations, source: source)
        try config.validate()
        let lineage = TrialLineage(member: m, generation: g, parent: parent?.id, parentEpoch: parent.map { _ in pbt.end(of: g - 1) } ?? 0, exploited: exploited)
        return Trial(
            id: TrialID.of(config, salt: "pbt/\(m)/\(g)"), index: g * pbt.population + m, branch: base.branch, config: config, varied: varied, lineage: lineage)
    }

    /// A journaled trial of population-based training, checked against the search: its index
    /// gives its member and generation, its parent must be the previous generation's.
    public func pbtTrial(configJSON: String, index: Int, parent: Trial?, exploited: Bool) throws -> Trial {
        guard let pbt else { throw SuggestionError.invalid("not a population-based search") }
        let (g, m) = (index / pbt.population, index % pbt.population)
        guard (g == 0) == (parent == nil), parent.map({ $0.index / pbt.population == g - 1 }) ?? true else {
            throw SuggestionError.invalid("journaled trial \(index): its parent is not a trial of the previous generation")
        }
        let config = try TrialConfig.parse(yaml: configJSON, source: "\(source) (journaled trial \(index))")
        guard let point = space.point(of: config, branch: 0) else { throw SuggestionError.invalid("journaled trial \(index) is not a point of this search's space") }
        let trial = try pbtTrial(point, member: m, generation: g, parent: parent, exploited: exploited)
        guard trial.config.canonicalJSON == config.canonicalJSON else {
            throw SuggestionError.invalid("journaled trial \(index) differs from the configuration its point gives")
        }
        return trial
    }

    /// Perturbs every searched key of a point (sorted by key).
    func explore(_ point: SearchSpace.Point, _ rng: inout Xoshiro256, probability: Double) -> SearchSpace.Point {
        var out = point
        for p in (space.shared + space.branches[point.branch].params).sorted(by: { $0.key < $1.key }) {
            let resample = rng.nextUnit() < probability
            let up = rng.nextUnit() < 0.5
            guard let v = point.values[p.key] else { continue }
            out.values[p.key] = resample ? p.distribution.draw(&rng) : p.distribution.perturb(v, up: up)
        }
        return out
    }
}

extension Distribution {
    /// ×1.2 (up) or ×0.8, within the distribution; an integer rounded; a choice moved to its neighbour.
    func perturb(_ v: ConfigValue, up: Bool) -> ConfigValue {
        let factor = up ? 1.2 : 0.8
        switch self {
        case .uniform(let lo, let hi), .loguniform(let lo, let hi):
            return .double(min(max((v.asDouble ?? lo) * factor, lo), hi))
        case .randint(let lo, let hi):
            guard case .int(let i) = v else { return .int(lo) }
            var j = Int((Double(i) * factor).rounded())
            if j == i { j += up ? 1 : -1 }
            return .int(min(max(j, lo), hi))
        case .choice(let items):
            let i = items.firstIndex(of: v) ?? 0
            return items[min(max(i + (up ? 1 : -1), 0), items.count - 1)]
        }
    }
}
