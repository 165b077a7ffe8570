import Foundation
import Glibc
import HDF5
import Learning
import SweepCore

/// A finished attempt on its way to disk.
public struct FinishedTrial: Sendable {
    public var id: String
    public var index: Int
    public var branch: String
    public var result: TrialResult
    public var attempts: Int
    public var host: String
    public var worker: String

    public init(id: String, index: Int, branch: String, result: TrialResult, attempts: Int, host: String, worker: String) {
        self.id = id
        self.index = index
        self.branch = branch
        self.result = result
        self.attempts = attempts
        self.host = host
        self.worker = worker
    }
}

/// What the results directory says about a committed trial.
public struct CommittedTrial: Sendable, Equatable, MetricValues {
    public var id: String
    public var file: String
    public var status: TrialStatus
    public var attempts: Int
    public var host: String
    public var epochs: Int
    public var trainLoss: Double
    public var testLoss: Double
    public var testAccuracy: Double
    public var wallSeconds: Double
    /// Whether the trial is a group of its batch file (linked from `/by_id`), not rows of its
    /// shared tables (`ResultsLayout.Batch`).
    public var grouped: Bool
}

/// A trial's row in the sweep index, committed or not.
public struct IndexRow: Sendable {
    public var id: String
    public var index: Int
    public var branch: String
    public var config: TrialConfig
    /// queued, running, done, diverged, failed, stopped
    public var status: String
    public var committed: CommittedTrial?

    public init(id: String, index: Int, branch: String, config: TrialConfig, status: String, committed: CommittedTrial?) {
        self.id = id
        self.index = index
        self.branch = branch
        self.config = config
        self.status = status
        self.committed = committed
    }
}

/// The results directory of a sweep, written by the coordinator alone:
///
///     OUT/sweep.h5                 the index: metadata, the sweep file, /trials (one row per
///                                  trial), /hparams/KEY (aligned), /by_id/ID → external links
///                                  to the trials that are groups
///     OUT/trials/batch-NNNNNNNN.h5 committed trials: /trials, a row each; small trials as rows
///                                  of the shared tables, the others as groups (the trial-file
///                                  layout plus attempts, host, worker, branch, index), see
///                                  `BatchTables`
///
/// Finished trials are committed in groups: one batch file written to a temporary name, fsynced,
/// renamed and the directory fsynced, so a trial counts as finished only once it is durable and
/// a crash can lose only work that was never reported finished. Batch files are never opened
/// for writing again; the index is rebuilt from them and swapped in by the same rename, so
/// readers (h5py, h5dump) can open it at any time while the sweep runs.
public final class SweepStore {
    public let directory: String
    var nextBatch: Int
    public private(set) var committed: [String: CommittedTrial] = [:]

    public static let indexName = ResultsLayout.indexFile

    /// `OUT/checkpoints/ID.h5`: the latest checkpoint of a trial in progress (see `Sweep.checkpoints`).
    public func checkpointPath(id: String) -> String { "\(directory)/\(ResultsLayout.checkpointFile(id: id))" }

    /// Stores a checkpoint durably if `check` finds nothing wrong with the written file; returns
    /// the problem otherwise (the stored checkpoint, if any, is then left as it was).
    public func saveCheckpoint(id: String, bytes: Data, check: (String) throws -> String? = { _ in nil }) throws -> String? {
        try makeDirectories("\(directory)/\(ResultsLayout.checkpointsDirectory)")
        struct Refused: Error { var problem: String }
        do {
            try writeAtomically(checkpointPath(id: id)) { temporary in
                try bytes.write(to: URL(fileURLWithPath: temporary))
                if let problem = try check(temporary) { throw Refused(problem: problem) }
            }
        } catch let refused as Refused {
            return refused.problem
        }
        return nil
    }

    /// The bytes of a trial's latest checkpoint, if it has one.
    public func checkpoint(id: String) -> Data? {
        FileManager.default.contents(atPath: checkpointPath(id: id))
    }

    public func deleteCheckpoint(id: String) { unlink(checkpointPath(id: id)) }
    public var indexPath: String { "\(directory)/\(Self.indexName)" }

    public init(directory: String) throws {
        self.directory = directory
        let trials = "\(directory)/\(ResultsLayout.trialsDirectory)"
        try makeDirectories(trials)
        nextBatch = 1
        // Temporary files are leftovers of a crash mid-write: never acknowledged, safe to drop.
        for name in try listDirectory(trials) where name.hasSuffix(ResultsLayout.temporarySuffix) {
            unlink("\(trials)/\(name)")
        }
        unlink(indexPath + ResultsLayout.temporarySuffix)
        try scan()
    }

