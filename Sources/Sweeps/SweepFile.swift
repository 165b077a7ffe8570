import Learning
import Yams

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Sweep files: a YAML mapping that describes a set of trials, expanded into `TrialConfig`s.
///
/// ```yaml
/// name: vae-optimizers          # required, [A-Za-z0-9_.-]+
/// description: free text        # optional
/// seed: 0                       # sweep seed for random draws (default 0), an integer ≥ 0
/// objective: {metric: test_loss, mode: min}
///                               # metric: train_loss | test_loss | test_accuracy (default test_loss);
///                               # mode: min | max (default max for test_accuracy, min otherwise)
/// base:                         # the fixed trial keys (see TrialSchema and the README's table)
///   model: vae
///   epochs: 20
/// grid:                         # cartesian product over these keys
///   lr: [1.0e-3, 3.0e-3]                            # explicit list of values
///   batch_size: {range: [64, 256, 64]}              # start, stop, step
///   weight_decay: {logspace: [1.0e-5, 1.0e-2, 4]}   # start, stop, count: geometric
///   momentum: {linspace: [0.8, 0.99, 3]}            # start, stop, count: arithmetic
/// zip:                          # a list of groups; in a group the lists vary together
///   - {beta1: [0.9, 0.95], beta2: [0.999, 0.99]}
/// random:                       # random search
///   samples: 10                 # draws (≥ 1)
///   params:
///     lr: {loguniform: [1.0e-4, 1.0e-1]}
///     momentum: {uniform: [0.8, 0.99]}
///     batch_size: {randint: [32, 256]}      # both ends included
///     activation: {choice: [relu, tanh]}
/// seeds: [0, 1, 2]              # or `repeats: 3`: seeds base-seed (or 0), +1, +2; sets trial key `seed`
/// early_stopping: {rule: median, grace_epochs: 2, min_trials: 3}   # the median stopping rule
/// early_stopping: {rule: asha, min_epochs: 1, reduction_factor: 3}  # or ASHA: rungs at 1, 3, 9… epochs
/// checkpoints: {every: 2, keep: none}   # workers checkpoint every 2 epochs; a lost worker's trial
///                               # resumes from its last one; keep: none | last once finished
/// optimizers:                   # conditional sub-spaces, one branch per optimizer
///   adamw:
///     grid: {lr: [1.0e-3, 3.0e-3]}
///   sgd:
///     base: {momentum: 0.9}
///     grid: {lr: [0.01, 0.1]}
/// ```
///
/// **Values.** A grid or zip entry is a list of values, or one generator:
/// - `{range: [start, stop, step]}` — `start, start + step, …` up to `stop`, which is included when
///   a step lands on it exactly; with three integers the values are integers, otherwise numbers.
///   A negative step counts down.
/// - `{linspace: [start, stop, count]}` — `count` evenly spaced numbers, both ends included.
/// - `{logspace: [start, stop, count]}` — `count` geometrically spaced numbers from `start` to
///   `stop` (the values themselves, not exponents; both positive), both ends included.
///
/// Generated inner values are rounded to 12 significant digits so that they read as the decimals
/// one would write (`0.3`, not `0.30000000000000004`); the ends are taken as written.
/// A list in a grid is a list of alternatives: `hidden: [[64], [128, 64]]` gives two trials,
/// `hidden: [64, 128]` gives `hidden: 64` and `hidden: 128`. A fixed value belongs under `base`.
///
/// **Branches.** With `optimizers`, each entry (one of `TrialSchema.optimizerNames`) is a branch:
/// it sets `optimizer: <name>` and lays its own `base` over the top-level `base`. Its trials are
/// the product, in this order (the last varying fastest), of
/// 1. the grid: the top-level grid's keys then the branch grid's, each in file order;
/// 2. each zip group: the top-level groups then the branch's;
/// 3. the random samples: params of the top level and of the branch together; `samples` is the
///    branch's if given, else the top level's; no `random` at all means one sample;
/// 4. the seeds.
/// Without `optimizers` there is one branch, named `main`, made of the top-level sections (the
/// optimizer then comes from `base` or from a varied key). Branches expand in file order.
///
/// A key is varied in one place only: a key in two grids (top level and branch), two zip groups,
/// or in two of grid, zip and random is an error. A varied key may override a `base` value.
/// With `optimizers`, `optimizer` may not be set elsewhere; with `seeds`/`repeats`, `seed` may not
/// be varied, and with `seeds` it may not be in `base` either (with `repeats`, base's seed is the
/// first seed). Any trial key may be varied, `model` included.
///
/// **Random draws** are reproducible and stable: sample `i` of branch `B` uses
/// `Xoshiro256(seed: seed, stream: "random/B/i")` and draws the params in sorted key order, so
/// adding samples never changes the earlier ones. `uniform` is `low + (high − low)·u` with `u` in
/// [0, 1) (53 bits), `loguniform` is `exp` of a uniform draw between the logs, `randint` and
/// `choice` draw an unbiased integer by rejection.
///
/// **Trials.** Every expanded trial is a `TrialConfig` whose locations point at the sweep file's
/// line where each key was written, and it must pass `TrialConfig.validate()`; an error is reported
/// at that line (a trial missing `model` at the `base` line). Trials with the same canonical JSON
/// are collapsed (the first is kept). A trial's id is `TrialID.of(config)`, so ids stay the same
/// when values are added to a sweep. A sweep may expand to at most 100,000 trials, whose
/// configurations hold at most 10,000,000 values together (a list counting itself and its items);
/// each trial's canonical JSON, which workers parse, is at most `YAMLLimits.maxBytes` long.
///
/// **Limits.** A sweep file is UTF-8 text of at most `YAMLLimits.maxBytes` bytes whose lists and
/// mappings nest at most `YAMLLimits.maxDepth` levels deep and which has at most
/// `YAMLLimits.maxNodes` nodes with its aliases expanded (see `composeYAML`).
///
/// Every problem is a `ConfigError` naming the file, the line and the key, and saying what is allowed.
public enum SweepFile {
    /// Reads, validates and expands the sweep file at `path`.
    public static func load(path: String, profile: String? = nil) throws -> Sweep {
        let text = try readYAMLFile(path, what: "sweep file")
        let parent = path.contains("/") ? String(path[...path.lastIndex(of: "/")!]) : "."
        return try parse(yaml: text, source: path, profile: profile, folder: absolutePath(parent))
    }

