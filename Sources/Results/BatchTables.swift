import HDF5
import Learning
import SweepCore

/// The shared tables of a batch file (version 2, `ResultsLayout.Batch`): `/trials` with a row
/// per trial of the commit, and `/history`, `/trajectory` and `/optimizer_state` with the rows of
/// the trials small enough to have no group of their own. A group with a dozen attributes and
/// three small data sets costs HDF5 about a millisecond to create, which capped a sweep of
/// trivial trials near 1,000 trials/s; rows of a few shared tables cost microseconds.
enum BatchTables {
    typealias Batch = ResultsLayout.Batch
    typealias Column = ResultsLayout.Batch.Column

    /// Whether a trial is stored as rows: at most `Batch.maxHistoryRows` history rows, no
    /// per-trial data but a trajectory (of `dimension` columns, the file's) and optimizer state
    /// per tensor, and short texts. Anything else keeps the group layout that `TrialFile` writes.
    static func fitsRows(_ r: TrialResult, dimension: Int?) -> Bool {
        guard r.history.count <= Batch.maxHistoryRows, r.extraHistory.isEmpty, r.programOutput == nil, r.lrRangeTest == nil,
            r.layerStatistics.isEmpty, r.sharpness == nil, r.optimizerWork.isEmpty, r.lineage == nil,
            (r.message ?? "").utf8.count <= Batch.maxRowText, r.config.canonicalJSON.utf8.count <= Batch.maxRowText,
            r.engine.utf8.count <= Batch.maxRowText, r.optimizerStateByTensor.allSatisfy({ $0.tensor.utf8.count <= Batch.maxRowText })
        else { return false }
        guard let first = r.trajectory.first else { return true }
        return first.count > 0 && first.count == (dimension ?? first.count) && r.trajectory.allSatisfy { $0.count == first.count }
    }

    /// Writes the tables of `trials` into a new batch file; `grouped[k]` says whether trial k
    /// is written as its own group instead (by the caller), its row ranges then empty.
    static func write(_ trials: [FinishedTrial], grouped: [Bool], into file: HDF5File) throws {
        var starts = (history: [Int64](), trajectory: [Int64](), state: [Int64]())
        var counts = (history: [Int64](), trajectory: [Int64](), state: [Int64]())
        var history = [[Double]](repeating: [], count: EpochRecord.columns.count)
        var historyIDs: [String] = []
        var trajectory: [Double] = []
        var dimension = 0
        var state = (ids: [String](), tensors: [String](), bytes: [Int64]())
        for (t, own) in zip(trials, grouped) {
            let r = t.result
            starts.history.append(Int64(historyIDs.count))
            starts.trajectory.append(Int64(dimension == 0 ? 0 : trajectory.count / dimension))
            starts.state.append(Int64(state.ids.count))
            guard !own else {
                counts.history.append(0)
                counts.trajectory.append(0)
                counts.state.append(0)
                continue
            }
            for record in r.history {
                for (c, x) in record.row.enumerated() { history[c].append(x) }
                historyIDs.append(t.id)
            }
            if let first = r.trajectory.first { dimension = first.count }
            for point in r.trajectory { trajectory += point }
            for s in r.optimizerStateByTensor {
                state.ids.append(t.id)
                state.tensors.append(s.tensor)
                state.bytes.append(Int64(s.bytes))
            }
            counts.history.append(Int64(r.history.count))
            counts.trajectory.append(Int64(r.trajectory.count))
            counts.state.append(Int64(r.optimizerStateByTensor.count))
        }
        func text(_ name: String, _ values: [String]) -> TableColumn {
            .string(name, values, width: max(1, values.map(\.utf8.count).max() ?? 1))
        }
        let results = trials.map(\.result)
        let integers: [String: [Int64]] = [
            Column.index: trials.map { Int64($0.index) }, Column.parameterCount: results.map { Int64($0.parameterCount) },
            Column.optimizerStateBytes: results.map { Int64($0.optimizerStateBytes) }, Column.attempts: trials.map { Int64($0.attempts) },
            Column.group: grouped.map { $0 ? 1 : 0 }, Column.historyStart: starts.history, Column.historyRows: counts.history,
            Column.trajectoryStart: starts.trajectory, Column.trajectoryRows: counts.trajectory,
            Column.optimizerStateStart: starts.state, Column.optimizerStateRows: counts.state,
        ]
        try file.writeTable(
            Batch.trials,
            [
                text(Column.id, trials.map(\.id)), text(Column.branch, trials.map(\.branch)), text(Column.model, results.map(\.config.modelLabel)),
                text(Column.optimizer, results.map(\.config.optimizerName)), text(Column.status, results.map(\.status.rawValue)),
                text(Column.message, results.map { $0.message ?? "" }), text(Column.config, results.map(\.config.canonicalJSON)),
                text(Column.engine, results.map(\.engine)), text(Column.host, trials.map(\.host)), text(Column.worker, trials.map(\.worker)),
                .float64(Column.wallSeconds, results.map(\.wallSeconds)),
            ] + Column.integers.map { .int64($0, integers[$0] ?? []) })
        try file.writeTable(
            Batch.history, [text(Batch.idField, historyIDs)] + EpochRecord.columns.enumerated().map { .float64($1, history[$0]) })
        if dimension > 0 {
            try file.write(Batch.trajectory, trajectory, shape: [trajectory.count / dimension, dimension])
        }
        try file.writeTable(
            Batch.optimizerState,
            [
                text(Batch.idField, state.ids), text(ResultsLayout.Trial.optimizerStateTensor, state.tensors),
                .int64(ResultsLayout.Trial.optimizerStateBytesColumn, state.bytes),
            ])
    }

