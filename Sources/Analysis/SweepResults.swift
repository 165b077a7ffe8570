import Foundation
import HDF5
import SweepCore

/// One hyperparameter's value in a trial, from `/hparams/KEY` (numbers as float64, the rest as
/// text; NaN or "" there means the trial does not set the key, which is `nil` here).
public enum HParamValue: Hashable, Sendable, Comparable, CustomStringConvertible {
    case number(Double)
    case text(String)

    public var number: Double? { if case .number(let x) = self { x } else { nil } }

    /// Short and exact enough to tell grid values apart: `0.001`, `1e-05`, `64`, `adamw`.
    public var description: String {
        switch self {
        case .number(let x): formatNumber(x)
        case .text(let s): s
        }
    }

    public static func < (a: HParamValue, b: HParamValue) -> Bool {
        switch (a, b) {
        case (.number(let x), .number(let y)): x < y
        case (.text(let x), .text(let y)): x < y
        case (.number, .text): true
        case (.text, .number): false
        }
    }
}

/// A trial's per-epoch (per-step for toy objectives) history, column by column.
public struct TrialHistory: Sendable {
    public var epoch: [Double] = []
    public var step: [Double] = []
    public var trainLoss: [Double] = []
    public var testLoss: [Double] = []
    public var testAccuracy: [Double] = []
    public var gradNorm: [Double] = []
    public var lr: [Double] = []
    public var seconds: [Double] = []
    public var evalSeconds: [Double] = []

    public init() {}

    /// The history table's fields.
    public static let fields = ResultsLayout.Trial.historyColumns

    public var count: Int { epoch.count }

    public func column(_ metric: Metric) -> [Double] {
        switch metric {
        case .trainLoss: trainLoss
        case .testLoss: testLoss
        case .testAccuracy: testAccuracy
        }
    }
}

/// An LR range test curve (loss against an exponentially growing learning rate).
public struct LRRangeCurve: Sendable {
    public var lr: [Double]
    public var loss: [Double]
    public init(lr: [Double], loss: [Double]) {
        self.lr = lr
        self.loss = loss
    }
}

/// Per-layer diagnostics over epochs: one series per layer and quantity.
public struct LayerDiagnostics: Sendable {
    /// quantity (e.g. `update_norm`, `activation_delta`) → layer name → (epoch, value) points.
    public var series: [String: [String: [(x: Double, y: Double)]]]
    public init(series: [String: [String: [(x: Double, y: Double)]]]) { self.series = series }
}

/// What a committed trial's group in its batch file holds.
public struct TrialDetails: Sendable {
    public var status: String
    public var message: String
    /// The resolved configuration as stored (`nil` when the JSON cannot be read). It is not
    /// validated against the trial keys: those are the training engine's, which the analysis
    /// does not link.
    public var config: TrialConfig?
    public var configJSON: String
    public var optimizerStateBytes: Int?
    /// The model's trainable scalars (`parameter_count`), when the group records it.
    public var parameterCount: Int?
    public var wallSeconds: Double
    public var history: TrialHistory
    /// Toy objectives: (steps + 1) points; empty otherwise.
    public var trajectory: [[Double]]
    /// Optional data sets that no trainer writes yet (see `OptionalData`); `nil` when absent.
    public var lrRange: LRRangeCurve?
    public var layers: LayerDiagnostics?
    /// Population-based training: the trial's member, generation and parent.
    public var lineage: TrialLineage?

    /// Mean training seconds per epoch (per step for toy objectives), NaN without history.
    public var secondsPerEpoch: Double { mean(history.seconds.filter(\.isFinite)) }
}