    /// Parses, validates and expands a sweep from its YAML text; `source` names it in errors.
    /// `profile` applies one of the file's `profiles` (its name is appended to the sweep's).
    /// `folder` is where program trials run and their `files` are read (default: the current directory).
    public static func parse(yaml: String, source: String, profile: String? = nil, folder: String? = nil) throws -> Sweep {
        let spec = try SweepParser(source: source, profile: profile).parse(yaml)
        var sweep = try spec.expand(text: yaml)
        sweep.folder = folder ?? absolutePath(".")
        sweep.programFiles = try spec.programFiles(folder: sweep.folder)
        return sweep
    }
}

// MARK: - The parsed file

struct Assignment: Sendable {
    let key: String
    let value: ConfigValue
    let line: Int?
}

/// A varied key and its values (grid, or one list of a zip group).
struct Axis: Sendable {
    let key: String
    let line: Int?
    let values: [ConfigValue]
}

struct ZipGroup: Sendable {
    let line: Int?
    let axes: [Axis]
    var count: Int { axes.first?.values.count ?? 0 }
}

struct RandomParam: Sendable {
    let key: String
    let line: Int?
    let distribution: Distribution
}

/// The sections a branch (or the top level) may have.
struct Section: Sendable {
    var baseLine: Int?
    var base: [Assignment] = []
    var grid: [Axis] = []
    var zips: [ZipGroup] = []
    var randomLine: Int?
    var samples: (count: Int, line: Int?)?
    var params: [RandomParam] = []
    /// `search.params`: the distributions an adaptive search samples.
    var searchLine: Int?
    var searchParams: [RandomParam] = []
}

struct Branch: Sendable {
    /// The optimizer, or `OPTIMIZER/LABEL` for several branches of one optimizer.
    let name: String
    let line: Int?
    let section: Section
    var optimizer: String { name.split(separator: "/", maxSplits: 1).first.map(String.init) ?? name }
}

enum SeedSpec: Sendable {
    case list([Int], line: Int?)
    case repeats(Int, line: Int?)

    var line: Int? {
        switch self {
        case .list(_, let line), .repeats(_, let line): line
        }
    }
}

struct SweepSpec: Sendable {
    let source: String
    let rootLine: Int?
    let name: String
    let description: String?
    let seed: UInt64
    let objective: Sweep.Objective
    let top: Section
    let branches: [Branch]?
    let seeds: SeedSpec?
    let checkpoints: Sweep.Checkpoints
    let earlyStopping: Sweep.EarlyStopping?
    let search: SearchSettings?
}

// MARK: - Parsing

struct SweepParser {
    let source: String
    var profile: String? = nil

