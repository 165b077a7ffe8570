import HDF5
import Learning
import Linalg
import SweepCore

/// A training checkpoint in HDF5, readable by h5py (`f["optimizer/fc1.weight/exp_avg"][:]`):
///
///     /                           attributes: format, format_version, config (canonical JSON),
///                                 epoch, step, precision, optimizer, state_names (JSON list)
///     /model/<parameter>          parameter tensors, in the trial's precision and shape
///     /optimizer/<param>/<state>  every optimizer state tensor (moments, statistics, bases…)
///     /optimizer/<name>           scalars and integer arrays (step counters) as int64
///     /rng/shuffle, /rng/noise    the two xoshiro256** states (uint64[4])
///     /schedule                   reduce-on-plateau state as attributes, when used
///     /history, /trajectory       as in trial files
///     /layer_stats                per-layer diagnostics so far, as in trial files
///
/// A program trial's checkpoint has no tensors, random states or schedule: its checkpoint
/// directory's files are `/files/data` (bytes, one file after another), `/files/sizes` and the
/// attribute `file_names`; precision is `program`. Reading checks every name (`RelativePath`) and
/// that the sizes add up to the data, within `ProgramLimits.maxCheckpointBytesAllowed`.
public enum CheckpointFile {
    public static let format = ResultsLayout.Checkpoint.format

    /// Writes durably (temporary file, fsync, rename).
    public static func write(_ c: TrainingCheckpoint, to path: String) throws {
        try writeAtomically(path) { temporary in
            let file = try HDF5File(temporary, mode: .create)
            try write(c, into: file)
            try file.flush()
        }
    }

    public static func write(_ c: TrainingCheckpoint, into group: HDF5Group) throws {
        typealias Layout = ResultsLayout.Checkpoint
        try group.setAttribute(ResultsLayout.formatAttribute, format)
        try group.setAttribute(ResultsLayout.formatVersionAttribute, Layout.formatVersion)
        try group.setAttribute(Layout.config, c.config.canonicalJSON)
        try group.setAttribute(Layout.epoch, Int64(c.epoch))
        try group.setAttribute(Layout.step, Int64(c.step))
        try group.setAttribute(Layout.precision, c.precision)
        try group.setAttribute(Layout.optimizer, c.config.optimizerName)
        switch c.payload {
        case .float32(let t): try writeTensors(t, into: group)
        case .float64(let t): try writeTensors(t, into: group)
        case .files(let files): try writeFiles(files, into: group)
        }
        let rows = c.history.map(\.row)
        var columns: [TableColumn] = EpochRecord.columns.enumerated().map { i, name in .float64(name, rows.map { $0[i] }) }
        columns += c.extraHistory.sorted { $0.key < $1.key }.map { .float64($0.key, $0.value) }
        try group.writeTable(ResultsLayout.Trial.history, columns, compact: rows.count <= 4096)
        if case .files = c.payload { return }
        try group.write(Layout.shuffleRNG, c.shuffle.words)
        try group.write(Layout.noiseRNG, c.noise.words)
        let schedule = try group.createGroup(Layout.schedule)
        if let p = c.plateau {
            try schedule.setAttribute(Layout.plateauBest, p.best)
            try schedule.setAttribute(Layout.plateauBadEpochs, Int64(p.badEpochs))
            try schedule.setAttribute(Layout.plateauCooldown, Int64(p.cooldownCounter))
            try schedule.setAttribute(Layout.plateauLR, p.learningRate)
        }
        if !c.trajectory.isEmpty {
            try group.write(ResultsLayout.Trial.trajectory, c.trajectory.flatMap { $0 }, shape: [c.trajectory.count, c.trajectory[0].count])
        }
        try LayerStatisticsTable.write(c.layerStatistics, into: group)
    }

    static func writeTensors<T: BLASScalar & HDF5Scalar>(_ t: CheckpointTensors<T>, into group: HDF5Group) throws {
        typealias Layout = ResultsLayout.Checkpoint
        try group.setAttribute(Layout.parameterNames, jsonList(t.names))
        for (name, value) in zip(t.names, t.parameters) { try group.write(Layout.parameter(name), value.storage, shape: value.shape) }
        if !t.bufferNames.isEmpty {
            try group.setAttribute(Layout.bufferNames, jsonList(t.bufferNames))
            for (name, value) in zip(t.bufferNames, t.buffers) { try group.write(Layout.parameter(name), value.storage, shape: value.shape) }
        }
        try group.setAttribute(Layout.stateNames, jsonList(t.optimizer.names))
        for name in t.optimizer.names {
            switch t.optimizer[name]! {
            case .real(let tensor): try group.write(Layout.optimizerState(name), tensor.storage, shape: tensor.shape)
            case .int64(let values, let shape): try group.write(Layout.optimizerState(name), values, shape: shape)
            case .uint8(let values, let shape): try group.write(Layout.optimizerState(name), values, shape: shape)
            }
        }
    }

