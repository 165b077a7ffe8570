import Linalg

/// A 2-D convolution (dilation 1) on channel-major batches `[C, N, H, W]`: the input's patches
/// are unrolled into a `C·k·k × N·H'·W'` matrix (im2col) and multiplied by the weight
/// `[out, C, k, k]` in one GEMM whose result is already the channel-major output. A 1×1
/// convolution with stride 1 multiplies the input itself. The patches are unrolled again in the
/// backward pass rather than kept: one workspace serves every layer.
final class Conv2dLayer<T: BLASScalar>: Layer<T> {
    let weight: Int
    let bias: Int?
    let kernel: Int, stride: Int, padding: Int
    let workspace: Workspace<T>

    init(input: FeatureShape, output: FeatureShape, name: String, weight: Int, bias: Int?, kernel: Int, stride: Int, padding: Int, workspace: Workspace<T>) {
        (self.weight, self.bias, self.kernel, self.stride, self.padding, self.workspace) = (weight, bias, kernel, stride, padding, workspace)
        super.init(input: input, output: output, name: name)
    }

    var pointwise: Bool { kernel == 1 && stride == 1 && padding == 0 }

    override var macs: Int {
        guard case .image(let c, _, _) = input, case .image(let o, let h, let w) = output else { return 0 }
        return o * c * kernel * kernel * h * w
    }

    override var hasWeights: Bool { true }

    var geometry: (c: Int, h: Int, w: Int, o: Int, ho: Int, wo: Int) {
        guard case .image(let c, let h, let w) = input, case .image(let o, let ho, let wo) = output else { preconditionFailure("convolution of \(input)") }
        return (c, h, w, o, ho, wo)
    }

    override func forward(_ x: Tensor<T>, into y: inout Tensor<T>, _ p: Parameters<T>, _ pass: ForwardPass, rng: inout Xoshiro256) {
        let g = geometry, n = pass.batch
        if y.shape != [g.o, n, g.ho, g.wo] { y.resize([g.o, n, g.ho, g.wo]) }
        if pointwise {
            gemm(p.values[weight], x, into: &y)
        } else {
            unroll(x, batch: n, into: &workspace.columns)
            gemm(p.values[weight], workspace.columns, into: &y)
        }
        y.reshape([g.o, n, g.ho, g.wo])
        if let bias {
            let plane = n * g.ho * g.wo
            p.values[bias].storage.withUnsafeBufferPointer { b in
                y.storage.withUnsafeMutableBufferPointer { y in
                    for c in 0..<g.o {
                        let row = y.baseAddress! + c * plane
                        for i in 0..<plane { row[i] += b[c] }
                    }
                }
            }
        }
    }

    override func backward(_ x: Tensor<T>, _ y: Tensor<T>, _ dy: Tensor<T>, into dx: inout Tensor<T>, wantsInput: Bool, _ p: Parameters<T>) {
        let g = geometry, n = x.count / input.count
        if let bias {
            let plane = n * g.ho * g.wo
            dy.storage.withUnsafeBufferPointer { d in
                p.gradients[bias].storage.withUnsafeMutableBufferPointer { gb in
                    for c in 0..<g.o {
                        var s = T(0)
                        for i in 0..<plane { s += d[c * plane + i] }
                        gb[c] += s
                    }
                }
            }
        }
        if pointwise {
            gemm(dy, x, transposeB: true, into: &p.gradients[weight], beta: 1)
            if wantsInput {
                gemm(p.values[weight], transposeA: true, dy, into: &dx)
                dx.reshape(x.shape)
            }
            return
        }
        unroll(x, batch: n, into: &workspace.columns)
        gemm(dy, workspace.columns, transposeB: true, into: &p.gradients[weight], beta: 1)
        guard wantsInput else { return }
        gemm(p.values[weight], transposeA: true, dy, into: &workspace.columnGradients)
        fold(workspace.columnGradients, batch: n, into: &dx)
    }