    static let sections = [
        "base", "checkpoints", "description", "early_stopping", "grid", "name", "objective", "optimizers", "profiles", "random", "repeats", "search", "seed", "seeds",
        "zip",
    ]
    static let branchSections = ["base", "grid", "random", "search", "zip"]
    static let metrics = Metric.allCases.map(\.rawValue).sorted()

    struct Entry {
        let key: String
        let keyNode: Node
        let value: Node
        var line: Int? { keyNode.mark?.line }
    }

    func location(_ line: Int?) -> SourceLocation { SourceLocation(file: source, line: line) }

    func error(_ line: Int?, _ key: String?, _ message: String) -> ConfigError {
        ConfigError(location: location(line), key: key, message: message)
    }

    func hint(_ name: String, _ candidates: [String]) -> String {
        let s = suggestions(for: name, among: candidates)
        return s.isEmpty ? "" : " (did you mean \(s.prefix(2).map { "'\($0)'" }.joined(separator: " or "))?)"
    }

    func isNull(_ node: Node) -> Bool {
        guard case .scalar(let s) = node, s.style == .plain else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(s.string)
    }

    func describe(_ node: Node) -> String {
        switch node {
        case .scalar(let s): "'\(s.string)'"
        case .sequence: "a list"
        case .mapping: "a mapping"
        }
    }

    /// The pairs of a mapping in file order (a null value counts as empty); keys given twice are errors.
    func entries(_ node: Node, what: String, key: String?, line: Int?) throws -> [Entry] {
        if isNull(node) { return [] }
        guard case .mapping(let mapping) = node else {
            throw error(node.mark?.line ?? line, key, "\(what) must be a mapping of keys to values, got \(describe(node))")
        }
        var firstLine: [String: Int] = [:]
        var out: [Entry] = []
        for (k, v) in mapping {
            guard case .scalar(let scalar) = k else { throw error(k.mark?.line ?? line, key, "keys of \(what) must be plain names, got \(describe(k))") }
            let name = scalar.string
            if firstLine[name] != nil || out.contains(where: { $0.key == name }) {
                throw error(k.mark?.line, name, "given twice" + (firstLine[name].map { " (first at line \($0))" } ?? ""))
            }
            if let l = k.mark?.line { firstLine[name] = l }
            out.append(Entry(key: name, keyNode: k, value: v))
        }
        return out
    }

    func value(_ node: Node, key: String, line: Int?) throws -> ConfigValue {
        do {
            if ProgramContract.mappingKeys.contains(key), node.mapping != nil { return try ConfigValue(mappingNode: node) }
            return try ConfigValue(node: node)
        } catch var e as ConfigError {
            e.location = location(e.location.line ?? line)
            e.key = key
            throw e
        }
    }

    func integer(_ entry: Entry, atLeast minimum: Int) throws -> Int {
        guard case .int(let i) = try value(entry.value, key: entry.key, line: entry.line), i >= minimum else {
            throw error(entry.line, entry.key, "must be an integer of at least \(minimum), got \(describe(entry.value))")
        }
        return i
    }

    // MARK: Top level