    /// Whether a batch file has the tables (version 2 and later), or only groups (version 1).
    static func hasTables(_ file: HDF5File) -> Bool {
        let version = (try? file.attribute(ResultsLayout.formatVersionAttribute, as: Int64.self)) ?? 1
        return version >= Batch.tablesVersion
    }

    /// A row of `/trials`, as far as the coordinator needs it to resume.
    struct Row {
        var id: String
        var status: TrialStatus
        var attempts: Int
        var host: String
        var wallSeconds: Double
        var grouped: Bool
        var history: Range<Int>
    }

    struct FileError: Error, CustomStringConvertible {
        var description: String
    }

    /// The rows of `/trials` and the shared history, checked: a file that names rows its tables
    /// do not have, or whose columns disagree in length, is refused with what is wrong.
    static func read(_ file: HDF5File) throws -> (rows: [Row], history: [EpochRecord]) {
        let path = file.filePath
        let ids = try file.readTableStringColumn(Batch.trials, field: Column.id)
        let status = try file.readTableStringColumn(Batch.trials, field: Column.status)
        let host = try file.readTableStringColumn(Batch.trials, field: Column.host)
        let numbers = try file.readTableColumns(Batch.trials, fields: [Column.wallSeconds])
        let wanted = [Column.attempts, Column.group, Column.historyStart, Column.historyRows]
        let fields = Set(try file.tableFields(Batch.trials))
        guard wanted.allSatisfy(fields.contains), let wall = numbers[Column.wallSeconds] else {
            throw FileError(description: "\(path): /\(Batch.trials) lacks fields (it has \(fields.sorted().joined(separator: ", ")))")
        }
        let integers = try wanted.map { try file.readTableColumn(Batch.trials, field: $0) }
        guard [status.count, host.count, wall.count].allSatisfy({ $0 == ids.count }), integers.allSatisfy({ $0.count == ids.count }) else {
            throw FileError(description: "\(path): the columns of /\(Batch.trials) differ in length")
        }
        let columns = try file.readTableColumns(Batch.history, fields: EpochRecord.columns)
        let historyRows = columns[EpochRecord.columns[0]]?.count ?? 0
        guard EpochRecord.columns.allSatisfy({ columns[$0]?.count == historyRows }) else {
            throw FileError(description: "\(path): /\(Batch.history) lacks fields of \(EpochRecord.columns.joined(separator: ", "))")
        }
        let history = (0..<historyRows).map { r in EpochRecord(row: EpochRecord.columns.map { columns[$0]![r] }) }
        var rows: [Row] = []
        rows.reserveCapacity(ids.count)
        for k in ids.indices {
            let (attempts, group, start, count) = (integers[0][k], integers[1][k], integers[2][k], integers[3][k])
            guard let range = ResultsLayout.Batch.rowRange(start: Int64(exactly: start) ?? -1, rows: Int64(exactly: count) ?? -1, count: historyRows) else {
                throw FileError(description: "\(path): trial \(ids[k])'s history rows (\(start), \(count)) are not within /\(Batch.history)'s \(historyRows)")
            }
            rows.append(
                Row(
                    id: ids[k], status: TrialStatus(rawValue: status[k]) ?? .failed, attempts: Int(exactly: attempts) ?? 0, host: host[k],
                    wallSeconds: wall[k], grouped: group == 1, history: range))
        }
        return (rows, history)
    }
}