/// One row of the sweep index, with the trial's details once it is committed.
public struct TrialRow: Sendable, MetricValues {
    public var id: String
    public var index: Int
    public var branch: String
    public var model: String
    public var optimizer: String
    /// queued, running, done, diverged, failed, stopped
    public var status: String
    public var epochs: Int
    public var trainLoss: Double
    public var testLoss: Double
    public var testAccuracy: Double
    public var wallSeconds: Double
    public var attempts: Int
    public var host: String
    /// The batch file holding it, relative to the results directory ("" until committed).
    public var file: String
    /// The keys this trial sets.
    public var hparams: [String: HParamValue]
    /// `nil` for queued and running trials (no group yet) or when the group could not be read.
    public var details: TrialDetails?
    /// Why the details could not be read, if they could not.
    public var detailsError: String?

    public var isToyObjective: Bool { model == "rosenbrock" || model == "quadratic" }

    /// Queued or running: not committed, so without details or final metrics.
    public var isPending: Bool { status == ResultsLayout.Index.queued || status == ResultsLayout.Index.running }

    /// The final value of a metric. Toy objectives have no test set: their test loss is the
    /// objective's value (train_loss), as the coordinator's "best so far" counts it.
    public func value(_ metric: Metric) -> Double {
        isToyObjective ? metric.objectiveValue(in: self) : metric.value(in: self)
    }
}

/// Why a results directory could not be analysed, with what to do about it.
public struct AnalysisError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The results of a sweep as `sweep-coordinator` wrote them (see README, "Results", and
/// `ResultsLayout`): the index `sweep.h5` and, through its `file` column (or the `/by_id` external links), every committed
/// trial's group in the batch files. Safe to load while the sweep runs: the index is swapped in
/// atomically and batch files are never written again.
public struct SweepResults: Sendable {
    /// The sweep.h5 file and its directory.
    public var indexPath: String
    public var directory: String
    public var name: String
    public var description: String
    /// The sweep's objective (`objective_metric`, `objective_mode`), if the index names one.
    public var objectiveMetric: Metric?
    public var objectiveMaximize: Bool?
    public var trials: [TrialRow]
    /// Every key some trial sets, sorted.
    public var hparamKeys: [String]

    public init(
        indexPath: String, directory: String, name: String, description: String, objectiveMetric: Metric?, objectiveMaximize: Bool?,
        trials: [TrialRow], hparamKeys: [String]
    ) {
        self.indexPath = indexPath
        self.directory = directory
        self.name = name
        self.description = description
        self.objectiveMetric = objectiveMetric
        self.objectiveMaximize = objectiveMaximize
        self.trials = trials
        self.hparamKeys = hparamKeys
    }

    /// Loads a results directory (or its sweep.h5). `details: false` reads only the index.
    public static func load(_ path: String, details: Bool = true) throws -> SweepResults {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw AnalysisError("\(path): no such file or directory (give a results directory, e.g. results/quickstart, or its sweep.h5)")
        }
        let indexPath = isDirectory.boolValue ? (path as NSString).appendingPathComponent(ResultsLayout.indexFile) : path
        guard FileManager.default.fileExists(atPath: indexPath) else {
            throw AnalysisError("\(path) has no \(ResultsLayout.indexFile): is it a results directory (sweep-coordinator start --out DIR)? The index appears with the first committed trial.")
        }
        let directory = (indexPath as NSString).deletingLastPathComponent
        let file: HDF5File
        do { file = try HDF5File(indexPath, mode: .readOnly) } catch {
            throw AnalysisError("\(indexPath) cannot be read as HDF5: \(error)")
        }
        typealias Index = ResultsLayout.Index
        typealias Column = ResultsLayout.Index.Column
        guard file.contains(Index.trials) else {
            throw AnalysisError("\(indexPath) is not a sweep index (no /\(Index.trials) table); a single trial's file is read with h5py, see README")
        }
        func attribute(_ name: String) -> String { (try? file.stringAttribute(name)) ?? "" }
        let objectiveMetric = Metric(rawValue: attribute(Index.objectiveMetric))
        let objectiveMaximize = Index.maximize(objectiveMode: attribute(Index.objectiveMode))

        let ids = try file.readTableStringColumn(Index.trials, field: Column.id)
        let fields = Set(try file.tableFields(Index.trials))
        func strings(_ field: String) -> [String] {
            (fields.contains(field) ? try? file.readTableStringColumn(Index.trials, field: field) : nil) ?? Array(repeating: "", count: ids.count)
        }
        let numeric = try file.readTableColumns(
            Index.trials, fields: [Column.index, Column.epochs, Column.attempts, Column.trainLoss, Column.testLoss, Column.testAccuracy, Column.wallSeconds])
        func numbers(_ field: String) -> [Double] { numeric[field] ?? Array(repeating: .nan, count: ids.count) }
        let branch = strings(Column.branch), model = strings(Column.model), optimizer = strings(Column.optimizer), status = strings(Column.status)
        let host = strings(Column.host), batch = strings(Column.file)
        let index = numbers(Column.index), epochs = numbers(Column.epochs), attempts = numbers(Column.attempts)
        let train = numbers(Column.trainLoss), test = numbers(Column.testLoss), accuracy = numbers(Column.testAccuracy)
        let wall = numbers(Column.wallSeconds)

        // /hparams/KEY: one aligned column per key, numbers or strings.
        var hparams = Array(repeating: [String: HParamValue](), count: ids.count)
        var keys: [String] = []
        if file.contains(Index.hparams) {
            let group = try file.group(Index.hparams)
            for key in try group.memberNames() {
                keys.append(key)
                if try group.isStringDataset(key) {
                    for (i, s) in try group.readStrings(key).prefix(ids.count).enumerated() where !s.isEmpty { hparams[i][key] = .text(s) }
                } else {
                    for (i, x) in try group.read(key, as: Double.self).values.prefix(ids.count).enumerated() where !x.isNaN { hparams[i][key] = .number(x) }
                }
            }
        }

        var rows: [TrialRow] = []
        rows.reserveCapacity(ids.count)
        for i in ids.indices {
            rows.append(
                TrialRow(
                    id: ids[i], index: wholeNumber(index[i]) ?? i, branch: branch[i], model: model[i], optimizer: optimizer[i], status: status[i],
                    epochs: wholeNumber(epochs[i]) ?? 0, trainLoss: train[i], testLoss: test[i], testAccuracy: accuracy[i], wallSeconds: wall[i],
                    attempts: wholeNumber(attempts[i]) ?? 0, host: host[i], file: batch[i], hparams: hparams[i]))
        }
        if details {
            var reader = TrialReader(directory: directory, index: file)
            for i in rows.indices where !rows[i].file.isEmpty && !rows[i].isPending {
                do { rows[i].details = try reader.details(id: rows[i].id, file: rows[i].file) } catch {
                    rows[i].detailsError = "\(error)"
                }
            }
        }
        return SweepResults(
            indexPath: indexPath, directory: directory, name: attribute(Index.name), description: attribute(Index.description),
            objectiveMetric: objectiveMetric, objectiveMaximize: objectiveMaximize, trials: rows, hparamKeys: keys.sorted())
    }
}