    func parse(_ text: String) throws -> SweepSpec {
        guard let root = try composeYAML(text, source: source), !isNull(root) else {
            throw error(1, nil, "empty sweep file; a sweep needs at least 'name' and 'base'")
        }
        guard case .mapping = root else {
            throw error(root.mark?.line, nil, "a sweep file must be a mapping of sections (\(Self.sections.joined(separator: ", "))), got \(describe(root))")
        }
        let rootLine = root.mark?.line ?? 1

        var name: String?
        var description: String?
        var seed: UInt64 = 0
        var objective = Sweep.Objective(metric: Metric.testLoss.rawValue, maximize: false)
        var top = Section()
        var branches: [Branch]?
        var seeds: SeedSpec?
        var checkpoints = Sweep.Checkpoints()
        var earlyStopping: Sweep.EarlyStopping?
        var search: SearchSettings?
        var profileSection: Section?
        var profileNames: [String] = []

        for entry in try entries(root, what: "a sweep file", key: nil, line: rootLine) {
            switch entry.key {
            case "name":
                guard case .scalar(let s) = entry.value, !isNull(entry.value), !s.string.isEmpty,
                    s.string.unicodeScalars.allSatisfy(isNameCharacter)
                else {
                    throw error(entry.line, "name", "must be a non-empty name of letters, digits, '_', '.' and '-', got \(describe(entry.value))")
                }
                name = s.string
            case "description":
                guard case .scalar(let s) = entry.value else {
                    throw error(entry.line, "description", "must be text, got \(describe(entry.value))")
                }
                description = isNull(entry.value) ? nil : s.string
            case "seed":
                seed = UInt64(try integer(entry, atLeast: 0))
            case "objective":
                objective = try parseObjective(entry)
            case "seeds", "repeats":
                if let seeds {
                    let other = entry.key == "seeds" ? "repeats" : "seeds"
                    throw error(entry.line, entry.key, "give either 'seeds' or 'repeats', not both ('\(other)' is at line \(seeds.line.map(String.init) ?? "?"))")
                }
                seeds = try parseSeeds(entry)
            case "optimizers":
                branches = try parseOptimizers(entry)
            case "checkpoints":
                checkpoints = try parseCheckpoints(entry)
            case "early_stopping":
                earlyStopping = try parseEarlyStopping(entry)
            case "search":
                search = try parseSearch(entry, into: &top)
            case "profiles":
                for p in try entries(entry.value, what: "profiles", key: "profiles", line: entry.line) {
                    profileNames.append(p.key)
                    guard p.key == profile else { continue }
                    var section = Section()
                    for e in try entries(p.value, what: "profile '\(p.key)'", key: p.key, line: p.line) {
                        guard e.key == "base" || e.key == "grid" else {
                            throw error(e.line, e.key, "a profile overrides 'base' and 'grid' only")
                        }
                        try parseSection(e, into: &section)
                    }
                    profileSection = section
                }
            case "base", "grid", "zip", "random":
                try parseSection(entry, into: &top)
            default:
                let isTrialKey = TrialSchema.allKeys.contains(entry.key)
                throw error(
                    entry.line, entry.key,
                    "unknown section\(isTrialKey ? "" : hint(entry.key, Self.sections)); allowed: \(Self.sections.joined(separator: ", "))"
                        + (isTrialKey ? " (trial keys such as '\(entry.key)' go under 'base', or under 'grid' to vary them)" : ""))
            }
        }
        guard var name else { throw error(rootLine, "name", "a sweep needs a 'name' (letters, digits, '_', '.' and '-')") }
        if let profile {
            guard let overrides = profileSection else {
                throw error(
                    nil, "profiles", "no profile '\(profile)' in this sweep file\(profileNames.isEmpty ? " (it has no 'profiles' section)" : "; it has: \(profileNames.joined(separator: ", "))")")
            }
            // The profile's keys replace the file's top-level ones of the same name.
            for a in overrides.base {
                top.base.removeAll { $0.key == a.key }
                top.grid.removeAll { $0.key == a.key }
                top.base.append(a)
            }
            for axis in overrides.grid {
                top.base.removeAll { $0.key == axis.key }
                if let k = top.grid.firstIndex(where: { $0.key == axis.key }) { top.grid[k] = axis } else { top.grid.append(axis) }
            }
            name += "-\(profile)"
        }
        return SweepSpec(
            source: source, rootLine: rootLine, name: name, description: description, seed: seed,
            objective: objective, top: top, branches: branches, seeds: seeds, checkpoints: checkpoints, earlyStopping: earlyStopping, search: search)
    }

    /// `early_stopping: {rule: median, grace_epochs: 2, min_trials: 3}` or
    /// `early_stopping: {rule: asha, min_epochs: 1, reduction_factor: 3}`.
    func parseEarlyStopping(_ entry: Entry) throws -> Sweep.EarlyStopping {
        var rule: (name: String, line: Int?)?
        var settings: [String: (value: Int, line: Int?)] = [:]
        let allowed = ["median": ["grace_epochs", "min_trials"], "asha": ["min_epochs", "reduction_factor"]]
        for e in try entries(entry.value, what: "early_stopping", key: "early_stopping", line: entry.line) {
            switch e.key {
            case "rule":
                guard case .scalar(let s) = e.value, allowed[s.string] != nil else {
                    throw error(e.line, "rule", "must be median or asha, got \(describe(e.value))")
                }
                rule = (s.string, e.line)
            case "grace_epochs", "min_trials", "min_epochs":
                settings[e.key] = (try integer(e, atLeast: 1), e.line)
            case "reduction_factor":
                settings[e.key] = (try integer(e, atLeast: 2), e.line)
            default:
                let all = ["rule"] + allowed.values.flatMap { $0 }.sorted()
                throw error(e.line, e.key, "unknown early_stopping setting\(hint(e.key, all)); allowed: \(all.joined(separator: ", "))")
            }
        }
        guard let rule else { throw error(entry.line, "early_stopping", "needs a rule (median or asha)") }
        for (key, setting) in settings where !allowed[rule.name]!.contains(key) {
            throw error(setting.line, key, "does not apply to rule \(rule.name); its settings are: \(allowed[rule.name]!.joined(separator: ", "))")
        }
        if rule.name == "asha" {
            return .asha(minEpochs: settings["min_epochs"]?.value ?? 1, reductionFactor: settings["reduction_factor"]?.value ?? 3)
        }
        return .median(graceEpochs: settings["grace_epochs"]?.value ?? 1, minTrials: settings["min_trials"]?.value ?? 3)
    }

