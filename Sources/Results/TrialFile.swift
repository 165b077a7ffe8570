import HDF5
import Learning
import SweepCore

/// The HDF5 file of one trial:
///
///     /                      attributes: format, format_version, trial_id (single-trial files),
///                            model, optimizer, status, message, config (canonical JSON), engine,
///                            wall_seconds, parameter_count, optimizer_state_bytes
///     /config/               single-trial files: one attribute per trial key (numbers as
///                            float64, the rest as text)
///     /history               a table (compound dataset), one row per epoch (per step for toy
///                            objectives), float64 fields: epoch, step, train_loss, test_loss,
///                            test_accuracy, grad_norm, lr, seconds, eval_seconds;
///                            `pd.DataFrame(f["history"][:])` reads it
///                            then a program trial's own metrics, one float64 field each
///     program_ending, program_stdout, program_stderr
///                            program trials: how the program ended (`exit 0`, `signal 9`, …)
///                            and the tails of its standard output and error (text attributes)
///     /trajectory            toy objectives: (steps + 1) × dimension points, float64
///     /lr_range_test         `mode: lr_range_test`: a table (lr, loss = the smoothed loss), one
///                            row per step; attribute `suggested_lr` on the trial (NaN if none)
///     sharpness              attribute, `sharpness_rho: ρ`: L(w + ρ·g/‖g‖) − L(w) at the end
///     /layer_stats           `diagnostics: true`: a table, one row per layer and epoch: layer
///                            (text), epoch, update_norm, update_spectral_norm, weight_norm,
///                            grad_norm, activation_delta (see `LayerStatistics`)
///     /optimizer_state       a table, one row per parameter tensor: tensor (text), bytes (int64)
///                            of optimizer state at the end; state of no single tensor (step
///                            counters) is the row `(global)`; the rows sum to
///                            optimizer_state_bytes
///     optimizer_work_NAME    attributes (int64): the optimizer's work counters, e.g. Shampoo's
///                            optimizer_work_eigendecompositions and optimizer_work_eigenbases_kept
///     pbt_*                  population-based training: pbt_member, pbt_generation (int64),
///                            pbt_parent (text, the trial whose checkpoint it continued; empty in
///                            generation 0), pbt_parent_epoch (int64), pbt_exploited (0 or 1)
public enum TrialFile {
    public static let format = ResultsLayout.Trial.format
    public static let formatVersion = ResultsLayout.Trial.formatVersion

    /// Writes the result durably (temporary file, fsync, rename).
    public static func write(_ result: TrialResult, id: String, to path: String) throws {
        try writeAtomically(path) { temporary in
            let file = try HDF5File(temporary, mode: .create)
            try file.setAttribute(ResultsLayout.formatAttribute, format)
            try file.setAttribute(ResultsLayout.formatVersionAttribute, formatVersion)
            try file.setAttribute(ResultsLayout.Trial.trialID, id)
            try write(result, id: id, into: file, configAttributes: true)
            try file.flush()
        }
    }