/// Reads committed trials, opening each batch file once: a trial's group, or its rows of the
/// batch file's shared tables (version 2, `ResultsLayout.Batch`), read once per file.
struct TrialReader {
    let directory: String
    let index: HDF5File
    var open: [String: HDF5File] = [:]
    /// The tables of each opened batch file that has them.
    var tables: [String: BatchRows] = [:]

    init(directory: String, index: HDF5File) {
        self.directory = directory
        self.index = index
    }

    /// The batch file named in /trials, opened once for all its trials (nil if it cannot be).
    mutating func batch(_ file: String) -> HDF5File? {
        if let f = open[file] { return f }
        guard let f = try? HDF5File((directory as NSString).appendingPathComponent(file), mode: .readOnly) else { return nil }
        open[file] = f
        return f
    }

    mutating func group(id: String, file: String) throws -> HDF5Group {
        // The batch file's group; the /by_id external link (resolved by HDF5 against sweep.h5's
        // directory) when that fails.
        if let batch = batch(file), let g = try? batch.group(id) { return g }
        return try index.group(ResultsLayout.Index.byID).group(id)
    }

    /// A trial stored as rows of its batch file's tables, or nil when it is a group.
    mutating func rowDetails(id: String, file: String) throws -> TrialDetails? {
        guard let batch = batch(file), BatchRows.hasTables(batch) else { return nil }
        if tables[file] == nil { tables[file] = try BatchRows(batch) }
        return try tables[file]?.details(id: id)
    }