    /// `checkpoints: {every: N, keep: none | last}`.
    func parseCheckpoints(_ entry: Entry) throws -> Sweep.Checkpoints {
        var result = Sweep.Checkpoints()
        for e in try entries(entry.value, what: "checkpoints", key: "checkpoints", line: entry.line) {
            switch e.key {
            case "every":
                result.every = try integer(e, atLeast: 1)
            case "keep":
                guard case .scalar(let s) = e.value, let keep = Sweep.Checkpoints.Keep(rawValue: s.string) else {
                    throw error(e.line, "keep", "must be none or last, got \(describe(e.value))")
                }
                result.keep = keep
            default:
                throw error(e.line, e.key, "unknown checkpoints setting\(hint(e.key, ["every", "keep"])); allowed: every, keep")
            }
        }
        return result
    }

    func parseObjective(_ entry: Entry) throws -> Sweep.Objective {
        var metric = Metric.testLoss
        var mode: Bool?
        for e in try entries(entry.value, what: "objective", key: "objective", line: entry.line) {
            switch e.key {
            case "metric":
                guard case .scalar(let s) = e.value, let m = Metric(rawValue: s.string) else {
                    throw error(e.line, "metric", "unknown metric \(describe(e.value)); allowed: \(Self.metrics.joined(separator: ", "))")
                }
                metric = m
            case "mode":
                guard case .scalar(let s) = e.value, s.string == "min" || s.string == "max" else {
                    throw error(e.line, "mode", "must be min or max, got \(describe(e.value))")
                }
                mode = s.string == "max"
            default:
                throw error(e.line, e.key, "unknown objective key\(hint(e.key, ["metric", "mode"])); allowed: metric, mode")
            }
        }
        return Sweep.Objective(metric: metric.rawValue, maximize: mode ?? metric.maximizedByDefault)
    }

    func parseSeeds(_ entry: Entry) throws -> SeedSpec {
        if entry.key == "repeats" {
            return .repeats(try integer(entry, atLeast: 1), line: entry.line)
        }
        guard case .list(let items) = try value(entry.value, key: "seeds", line: entry.line), !items.isEmpty else {
            throw error(entry.line, "seeds", "must be a non-empty list of integers ≥ 0, e.g. [0, 1, 2] (or use 'repeats: N'), got \(describe(entry.value))")
        }
        var seeds: [Int] = []
        for item in items {
            guard case .int(let s) = item, s >= 0 else {
                throw error(entry.line, "seeds", "must be a list of integers ≥ 0, found \(item.typeName) \(item)")
            }
            guard !seeds.contains(s) else { throw error(entry.line, "seeds", "seed \(s) is listed twice") }
            seeds.append(s)
        }
        return .list(seeds, line: entry.line)
    }

    func parseOptimizers(_ entry: Entry) throws -> [Branch] {
        let allowed = TrialSchema.optimizerNames
        let list = try entries(entry.value, what: "optimizers", key: "optimizers", line: entry.line)
        guard !list.isEmpty else {
            throw error(entry.line, "optimizers", "needs at least one optimizer entry; allowed: \(allowed.joined(separator: ", "))")
        }
        var branches: [Branch] = []
        for e in list {
            let optimizer = e.key.split(separator: "/", maxSplits: 1).first.map(String.init) ?? e.key
            guard allowed.contains(optimizer) else {
                throw error(
                    e.line, e.key, "unknown optimizer '\(optimizer)'\(hint(optimizer, allowed)); allowed: \(allowed.joined(separator: ", ")) (several branches of one optimizer: OPTIMIZER/LABEL)")
            }
            var section = Section()
            for s in try entries(e.value, what: "optimizer entry '\(e.key)'", key: e.key, line: e.line) {
                guard Self.branchSections.contains(s.key) else {
                    let isTrialKey = TrialSchema.allKeys.contains(s.key)
                    throw error(
                        s.line, s.key,
                        "unknown section of optimizer entry '\(e.key)'\(isTrialKey ? "" : hint(s.key, Self.branchSections)); allowed: \(Self.branchSections.joined(separator: ", "))"
                            + (isTrialKey ? " (trial keys such as '\(s.key)' go under 'base', or under 'grid' to vary them)" : ""))
                }
                if s.key == "search" {
                    try parseBranchSearch(s, into: &section)
                } else {
                    try parseSection(s, into: &section)
                }
            }
            branches.append(Branch(name: e.key, line: e.line, section: section))
        }
        return branches
    }

