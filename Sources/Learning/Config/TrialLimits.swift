/// Bounds on the resources one trial may ask for, checked from the trial's keys before anything
/// is allocated: by `TrialConfig.validate()` with what is known of the data set from its name
/// (Fashion-MNIST, `modular:P`), and again by the trainer once an `idx:`/`hdf5:` data set is
/// loaded and its shape known. Each limit is generous for real use on a 24 GiB machine and stops
/// absurd values (`hidden: [1e8, 1e8]`, `steps: 1e12`) with an error at the key's line.
public enum TrialLimits {
    /// The most parameters a model may have: weights and biases of every layer (mlp, logreg,
    /// vae), coefficients (polyfit: degree + 1), coordinates (quadratic, rosenbrock).
    /// 100 million parameters are 400 MB in float32, before gradients and optimizer state.
    public static let maxParameters = 100_000_000
    /// The largest `batch_size` and `eval_batch_size` (and polyfit's `points`).
    public static let maxBatchSize = 65_536
    /// The most values one batch may hold in the layers' outputs: batch size × (inputs + every
    /// layer's outputs), each kept for the forward and backward pass (polyfit: points × (degree + 1),
    /// its design matrix). 2^28 values are 1 GiB in float32.
    public static let maxBatchValues = 1 << 28
    /// The most optimizer steps of a toy objective (`steps`) or an LR range test (`range_steps`):
    /// each records a history entry (and a point of the trajectory).
    public static let maxSteps = 1_000_000
    /// The most `epochs`: each records a history entry and evaluates the test set.
    public static let maxEpochs = 100_000
    /// The most training examples one trial may process: epochs × training examples (after `limit`).
    public static let maxExamplesSeen = 10_000_000_000
}

/// What the resource limits need to know of a data set: known from the data key for
/// Fashion-MNIST and `modular:P`, from the loaded data otherwise.
public struct DataShape: Sendable, Equatable {
    public var features: Int
    public var classes: Int
    /// Training examples, before `limit`.
    public var trainingExamples: Int
    public var layout: ExampleLayout

    public init(features: Int, classes: Int, trainingExamples: Int, layout: ExampleLayout = .vector) {
        (self.features, self.classes, self.trainingExamples, self.layout) = (features, classes, trainingExamples, layout)
    }
}

extension DataSource {
    /// The shape of the data set without loading it, where it is known from its name.
    public var knownShape: DataShape? {
        switch self {
        case .fashionMNIST: DataShape(features: 784, classes: 10, trainingExamples: 60_000, layout: .image(channels: 1, height: 28, width: 28))
        case .modular(let p, let fraction): DataShape(features: 2 * p, classes: p, trainingExamples: Self.modularTrainingCount(p, trainFraction: fraction))
        case .idxDirectory, .hdf5, .cifar10, .text: nil
        }
    }
}