    mutating func details(id: String, file: String) throws -> TrialDetails {
        typealias Trial = ResultsLayout.Trial
        if let details = try rowDetails(id: id, file: file) { return details }
        let g = try group(id: id, file: file)
        var history = TrialHistory()
        if g.contains(Trial.history) {
            let rows = g.rowCount(Trial.history) ?? 0
            let columns = try g.readTableColumns(Trial.history, fields: TrialHistory.fields)
            func column(_ name: String) -> [Double] { columns[name] ?? Array(repeating: .nan, count: rows) }
            // In `EpochRecord.columns` order, as `EpochRecord(row:)` reads them.
            let c = TrialHistory.fields.map(column)
            (history.epoch, history.step, history.trainLoss, history.testLoss, history.testAccuracy) = (c[0], c[1], c[2], c[3], c[4])
            (history.gradNorm, history.lr, history.seconds, history.evalSeconds) = (c[5], c[6], c[7], c[8])
        }
        var trajectory: [[Double]] = []
        if g.contains(Trial.trajectory) {
            let (values, shape) = try g.read(Trial.trajectory, as: Double.self)
            if shape.count == 2, shape[1] > 0 {
                trajectory = stride(from: 0, to: values.count, by: shape[1]).map { Array(values[$0..<($0 + shape[1])]) }
            }
        }
        let json = (try? g.stringAttribute(Trial.config)) ?? ""
        return TrialDetails(
            status: (try? g.stringAttribute(Trial.status)) ?? "",
            message: (try? g.stringAttribute(Trial.message)) ?? "",
            // Canonical JSON is YAML, so the trial reader reads it.
            config: json.isEmpty ? nil : try? TrialConfig.read(yaml: json, source: "\(file):/\(id)"),
            configJSON: json,
            optimizerStateBytes: g.hasAttribute(Trial.optimizerStateBytes)
                ? (try? g.attribute(Trial.optimizerStateBytes, as: Int64.self)).map { Int($0) } : nil,
            parameterCount: g.hasAttribute(Trial.parameterCount) ? (try? g.attribute(Trial.parameterCount, as: Int64.self)).map { Int($0) } : nil,
            wallSeconds: (try? g.attribute(Trial.wallSeconds, as: Double.self)) ?? .nan,
            history: history, trajectory: trajectory,
            lrRange: OptionalData.lrRange(in: g), layers: OptionalData.layers(in: g), lineage: Self.lineage(in: g))
    }

    /// The `pbt_*` attributes of a trial of population-based training, if it has them.
    static func lineage(in g: HDF5Group) -> TrialLineage? {
        typealias Trial = ResultsLayout.Trial
        guard g.hasAttribute(Trial.pbtMember), let member = try? g.attribute(Trial.pbtMember, as: Int64.self),
            let generation = try? g.attribute(Trial.pbtGeneration, as: Int64.self)
        else { return nil }
        let parent = (try? g.stringAttribute(Trial.pbtParent)) ?? ""
        return TrialLineage(
            member: Int(member), generation: Int(generation), parent: parent.isEmpty ? nil : parent,
            parentEpoch: Int((try? g.attribute(Trial.pbtParentEpoch, as: Int64.self)) ?? 0), exploited: ((try? g.attribute(Trial.pbtExploited, as: Int64.self)) ?? 0) == 1)
    }
}