    // MARK: Sections

    /// The program trial settings that are fixed for a sweep: given under `base`, never varied.
    static let programSettings: Set<String> = Set(TrialSchema.program.map(\.name)).subtracting([ProgramContract.Key.epochs, ProgramContract.Key.seed])

    func parseSection(_ entry: Entry, into section: inout Section) throws {
        switch entry.key {
        case "base":
            section.baseLine = entry.line
            for e in try entries(entry.value, what: "base", key: "base", line: entry.line) {
                section.base.append(Assignment(key: e.key, value: try value(e.value, key: e.key, line: e.line), line: e.line))
            }
        case "grid":
            for e in try entries(entry.value, what: "grid", key: "grid", line: entry.line) {
                try fixedProgramSetting(e, in: "grid")
                section.grid.append(Axis(key: e.key, line: e.line, values: try axisValues(e, in: "grid")))
            }
        case "zip":
            section.zips = try parseZip(entry)
        default:  // random
            try parseRandom(entry, into: &section)
        }
    }

    /// The values of a grid or zip key: a list, or a generator.
    func axisValues(_ e: Entry, in what: String) throws -> [ConfigValue] {
        let generators = Generator.allCases.map(\.usage).joined(separator: ", ")
        switch e.value {
        case .sequence:
            guard case .list(let items) = try value(e.value, key: e.key, line: e.line), !items.isEmpty else {
                throw error(e.line, e.key, "empty \(what): '\(e.key)' needs at least one value (a list, or \(generators))")
            }
            return items
        case .mapping(let mapping):
            guard mapping.count == 1, let (k, v) = mapping.first.map({ ($0.key, $0.value) }), case .scalar(let s) = k else {
                throw error(e.line, e.key, "expected a list of values or one generator: \(generators)")
            }
            let name = s.string
            guard let generator = Generator(rawValue: name) else {
                if Distribution.names.contains(name) {
                    throw error(e.line, e.key, "'\(name)' is a random distribution; put '\(e.key)' under random.params, or give \(what) a list or one of \(generators)")
                }
                throw error(e.line, e.key, "unknown generator '\(name)'\(hint(name, Generator.allCases.map(\.rawValue))); allowed: a list of values, \(generators)")
            }
            guard case .list(let args) = try value(v, key: e.key, line: e.line) else {
                throw error(e.line, e.key, "\(name) needs a list of three numbers, \(generator.usage); got \(describe(v))")
            }
            switch generator.values(args) {
            case .success(let values): return values
            case .failure(let failure): throw error(e.line, e.key, failure.message)
            }
        default:
            throw error(e.line, e.key, "expected a list of values or one generator (\(generators)), got \(describe(e.value)); a fixed value belongs under base")
        }
    }

    func parseZip(_ entry: Entry) throws -> [ZipGroup] {
        if isNull(entry.value) { return [] }
        guard case .sequence(let groups) = entry.value else {
            throw error(entry.line, "zip", "must be a list of groups, e.g. - {beta1: [0.9, 0.95], beta2: [0.999, 0.99]}; got \(describe(entry.value))")
        }
        var out: [ZipGroup] = []
        for group in groups {
            let line = group.mark?.line ?? entry.line
            let list = try entries(group, what: "a zip group", key: "zip", line: line)
            guard !list.isEmpty else { throw error(line, "zip", "a zip group needs at least one key with a list of values") }
            var axes: [Axis] = []
            for e in list {
                try fixedProgramSetting(e, in: "zip")
                let values = try axisValues(e, in: "zip list")
                if let first = axes.first, first.values.count != values.count {
                    throw error(e.line, e.key, "the lists of a zip group must have the same length: '\(first.key)' has \(first.values.count) values, '\(e.key)' has \(values.count)")
                }
                axes.append(Axis(key: e.key, line: e.line, values: values))
            }
            out.append(ZipGroup(line: line, axes: axes))
        }
        return out
    }