    /// Reads every committed batch file (after a restart, or to check a finished sweep).
    func scan() throws {
        let trials = ResultsLayout.trialsDirectory
        let names = try listDirectory("\(directory)/\(trials)").filter(ResultsLayout.isBatchFile).sorted()
        for name in names {
            if let n = ResultsLayout.batchNumber(fileName: name) { nextBatch = max(nextBatch, n + 1) }
            let file = try HDF5File("\(directory)/\(trials)/\(name)", mode: .readOnly)
            let relative = "\(trials)/\(name)"
            guard BatchTables.hasTables(file) else {
                for id in try file.memberNames() { committed[id] = try Self.readCommitted(try file.group(id), id: id, file: relative) }
                continue
            }
            let (rows, history) = try BatchTables.read(file)
            for row in rows {
                if row.grouped {
                    committed[row.id] = try Self.readCommitted(try file.group(row.id), id: row.id, file: relative)
                    continue
                }
                let last = history[row.history].last
                committed[row.id] = CommittedTrial(
                    id: row.id, file: relative, status: row.status, attempts: row.attempts, host: row.host, epochs: row.history.count,
                    trainLoss: last?.trainLoss ?? .nan, testLoss: last?.testLoss ?? .nan, testAccuracy: last?.testAccuracy ?? .nan,
                    wallSeconds: row.wallSeconds, grouped: false)
            }
        }
    }

    /// The history of a committed trial, read back from its batch file.
    public func history(of trial: CommittedTrial) throws -> [EpochRecord] {
        let file = try HDF5File("\(directory)/\(trial.file)", mode: .readOnly)
        if !trial.grouped {
            let (rows, history) = try BatchTables.read(file)
            guard let row = rows.first(where: { $0.id == trial.id }) else { throw BatchTables.FileError(description: "\(trial.file) has no row of trial \(trial.id)") }
            return Array(history[row.history])
        }
        let columns = try file.group(trial.id).readTableColumns(ResultsLayout.Trial.history, fields: EpochRecord.columns)
        let count = columns[EpochRecord.columns[0]]?.count ?? 0
        return (0..<count).map { r in EpochRecord(row: EpochRecord.columns.map { columns[$0]?[r] ?? .nan }) }
    }

    static func readCommitted(_ g: HDF5Group, id: String, file: String) throws -> CommittedTrial {
        typealias Trial = ResultsLayout.Trial
        let status = TrialStatus(rawValue: try g.stringAttribute(Trial.status)) ?? .failed
        func column(_ name: String) throws -> [Double] { try g.readTableColumn(Trial.history, field: name) }
        func last(_ metric: Metric) throws -> Double { try column(metric.rawValue).last ?? .nan }
        let epochs = try column(Trial.historyColumns[0]).count
        return CommittedTrial(
            id: id, file: file, status: status, attempts: Int(try g.attribute(ResultsLayout.Batch.attempts, as: Int64.self)),
            host: try g.stringAttribute(ResultsLayout.Batch.host), epochs: epochs, trainLoss: try last(.trainLoss), testLoss: try last(.testLoss),
            testAccuracy: try last(.testAccuracy), wallSeconds: try g.attribute(Trial.wallSeconds, as: Double.self), grouped: true)
    }