/// The shared tables of a version-2 batch file (`ResultsLayout.Batch`), read and checked once:
/// a row range outside its table, or columns of different lengths, make the file unreadable
/// with a message saying so, as a hostile or damaged file should.
struct BatchRows {
    typealias Batch = ResultsLayout.Batch
    typealias Column = ResultsLayout.Batch.Column
    struct Row {
        var status, message, config: String
        var wallSeconds: Double
        var parameterCount, optimizerStateBytes: Int
        var grouped: Bool
        var history, trajectory: Range<Int>
    }
    let path: String
    var rows: [String: Row] = [:]
    var history: [String: [Double]]
    var trajectory: (values: [Double], dimension: Int) = ([], 0)

    static func hasTables(_ file: HDF5File) -> Bool {
        ((try? file.attribute(ResultsLayout.formatVersionAttribute, as: Int64.self)) ?? 1) >= Batch.tablesVersion
    }

    init(_ file: HDF5File) throws {
        path = file.filePath
        func strings(_ field: String) throws -> [String] { try file.readTableStringColumn(Batch.trials, field: field) }
        let ids = try strings(Column.id)
        let (status, message, config) = (try strings(Column.status), try strings(Column.message), try strings(Column.config))
        let integers = [
            Column.parameterCount, Column.optimizerStateBytes, Column.group, Column.historyStart, Column.historyRows, Column.trajectoryStart,
            Column.trajectoryRows,
        ]
        let fields = Set(try file.tableFields(Batch.trials))
        guard fields.contains(Column.wallSeconds), integers.allSatisfy(fields.contains) else {
            throw AnalysisError("\(path): /\(Batch.trials) lacks fields of a batch file (it has \(fields.sorted().joined(separator: ", ")))")
        }
        let wall = try file.readTableColumn(Batch.trials, field: Column.wallSeconds)
        let numbers = try integers.map { try file.readTableColumn(Batch.trials, field: $0) }
        guard [status.count, message.count, config.count, wall.count].allSatisfy({ $0 == ids.count }), numbers.allSatisfy({ $0.count == ids.count }) else {
            throw AnalysisError("\(path): the columns of /\(Batch.trials) differ in length")
        }
        let historyColumns = try file.readTableColumns(Batch.history, fields: TrialHistory.fields)
        let historyCount = historyColumns[TrialHistory.fields[0]]?.count ?? 0
        guard TrialHistory.fields.allSatisfy({ historyColumns[$0]?.count == historyCount }) else {
            throw AnalysisError("\(path): /\(Batch.history) lacks fields of \(TrialHistory.fields.joined(separator: ", "))")
        }
        history = historyColumns
        if file.contains(Batch.trajectory) {
            let (values, shape) = try file.read(Batch.trajectory, as: Double.self)
            guard shape.count == 2, shape[1] > 0, values.count == shape[0] * shape[1] else {
                throw AnalysisError("\(path): /\(Batch.trajectory) is not a table of points (shape \(shape))")
            }
            trajectory = (values, shape[1])
        }
        let points = trajectory.dimension == 0 ? 0 : trajectory.values.count / trajectory.dimension
        for k in ids.indices {
            func whole(_ c: Int) -> Int64 { Int64(exactly: numbers[c][k]) ?? -1 }
            guard let h = Batch.rowRange(start: whole(3), rows: whole(4), count: historyCount),
                let t = Batch.rowRange(start: whole(5), rows: whole(6), count: points)
            else { throw AnalysisError("\(path): trial \(ids[k])'s rows are not within the shared tables") }
            rows[ids[k]] = Row(
                status: status[k], message: message[k], config: config[k], wallSeconds: wall[k], parameterCount: Int(max(0, whole(0))),
                optimizerStateBytes: Int(max(0, whole(1))), grouped: whole(2) == 1, history: h, trajectory: t)
        }
    }

