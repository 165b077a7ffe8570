import Linalg

/// `y = x·Wᵀ + b` on the last dimension of vectors or sequences (the weight `out × in`).
final class LinearLayer<T: BLASScalar>: Layer<T> {
    let weight: Int
    let bias: Int?
    let inputs: Int, outputs: Int

    init(input: FeatureShape, output: FeatureShape, name: String, weight: Int, bias: Int?, inputs: Int, outputs: Int) {
        (self.weight, self.bias, self.inputs, self.outputs) = (weight, bias, inputs, outputs)
        super.init(input: input, output: output, name: name)
    }

    override var macs: Int { inputs * outputs * input.positions }
    override var hasWeights: Bool { true }

    override func forward(_ x: Tensor<T>, into y: inout Tensor<T>, _ p: Parameters<T>, _ pass: ForwardPass, rng: inout Xoshiro256) {
        gemm(x, p.values[weight], transposeB: true, into: &y)
        if let bias { addRowVector(p.values[bias], to: &y) }
    }

    override func backward(_ x: Tensor<T>, _ y: Tensor<T>, _ dy: Tensor<T>, into dx: inout Tensor<T>, wantsInput: Bool, _ p: Parameters<T>) {
        gemm(dy, transposeA: true, x, into: &p.gradients[weight], beta: 1)
        if let bias { addColumnSums(dy, to: &p.gradients[bias]) }
        if wantsInput { gemm(dy, p.values[weight], into: &dx) }
    }
}

/// `y[r, c] += b[c]` for every row.
@_specialize(where T == Float)
@_specialize(where T == Double)
func addRowVector<T: BLASScalar>(_ b: Tensor<T>, to y: inout Tensor<T>) {
    let cols = b.count, rows = y.count / cols
    b.storage.withUnsafeBufferPointer { b in
        y.storage.withUnsafeMutableBufferPointer { o in
            for r in 0..<rows {
                let row = o.baseAddress! + r * cols
                for c in 0..<cols { row[c] += b[c] }
            }
        }
    }
}

/// `g[c] += Σ_r dy[r, c]`.
@_specialize(where T == Float)
@_specialize(where T == Double)
func addColumnSums<T: BLASScalar>(_ dy: Tensor<T>, to g: inout Tensor<T>) {
    let cols = g.count, rows = dy.count / cols
    dy.storage.withUnsafeBufferPointer { d in
        g.storage.withUnsafeMutableBufferPointer { g in
            for r in 0..<rows {
                let row = d.baseAddress! + r * cols
                for c in 0..<cols { g[c] += row[c] }
            }
        }
    }
}

/// An element-wise nonlinearity (any shape).
final class ActivationLayer<T: BLASScalar>: Layer<T> {
    let activation: Activation

