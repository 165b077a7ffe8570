import Linalg

/// AdamW with both moments stored in 8 bits, as bitsandbytes' `bnb.optim.AdamW8bit` (Dettmers et
/// al. 2022, "8-bit Optimizers via Block-wise Quantization"; bitsandbytes 0.50.2,
/// `_optimizer_update_8bit_blockwise_cpu` and `_optimizer_update_32bit_cpu`).
///
/// Tensors of at least `minimum8BitSize` elements keep m and v as one byte per element: blocks of
/// 256 consecutive elements share an absolute maximum, and each element is the index of the value
/// nearest to x/absmax in bitsandbytes' dynamic map (`DynamicCodebook`: signed for m, unsigned for
/// v). Each step dequantises a block (`code[c]·absmax`), updates it in full precision,
///
///     m ← β₁·m + (1 − β₁)·g;   v ← β₂·v + (1 − β₂)·g²
///     p ← p·(1 − η·λ)                                 (decoupled decay, before the step)
///     p ← p − η/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
///
/// and requantises it with the block's new absolute maximum (x·(1/absmax), an all-zero block
/// keeps absmax 0 and codes 0). Smaller tensors keep 32-bit (here: full-precision) moments and
/// bitsandbytes' 32-bit update, p ← p·(1 − η·λ) − η·√(1 − β₂ᵗ)/(1 − β₁ᵗ) · m / (√v + ε·√(1 − β₂ᵗ)).
///
/// Deviations, all deliberate: the code is the nearest one, found by bitsandbytes' exact search
/// (`lookup_code_index`) — bitsandbytes 0.50.2 on the CPU instead looks it up in a 65,536-bin
/// table, which sends values within ~3e-5 of 0 or of a midpoint to a neighbouring code (0 itself
/// to 2.1e-5); its CUDA kernel searches exactly but applies the decay after the step and skips
/// NaN gradients. Here a NaN gradient propagates into the parameter and, through the absolute
/// maximum, into its whole block, so the trial ends diverged. Moments are computed in the
/// parameters' precision (bitsandbytes: float32) and absolute maxima kept in it.
///
/// A sharp edge of the method (bitsandbytes' CUDA kernel quantises the same way; its CPU table,
/// which cannot store 0, hides it): v spans the square of m's range, so an element whose v is below half the
/// smallest unsigned code (1.6e-7 of its block's maximum) is stored as 0 while its m is not, and
/// if its next gradient is 0 its step is lr·m/ε. Inputs that are rarely non-zero (the border
/// pixels of Fashion-MNIST in the VAE) do exactly that: with ε = 1e-8 the VAE diverges within
/// three steps, with ε = 1e-4 it trains like AdamW.
public final class AdamW8bit<Scalar: BLASScalar>: Optimizer {
    public let name = "adamw8bit"
    public var learningRate: Double
    public let beta1: Double
    public let beta2: Double
    public let epsilon: Double
    public let weightDecay: Double
    /// Tensors with fewer elements keep full-precision moments (bitsandbytes' `min_8bit_size`).
    public let minimum8BitSize: Int
    /// Elements per absolute maximum (bitsandbytes' block size for optimizer states).
    public static var blockSize: Int { 256 }
    public private(set) var step = 0

    /// Per parameter: full-precision moments (small tensors), or codes and block maxima.
    struct State: ParameterState {
        /// The parameter's shape, which the codes keep in a checkpoint (as bitsandbytes' state1/state2).
        var shape: [Int]
        var m: Tensor<Scalar>?, v: Tensor<Scalar>?
        var codes1: [UInt8]?, codes2: [UInt8]?
        var absmax1: Tensor<Scalar>?, absmax2: Tensor<Scalar>?
        static var slots: [StateSlot<Self>] {
            [
                .tensor("state1", \.m), .bytes("state1", \.codes1, shape: \.shape), .tensor("absmax1", \.absmax1),
                .tensor("state2", \.v), .bytes("state2", \.codes2, shape: \.shape), .tensor("absmax2", \.absmax2),
            ]
        }
    }
    var states = ParameterStates<State>()
    let tables = QuantizationTables<Scalar>()