    public static func read(_ path: String) throws -> TrainingCheckpoint {
        typealias Layout = ResultsLayout.Checkpoint
        let file = try HDF5File(path, mode: .readOnly)
        guard (try? file.stringAttribute(ResultsLayout.formatAttribute)) == format else {
            throw CheckpointError.configuration("\(path) is not a checkpoint (format attribute is not \(format))")
        }
        let config = try TrialConfig.parse(yaml: try file.stringAttribute(Layout.config), source: "\(path):config")
        let precision = try file.stringAttribute(Layout.precision)
        guard config.isProgram == (precision == Layout.programPrecision) else {
            throw CheckpointError.configuration("\(path): precision '\(precision.prefix(16))' does not fit a \(config.isProgram ? "program" : "built-in") trial")
        }
        if config.isProgram { return try readProgram(file, config: config) }
        let payload: CheckpointPayload = precision == "float64" ? .float64(try readTensors(file, Double.self)) : .float32(try readTensors(file, Float.self))
        let schedule = try file.group(Layout.schedule)
        var plateau: PlateauState?
        if schedule.hasAttribute(Layout.plateauLR) {
            var p = PlateauState(mode: .min, learningRate: try schedule.attribute(Layout.plateauLR, as: Double.self))
            p.best = try schedule.attribute(Layout.plateauBest, as: Double.self)
            p.badEpochs = Int(try schedule.attribute(Layout.plateauBadEpochs, as: Int64.self))
            p.cooldownCounter = Int(try schedule.attribute(Layout.plateauCooldown, as: Int64.self))
            plateau = p
        }
        let columns = try EpochRecord.columns.map { try file.readTableColumn(ResultsLayout.Trial.history, field: $0) }
        let rows = columns.first?.count ?? 0
        let history = (0..<rows).map { r in EpochRecord(row: columns.map { $0[r] }) }
        var trajectory: [[Double]] = []
        if file.contains(ResultsLayout.Trial.trajectory) {
            let (values, shape) = try file.read(ResultsLayout.Trial.trajectory, as: Double.self)
            trajectory = (0..<shape[0]).map { Array(values[($0 * shape[1])..<(($0 + 1) * shape[1])]) }
        }
        return TrainingCheckpoint(
            config: config, epoch: Int(try file.attribute(Layout.epoch, as: Int64.self)), step: Int(try file.attribute(Layout.step, as: Int64.self)),
            shuffle: Xoshiro256(words: try file.read(Layout.shuffleRNG, as: UInt64.self).values),
            noise: Xoshiro256(words: try file.read(Layout.noiseRNG, as: UInt64.self).values), plateau: plateau, history: history,
            trajectory: trajectory, payload: payload, layerStatistics: try LayerStatisticsTable.read(file))
    }

    static func writeFiles(_ files: [PackedFile], into group: HDF5Group) throws {
        typealias Layout = ResultsLayout.Checkpoint
        try group.setAttribute(Layout.fileNames, jsonList(files.map(\.path)))
        _ = try group.createGroup(Layout.files)
        try group.write(Layout.fileSizes, files.map { Int64($0.bytes.count) })
        let data = files.flatMap(\.bytes)
        if !data.isEmpty { try group.write(Layout.fileData, data, layout: data.count > 1 << 20 ? .compressed(chunk: [1 << 20]) : .contiguous) }
    }

