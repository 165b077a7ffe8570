import HDF5
import Learning

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
public enum TrialFile {
    public static let format = "optimizer-sweeps/trial"
    public static let formatVersion: Int64 = 1

    /// Writes the result durably (temporary file, fsync, rename).
    public static func write(_ result: TrialResult, id: String, to path: String) throws {
        try writeAtomically(path) { temporary in
            let file = try HDF5File(temporary, mode: .create)
            try file.setAttribute("format", format)
            try file.setAttribute("format_version", formatVersion)
            try file.setAttribute("trial_id", id)
            try write(result, id: id, into: file, configAttributes: true)
            try file.flush()
        }
    }

    /// Writes a trial into a group. `configAttributes` adds `/config/KEY` attributes (single-trial
    /// files); batch files of a sweep leave them out, the sweep index has `/hparams` instead.
    public static func write(_ result: TrialResult, id: String, into group: HDF5Group, configAttributes: Bool = false) throws {
        let config = result.config
        try group.setAttribute("model", config.model)
        try group.setAttribute("optimizer", config.optimizerName)
        try group.setAttribute("status", result.status.rawValue)
        try group.setAttribute("message", result.message ?? "")
        try group.setAttribute("config", config.canonicalJSON)
        try group.setAttribute("engine", result.engine)
        try group.setAttribute("wall_seconds", result.wallSeconds)
        try group.setAttribute("parameter_count", Int64(result.parameterCount))
        try group.setAttribute("optimizer_state_bytes", Int64(result.optimizerStateBytes))
        if configAttributes {
            let configGroup = try group.createGroup("config")
            for (key, value) in config.values.sorted(by: { $0.key < $1.key }) {
                if let x = value.asDouble { try configGroup.setAttribute(key, x) } else { try configGroup.setAttribute(key, value.description) }
            }
        }
        let rows = result.history.map(\.row)
        try group.writeTable("history", EpochRecord.columns.enumerated().map { c, name in .float64(name, rows.map { $0[c] }) }, compact: rows.count <= 4096)
        if !result.trajectory.isEmpty {
            let d = result.trajectory[0].count
            let layout: DatasetLayout = result.trajectory.count > 1024 ? .compressed(chunk: [4096, d]) : .contiguous
            try group.write("trajectory", result.trajectory.flatMap { $0 }, shape: [result.trajectory.count, d], layout: layout)
        }
        if let test = result.lrRangeTest {
            try group.writeTable("lr_range_test", [.float64("lr", test.learningRates), .float64("loss", test.smoothedLosses)], compact: test.learningRates.count <= 4096)
            try group.setAttribute("suggested_lr", test.suggested ?? .nan)
        }
        try LayerStatisticsTable.write(result.layerStatistics, into: group)
        if let sharpness = result.sharpness { try group.setAttribute("sharpness", sharpness) }
        if !result.optimizerStateByTensor.isEmpty {
            let rows = result.optimizerStateByTensor
            try group.writeTable(
                "optimizer_state",
                [.string("tensor", rows.map(\.tensor), width: max(8, rows.map(\.tensor.utf8.count).max() ?? 8)), .int64("bytes", rows.map { Int64($0.bytes) })],
                compact: true)
        }
        for (name, count) in result.optimizerWork.sorted(by: { $0.key < $1.key }) {
            try group.setAttribute("optimizer_work_\(name)", Int64(count))
        }
    }
}

/// The `layer_stats` table of trial and checkpoint files.
enum LayerStatisticsTable {
    static let name = "layer_stats"

    static func write(_ rows: [LayerStatistics], into group: HDF5Group) throws {
        guard !rows.isEmpty else { return }
        let width = max(8, rows.map(\.layer.utf8.count).max() ?? 8)
        var columns: [TableColumn] = [.string("layer", rows.map(\.layer), width: width), .float64("epoch", rows.map { Double($0.epoch) })]
        for (c, column) in LayerStatistics.columns.enumerated() { columns.append(.float64(column, rows.map { $0.values[c] })) }
        try group.writeTable(name, columns, compact: rows.count <= 4096)
    }

    static func read(_ group: HDF5Group) throws -> [LayerStatistics] {
        guard group.contains(name) else { return [] }
        let layers = try group.readTableStringColumn(name, field: "layer")
        let epochs = try group.readTableColumn(name, field: "epoch")
        let values = try LayerStatistics.columns.map { try group.readTableColumn(name, field: $0) }
        return layers.indices.map { r in
            LayerStatistics(
                layer: layers[r], epoch: Int(epochs[r]), updateNorm: values[0][r], updateSpectralNorm: values[1][r], weightNorm: values[2][r],
                gradNorm: values[3][r], activationDelta: values[4][r])
        }
    }
}