    public init(
        learningRate: Double = 1e-3, beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double = 1e-8, weightDecay: Double = 1e-2,
        minimum8BitSize: Int = 4096
    ) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.minimum8BitSize = minimum8BitSize
    }

    func isQuantized(_ count: Int) -> Bool { count >= minimum8BitSize }

    static func blocks(_ count: Int) -> Int { (count + blockSize - 1) / blockSize }

    func makeState(_ shape: [Int]) -> State {
        let n = shape.reduce(1, *)
        guard isQuantized(n) else { return State(shape: shape, m: Tensor(zeros: shape), v: Tensor(zeros: shape)) }
        let codes = [UInt8](repeating: 0, count: n), absmax = Tensor<Scalar>(zeros: [Self.blocks(n)])
        return State(shape: shape, codes1: codes, codes2: codes, absmax1: absmax, absmax2: absmax)
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func update(_ parameters: Parameters<Scalar>) {
        if states.count != parameters.count { states = ParameterStates(parameters, makeState) }
        step += 1
        let t = Double(step), lr = learningRate
        let correction1 = 1 - Double.pow(beta1, t), correction2 = (1 - Double.pow(beta2, t)).squareRoot()
        let b1 = Scalar(beta1), w1 = Scalar(1 - beta1), b2 = Scalar(beta2), w2 = Scalar(1 - beta2)
        let decays = weightDecay > 0, decay = Scalar(1 - lr * weightDecay)
        states.forEach(parameters) { _, g, p, n, s in
            if isQuantized(n) {
                updateQuantized(
                    &s, n, g, p, b1: b1, w1: w1, b2: b2, w2: w2, decays: decays, decay: decay, stepSize: Scalar(-lr / correction1),
                    correction2: Scalar(correction2), epsilon: Scalar(epsilon))
                return
            }
            // bitsandbytes' 32-bit update.
            let stepSize = Scalar(-lr * correction2 / correction1), eps = Scalar(epsilon * correction2)
            s.m!.storage.withUnsafeMutableBufferPointer { m in
                s.v!.storage.withUnsafeMutableBufferPointer { v in
                    let (m, v) = (m.baseAddress!, v.baseAddress!)
                    forEachLanes(n) { j, k in
                        let gj = loadLanes(g, j, k)
                        let mj = loadLanes(m, j, k) * b1 + w1 * gj
                        let vj = loadLanes(v, j, k) * b2 + w2 * gj * gj
                        storeLanes(mj, m, j, k)
                        storeLanes(vj, v, j, k)
                        let p0 = loadLanes(p, j, k)
                        let pj = decays ? p0 * decay : p0
                        storeLanes(pj + stepSize * (mj / (squareRootLanes(vj) + eps)), p, j, k)
                    }
                }
            }
        }
    }

    /// One quantised tensor, block by block: dequantise, update moments and parameters, requantise.
    @inline(__always)
    func updateQuantized(
        _ s: inout State, _ n: Int, _ g: UnsafePointer<Scalar>, _ p: UnsafeMutablePointer<Scalar>, b1: Scalar, w1: Scalar, b2: Scalar, w2: Scalar,
        decays: Bool, decay: Scalar, stepSize: Scalar, correction2: Scalar, epsilon: Scalar
    ) {
        let block = Self.blockSize, t = tables
        let (signed, unsigned, ms, vs) = (UnsafePointer(t.signed), UnsafePointer(t.unsigned), t.blockM, t.blockV)
        s.codes1!.withUnsafeMutableBufferPointer { c1 in
            s.codes2!.withUnsafeMutableBufferPointer { c2 in
                s.absmax1!.storage.withUnsafeMutableBufferPointer { a1 in
                    s.absmax2!.storage.withUnsafeMutableBufferPointer { a2 in
                        for b in 0..<Self.blocks(n) {
                            let start = b * block, count = Swift.min(block, n - start)
                            let scale1 = a1[b], scale2 = a2[b]
                            var max1: Scalar = 0, max2: Scalar = 0
                            for j in 0..<count {
                                let gj = g[start + j]
                                let mj = (signed[Int(c1[start + j])] * scale1) * b1 + w1 * gj
                                let vj = (unsigned[Int(c2[start + j])] * scale2) * b2 + w2 * gj * gj
                                ms[j] = mj
                                vs[j] = vj
                                max1 = nanPropagatingMax(max1, Swift.abs(mj))
                                max2 = nanPropagatingMax(max2, Swift.abs(vj))
                                let p0 = p[start + j]
                                let pj = decays ? p0 * decay : p0
                                p[start + j] = pj + stepSize * (mj / (vj.squareRoot() / correction2 + epsilon))
                            }
                            a1[b] = max1
                            a2[b] = max2
                            quantize(ms, count, absmax: max1, code: signed, starts: t.signedStarts, into: c1.baseAddress! + start)
                            quantize(vs, count, absmax: max2, code: unsigned, starts: t.unsignedStarts, into: c2.baseAddress! + start)
                        }
                    }
                }
            }
        }
    }

    /// Codes of `x·(1/absmax)`; an all-zero block gets codes 0, as in bitsandbytes.
    @inline(__always)
    func quantize(
        _ x: UnsafeMutablePointer<Scalar>, _ count: Int, absmax: Scalar, code: UnsafePointer<Scalar>, starts: UnsafePointer<UInt8>, into out: UnsafeMutablePointer<UInt8>
    ) {
        if absmax == 0 {
            out.update(repeating: 0, count: count)
            return
        }
        let inverse = 1 / absmax
        for j in 0..<count { out[j] = DynamicCodebook.nearest(x[j] * inverse, in: code, starts: starts) }
    }

    public func exportState(names: [String]) -> OptimizerState<Scalar> { states.exported(step: step, names: names) }

    public func importState(_ state: OptimizerState<Scalar>, parameters: Parameters<Scalar>) throws {
        let imported = try state.integer("step")
        states = imported == 0 ? ParameterStates() : try ParameterStates(state, parameters: parameters, makeState)
        step = imported
    }
}