    /// A program trial's checkpoint: its history (with the program's own metrics) and files, each
    /// name and size checked before any byte is used.
    static func readProgram(_ file: HDF5File, config: TrialConfig) throws -> TrainingCheckpoint {
        typealias Layout = ResultsLayout.Checkpoint
        func bad(_ why: String) -> CheckpointError { .configuration("malformed program checkpoint: \(why)") }
        let names = try parseList(try file.stringAttribute(Layout.fileNames))
        let sizes = try file.read(Layout.fileSizes, as: Int64.self, atMost: ProgramLimits.maxCheckpointFiles).values
        guard names.count == sizes.count, names.count <= ProgramLimits.maxCheckpointFiles else {
            throw bad("\(names.count) names, \(sizes.count) sizes (at most \(ProgramLimits.maxCheckpointFiles) files)")
        }
        guard Set(names).count == names.count else { throw bad("a file name is listed twice") }
        var total: Int64 = 0
        for (name, size) in zip(names, sizes) {
            if let problem = RelativePath.problem(name) { throw bad("file name \(name.debugDescription.prefix(300)): \(problem)") }
            guard size >= 0, size <= Int64(ProgramLimits.maxCheckpointBytesAllowed) else { throw bad("file \(name) has size \(size)") }
            total += size
        }
        guard total <= Int64(ProgramLimits.maxCheckpointBytesAllowed) else { throw bad("its files hold \(total) bytes (at most \(ProgramLimits.maxCheckpointBytesAllowed))") }
        let data = total == 0 ? [] : try file.read(Layout.fileData, as: UInt8.self, atMost: Int(total)).values
        guard data.count == Int(total) else { throw bad("the sizes add up to \(total) bytes, the data holds \(data.count)") }
        var files: [PackedFile] = []
        var offset = 0
        for (name, size) in zip(names, sizes) {
            files.append(PackedFile(path: name, bytes: Array(data[offset..<offset + Int(size)])))
            offset += Int(size)
        }
        let (history, extra) = try readHistory(file)
        var checkpoint = TrainingCheckpoint(
            config: config, epoch: Int(try file.attribute(Layout.epoch, as: Int64.self)), step: Int(try file.attribute(Layout.step, as: Int64.self)),
            shuffle: Xoshiro256(seed: 0), noise: Xoshiro256(seed: 0), plateau: nil, history: history, trajectory: [], payload: .files(files))
        checkpoint.extraHistory = extra
        return checkpoint
    }

    /// The `/history` table: its records, and any further float64 columns (a program's metrics).
    static func readHistory(_ group: HDF5Group) throws -> ([EpochRecord], [String: [Double]]) {
        let name = ResultsLayout.Trial.history
        let columns = try EpochRecord.columns.map { try group.readTableColumn(name, field: $0) }
        let rows = columns.first?.count ?? 0
        let history = (0..<rows).map { r in EpochRecord(row: columns.map { $0[r] }) }
        let others = try group.tableFields(name).filter { !EpochRecord.columns.contains($0) }
        guard others.count <= ProgramLimits.maxMetricNames else { throw CheckpointError.configuration("\(others.count) metric columns in the history (at most \(ProgramLimits.maxMetricNames))") }
        var extra: [String: [Double]] = [:]
        for field in others { extra[field] = try group.readTableColumn(name, field: field) }
        return (history, extra)
    }

    static func readTensors<T: BLASScalar & HDF5Scalar>(_ file: HDF5File, _: T.Type) throws -> CheckpointTensors<T> {
        typealias Layout = ResultsLayout.Checkpoint
        let names = try parseList(try file.stringAttribute(Layout.parameterNames))
        let parameters = try names.map { name -> Tensor<T> in
            let (values, shape) = try file.read(Layout.parameter(name), as: T.self)
            return Tensor(shape: shape, storage: values)
        }
        let bufferNames = file.hasAttribute(Layout.bufferNames) ? try parseList(try file.stringAttribute(Layout.bufferNames)) : []
        guard Set(names + bufferNames).count == names.count + bufferNames.count else {
            throw CheckpointError.parameters("a tensor name is listed twice among the parameters and buffers")
        }
        let buffers = try bufferNames.map { name -> Tensor<T> in
            let (values, shape) = try file.read(Layout.parameter(name), as: T.self)
            return Tensor(shape: shape, storage: values)
        }
        var state = OptimizerState<T>()
        for name in try parseList(try file.stringAttribute(Layout.stateNames)) {
            let d = try file.dataset(Layout.optimizerState(name))
            if try d.isByte {
                let (values, shape) = try d.read(as: UInt8.self)
                state.set(name, .uint8(values, shape: shape))
            } else if try d.isInteger {
                let (values, shape) = try d.read(as: Int64.self)
                state.set(name, .int64(values, shape: shape))
            } else {
                let (values, shape) = try d.read(as: T.self)
                state.set(name, .real(Tensor(shape: shape, storage: values)))
            }
        }
        return CheckpointTensors(names: names, parameters: parameters, optimizer: state, bufferNames: bufferNames, buffers: buffers)
    }

    static func jsonList(_ names: [String]) -> String {
        "[" + names.map { "\"" + $0.replacingAll("\\", "\\\\").replacingAll("\"", "\\\"") + "\"" }.joined(separator: ",") + "]"
    }

    static func parseList(_ text: String) throws -> [String] { try parseStringList(text) }
}

extension String {
    func replacingAll(_ a: String, _ b: String) -> String { split(separator: a, omittingEmptySubsequences: false).joined(separator: b) }
}
