import Analysis
import Foundation
import HDF5
import Learning
import Results
import SweepCore
import Testing

/// Batch files of format 2 (`ResultsLayout.Batch`): trials with one row of history are rows of
/// shared tables, the others groups; both read back as written, by the analysis and by a
/// resuming coordinator's `SweepStore`; version-1 files (a group per trial) stay readable; a
/// file whose tables name rows they do not have is refused.
struct BatchTablesTests {
    typealias Batch = ResultsLayout.Batch

    static let configs = [
        "{model: quadratic, steps: 1, optimizer: sgd, lr: 0.01}", "{model: quadratic, steps: 1, optimizer: sgd, lr: 0.3}",
        "{model: rosenbrock, steps: 5, optimizer: adam, lr: 0.01}", "{model: quadratic, steps: 1, optimizer: adam, lr: 0.1}",
    ]

    static func finished(_ yaml: [String]) throws -> [FinishedTrial] {
        try yaml.enumerated().map { i, text in
            let config = try TrialConfig.parse(yaml: text, source: "config \(i)")
            return FinishedTrial(id: TrialID.of(config), index: i, branch: "b\(i)", result: try Trainer.run(config), attempts: i + 1, host: "host-\(i)", worker: "w")
        }
    }

    static func index(_ store: SweepStore, _ trials: [FinishedTrial]) throws {
        let rows = trials.map { t in
            IndexRow(id: t.id, index: t.index, branch: t.branch, config: t.result.config, status: t.result.status.rawValue, committed: store.committed[t.id])
        }
        try store.writeIndex(metadata: ["name": "tables", "objective_metric": "train_loss", "objective_mode": "min"], sweepText: "name: tables\n", rows: rows)
    }

    /// What the analysis reads of a trial is what was committed.
    static func expectRead(_ row: TrialRow, as t: FinishedTrial) {
        guard let d = row.details else {
            Issue.record("trial \(t.id): \(row.detailsError ?? "no details")")
            return
        }
        let r = t.result
        #expect(d.status == r.status.rawValue && d.message == (r.message ?? "") && d.configJSON == r.config.canonicalJSON)
        #expect(d.history.epoch == r.history.map { Double($0.epoch) } && d.history.trainLoss == r.history.map(\.trainLoss))
        #expect(d.history.lr == r.history.map(\.learningRate) && d.history.seconds == r.history.map(\.seconds))
        #expect(d.trajectory == r.trajectory && d.wallSeconds == r.wallSeconds)
        #expect(d.parameterCount == r.parameterCount && d.optimizerStateBytes == r.optimizerStateBytes)
        #expect(row.attempts == t.attempts && row.host == t.host && row.epochs == r.history.count)
    }

    @Test func oneRowTrialsAreTableRowsTheOthersGroups() throws {
        let directory = Fixture.temporaryDirectory("tables")
        let store = try SweepStore(directory: directory)
        let trials = try Self.finished(Self.configs)
        let name = try store.commit(trials)
        try Self.index(store, trials)

        let batch = try HDF5File("\(directory)/\(name)", mode: .readOnly)
        #expect(try batch.attribute(ResultsLayout.formatVersionAttribute, as: Int64.self) == Batch.formatVersion)
        #expect(try batch.readTableStringColumn(Batch.trials, field: Batch.Column.id) == trials.map(\.id))
        #expect(try batch.readTableColumn(Batch.trials, field: Batch.Column.group) == [0, 0, 1, 0])
        // Only the 5-step trial is a group, and only it has a /by_id link.
        #expect(try batch.memberNames().filter { !$0.hasPrefix(Batch.history) }.sorted() == [Batch.optimizerState, Batch.trajectory, Batch.trials, trials[2].id].sorted())
        #expect(try batch.group(trials[2].id).readTableColumn(ResultsLayout.Trial.history, field: "epoch") == [1, 2, 3, 4, 5])
        #expect(try HDF5File("\(directory)/\(ResultsLayout.indexFile)", mode: .readOnly).group(ResultsLayout.Index.byID).memberNames() == [trials[2].id])
        // The shared tables: one history row and two trajectory points per one-row trial.
        #expect(batch.rowCount(Batch.history) == 3)
        #expect(try batch.read(Batch.trajectory, as: Double.self).shape == [6, 2])
        #expect(try batch.readTableStringColumn(Batch.history, field: Batch.idField) == [trials[0].id, trials[1].id, trials[3].id])

        let results = try SweepResults.load(directory)
        for t in trials { Self.expectRead(results.trials.first { $0.id == t.id }!, as: t) }

        // A resuming coordinator reads the same committed trials back, and their histories.
        let reopened = try SweepStore(directory: directory)
        for t in trials {
            let (a, b) = (store.committed[t.id]!, reopened.committed[t.id]!)
            #expect(a.file == b.file && a.status == b.status && a.attempts == b.attempts && a.host == b.host && a.epochs == b.epochs)
            #expect(a.grouped == b.grouped && a.grouped == (t.result.history.count > Batch.maxHistoryRows))
            #expect(a.trainLoss == b.trainLoss && a.wallSeconds == b.wallSeconds)
            #expect(try reopened.history(of: b).map(\.trainLoss) == t.result.history.map(\.trainLoss))
        }
        // The next commit goes to a new file.
        #expect(try reopened.commit(try Self.finished(["{model: quadratic, steps: 1, optimizer: sgd, lr: 0.02}"])) == ResultsLayout.batchFile(2))
    }