    /// im2col: row (c, ky, kx), column (n, oy, ox) holds x[c, n, oy·s − p + ky, ox·s − p + kx] (0 outside).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func unroll(_ x: Tensor<T>, batch n: Int, into cols: inout Tensor<T>) {
        let g = geometry, k = kernel
        let columns = n * g.ho * g.wo
        if cols.shape != [g.c * k * k, columns] { cols.resize([g.c * k * k, columns]) }
        x.storage.withUnsafeBufferPointer { src in
            cols.storage.withUnsafeMutableBufferPointer { dst in
                for c in 0..<g.c {
                    for ky in 0..<k {
                        for kx in 0..<k {
                            let row = dst.baseAddress! + ((c * k + ky) * k + kx) * columns
                            let (lo, hi) = validRange(offset: kx - padding, size: g.w, outputs: g.wo)
                            for e in 0..<n {
                                let plane = src.baseAddress! + (c * n + e) * g.h * g.w
                                for oy in 0..<g.ho {
                                    let out = row + (e * g.ho + oy) * g.wo
                                    let iy = oy * stride - padding + ky
                                    guard iy >= 0 && iy < g.h && lo < hi else {
                                        out.update(repeating: 0, count: g.wo)
                                        continue
                                    }
                                    let line = plane + iy * g.w + kx - padding
                                    if lo > 0 { out.update(repeating: 0, count: lo) }
                                    if stride == 1 {
                                        (out + lo).update(from: line + lo, count: hi - lo)
                                    } else {
                                        for ox in lo..<hi { out[ox] = line[ox * stride] }
                                    }
                                    if hi < g.wo { (out + hi).update(repeating: 0, count: g.wo - hi) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// col2im: the transpose of `unroll`, adding each column entry back to the pixel it came from.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func fold(_ cols: Tensor<T>, batch n: Int, into dx: inout Tensor<T>) {
        let g = geometry, k = kernel
        let columns = n * g.ho * g.wo
        if dx.shape != [g.c, n, g.h, g.w] { dx.resize([g.c, n, g.h, g.w]) }
        dx.storage.withUnsafeMutableBufferPointer { dst in
            dst.update(repeating: 0)
            cols.storage.withUnsafeBufferPointer { src in
                for c in 0..<g.c {
                    for ky in 0..<k {
                        for kx in 0..<k {
                            let row = src.baseAddress! + ((c * k + ky) * k + kx) * columns
                            let (lo, hi) = validRange(offset: kx - padding, size: g.w, outputs: g.wo)
                            guard lo < hi else { continue }
                            for e in 0..<n {
                                let plane = dst.baseAddress! + (c * n + e) * g.h * g.w
                                for oy in 0..<g.ho {
                                    let iy = oy * stride - padding + ky
                                    guard iy >= 0 && iy < g.h else { continue }
                                    let from = row + (e * g.ho + oy) * g.wo
                                    let line = plane + iy * g.w + kx - padding
                                    for ox in lo..<hi { line[ox * stride] += from[ox] }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The output columns `lo..<hi` whose input column `ox·stride + offset` lies in `0..<size`.
    @inline(__always)
    func validRange(offset: Int, size: Int, outputs: Int) -> (Int, Int) {
        // ox·s + offset ≥ 0  ⇔  ox ≥ ⌈−offset / s⌉;  ox·s + offset ≤ size − 1  ⇔  ox ≤ ⌊(size − 1 − offset) / s⌋.
        let lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride
        let last = size - 1 - offset
        let hi = last < 0 ? 0 : min(outputs, last / stride + 1)
        return (min(lo, hi), hi)
    }
}

/// Max or average pooling (no padding, PyTorch's floor mode) on channel-major images.
final class PoolLayer<T: BLASScalar>: Layer<T> {
    let kernel: Int, stride: Int
    let isMax: Bool
    /// Max pooling: each output's winning input position within its plane.
    var winners: [Int32] = []

    init(input: FeatureShape, output: FeatureShape, name: String, kernel: Int, stride: Int, isMax: Bool) {
        (self.kernel, self.stride, self.isMax) = (kernel, stride, isMax)
        super.init(input: input, output: output, name: name)
    }

    var geometry: (c: Int, h: Int, w: Int, ho: Int, wo: Int) {
        guard case .image(let c, let h, let w) = input, case .image(_, let ho, let wo) = output else { preconditionFailure("pooling of \(input)") }
        return (c, h, w, ho, wo)
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    override func forward(_ x: Tensor<T>, into y: inout Tensor<T>, _ p: Parameters<T>, _ pass: ForwardPass, rng: inout Xoshiro256) {
        let g = geometry, n = pass.batch, planes = g.c * n, k = kernel
        if y.shape != [g.c, n, g.ho, g.wo] { y.resize([g.c, n, g.ho, g.wo]) }
        if isMax && winners.count != y.count { winners = [Int32](repeating: 0, count: y.count) }
        let scale = T(1) / T(k * k)
        x.storage.withUnsafeBufferPointer { x in
            y.storage.withUnsafeMutableBufferPointer { y in
                winners.withUnsafeMutableBufferPointer { win in
                    for plane in 0..<planes {
                        let src = x.baseAddress! + plane * g.h * g.w
                        for oy in 0..<g.ho {
                            for ox in 0..<g.wo {
                                let o = (plane * g.ho + oy) * g.wo + ox
                                let top = oy * stride * g.w + ox * stride
                                if isMax {
                                    var best = src[top], at = top
                                    for ky in 0..<k {
                                        for kx in 0..<k {
                                            let i = top + ky * g.w + kx
                                            if src[i] > best || src[i].isNaN { (best, at) = (src[i], i) }
                                        }
                                    }
                                    y[o] = best
                                    win[o] = Int32(at)
                                } else {
                                    var s = T(0)
                                    for ky in 0..<k { for kx in 0..<k { s += src[top + ky * g.w + kx] } }
                                    y[o] = s * scale
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    override func backward(_ x: Tensor<T>, _ y: Tensor<T>, _ dy: Tensor<T>, into dx: inout Tensor<T>, wantsInput: Bool, _ p: Parameters<T>) {
        guard wantsInput else { return }
        let g = geometry, n = x.count / input.count, planes = g.c * n, k = kernel
        if dx.shape != x.shape { dx.resize(x.shape) }
        let scale = T(1) / T(k * k)
        dy.storage.withUnsafeBufferPointer { dy in
            dx.storage.withUnsafeMutableBufferPointer { dx in
                dx.update(repeating: 0)
                for plane in 0..<planes {
                    let dst = dx.baseAddress! + plane * g.h * g.w
                    for oy in 0..<g.ho {
                        for ox in 0..<g.wo {
                            let o = (plane * g.ho + oy) * g.wo + ox
                            if isMax {
                                dst[Int(winners[o])] += dy[o]
                            } else {
                                let top = oy * stride * g.w + ox * stride, v = dy[o] * scale
                                for ky in 0..<k { for kx in 0..<k { dst[top + ky * g.w + kx] += v } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Channel-major images `[C, N, H, W]` → `[N, C]`, the mean of each channel's positions.
final class GlobalAveragePoolLayer<T: BLASScalar>: Layer<T> {
    override func forward(_ x: Tensor<T>, into y: inout Tensor<T>, _ p: Parameters<T>, _ pass: ForwardPass, rng: inout Xoshiro256) {
        guard case .image(let c, let h, let w) = input else { preconditionFailure() }
        let n = pass.batch, plane = h * w
        if y.shape != [n, c] { y.resize([n, c]) }
        for ch in 0..<c {
            for e in 0..<n {
                var s = T(0)
                let base = (ch * n + e) * plane
                for i in 0..<plane { s += x.storage[base + i] }
                y.storage[e * c + ch] = s / T(plane)
            }
        }
    }

    override func backward(_ x: Tensor<T>, _ y: Tensor<T>, _ dy: Tensor<T>, into dx: inout Tensor<T>, wantsInput: Bool, _ p: Parameters<T>) {
        guard wantsInput, case .image(let c, let h, let w) = input else { return }
        let n = dy.count / c, plane = h * w
        if dx.shape != x.shape { dx.resize(x.shape) }
        for ch in 0..<c {
            for e in 0..<n {
                let v = dy.storage[e * c + ch] / T(plane)
                let base = (ch * n + e) * plane
                for i in 0..<plane { dx.storage[base + i] = v }
            }
        }
    }
}
