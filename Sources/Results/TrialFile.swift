import HDF5
import Learning

/// The HDF5 file of one trial:
///
///     /                      attributes: format, format_version, trial_id, model, optimizer,
///                            status, message, config (canonical JSON), engine, wall_seconds,
///                            parameter_count, optimizer_state_bytes
///     /config/               one attribute per trial key (numbers as float64, the rest as text)
///     /history/<column>      float64 vectors, one entry per epoch (per step for toy objectives):
///                            epoch, step, train_loss, test_loss, test_accuracy, grad_norm, lr,
///                            seconds, eval_seconds
///     /trajectory            toy objectives: (steps + 1) × dimension points, float64
public enum TrialFile {
    public static let format = "optimizer-sweeps/trial"
    public static let formatVersion: Int64 = 1

    /// Writes the result durably (temporary file, fsync, rename).
    public static func write(_ result: TrialResult, id: String, to path: String) throws {
        try writeAtomically(path) { temporary in
            let file = try HDF5File(temporary, mode: .create)
            try write(result, id: id, into: file)
            try file.flush()
        }
    }

    public static func write(_ result: TrialResult, id: String, into group: HDF5Group) throws {
        let config = result.config
        try group.setAttribute("format", format)
        try group.setAttribute("format_version", formatVersion)
        try group.setAttribute("trial_id", id)
        try group.setAttribute("model", config.model)
        try group.setAttribute("optimizer", config.optimizerName)
        try group.setAttribute("status", result.status.rawValue)
        try group.setAttribute("message", result.message ?? "")
        try group.setAttribute("config", config.canonicalJSON)
        try group.setAttribute("engine", result.engine)
        try group.setAttribute("wall_seconds", result.wallSeconds)
        try group.setAttribute("parameter_count", Int64(result.parameterCount))
        try group.setAttribute("optimizer_state_bytes", Int64(result.optimizerStateBytes))
        let configGroup = try group.createGroup("config")
        for (key, value) in config.values.sorted(by: { $0.key < $1.key }) {
            if let x = value.asDouble { try configGroup.setAttribute(key, x) } else { try configGroup.setAttribute(key, value.description) }
        }
        let history = try group.createGroup("history")
        let rows = result.history.map(\.row)
        let layout = DatasetLayout.compressed(chunk: [1024], extendible: true)
        for (c, column) in EpochRecord.columns.enumerated() {
            try history.write(column, rows.map { $0[c] }, layout: layout)
        }
        if !result.trajectory.isEmpty {
            let d = result.trajectory[0].count
            try group.write("trajectory", result.trajectory.flatMap { $0 }, shape: [result.trajectory.count, d], layout: .compressed(chunk: [4096, d]))
        }
    }
}