    func parseRandom(_ entry: Entry, into section: inout Section) throws {
        section.randomLine = entry.line
        for e in try entries(entry.value, what: "random", key: "random", line: entry.line) {
            switch e.key {
            case "samples":
                section.samples = (try integer(e, atLeast: 1), e.line)
            case "params":
                section.params += try parseDistributions(e, what: "random.params")
            default:
                throw error(e.line, e.key, "unknown key of random\(hint(e.key, ["params", "samples"])); allowed: samples, params")
            }
        }
    }
}

extension SweepParser {
    /// A mapping of keys to one distribution each (`random.params`, `search.params`).
    func parseDistributions(_ e: Entry, what: String) throws -> [RandomParam] {
        let usages = Distribution.names.map(Distribution.usage).joined(separator: ", ")
        var out: [RandomParam] = []
        for p in try entries(e.value, what: what, key: "params", line: e.line) {
            try fixedProgramSetting(p, in: what)
            guard case .mapping(let mapping) = p.value, mapping.count == 1,
                let (k, v) = mapping.first.map({ ($0.key, $0.value) }), case .scalar(let s) = k
            else {
                throw error(
                    p.line, p.key,
                    "expected one distribution: \(usages); got \(describe(p.value))"
                        + (p.value.sequence != nil ? " (a list of values belongs under grid, or give {choice: [...]})" : ""))
            }
            let name = s.string
            guard Distribution.names.contains(name) else {
                let isGenerator = Generator(rawValue: name) != nil
                throw error(
                    p.line, p.key,
                    "unknown distribution '\(name)'\(isGenerator ? "" : hint(name, Distribution.names)); allowed: \(usages)"
                        + (isGenerator ? " ('\(name)' is a grid generator)" : ""))
            }
            switch Distribution.make(name, try value(v, key: p.key, line: p.line)) {
            case .success(let d): out.append(RandomParam(key: p.key, line: p.line, distribution: d))
            case .failure(let failure): throw error(p.line, p.key, failure.message)
            }
        }
        return out
    }

