import Linalg

/// The gradient techniques of the course notes (`001_…` §5), applied by the training loop
/// between backpropagation and the optimizer step, in torch's order: accumulate, then clip.
public struct GradientProcessing<T: BLASScalar> {
    /// Micro-batches per optimizer step (`accumulation_steps`): their gradients are averaged, as
    /// torch does with `(loss / k).backward()` over k micro-batches.
    public let accumulation: Int
    /// `torch.nn.utils.clip_grad_norm_`: scale all gradients by `max / (‖g‖ + 1e-6)` when that is below 1.
    public let maxNorm: Double?
    /// `torch.nn.utils.clip_grad_value_`: clamp every component to [−v, v].
    public let maxValue: Double?
    var sum: [Tensor<T>] = []
    /// Whether `clip` changes anything (so callers can skip computing the norm).
    public var clips: Bool { maxNorm != nil || maxValue != nil }

    public init(_ config: TrialConfig) throws {
        accumulation = config.isToyObjective ? 1 : try config.int(TrialSchema.data["accumulation_steps"])
        maxNorm = try config.optionalDouble(TrialSchema.common["clip_grad_norm"])
        maxValue = try config.optionalDouble(TrialSchema.common["clip_grad_value"])
    }

    /// Adds the micro-batch gradient now in `params.gradients` to the running sum.
    mutating func accumulate(_ params: Parameters<T>, first: Bool) {
        if sum.count != params.count { sum = params.gradients.map { Tensor(zeros: $0.shape) } }
        for i in 0..<params.count {
            params.gradients[i].storage.withUnsafeBufferPointer { g in
                sum[i].storage.withUnsafeMutableBufferPointer { s in
                    if first { for j in 0..<g.count { s[j] = g[j] } } else { for j in 0..<g.count { s[j] += g[j] } }
                }
            }
        }
    }

    /// Puts the mean of `count` accumulated micro-batch gradients back into `params.gradients`.
    func finishAccumulation(_ params: Parameters<T>, count: Int) {
        let scale = T(1) / T(count)
        for i in 0..<params.count {
            sum[i].storage.withUnsafeBufferPointer { s in
                params.gradients[i].storage.withUnsafeMutableBufferPointer { g in
                    for j in 0..<g.count { g[j] = s[j] * scale }
                }
            }
        }
    }

    /// Clips in place, given the global norm of the gradients.
    public func clip(_ params: Parameters<T>, norm: Double) {
        if let maxNorm {
            let coefficient = maxNorm / (norm + 1e-6)
            if coefficient < 1 {
                let c = T(coefficient)
                for i in 0..<params.count {
                    params.gradients[i].storage.withUnsafeMutableBufferPointer { g in for j in 0..<g.count { g[j] *= c } }
                }
            }
        }
        if let maxValue {
            let v = T(maxValue)
            for i in 0..<params.count {
                params.gradients[i].storage.withUnsafeMutableBufferPointer { g in for j in 0..<g.count { g[j] = Swift.min(Swift.max(g[j], -v), v) } }
            }
        }
    }
}

/// Leslie Smith's learning-rate range test, as the LR finder of the course notes (`001_…` §6.1):
/// the learning rate grows geometrically from `start` to `end` over `steps` steps, the loss is
/// smoothed exponentially (`avg ← f·loss + (1 − f)·avg`), the test stops when the smoothed loss
/// exceeds 4× its best (or is NaN), and the suggested rate is where the smoothed loss falls
/// fastest (`argmin` of numpy's `gradient`, skipping the first 10 and last 5 points as the notes'
/// plot does).
public struct LRRangeTest: Sendable, Equatable, Codable {
    public var learningRates: [Double] = []
    public var smoothedLosses: [Double] = []
    public var suggested: Double?
    public var stopReason: String

    static func suggest(_ lrs: [Double], _ losses: [Double], skipStart: Int = 10, skipEnd: Int = 5) -> Double? {
        guard losses.count > skipStart + skipEnd + 2 else { return nil }
        let l = Array(losses[skipStart..<(losses.count - skipEnd)])
        let x = Array(lrs[skipStart..<(lrs.count - skipEnd)])
        // numpy.gradient with unit spacing: one-sided at the ends, central inside.
        var best = 0, bestSlope = Double.infinity
        for i in l.indices {
            let slope = i == 0 ? l[1] - l[0] : i == l.count - 1 ? l[i] - l[i - 1] : (l[i + 1] - l[i - 1]) / 2
            if slope < bestSlope { (best, bestSlope) = (i, slope) }
        }
        return x[best]
    }
}