    init(_ activation: Activation, shape: FeatureShape, name: String) {
        self.activation = activation
        super.init(input: shape, output: shape, name: name)
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    override func forward(_ x: Tensor<T>, into y: inout Tensor<T>, _ p: Parameters<T>, _ pass: ForwardPass, rng: inout Xoshiro256) {
        if y.shape != x.shape { y.resize(x.shape) }
        let n = x.count
        x.storage.withUnsafeBufferPointer { x in
            y.storage.withUnsafeMutableBufferPointer { y in
                switch activation {
                case .relu: for i in 0..<n { y[i] = Swift.max(x[i], 0) }
                case .tanh: for i in 0..<n { y[i] = T.tanh(x[i]) }
                case .sigmoid: for i in 0..<n { y[i] = sigmoid(x[i]) }
                case .gelu: geluForward(x.baseAddress!, into: y.baseAddress!, count: n)
                }
            }
        }
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    override func backward(_ x: Tensor<T>, _ y: Tensor<T>, _ dy: Tensor<T>, into dx: inout Tensor<T>, wantsInput: Bool, _ p: Parameters<T>) {
        guard wantsInput else { return }
        if dx.shape != dy.shape { dx.resize(dy.shape) }
        x.storage.withUnsafeBufferPointer { x in
            y.storage.withUnsafeBufferPointer { y in
                dy.storage.withUnsafeBufferPointer { dy in
                    dx.storage.withUnsafeMutableBufferPointer { dx in
                        activationBackward(activation, x: x.baseAddress!, y: y.baseAddress!, dy: dy.baseAddress!, into: dx.baseAddress!, count: dx.count)
                    }
                }
            }
        }
    }
}

/// ∂x = ∂y · f′ in one pass, from the activation's input `x` (GELU) or output `y` (the others);
/// ReLU branch-free. Not inlined: called from a generic context, its specialisations are
/// reached through its own entry point.
@inline(never)
@_specialize(where T == Float)
@_specialize(where T == Double)
func activationBackward<T: BLASScalar>(
    _ activation: Activation, x: UnsafePointer<T>, y: UnsafePointer<T>, dy: UnsafePointer<T>, into dx: UnsafeMutablePointer<T>, count: Int
) {
    switch activation {
    case .relu: reluBackward(y, dy, into: dx, count: count)
    case .tanh: for i in 0..<count { dx[i] = dy[i] * (1 - y[i] * y[i]) }
    case .sigmoid: for i in 0..<count { dx[i] = dy[i] * y[i] * (1 - y[i]) }
    case .gelu: geluBackward(x, dy, into: dx, count: count)
    }
}

/// Zeroes each value with probability `p` in training and scales the rest by 1/(1 − p), drawing
/// from the trial's noise stream (saved in checkpoints); the identity in evaluation.
final class DropoutLayer<T: BLASScalar>: Layer<T> {
    let p: Double
    var mask: [T] = []

    init(_ p: Double, shape: FeatureShape, name: String) {
        self.p = p
        super.init(input: shape, output: shape, name: name)
    }

    var active: Bool = false

    override func forward(_ x: Tensor<T>, into y: inout Tensor<T>, _ params: Parameters<T>, _ pass: ForwardPass, rng: inout Xoshiro256) {
        active = pass.training && p > 0
        guard active else {
            y = x
            return
        }
        let n = x.count, scale = T(1 / (1 - p))
        if mask.count != n { mask = [T](repeating: 0, count: n) }
        for i in 0..<n { mask[i] = rng.nextUnit() < p ? 0 : scale }
        if y.shape != x.shape { y.resize(x.shape) }
        x.storage.withUnsafeBufferPointer { x in
            mask.withUnsafeBufferPointer { m in
                y.storage.withUnsafeMutableBufferPointer { y in for i in 0..<n { y[i] = x[i] * m[i] } }
            }
        }
    }

    override func backward(_ x: Tensor<T>, _ y: Tensor<T>, _ dy: Tensor<T>, into dx: inout Tensor<T>, wantsInput: Bool, _ params: Parameters<T>) {
        guard wantsInput else { return }
        guard active else {
            dx = dy
            return
        }
        copy(dy, into: &dx)
        let n = dx.count
        mask.withUnsafeBufferPointer { m in
            dx.storage.withUnsafeMutableBufferPointer { d in for i in 0..<n { d[i] *= m[i] } }
        }
    }
}

/// Batch normalisation over each channel of an image (its N·H·W values) or each feature of a
/// vector (its N values), with running statistics (PyTorch's: the unbiased variance, momentum
/// `momentum`) used in evaluation.
final class BatchNormLayer<T: BLASScalar>: Layer<T> {
    let weight: Int, bias: Int
    let runningMean: Int, runningVariance: Int
    let momentum: Double, epsilon: Double
    unowned let buffers: ModelBuffers<T>
    /// x̂ of the last training pass, and 1/σ per channel.
    var normalized = Tensor<T>(zeros: [0])
    var inverseStd: [Double] = []

    init(shape: FeatureShape, name: String, weight: Int, bias: Int, runningMean: Int, runningVariance: Int, momentum: Double, epsilon: Double, buffers: ModelBuffers<T>) {
        (self.weight, self.bias, self.runningMean, self.runningVariance) = (weight, bias, runningMean, runningVariance)
        (self.momentum, self.epsilon, self.buffers) = (momentum, epsilon, buffers)
        super.init(input: shape, output: shape, name: name)
    }

    override var hasWeights: Bool { true }

    /// (channels, values per channel, stride between a channel's values, stride between channels)
    /// for a batch of `n`.
    func geometry(_ n: Int) -> (channels: Int, count: Int, step: Int, channelStride: Int) {
        switch input {
        case .image(let c, let h, let w): (c, n * h * w, 1, n * h * w)
        default: (input.count, n, input.count, 1)
        }
    }

    override func forward(_ x: Tensor<T>, into y: inout Tensor<T>, _ p: Parameters<T>, _ pass: ForwardPass, rng: inout Xoshiro256) {
        if y.shape != x.shape { y.resize(x.shape) }
        if pass.training && normalized.shape != x.shape { normalized.resize(x.shape) }
        normalize(x, into: &y, p, pass)
    }

    /// The forward pass's loops, in a function of their own: called from the overriding method,
    /// which runs unspecialised, it is reached through its specialisations' entry points.
    @inline(never)
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func normalize(_ x: Tensor<T>, into y: inout Tensor<T>, _ p: Parameters<T>, _ pass: ForwardPass) {
        let (channels, m, step, stride) = geometry(pass.batch)
        if inverseStd.count != channels { inverseStd = [Double](repeating: 0, count: channels) }
        let gamma = p.values[weight].storage, beta = p.values[bias].storage
        x.storage.withUnsafeBufferPointer { x in
            y.storage.withUnsafeMutableBufferPointer { y in
                normalized.storage.withUnsafeMutableBufferPointer { xhat in
                    for c in 0..<channels {
                        let base = c * stride
                        let mean: Double, invStd: Double
                        if pass.training {
                            mean = unrolledSum(m) { Double(x[base + $0 * step]) } / Double(m)
                            let squares = unrolledSum(m) {
                                let d = Double(x[base + $0 * step]) - mean
                                return d * d
                            }
                            let variance = squares / Double(m)
                            invStd = 1 / (variance + epsilon).squareRoot()
                            inverseStd[c] = invStd
                            // One value per channel has no variance to estimate (PyTorch refuses such a
                            // batch): the running statistics keep their values.
                            if pass.updatesStatistics && m > 1 {
                                let unbiased = squares / Double(m - 1)
                                let rm = buffers.values[runningMean].storage[c], rv = buffers.values[runningVariance].storage[c]
                                buffers.values[runningMean].storage[c] = T((1 - momentum) * Double(rm) + momentum * mean)
                                buffers.values[runningVariance].storage[c] = T((1 - momentum) * Double(rv) + momentum * unbiased)
                            }
                        } else {
                            mean = Double(buffers.values[runningMean].storage[c])
                            invStd = 1 / (Double(buffers.values[runningVariance].storage[c]) + epsilon).squareRoot()
                        }
                        let (tm, ts, g, b) = (T(mean), T(invStd), gamma[c], beta[c])
                        if pass.training {
                            for i in 0..<m {
                                let k = base + i * step
                                let h = (x[k] - tm) * ts
                                xhat[k] = h
                                y[k] = h * g + b
                            }
                        } else {
                            for i in 0..<m {
                                let k = base + i * step
                                y[k] = (x[k] - tm) * ts * g + b
                            }
                        }
                    }
                }
            }
        }
    }

    override func backward(_ x: Tensor<T>, _ y: Tensor<T>, _ dy: Tensor<T>, into dx: inout Tensor<T>, wantsInput: Bool, _ p: Parameters<T>) {
        if wantsInput && dx.shape != x.shape { dx.resize(x.shape) }
        normalizationBackward(dy, into: &dx, wantsInput: wantsInput, p, batch: x.count / input.count)
    }

    @inline(never)
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func normalizationBackward(_ dy: Tensor<T>, into dx: inout Tensor<T>, wantsInput: Bool, _ p: Parameters<T>, batch: Int) {
        let (channels, m, step, stride) = geometry(batch)
        let gamma = p.values[weight].storage
        var sums = [Double](repeating: 0, count: 2 * channels)
        dy.storage.withUnsafeBufferPointer { dy in
            normalized.storage.withUnsafeBufferPointer { xhat in
                dx.storage.withUnsafeMutableBufferPointer { dx in
                    for c in 0..<channels {
                        let base = c * stride
                        let sumDy = unrolledSum(m) { Double(dy[base + $0 * step]) }
                        let sumDyXhat = unrolledSum(m) { Double(dy[base + $0 * step]) * Double(xhat[base + $0 * step]) }
                        (sums[2 * c], sums[2 * c + 1]) = (sumDy, sumDyXhat)
                        guard wantsInput else { continue }
                        let scale = T(Double(gamma[c]) * inverseStd[c] / Double(m))
                        let (a, b, fm) = (T(sumDy), T(sumDyXhat), T(m))
                        for i in 0..<m {
                            let k = base + i * step
                            dx[k] = scale * (fm * dy[k] - a - xhat[k] * b)
                        }
                    }
                }
            }
        }
        for c in 0..<channels {
            p.gradients[bias].storage[c] += T(sums[2 * c])
            p.gradients[weight].storage[c] += T(sums[2 * c + 1])
        }
    }
}

/// Σ term(i) for i < count in Double with eight interleaved partial sums: a sequential sum is one
/// chain of dependent additions (four cycles each); eight chains overlap.
@inline(__always)
func unrolledSum(_ count: Int, _ term: (Int) -> Double) -> Double {
    var acc = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    var i = 0
    while i + 8 <= count {
        acc.0 += term(i)
        acc.1 += term(i + 1)
        acc.2 += term(i + 2)
        acc.3 += term(i + 3)
        acc.4 += term(i + 4)
        acc.5 += term(i + 5)
        acc.6 += term(i + 6)
        acc.7 += term(i + 7)
        i += 8
    }
    while i < count {
        acc.0 += term(i)
        i += 1
    }
    return ((acc.0 + acc.1) + (acc.2 + acc.3)) + ((acc.4 + acc.5) + (acc.6 + acc.7))
}

/// Layer normalisation over the last dimension of vectors or sequences.
final class LayerNormLayer<T: BLASScalar>: Layer<T> {
    let weight: Int, bias: Int
    let epsilon: Double
    var normalized = Tensor<T>(zeros: [0])
    var inverseStd: [T] = []

    init(shape: FeatureShape, name: String, weight: Int, bias: Int, epsilon: Double) {
        (self.weight, self.bias, self.epsilon) = (weight, bias, epsilon)
        super.init(input: shape, output: shape, name: name)
    }

    override var hasWeights: Bool { true }

    override func forward(_ x: Tensor<T>, into y: inout Tensor<T>, _ p: Parameters<T>, _ pass: ForwardPass, rng: inout Xoshiro256) { normalize(x, into: &y, p) }

    override func backward(_ x: Tensor<T>, _ y: Tensor<T>, _ dy: Tensor<T>, into dx: inout Tensor<T>, wantsInput: Bool, _ p: Parameters<T>) {
        normalizationBackward(x, dy, into: &dx, wantsInput: wantsInput, p)
    }

    /// The passes' loops, reached through their specialisations' entry points (see BatchNormLayer).
    @inline(never)
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func normalize(_ x: Tensor<T>, into y: inout Tensor<T>, _ p: Parameters<T>) {
        let e = input.width!, rows = x.count / e, epsilon = epsilon
        if y.shape != x.shape { y.resize(x.shape) }
        if normalized.shape != x.shape { normalized.resize(x.shape) }
        if inverseStd.count != rows { inverseStd = [T](repeating: 0, count: rows) }
        // Every operand through a pointer: indexing arrays here kept bounds and uniqueness checks
        // in the inner loops, which then did not vectorise.
        p.values[weight].storage.withUnsafeBufferPointer { gamma in
            p.values[bias].storage.withUnsafeBufferPointer { beta in
                inverseStd.withUnsafeMutableBufferPointer { inverseStd in
                    x.storage.withUnsafeBufferPointer { x in
                        y.storage.withUnsafeMutableBufferPointer { y in
                            normalized.storage.withUnsafeMutableBufferPointer { xhat in
                                for r in 0..<rows {
                                    let row = r * e
                                    let mean = unrolledSum(e) { Double(x[row + $0]) } / Double(e)
                                    let squares = unrolledSum(e) {
                                        let d = Double(x[row + $0]) - mean
                                        return d * d
                                    }
                                    let invStd = T(1 / (squares / Double(e) + epsilon).squareRoot()), tm = T(mean)
                                    inverseStd[r] = invStd
                                    let (xr, hr, yr) = (x.baseAddress! + row, xhat.baseAddress! + row, y.baseAddress! + row)
                                    for c in 0..<e {
                                        let h = (xr[c] - tm) * invStd
                                        hr[c] = h
                                        yr[c] = h * gamma[c] + beta[c]
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    @inline(never)
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func normalizationBackward(_ x: Tensor<T>, _ dy: Tensor<T>, into dx: inout Tensor<T>, wantsInput: Bool, _ p: Parameters<T>) {
        let e = input.width!, rows = x.count / e
        if wantsInput && dx.shape != x.shape { dx.resize(x.shape) }
        let inverseStd = inverseStd
        // Accumulated into the gradients directly (through pointers: indexing a captured array
        // checks its uniqueness on every write).
        let (weight, bias) = (weight, bias)
        p.gradients.withUnsafeMutableBufferPointer { gradients in
            gradients[weight].storage.withUnsafeMutableBufferPointer { gw in
                gradients[bias].storage.withUnsafeMutableBufferPointer { gb in
                    p.values[weight].storage.withUnsafeBufferPointer { gamma in
                        dy.storage.withUnsafeBufferPointer { dy in
                            normalized.storage.withUnsafeBufferPointer { xhat in
                                dx.storage.withUnsafeMutableBufferPointer { dx in
                                    for r in 0..<rows {
                                        let row = r * e
                                        for c in 0..<e {
                                            gw[c] += dy[row + c] * xhat[row + c]
                                            gb[c] += dy[row + c]
                                        }
                                        guard wantsInput else { continue }
                                        let sumG = unrolledSum(e) { Double(dy[row + $0] * gamma[$0]) }
                                        let sumGX = unrolledSum(e) { Double(dy[row + $0] * gamma[$0]) * Double(xhat[row + $0]) }
                                        let meanG = T(sumG / Double(e)), meanGX = T(sumGX / Double(e)), s = inverseStd[r]
                                        for c in 0..<e { dx[row + c] = s * (dy[row + c] * gamma[c] - meanG - xhat[row + c] * meanGX) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Channel-major images `[C, N, H, W]` → vectors `[N, C·H·W]` in PyTorch's per-example order.
final class FlattenLayer<T: BLASScalar>: Layer<T> {
    override func forward(_ x: Tensor<T>, into y: inout Tensor<T>, _ p: Parameters<T>, _ pass: ForwardPass, rng: inout Xoshiro256) {
        guard case .image(let c, let h, let w) = input else {
            y = x
            return
        }
        Self.toExampleMajor(x, into: &y, channels: c, batch: pass.batch, plane: h * w)
    }

    override func backward(_ x: Tensor<T>, _ y: Tensor<T>, _ dy: Tensor<T>, into dx: inout Tensor<T>, wantsInput: Bool, _ p: Parameters<T>) {
        guard wantsInput else { return }
        guard case .image(let c, let h, let w) = input else {
            dx = dy
            return
        }
        let n = dy.count / input.count
        Self.toChannelMajor(dy, into: &dx, channels: c, batch: n, plane: h * w)
        dx.reshape([c, n, h, w])
    }

    /// `[C, N, P]` → `[N, C·P]`.
    static func toExampleMajor(_ x: Tensor<T>, into y: inout Tensor<T>, channels c: Int, batch n: Int, plane: Int) {
        if y.shape != [n, c * plane] { y.resize([n, c * plane]) }
        x.storage.withUnsafeBufferPointer { x in
            y.storage.withUnsafeMutableBufferPointer { y in
                for ch in 0..<c {
                    for e in 0..<n {
                        (y.baseAddress! + (e * c + ch) * plane).update(from: x.baseAddress! + (ch * n + e) * plane, count: plane)
                    }
                }
            }
        }
    }

    /// `[N, C·P]` → `[C, N, P]` (as a flat `[C·N·P]` buffer the caller reshapes).
    static func toChannelMajor(_ x: Tensor<T>, into y: inout Tensor<T>, channels c: Int, batch n: Int, plane: Int) {
        if y.count != x.count { y.resize([x.count]) }
        x.storage.withUnsafeBufferPointer { x in
            y.storage.withUnsafeMutableBufferPointer { y in
                for e in 0..<n {
                    for ch in 0..<c {
                        (y.baseAddress! + (ch * n + e) * plane).update(from: x.baseAddress! + (e * c + ch) * plane, count: plane)
                    }
                }
            }
        }
    }
}

/// Token ids `[N, T]` → their vectors `[N·T, E]` (the weight `vocabulary × E`).
final class EmbeddingLayer<T: BLASScalar>: Layer<T> {
    let weight: Int
    let dimension: Int

    init(input: FeatureShape, output: FeatureShape, name: String, weight: Int, dimension: Int) {
        (self.weight, self.dimension) = (weight, dimension)
        super.init(input: input, output: output, name: name)
    }

    override var hasWeights: Bool { true }

    override func forward(_ x: Tensor<T>, into y: inout Tensor<T>, _ p: Parameters<T>, _ pass: ForwardPass, rng: inout Xoshiro256) {
        let rows = x.count, e = dimension
        if y.shape != [rows, e] { y.resize([rows, e]) }
        p.values[weight].storage.withUnsafeBufferPointer { w in
            y.storage.withUnsafeMutableBufferPointer { y in
                for r in 0..<rows {
                    (y.baseAddress! + r * e).update(from: w.baseAddress! + Self.token(x.storage[r], w.count / e) * e, count: e)
                }
            }
        }
    }

    override func backward(_ x: Tensor<T>, _ y: Tensor<T>, _ dy: Tensor<T>, into dx: inout Tensor<T>, wantsInput: Bool, _ p: Parameters<T>) {
        let e = dimension, vocabulary = p.gradients[weight].count / e
        dy.storage.withUnsafeBufferPointer { dy in
            p.gradients[weight].storage.withUnsafeMutableBufferPointer { g in
                for r in 0..<x.count {
                    let row = g.baseAddress! + Self.token(x.storage[r], vocabulary) * e
                    for c in 0..<e { row[c] += dy[r * e + c] }
                }
            }
        }
    }

    /// A token id stored as a scalar; the data set guarantees it is below the vocabulary.
    @inline(__always)
    static func token(_ v: T, _ vocabulary: Int) -> Int {
        let id = Int(v)
        precondition(id >= 0 && id < vocabulary, "token id \(id) outside the vocabulary of \(vocabulary)")
        return id
    }
}

/// Adds a learned vector per position to a sequence (the weight `T × E`).
final class PositionalLayer<T: BLASScalar>: Layer<T> {
    let weight: Int

    init(shape: FeatureShape, name: String, weight: Int) {
        self.weight = weight
        super.init(input: shape, output: shape, name: name)
    }

    override var hasWeights: Bool { true }

    override func forward(_ x: Tensor<T>, into y: inout Tensor<T>, _ p: Parameters<T>, _ pass: ForwardPass, rng: inout Xoshiro256) {
        copy(x, into: &y)
        let table = p.values[weight].count
        p.values[weight].storage.withUnsafeBufferPointer { w in
            y.storage.withUnsafeMutableBufferPointer { y in
                for i in 0..<y.count { y[i] += w[i % table] }
            }
        }
    }

    override func backward(_ x: Tensor<T>, _ y: Tensor<T>, _ dy: Tensor<T>, into dx: inout Tensor<T>, wantsInput: Bool, _ p: Parameters<T>) {
        let table = p.gradients[weight].count
        dy.storage.withUnsafeBufferPointer { dy in
            p.gradients[weight].storage.withUnsafeMutableBufferPointer { g in
                for i in 0..<dy.count { g[i % table] += dy[i] }
            }
        }
        if wantsInput { dx = dy }
    }
}

/// `body(x) + shortcut(x)`, the shortcut the identity when it has no layers.
final class ResidualLayer<T: BLASScalar>: Layer<T> {
    let body: Chain<T>
    let shortcut: Chain<T>

    init(shape input: FeatureShape, output: FeatureShape, name: String, body: [Layer<T>], shortcut: [Layer<T>]) {
        self.body = Chain(body)
        self.shortcut = Chain(shortcut)
        super.init(input: input, output: output, name: name)
    }

    override var macs: Int { body.macs + shortcut.macs }

    override func forward(_ x: Tensor<T>, into y: inout Tensor<T>, _ p: Parameters<T>, _ pass: ForwardPass, rng: inout Xoshiro256) {
        body.forward(x, p, pass, rng: &rng)
        if !shortcut.layers.isEmpty { shortcut.forward(x, p, pass, rng: &rng) }
        add(body.outputs[body.layers.count - 1], shortcut.layers.isEmpty ? x : shortcut.outputs[shortcut.layers.count - 1], into: &y)
    }

    override func backward(_ x: Tensor<T>, _ y: Tensor<T>, _ dy: Tensor<T>, into dx: inout Tensor<T>, wantsInput: Bool, _ p: Parameters<T>) {
        body.backward(x, dy, wantsInput: wantsInput, p)
        if !shortcut.layers.isEmpty { shortcut.backward(x, dy, wantsInput: wantsInput, p) }
        guard wantsInput else { return }
        add(body.inputGradients[0], shortcut.layers.isEmpty ? dy : shortcut.inputGradients[0], into: &dx)
    }
}

/// Copies `x` into `y`'s own storage (no sharing, so that writing `y` later copies nothing).
func copy<T: BLASScalar>(_ x: Tensor<T>, into y: inout Tensor<T>) {
    if y.shape != x.shape { y.resize(x.shape) }
    x.storage.withUnsafeBufferPointer { x in
        y.storage.withUnsafeMutableBufferPointer { y in y.baseAddress!.update(from: x.baseAddress!, count: x.count) }
    }
}

/// `y ← a + b` in `y`'s own storage.
@_specialize(where T == Float)
@_specialize(where T == Double)
func add<T: BLASScalar>(_ a: Tensor<T>, _ b: Tensor<T>, into y: inout Tensor<T>) {
    precondition(a.count == b.count, "adding \(a.shape) and \(b.shape)")
    if y.shape != a.shape { y.resize(a.shape) }
    a.storage.withUnsafeBufferPointer { a in
        b.storage.withUnsafeBufferPointer { b in
            y.storage.withUnsafeMutableBufferPointer { y in for i in 0..<y.count { y[i] = a[i] + b[i] } }
        }
    }
}