extension TrialConfig {
    /// Checks the trial's steps, epochs, batch sizes and model size against `TrialLimits`, with
    /// `data` the shape of its data set (nil while unknown: the checks that need it are left to
    /// the trainer, which calls this again with the loaded shape). Computes sizes without
    /// allocating anything; an error names the key (and so its file and line) that is too large.
    public func checkResources(data: DataShape?) throws {
        func atMost(_ key: String, _ limit: Int, _ what: String) throws {
            guard values[key] != nil else { return }
            let v = try int(key, default: 0)
            guard v <= limit else { throw error(key, "\(what) at most \(limit) are allowed, got \(v)") }
        }
        try atMost("steps", TrialLimits.maxSteps, "optimizer steps:")
        try atMost("range_steps", TrialLimits.maxSteps, "LR range test steps:")
        try atMost("epochs", TrialLimits.maxEpochs, "epochs:")
        try atMost("batch_size", TrialLimits.maxBatchSize, "examples per batch:")
        try atMost("eval_batch_size", TrialLimits.maxBatchSize, "examples per evaluation batch:")
        try atMost("points", TrialLimits.maxBatchSize, "polyfit samples:")

        // The model's parameters and the values of one batch, in Double: no overflow for any Int.
        // The key an error names: the size key the trial gives, else the data set, else the model.
        let sizeKey =
            ["hidden", "latent", "degree", "points", "curvatures", "layers", "width", "depth", "channels", "n_embd", "n_layer", "block_size", "data"].first { values[$0] != nil } ?? "model"
        var parameters = 0.0, valuesPerExample = 0.0, scratch = 0.0
        var batch = 0.0
        var described = ""
        // While the data set is unknown, one input and one class: a lower bound on the model's size.
        let bound = data == nil ? "at least " : ""
        switch model {
        case "mlp", "logreg", "vae":
            let data = data ?? DataShape(features: 1, classes: 1, trainingExamples: 0)
            let (n, c) = (Double(data.features), Double(data.classes))
            if model == "vae" {
                let h = Double(try int("hidden", default: 400)), l = Double(try int("latent", default: 20))
                parameters = (n + 1) * h + 2 * (h + 1) * l + (l + 1) * h + (h + 1) * n
                valuesPerExample = n + h + 4 * l + h + n
                described = "\(data.features) inputs, hidden \(Int(h)), latent \(Int(l))"
            } else {
                let hidden = model == "mlp" ? try intList("hidden", default: [256, 128]).map(Double.init) : []
                let sizes = [n] + hidden + [c]
                parameters = zip(sizes, sizes.dropFirst()).reduce(0) { $0 + ($1.0 + 1) * $1.1 }
                valuesPerExample = sizes.reduce(0, +)
                described = "\(data.features) inputs, hidden \(hidden.map { Int($0) }), \(data.classes) classes"
            }
            batch = Double(max(try int("batch_size", default: 128), try int("eval_batch_size", default: 1000)))
        case _ where TrialSchema.networks[model] != nil:
            // Networks evaluate in chunks of at most `eval_batch_size` that fit the limit (`Network.evaluationBatch`).
            batch = Double(try int("batch_size", default: 128))
            // The layers are known once the data's shape is (the trainer checks again then).
            guard let data else { break }
            let plan: NetworkPlan<Float>
            do {
                plan = try Builders.networkPlan(self, data: data)
            } catch let e as LayerSpecError {
                throw error(values["layers"] != nil ? "layers" : "model", "\(e.path): \(e.message)")
            }
            parameters = Double(plan.parameterCount)
            valuesPerExample = Double(data.features + plan.valuesPerExample)
            scratch = Double(plan.scratchValues)
            described = "\(model) on \(data.layout == .vector ? "\(data.features) inputs" : "\(data.layout)s")"
        case "polyfit":
            let k = Double(try int("degree", default: 10)) + 1, points = Double(try int("points", default: 20))
            parameters = k
            valuesPerExample = k
            batch = points
            described = "degree \(Int(k) - 1)"
        case "quadratic":
            parameters = Double(try doubleList("curvatures", default: [10, 0.1]).count)
            described = "one per curvature"
        default:
            parameters = 2
        }
        guard parameters <= Double(TrialLimits.maxParameters) else {
            throw error(sizeKey, "the model would have \(bound)\(formatCount(parameters)) parameters (\(described)); at most \(TrialLimits.maxParameters) are allowed")
        }
        guard batch * valuesPerExample + scratch <= Double(TrialLimits.maxBatchValues) else {
            // The key that sets the batch, given or not: a network trial without eval_batch_size
            // is refused for its default of 1000, which naming batch_size would hide.
            let defaults = ["batch_size": 128, "eval_batch_size": 1000]
            let batchKey = ["batch_size", "eval_batch_size", "points"].filter { values[$0] != nil || (model != "polyfit" && defaults[$0] != nil) }
                .max { (try? int($0, default: defaults[$0] ?? 0)) ?? 0 < (try? int($1, default: defaults[$1] ?? 0)) ?? 0 }
            let defaulted = batchKey.map { values[$0] == nil } ?? false
            throw error(
                batchKey ?? sizeKey,
                "\(defaulted ? "\(Int(batch)) by default: " : "")a batch of \(Int(batch)) would hold \(bound)\(formatCount(batch * valuesPerExample + scratch)) values in the layers (\(formatCount(valuesPerExample)) per example\(scratch > 0 ? " and \(formatCount(scratch)) of convolution scratch" : ""): \(described)); at most \(TrialLimits.maxBatchValues) are allowed: make the batch or the model smaller"
            )
        }

        // Epochs × training examples, for models trained on data.
        guard TrialSchema.models[model]?.contains(where: { $0.name == "data" }) == true, try string("mode", default: "train") == "train" else { return }
        let limit = try optionalInt("limit")
        let examples = [limit, data?.trainingExamples].compactMap { $0 }.min()
        guard let examples else { return }
        let epochs = try int("epochs", default: 1)
        guard Double(epochs) * Double(examples) <= Double(TrialLimits.maxExamplesSeen) else {
            throw error(
                values["epochs"] != nil ? "epochs" : "limit",
                "\(epochs) epochs of \(examples) training examples are \(formatCount(Double(epochs) * Double(examples))) examples; at most \(TrialLimits.maxExamplesSeen) are allowed")
        }
    }
}

/// An integer-valued count, exactly where it fits an Int (`1e30` beyond).
func formatCount(_ x: Double) -> String {
    x < 9e18 ? String(Int(x)) : "\(x)"
}