    /// The trial's details from the tables; nil when it is a group of the file (or not in it).
    func details(id: String) throws -> TrialDetails? {
        guard let row = rows[id], !row.grouped else { return nil }
        var h = TrialHistory()
        let c = TrialHistory.fields.map { Array(history[$0]![row.history]) }
        (h.epoch, h.step, h.trainLoss, h.testLoss, h.testAccuracy) = (c[0], c[1], c[2], c[3], c[4])
        (h.gradNorm, h.lr, h.seconds, h.evalSeconds) = (c[5], c[6], c[7], c[8])
        let d = trajectory.dimension
        let points = row.trajectory.map { p in Array(trajectory.values[(p * d)..<((p + 1) * d)]) }
        return TrialDetails(
            status: row.status, message: row.message,
            config: row.config.isEmpty ? nil : try? TrialConfig.read(yaml: row.config, source: "\(path):\(id)"),
            configJSON: row.config, optimizerStateBytes: row.optimizerStateBytes, parameterCount: row.parameterCount,
            wallSeconds: row.wallSeconds, history: h, trajectory: points, lrRange: nil, layers: nil, lineage: nil)
    }
}

/// Data sets the report draws when a trial has them. No trainer writes them yet: these names
/// are the layout the report expects, and every chart built on them is omitted when they are
/// absent (nothing is ever drawn from invented data).
public enum OptionalData {
    /// `lr_range_test`: a table with float64 fields `lr` and `loss`, one row per step of an LR
    /// range test (learning rate growing exponentially, as in the LR-finder of the course notes).
    public static let lrRangeTable = ResultsLayout.Trial.lrRangeTest
    /// `layer_stats`: a table with a string field `layer`, a float64 field `epoch` and float64
    /// fields such as `update_norm` and `activation_delta` (per-layer update norms and activation
    /// changes, as in the Lion/SOAP homework's diagnostics).
    public static let layerTable = ResultsLayout.Trial.layerStats
    public static let layerQuantities = [ResultsLayout.Trial.LayerStat.updateNorm, .activationDelta, .weightNorm, .gradNorm].map(\.rawValue)

    static func lrRange(in g: HDF5Group) -> LRRangeCurve? {
        let (lrField, lossField) = (ResultsLayout.Trial.lrRangeLR, ResultsLayout.Trial.lrRangeLoss)
        guard g.contains(lrRangeTable), let fields = try? g.tableFields(lrRangeTable), fields.contains(lrField), fields.contains(lossField),
            let lr = try? g.readTableColumn(lrRangeTable, field: lrField),
            let loss = try? g.readTableColumn(lrRangeTable, field: lossField), !lr.isEmpty, lr.count == loss.count
        else { return nil }
        return LRRangeCurve(lr: lr, loss: loss)
    }

    static func layers(in g: HDF5Group) -> LayerDiagnostics? {
        let (layerField, epochField) = (ResultsLayout.Trial.layerStatsLayer, ResultsLayout.Trial.layerStatsEpoch)
        guard g.contains(layerTable), let fields = try? g.tableFields(layerTable), fields.contains(epochField),
            let names = try? g.readTableStringColumn(layerTable, field: layerField),
            let epochs = try? g.readTableColumn(layerTable, field: epochField)
        else { return nil }
        var series: [String: [String: [(x: Double, y: Double)]]] = [:]
        for quantity in layerQuantities where fields.contains(quantity) {
            guard let values = try? g.readTableColumn(layerTable, field: quantity), values.count == names.count else { continue }
            for i in names.indices where values[i].isFinite { series[quantity, default: [:]][names[i], default: []].append((epochs[i], values[i])) }
        }
        return series.isEmpty ? nil : LayerDiagnostics(series: series)
    }
}

func wholeNumber(_ x: Double) -> Int? { x.isFinite && abs(x) < 1e15 ? Int(x) : nil }

func mean(_ xs: [Double]) -> Double { xs.isEmpty ? .nan : xs.reduce(0, +) / Double(xs.count) }

/// Numbers in hyperparameter and table cells: integers as integers, the rest with up to 6
/// significant digits (`0.001`, `3e-05`, `0.8715`).
public func formatNumber(_ x: Double, digits: Int = 6) -> String {
    if x.isNaN { return "nan" }
    if x.isInfinite { return x > 0 ? "inf" : "-inf" }
    if x == x.rounded(), abs(x) < 1e9 { return String(Int(x)) }
    return String(format: "%.\(digits)g", x)
}