/// The code books in the parameters' precision with their search starts, and one block of
/// dequantised moments: raw buffers, so that the update's inner loops read them directly.
final class QuantizationTables<T: BLASScalar> {
    let signed: UnsafeMutablePointer<T>
    let unsigned: UnsafeMutablePointer<T>
    let signedStarts: UnsafeMutablePointer<UInt8>
    let unsignedStarts: UnsafeMutablePointer<UInt8>
    let blockM: UnsafeMutablePointer<T>
    let blockV: UnsafeMutablePointer<T>

    init() {
        func buffer<E>(_ values: [E]) -> UnsafeMutablePointer<E> {
            let p = UnsafeMutablePointer<E>.allocate(capacity: values.count)
            p.initialize(from: values, count: values.count)
            return p
        }
        signed = buffer(DynamicCodebook.signed.map { T($0) })
        unsigned = buffer(DynamicCodebook.unsigned.map { T($0) })
        signedStarts = buffer(DynamicCodebook.signedStarts)
        unsignedStarts = buffer(DynamicCodebook.unsignedStarts)
        blockM = buffer([T](repeating: 0, count: 256))
        blockV = buffer([T](repeating: 0, count: 256))
    }

    deinit {
        for p in [signed, unsigned, blockM, blockV] { p.deallocate() }
        signedStarts.deallocate()
        unsignedStarts.deallocate()
    }
}

/// max(a, b) that keeps a NaN in either (Swift.max and C's fmax drop it).
@inline(__always)
func nanPropagatingMax<T: BLASScalar>(_ a: T, _ b: T) -> T {
    a.isNaN || b > a || b.isNaN ? b : a
}

enum AdamW8bitDefinition: OptimizerDefinition {
    static let name = "adamw8bit"
    static let keys: [TrialSchema.Key] =
        [
            .lr(1e-3)
        ] + betaKeys(0.9, "first-moment decay", 0.999, "second-moment decay") + [
            .number("eps", 1e-8, "denominator epsilon"),
            .number("weight_decay", 1e-2, "decoupled weight decay p·(1 − lr·weight_decay)"),
            .integer("min_8bit_size", 4096, "tensors with fewer elements keep full-precision moments"),
        ]

    static func validate(_ config: TrialConfig) throws {
        for key in ["eps", "weight_decay"] { try requireNonNegative(config, key) }
        guard try config.int(keys["min_8bit_size"]) >= 1 else { throw config.error("min_8bit_size", "must be at least 1") }
    }

    static func make<T: BLASScalar>(_ config: TrialConfig, _: T.Type) throws -> any Optimizer<T> {
        let (b1, b2) = try betas(config, keys)
        return AdamW8bit<T>(
            learningRate: try config.double(keys["lr"]), beta1: b1, beta2: b2, epsilon: try config.double(keys["eps"]),
            weightDecay: try config.double(keys["weight_decay"]), minimum8BitSize: try config.int(keys["min_8bit_size"]))
    }
}