    /// A failure message over `Batch.maxRowText` bytes would widen every row's message column:
    /// such a trial is a group, the others stay rows.
    @Test func aTrialWithALongMessageIsAGroup() throws {
        let directory = Fixture.temporaryDirectory("long-message")
        let store = try SweepStore(directory: directory)
        var trials = try Self.finished(Array(Self.configs.prefix(2)))
        trials[1].result.status = .failed
        trials[1].result.message = String(repeating: "x", count: Batch.maxRowText + 1)
        try store.commit(trials)
        #expect(store.committed[trials[0].id]?.grouped == false && store.committed[trials[1].id]?.grouped == true)
        try Self.index(store, trials)
        let results = try SweepResults.load(directory)
        for t in trials { Self.expectRead(results.trials.first { $0.id == t.id }!, as: t) }
    }

    /// Files written before the tables (format_version 1: a group per trial, no `/trials`) are
    /// read as before, by the analysis and by a resuming coordinator.
    @Test func versionOneBatchFilesStayReadable() throws {
        let directory = Fixture.temporaryDirectory("v1")
        let trials = try Self.finished(Self.configs)
        try makeDirectories("\(directory)/\(ResultsLayout.trialsDirectory)")
        do {
            let file = try HDF5File("\(directory)/\(ResultsLayout.batchFile(1))", mode: .create)
            try file.setAttribute(ResultsLayout.formatAttribute, Batch.format)
            try file.setAttribute(ResultsLayout.formatVersionAttribute, Int64(1))
            for t in trials {
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
        let store = try SweepStore(directory: directory)
        #expect(Set(store.committed.keys) == Set(trials.map(\.id)) && store.committed.values.allSatisfy(\.grouped))
        try Self.index(store, trials)
        #expect(try HDF5File("\(directory)/\(ResultsLayout.indexFile)", mode: .readOnly).group(ResultsLayout.Index.byID).memberNames().count == trials.count)
        let results = try SweepResults.load(directory)
        for t in trials { Self.expectRead(results.trials.first { $0.id == t.id }!, as: t) }
        #expect(try store.commit(try Self.finished(["{model: quadratic, steps: 1, optimizer: sgd, lr: 0.02}"])) == ResultsLayout.batchFile(2))
    }

    /// A batch file is untrusted: rows that point past the shared tables are refused with what
    /// is wrong, by the analysis (that trial's details) and by a resuming coordinator.
    @Test func rowsOutsideTheSharedTablesAreRefused() throws {
        let directory = Fixture.temporaryDirectory("forged")
        let store = try SweepStore(directory: directory)
        let trials = try Self.finished(Array(Self.configs.prefix(2)))
        let name = try store.commit(trials)
        try Self.index(store, trials)
        // The same file forged: the second trial's history starts past the table's one row.
        let path = "\(directory)/\(name)"
        let valid = try HDF5File(path, mode: .readOnly)
        var strings: [String: [String]] = [:]
        for field in try valid.tableFields(Batch.trials) {
            strings[field] = try? valid.readTableStringColumn(Batch.trials, field: field)
        }
        let numbers = try valid.readTableColumns(Batch.trials, fields: [Batch.Column.wallSeconds])
        var integers = try Batch.Column.integers.map { ($0, try valid.readTableColumn(Batch.trials, field: $0).map { Int64($0) }) }
        let history = try valid.readTableColumns(Batch.history, fields: EpochRecord.columns)
        let k = integers.firstIndex { $0.0 == Batch.Column.historyStart }!
        integers[k].1[1] = 7
        try FileManager.default.removeItem(atPath: path)
        do {
            let file = try HDF5File(path, mode: .create)
            try file.setAttribute(ResultsLayout.formatAttribute, Batch.format)
            try file.setAttribute(ResultsLayout.formatVersionAttribute, Batch.formatVersion)
            let text = strings.sorted { $0.key < $1.key }.map { TableColumn.string($0.key, $0.value, width: 128) }
            try file.writeTable(
                Batch.trials, text + [.float64(Batch.Column.wallSeconds, numbers[Batch.Column.wallSeconds]!)] + integers.map { .int64($0.0, $0.1) })
            try file.writeTable(
                Batch.history, [.string(Batch.idField, [trials[0].id, trials[1].id], width: 16)] + EpochRecord.columns.map { .float64($0, history[$0]!) })
            try file.flush()
        }
        let results = try SweepResults.load(directory)
        for t in trials {
            let row = results.trials.first { $0.id == t.id }!
            #expect(row.details == nil && row.detailsError?.contains("not within the shared tables") == true, Comment(rawValue: row.detailsError ?? ""))
        }
        #expect {
            _ = try SweepStore(directory: directory)
        } throws: { "\($0)".contains("are not within /history") }
    }
}