    /// Writes the trials durably in one batch file and records them as committed: the small
    /// ones as rows of its shared tables, the others as groups (`BatchTables`).
    @discardableResult
    public func commit(_ trials: [FinishedTrial]) throws -> String {
        guard !trials.isEmpty else { return "" }
        let name = ResultsLayout.batchFile(nextBatch)
        nextBatch += 1
        var dimension: Int?
        let grouped = trials.map { t in
            guard BatchTables.fitsRows(t.result, dimension: dimension) else { return true }
            dimension = dimension ?? t.result.trajectory.first?.count
            return false
        }
        try writeAtomically("\(directory)/\(name)") { temporary in
            let file = try HDF5File(temporary, mode: .createExclusive)
            typealias Batch = ResultsLayout.Batch
            try file.setAttribute(ResultsLayout.formatAttribute, Batch.format)
            try file.setAttribute(ResultsLayout.formatVersionAttribute, Batch.formatVersion)
            try BatchTables.write(trials, grouped: grouped, into: file)
            for (t, own) in zip(trials, grouped) where own {
                let g = try file.createGroup(t.id)
                try TrialFile.write(t.result, id: t.id, into: g)
                try g.setAttribute(Batch.attempts, Int64(t.attempts))
                try g.setAttribute(Batch.host, t.host)
                try g.setAttribute(Batch.worker, t.worker)
                try g.setAttribute(Batch.branch, t.branch)
                try g.setAttribute(Batch.index, Int64(t.index))
            }
            try file.flush()
        }
        for (t, own) in zip(trials, grouped) {
            let h = t.result.history
            committed[t.id] = CommittedTrial(
                id: t.id, file: name, status: t.result.status, attempts: t.attempts, host: t.host, epochs: h.count,
                trainLoss: h.last?.trainLoss ?? .nan, testLoss: h.last?.testLoss ?? .nan, testAccuracy: h.last?.testAccuracy ?? .nan,
                wallSeconds: t.result.wallSeconds, grouped: own)
        }
        return name
    }

    /// Rebuilds `sweep.h5` and swaps it in atomically.
    public func writeIndex(metadata: [String: String], sweepText: String, rows: [IndexRow]) throws {
        try writeAtomically(indexPath) { temporary in
            let file = try HDF5File(temporary, mode: .create)
            typealias Index = ResultsLayout.Index
            typealias Column = ResultsLayout.Index.Column
            try file.setAttribute(ResultsLayout.formatAttribute, Index.format)
            try file.setAttribute(ResultsLayout.formatVersionAttribute, Index.formatVersion)
            for (k, v) in metadata.sorted(by: { $0.key < $1.key }) { try file.setAttribute(k, v) }
            try file.setAttribute(Index.sweepYAML, sweepText)
            try file.setAttribute(Index.trialCount, Int64(rows.count))
            for status in Index.countedStates {
                try file.setAttribute(Index.countAttribute(status), Int64(rows.filter { $0.status == status }.count))
            }
            let c = rows.map(\.committed)
            try file.writeTable(
                Index.trials,
                [
                    .string(Column.id, rows.map(\.id), width: 16),
                    .int64(Column.index, rows.map { Int64($0.index) }),
                    .string(Column.branch, rows.map(\.branch), width: 32),
                    .string(Column.model, rows.map(\.config.modelLabel), width: 16),
                    .string(Column.optimizer, rows.map(\.config.optimizerName), width: 32),
                    .string(Column.status, rows.map(\.status), width: 12),
                    .int64(Column.epochs, c.map { Int64($0?.epochs ?? 0) }),
                    .float64(Column.trainLoss, c.map { $0?.trainLoss ?? .nan }),
                    .float64(Column.testLoss, c.map { $0?.testLoss ?? .nan }),
                    .float64(Column.testAccuracy, c.map { $0?.testAccuracy ?? .nan }),
                    .float64(Column.wallSeconds, c.map { $0?.wallSeconds ?? .nan }),
                    .int64(Column.attempts, c.map { Int64($0?.attempts ?? 0) }),
                    .string(Column.host, c.map { $0?.host ?? "" }, width: 64),
                    .string(Column.file, c.map { $0?.file ?? "" }, width: 40),
                ])
            // One aligned column per hyperparameter: numbers as float64 (NaN where a trial does not
            // set the key), everything else as strings ("" where unset).
            let keys = Set(rows.flatMap { $0.config.values.keys }).sorted()
            let hparams = try file.createGroup(Index.hparams)
            for key in keys {
                let values = rows.map { $0.config.values[key] }
                if values.allSatisfy({ $0 == nil || $0?.asDouble != nil }) {
                    try hparams.write(key, values.map { $0?.asDouble ?? .nan })
                } else {
                    try hparams.writeStrings(key, values.map { $0?.description ?? "" })
                }
            }
            try file.writeStrings(Index.configs, rows.map(\.config.canonicalJSON))
            let byID = try file.createGroup(Index.byID)
            for row in rows {
                if let committed = row.committed, committed.grouped { try byID.linkExternal(row.id, file: committed.file, object: "/\(row.id)") }
            }
            try file.flush()
        }
    }
}

func listDirectory(_ path: String) throws -> [String] {
    guard let dir = opendir(path) else { throw FileSystemError(operation: "opendir", path: path, code: errno) }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}