    /// `search: {algorithm: tpe, trials: 100, parallel: 4, params: {...}, ...}` at the top level.
    func parseSearch(_ entry: Entry, into section: inout Section) throws -> SearchSettings {
        var settings = SearchSettings(line: entry.line)
        section.searchLine = entry.line
        var algorithmGiven = false
        var startupTrials: (Int, Int?)?, candidates: (Int, Int?)?
        var pbtKeys: [String: (value: Double, line: Int?)] = [:]
        for e in try entries(entry.value, what: "search", key: "search", line: entry.line) {
            switch e.key {
            case "algorithm":
                guard case .scalar(let s) = e.value, let algorithm = Search.Algorithm(rawValue: s.string) else {
                    let planned: [String] = []
                    if case .scalar(let s) = e.value, planned.contains(s.string) {
                        throw error(e.line, "algorithm", "'\(s.string)' is not implemented yet; available: \(Search.Algorithm.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    throw error(e.line, "algorithm", "must be one of \(Search.Algorithm.allCases.map(\.rawValue).joined(separator: ", ")), got \(describe(e.value))")
                }
                settings.algorithm = algorithm
                algorithmGiven = true
            case "trials":
                settings.budget = try integer(e, atLeast: 1)
                guard settings.budget <= Search.maxBudget else {
                    throw error(e.line, "trials", "at most \(Search.maxBudget) trials per search, got \(settings.budget)")
                }
            case "parallel":
                settings.parallel = try integer(e, atLeast: 1)
            case "startup_trials":
                startupTrials = (try integer(e, atLeast: 0), e.line)
            case "candidates":
                let n = try integer(e, atLeast: 1)
                guard n <= 10_000 else { throw error(e.line, "candidates", "at most 10000, got \(n)") }
                candidates = (n, e.line)
            case "params":
                section.searchParams += try parseDistributions(e, what: "search.params")
            case "population":
                pbtKeys[e.key] = (Double(try integer(e, atLeast: 2)), e.line)
            case "interval":
                pbtKeys[e.key] = (Double(try integer(e, atLeast: 1)), e.line)
            case "quantile", "resample_probability":
                guard let x = try value(e.value, key: e.key, line: e.line).asDouble, x.isFinite,
                    e.key == "quantile" ? (x > 0 && x <= 0.5) : (x >= 0 && x <= 1)
                else {
                    throw error(e.line, e.key, e.key == "quantile" ? "must be a number in (0, 0.5]" : "must be a probability in [0, 1]")
                }
                pbtKeys[e.key] = (x, e.line)
            default:
                let allowed = ["algorithm", "candidates", "interval", "parallel", "params", "population", "quantile", "resample_probability", "startup_trials", "trials"]
                throw error(e.line, e.key, "unknown key of search\(hint(e.key, allowed)); allowed: \(allowed.joined(separator: ", "))")
            }
        }
        guard algorithmGiven else { throw error(entry.line, "algorithm", "search needs an algorithm: \(Search.Algorithm.allCases.map(\.rawValue).joined(separator: ", "))") }
        if settings.algorithm == .pbt {
            guard let population = pbtKeys["population"], let interval = pbtKeys["interval"] else {
                throw error(
                    entry.line, pbtKeys["population"] == nil ? "population" : "interval", "population-based training needs 'population' (members, at least 2) and 'interval' (epochs between exchanges)"
                )
            }
            if settings.budget > 0 { throw error(entry.line, "trials", "population-based training runs population × generations trials; remove 'trials'") }
            if settings.parallel != nil { throw error(entry.line, "parallel", "population-based training runs its whole population at once; remove 'parallel'") }
            settings.pbt = (Int(population.value), Int(interval.value), pbtKeys["quantile"]?.value ?? 0.25, pbtKeys["resample_probability"]?.value ?? 0.25)
        } else if let (key, (_, line)) = pbtKeys.first {
            throw error(line, key, "is a setting of algorithm pbt")
        }
        guard settings.budget > 0 || settings.algorithm == .pbt else { throw error(entry.line, "trials", "search needs 'trials', the number of trials to run (its budget)") }
        switch settings.algorithm {
        case .random:
            if let (_, line) = startupTrials { throw error(line, "startup_trials", "is a setting of algorithms tpe and gp") }
        case .tpe:
            if let (n, _) = startupTrials { settings.tpe.startupTrials = n }
        case .gp:
            if let (n, _) = startupTrials { settings.gp.startupTrials = n }
        case .pbt:
            if let (_, line) = startupTrials { throw error(line, "startup_trials", "is a setting of algorithms tpe and gp") }
        }
        if settings.algorithm != .tpe, let (_, line) = candidates { throw error(line, "candidates", "is a setting of algorithm tpe") }
        return settings
    }

    /// `search: {params: {...}}` in an `optimizers` entry: the branch's own sub-space.
    func parseBranchSearch(_ entry: Entry, into section: inout Section) throws {
        section.searchLine = entry.line
        for e in try entries(entry.value, what: "search", key: "search", line: entry.line) {
            guard e.key == "params" else {
                throw error(e.line, e.key, "an optimizer entry's search has only 'params' (its own distributions); algorithm, trials and parallel are the top-level search's")
            }
            section.searchParams += try parseDistributions(e, what: "search.params")
        }
    }
}

extension SweepParser {
    /// A program trial's command, directory, timeout, environment and files are the sweep's: they
    /// go under `base` (a branch's base may give its own).
    func fixedProgramSetting(_ e: Entry, in what: String) throws {
        guard Self.programSettings.contains(e.key) else { return }
        throw error(e.line, e.key, "is a program trial's setting, fixed for the sweep: give it under base, not in \(what)")
    }
}

extension SweepSpec {
    /// Every `files` entry the sweep's bases list, read from `folder` (errors at the `files` line).
    func programFiles(folder: String) throws -> [String: PackedFile] {
        var out: [String: PackedFile] = [:]
        for a in top.base + (branches ?? []).flatMap(\.section.base) where a.key == ProgramContract.Key.files {
            let paths: [String]
            switch a.value {
            case .string(let s): paths = [s]
            case .list(let items): paths = items.compactMap { if case .string(let s) = $0 { s } else { nil } }
            default: paths = []
            }
            do {
                for file in try ProgramFiles.read(paths.filter { out[$0] == nil }, folder: folder) { out[file.path] = file }
            } catch {
                throw self.error(a.line, a.key, "\(error) (files are read from \(folder))")
            }
        }
        guard out.values.reduce(0, { $0 + $1.bytes.count }) <= ProgramLimits.maxFilesBytes else {
            throw self.error(top.baseLine, ProgramContract.Key.files, "the sweep's files hold more than \(ProgramLimits.maxFilesBytes >> 20) MiB together")
        }
        return out
    }
}

/// A directory's absolute path, links resolved (as given when it cannot be resolved).
func absolutePath(_ path: String) -> String {
    guard let resolved = realpath(path, nil) else { return path }
    defer { free(resolved) }
    return String(cString: resolved)
}

func isNameCharacter(_ u: Unicode.Scalar) -> Bool {
    ("a"..."z").contains(u) || ("A"..."Z").contains(u) || ("0"..."9").contains(u) || u == "_" || u == "." || u == "-"
}