    /// Writes a trial into a group. `configAttributes` adds `/config/KEY` attributes (single-trial
    /// files); batch files of a sweep leave them out, the sweep index has `/hparams` instead.
    public static func write(_ result: TrialResult, id: String, into group: HDF5Group, configAttributes: Bool = false) throws {
        typealias Trial = ResultsLayout.Trial
        let config = result.config
        try group.setAttribute(Trial.model, config.modelLabel)
        try group.setAttribute(Trial.optimizer, config.optimizerName)
        try group.setAttribute(Trial.status, result.status.rawValue)
        try group.setAttribute(Trial.message, result.message ?? "")
        try group.setAttribute(Trial.config, config.canonicalJSON)
        try group.setAttribute(Trial.engine, result.engine)
        try group.setAttribute(Trial.wallSeconds, result.wallSeconds)
        try group.setAttribute(Trial.parameterCount, Int64(result.parameterCount))
        try group.setAttribute(Trial.optimizerStateBytes, Int64(result.optimizerStateBytes))
        if configAttributes {
            let configGroup = try group.createGroup(Trial.configGroup)
            for (key, value) in config.values.sorted(by: { $0.key < $1.key }) {
                if let x = value.asDouble { try configGroup.setAttribute(key, x) } else { try configGroup.setAttribute(key, value.description) }
            }
        }
        let rows = result.history.map(\.row)
        var columns: [TableColumn] = EpochRecord.columns.enumerated().map { c, name in .float64(name, rows.map { $0[c] }) }
        columns += result.extraHistory.sorted { $0.key < $1.key }.map { .float64($0.key, $0.value) }
        try group.writeTable(Trial.history, columns, compact: rows.count <= 4096)
        if let output = result.programOutput {
            try group.setAttribute(Trial.programEnding, output.ending)
            try group.setAttribute(Trial.programStdout, output.stdoutTail)
            try group.setAttribute(Trial.programStderr, output.stderrTail)
        }
        if !result.trajectory.isEmpty {
            let d = result.trajectory[0].count
            let layout: DatasetLayout = result.trajectory.count > 1024 ? .compressed(chunk: [4096, d]) : .contiguous
            try group.write(Trial.trajectory, result.trajectory.flatMap { $0 }, shape: [result.trajectory.count, d], layout: layout)
        }
        if let test = result.lrRangeTest {
            try group.writeTable(
                Trial.lrRangeTest, [.float64(Trial.lrRangeLR, test.learningRates), .float64(Trial.lrRangeLoss, test.smoothedLosses)],
                compact: test.learningRates.count <= 4096)
            try group.setAttribute(Trial.suggestedLR, test.suggested ?? .nan)
        }
        try LayerStatisticsTable.write(result.layerStatistics, into: group)
        if let sharpness = result.sharpness { try group.setAttribute(Trial.sharpness, sharpness) }
        if !result.optimizerStateByTensor.isEmpty {
            let rows = result.optimizerStateByTensor
            try group.writeTable(
                Trial.optimizerState,
                [
                    .string(Trial.optimizerStateTensor, rows.map(\.tensor), width: max(8, rows.map(\.tensor.utf8.count).max() ?? 8)),
                    .int64(Trial.optimizerStateBytesColumn, rows.map { Int64($0.bytes) }),
                ],
                compact: true)
        }
        for (name, count) in result.optimizerWork.sorted(by: { $0.key < $1.key }) {
            try group.setAttribute(Trial.optimizerWork(name), Int64(count))
        }
        if let lineage = result.lineage {
            try group.setAttribute(Trial.pbtMember, Int64(lineage.member))
            try group.setAttribute(Trial.pbtGeneration, Int64(lineage.generation))
            try group.setAttribute(Trial.pbtParent, lineage.parent ?? "")
            try group.setAttribute(Trial.pbtParentEpoch, Int64(lineage.parentEpoch))
            try group.setAttribute(Trial.pbtExploited, Int64(lineage.exploited ? 1 : 0))
        }
    }
}

/// The `layer_stats` table of trial and checkpoint files.
enum LayerStatisticsTable {
    static let name = ResultsLayout.Trial.layerStats

    static func write(_ rows: [LayerStatistics], into group: HDF5Group) throws {
        guard !rows.isEmpty else { return }
        let width = max(8, rows.map(\.layer.utf8.count).max() ?? 8)
        var columns: [TableColumn] = [
            .string(ResultsLayout.Trial.layerStatsLayer, rows.map(\.layer), width: width),
            .float64(ResultsLayout.Trial.layerStatsEpoch, rows.map { Double($0.epoch) }),
        ]
        for (c, column) in LayerStatistics.columns.enumerated() { columns.append(.float64(column, rows.map { $0.values[c] })) }
        try group.writeTable(name, columns, compact: rows.count <= 4096)
    }

    static func read(_ group: HDF5Group) throws -> [LayerStatistics] {
        guard group.contains(name) else { return [] }
        let layers = try group.readTableStringColumn(name, field: ResultsLayout.Trial.layerStatsLayer)
        let epochs = try group.readTableColumn(name, field: ResultsLayout.Trial.layerStatsEpoch)
        let values = try LayerStatistics.columns.map { try group.readTableColumn(name, field: $0) }
        return layers.indices.map { r in
            LayerStatistics(
                layer: layers[r], epoch: Int(epochs[r]), updateNorm: values[0][r], updateSpectralNorm: values[1][r], weightNorm: values[2][r],
                gradNorm: values[3][r], activationDelta: values[4][r])
        }
    }
}