/// One row of the per-layer diagnostics (`003_…` parts c.1 and h.1), recorded after each epoch.
public struct LayerStatistics: Sendable, Equatable, Codable {
    public var layer: String
    public var epoch: Int
    /// Frobenius and spectral norms of the layer's weight update in the epoch's last step.
    public var updateNorm: Double
    public var updateSpectralNorm: Double
    /// Frobenius norms of the weight and of its gradient in that step.
    public var weightNorm: Double
    public var gradNorm: Double
    /// Relative change of the layer's outputs on a fixed probe batch over the epoch,
    /// ‖A_e − A_{e−1}‖_F / ‖A_{e−1}‖_F.
    public var activationDelta: Double

    public init(layer: String, epoch: Int, updateNorm: Double, updateSpectralNorm: Double, weightNorm: Double, gradNorm: Double, activationDelta: Double) {
        self.layer = layer
        self.epoch = epoch
        self.updateNorm = updateNorm
        self.updateSpectralNorm = updateSpectralNorm
        self.weightNorm = weightNorm
        self.gradNorm = gradNorm
        self.activationDelta = activationDelta
    }

    /// The `layer_stats` table's value fields, in `values` order.
    public static let columns = ResultsLayout.Trial.layerStatsColumns
    public var values: [Double] { [updateNorm, updateSpectralNorm, weightNorm, gradNorm, activationDelta] }
}

/// Records `LayerStatistics`: the weights before the last step of an epoch, and the probe
/// batch's layer outputs at the end of the previous epoch.
struct LayerDiagnostics<T: BLASScalar> {
    let probe: Tensor<T>
    var previousOutputs: [(layer: String, values: [T])] = []
    var before: [Tensor<T>] = []
    var gradients: [Tensor<T>] = []

    init(probe: Tensor<T>) { self.probe = probe }

    mutating func start(_ model: any Model<T>) {
        var rng = Xoshiro256(seed: 0, stream: "probe")
        previousOutputs = model.layerOutputs(x: probe, rng: &rng)
    }

    mutating func beforeLastStep(_ params: Parameters<T>) {
        before = params.values
        gradients = params.gradients
    }

    /// The rows for `epoch`, one per layer (the layer's weight: the parameter named `LAYER.weight`).
    mutating func finishEpoch(_ epoch: Int, model: any Model<T>, params: Parameters<T>) -> [LayerStatistics] {
        var rng = Xoshiro256(seed: 0, stream: "probe")
        let outputs = model.layerOutputs(x: probe, rng: &rng)
        defer { previousOutputs = outputs }
        var rows: [LayerStatistics] = []
        for (layer, now) in outputs {
            guard let w = params.index(of: "\(layer).weight"), w < before.count else { continue }
            let old = previousOutputs.first { $0.layer == layer }?.values ?? now
            var diff = 0.0, base = 0.0
            for j in 0..<min(old.count, now.count) {
                diff += Double(now[j] - old[j]) * Double(now[j] - old[j])
                base += Double(old[j]) * Double(old[j])
            }
            let shape = params.values[w].shape
            var update = Tensor<T>(zeros: shape)
            for j in 0..<update.count { update.storage[j] = params.values[w].storage[j] - before[w].storage[j] }
            rows.append(
                LayerStatistics(
                    layer: layer, epoch: epoch, updateNorm: frobenius(update.storage), updateSpectralNorm: spectralNorm(update),
                    weightNorm: frobenius(params.values[w].storage), gradNorm: frobenius(gradients[w].storage),
                    activationDelta: base > 0 ? (diff / base).squareRoot() : .nan))
        }
        return rows
    }

    func frobenius(_ v: [T]) -> Double { v.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() }

    /// The largest singular value (LAPACK gesdd) of a matrix, or of a convolution kernel as the
    /// `out × (in·kh·kw)` matrix its GEMM multiplies by; a vector's is its length.
    func spectralNorm(_ m: Tensor<T>) -> Double {
        guard m.shape.count >= 2, let s = try? svd(m.reshaped([m.rows, m.cols])).s else { return frobenius(m.storage) }
        return Double(s.first ?? 0)
    }
}
