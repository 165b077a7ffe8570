import Linalg

/// A 2-D convolution (dilation 1) on channel-major batches `[C, N, H, W]`: the input's patches
/// are unrolled into a `C·k·k × N·H'·W'` matrix (im2col) and multiplied by the weight
/// `[out, C, k, k]`, the result already the channel-major output. The unrolling goes a chunk of
/// examples at a time, sized so that the chunk's patches stay in the core's cache between being
/// written and being multiplied (`chunkBytes`); the output chunk is a block of columns of the
/// output matrix (its rows strided by the whole batch). A 1×1 convolution with stride 1
/// multiplies the input itself. The patches are unrolled again in the backward pass rather than
/// kept: one small workspace serves every layer.
final class Conv2dLayer<T: BLASScalar>: Layer<T> {
    let weight: Int
    let bias: Int?
    let kernel: Int, stride: Int, padding: Int
    let workspace: Workspace<T>
    /// The unrolled patches of one chunk of examples take at most this many bytes (or one example's).
    static var chunkBytes: Int { 256 << 10 }

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

    /// Rows of the unrolled matrix (one per input channel and kernel position).
    var patchRows: Int { geometry.c * kernel * kernel }

    /// Examples per chunk.
    var chunk: Int { Self.chunk(patchesPerExample: patchRows * geometry.ho * geometry.wo) }

    /// Examples per chunk for `patchesPerExample` unrolled values per example: the workspace
    /// holds this many examples' patches (and as many gradients), whatever the batch.
    static func chunk(patchesPerExample: Int) -> Int { max(1, chunkBytes / (patchesPerExample * MemoryLayout<T>.stride)) }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    override func forward(_ x: Tensor<T>, into y: inout Tensor<T>, _ p: Parameters<T>, _ pass: ForwardPass, rng: inout Xoshiro256) {
        let g = geometry, n = pass.batch, rows = patchRows, plane = g.ho * g.wo, all = n * plane
        if y.shape != [g.o, n, g.ho, g.wo] { y.resize([g.o, n, g.ho, g.wo]) }
        // The bias first, then the products added to it.
        if let bias {
            p.values[bias].storage.withUnsafeBufferPointer { b in
                y.storage.withUnsafeMutableBufferPointer { y in
                    for c in 0..<g.o { (y.baseAddress! + c * all).update(repeating: b[c], count: all) }
                }
            }
        }
        let beta: T = bias == nil ? 0 : 1
        let chunk = pointwise ? n : self.chunk
        if !pointwise { workspace.reserve(rows * chunk * plane) }
        p.values[weight].storage.withUnsafeBufferPointer { w in
            x.storage.withUnsafeBufferPointer { x in
                y.storage.withUnsafeMutableBufferPointer { y in
                    workspace.columns.withUnsafeMutableBufferPointer { cols in
                        for first in Swift.stride(from: 0, to: n, by: chunk) {
                            let count = min(chunk, n - first), width = count * plane
                            let out = y.baseAddress! + first * plane
                            if pointwise {
                                T.gemm(
                                    transA: false, transB: false, m: g.o, n: width, k: rows, alpha: 1, a: w.baseAddress!, lda: rows, b: x.baseAddress!, ldb: all,
                                    beta: beta, c: out, ldc: all)
                            } else {
                                unroll(x.baseAddress!, batch: n, first: first, count: count, into: cols.baseAddress!)
                                T.gemm(
                                    transA: false, transB: false, m: g.o, n: width, k: rows, alpha: 1, a: w.baseAddress!, lda: rows, b: cols.baseAddress!,
                                    ldb: width, beta: beta, c: out, ldc: all)
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
        let g = geometry, n = x.count / input.count, rows = patchRows, plane = g.ho * g.wo, all = n * plane
        if let bias {
            dy.storage.withUnsafeBufferPointer { d in
                p.gradients[bias].storage.withUnsafeMutableBufferPointer { gb in
                    for c in 0..<g.o {
                        let row = d.baseAddress! + c * all
                        var s = T(0)
                        for i in 0..<all { s += row[i] }
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
        if wantsInput && dx.shape != x.shape { dx.resize(x.shape) }
        let chunk = self.chunk
        workspace.reserve(rows * chunk * plane)
        p.values[weight].storage.withUnsafeBufferPointer { w in
            p.gradients[weight].storage.withUnsafeMutableBufferPointer { gw in
                x.storage.withUnsafeBufferPointer { x in
                    dy.storage.withUnsafeBufferPointer { dy in
                        dx.storage.withUnsafeMutableBufferPointer { dx in
                            workspace.columns.withUnsafeMutableBufferPointer { cols in
                                workspace.columnGradients.withUnsafeMutableBufferPointer { dcols in
                                    for first in Swift.stride(from: 0, to: n, by: chunk) {
                                        let count = min(chunk, n - first), width = count * plane
                                        let d = dy.baseAddress! + first * plane
                                        // ∂W += dY·colsᵀ over this chunk's columns.
                                        unroll(x.baseAddress!, batch: n, first: first, count: count, into: cols.baseAddress!)
                                        T.gemm(
                                            transA: false, transB: true, m: g.o, n: rows, k: width, alpha: 1, a: d, lda: all, b: cols.baseAddress!, ldb: width,
                                            beta: 1, c: gw.baseAddress!, ldc: rows)
                                        guard wantsInput else { continue }
                                        // ∂cols = Wᵀ·dY, folded back onto the pixels.
                                        T.gemm(
                                            transA: true, transB: false, m: rows, n: width, k: g.o, alpha: 1, a: w.baseAddress!, lda: rows, b: d, ldb: all,
                                            beta: 0, c: dcols.baseAddress!, ldc: width)
                                        fold(dcols.baseAddress!, batch: n, first: first, count: count, into: dx.baseAddress!)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// im2col of examples `first..<first + count` of a batch of `n`: row (c, ky, kx), column
    /// (e, oy, ox) holds x[c, first + e, oy·s − p + ky, ox·s − p + kx] (0 outside the image).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func unroll(_ src: UnsafePointer<T>, batch n: Int, first: Int, count: Int, into dst: UnsafeMutablePointer<T>) {
        let g = geometry, k = kernel
        let columns = count * g.ho * g.wo
        if preservesSize {
            for c in 0..<g.c {
                for ky in 0..<k {
                    for kx in 0..<k {
                        let row = dst + ((c * k + ky) * k + kx) * columns
                        for e in 0..<count { shiftedCopy(src + (c * n + first + e) * g.h * g.w, into: row + e * g.h * g.w, dy: ky - padding, dx: kx - padding) }
                    }
                }
            }
            return
        }
        for c in 0..<g.c {
            for ky in 0..<k {
                for kx in 0..<k {
                    let row = dst + ((c * k + ky) * k + kx) * columns
                    let (lo, hi) = validRange(offset: kx - padding, size: g.w, outputs: g.wo)
                    for e in 0..<count {
                        let plane = src + (c * n + first + e) * g.h * g.w
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
                                // A loop, not a memcpy: the runs are short (a row of the image).
                                for ox in lo..<hi { out[ox] = line[ox] }
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

    /// col2im of a chunk: the transpose of `unroll`, each column entry added back to the pixel it
    /// came from; the chunk's planes of `dx` are overwritten.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func fold(_ src: UnsafeMutablePointer<T>, batch n: Int, first: Int, count: Int, into dx: UnsafeMutablePointer<T>) {
        let g = geometry, k = kernel
        let columns = count * g.ho * g.wo
        for c in 0..<g.c { (dx + (c * n + first) * g.h * g.w).update(repeating: 0, count: count * g.h * g.w) }
        if preservesSize {
            for c in 0..<g.c {
                for ky in 0..<k {
                    for kx in 0..<k {
                        let row = src + ((c * k + ky) * k + kx) * columns
                        for e in 0..<count { shiftedAdd(row + e * g.h * g.w, into: dx + (c * n + first + e) * g.h * g.w, dy: ky - padding, dx: kx - padding) }
                    }
                }
            }
            return
        }
        for c in 0..<g.c {
            for ky in 0..<k {
                for kx in 0..<k {
                    let row = src + ((c * k + ky) * k + kx) * columns
                    let (lo, hi) = validRange(offset: kx - padding, size: g.w, outputs: g.wo)
                    guard lo < hi else { continue }
                    for e in 0..<count {
                        let plane = dx + (c * n + first + e) * g.h * g.w
                        for oy in 0..<g.ho {
                            let iy = oy * stride - padding + ky
                            guard iy >= 0 && iy < g.h else { continue }
                            let from = row + (e * g.ho + oy) * g.wo
                            let line = plane + iy * g.w + kx - padding
                            if stride == 1 {
                                for ox in lo..<hi { line[ox] += from[ox] }
                            } else {
                                for ox in lo..<hi { line[ox * stride] += from[ox] }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Stride 1 with the output the input's size ("same" padding, as ResNet's 3×3 convolutions
    /// and LeNet-5's first on 28×28): an im2col row of one example is the image shifted by
    /// (dy, dx), so in row-major order the source index is the destination's plus dy·w + dx —
    /// one contiguous copy, then zeros where the shift leaves the image (|dx| columns per row
    /// wrapped onto the neighbouring row, |dy| rows).
    var preservesSize: Bool {
        let g = geometry
        return stride == 1 && g.ho == g.h && g.wo == g.w
    }

    /// `out[oy, ox] = plane[oy + dy, ox + dx]`, 0 outside the plane.
    @inline(__always)
    func shiftedCopy(_ plane: UnsafePointer<T>, into out: UnsafeMutablePointer<T>, dy: Int, dx: Int) {
        let (h, w) = (geometry.h, geometry.w)
        let (top, bottom) = (max(0, -dy), min(h, h - dy))
        guard top < bottom, abs(dx) < w else {
            out.update(repeating: 0, count: h * w)
            return
        }
        let offset = dy * w + dx
        let start = top * w + max(0, -dx), end = bottom * w - max(0, dx)
        if start > 0 { out.update(repeating: 0, count: start) }
        (out + start).update(from: plane + (start + offset), count: end - start)
        if end < h * w { (out + end).update(repeating: 0, count: h * w - end) }
        // The columns the shift wrapped onto the next or previous row.
        if dx > 0 {
            for oy in top..<(bottom - 1) { (out + oy * w + w - dx).update(repeating: 0, count: dx) }
        } else if dx < 0 {
            for oy in (top + 1)..<bottom { (out + oy * w).update(repeating: 0, count: -dx) }
        }
    }

    /// The transpose of `shiftedCopy`: `plane[oy + dy, ox + dx] += cols[oy, ox]` where inside;
    /// the wrapped columns of `cols` are zeroed first so that one contiguous sum adds nothing there.
    @inline(__always)
    func shiftedAdd(_ cols: UnsafeMutablePointer<T>, into plane: UnsafeMutablePointer<T>, dy: Int, dx: Int) {
        let (h, w) = (geometry.h, geometry.w)
        let (top, bottom) = (max(0, -dy), min(h, h - dy))
        guard top < bottom, abs(dx) < w else { return }
        if dx > 0 {
            for oy in top..<(bottom - 1) { (cols + oy * w + w - dx).update(repeating: 0, count: dx) }
        } else if dx < 0 {
            for oy in (top + 1)..<bottom { (cols + oy * w).update(repeating: 0, count: -dx) }
        }
        let offset = dy * w + dx
        let start = top * w + max(0, -dx), end = bottom * w - max(0, dx)
        let shifted = plane + offset
        for i in start..<end { shifted[i] += cols[i] }
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

    override func forward(_ x: Tensor<T>, into y: inout Tensor<T>, _ p: Parameters<T>, _ pass: ForwardPass, rng: inout Xoshiro256) {
        let g = geometry, n = pass.batch
        if y.shape != [g.c, n, g.ho, g.wo] { y.resize([g.c, n, g.ho, g.wo]) }
        if isMax && winners.count != y.count { winners = [Int32](repeating: 0, count: y.count) }
        x.storage.withUnsafeBufferPointer { x in
            y.storage.withUnsafeMutableBufferPointer { y in
                if isMax {
                    winners.withUnsafeMutableBufferPointer { win in maxPool(x.baseAddress!, planes: g.c * n, into: y.baseAddress!, winners: win.baseAddress!) }
                } else {
                    averagePool(x.baseAddress!, planes: g.c * n, into: y.baseAddress!)
                }
            }
        }
    }

    /// Each output the largest of its window (NaN wins, as in PyTorch), and where it was.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func maxPool(_ src: UnsafePointer<T>, planes: Int, into y: UnsafeMutablePointer<T>, winners: UnsafeMutablePointer<Int32>) {
        let g = geometry, k = kernel, s = stride
        if k == 2 && s == 2 {
            // The usual 2×2 window, unrolled.
            for plane in 0..<planes {
                let x = src + plane * g.h * g.w
                let base = plane * g.ho * g.wo
                for oy in 0..<g.ho {
                    for ox in 0..<g.wo {
                        let top = 2 * oy * g.w + 2 * ox
                        // Selections rather than branches: on real data the winner is unpredictable.
                        var best = x[top], at = top
                        @inline(__always) func visit(_ i: Int) {
                            let v = x[i], wins = v > best || v.isNaN
                            best = wins ? v : best
                            at = wins ? i : at
                        }
                        visit(top + 1)
                        visit(top + g.w)
                        visit(top + g.w + 1)
                        y[base + oy * g.wo + ox] = best
                        winners[base + oy * g.wo + ox] = Int32(at)
                    }
                }
            }
            return
        }
        for plane in 0..<planes {
            let x = src + plane * g.h * g.w
            let base = plane * g.ho * g.wo
            for oy in 0..<g.ho {
                for ox in 0..<g.wo {
                    let top = oy * s * g.w + ox * s
                    var best = x[top], at = top
                    for ky in 0..<k {
                        for kx in 0..<k {
                            let i = top + ky * g.w + kx
                            if x[i] > best || x[i].isNaN { (best, at) = (x[i], i) }
                        }
                    }
                    y[base + oy * g.wo + ox] = best
                    winners[base + oy * g.wo + ox] = Int32(at)
                }
            }
        }
    }

    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func averagePool(_ src: UnsafePointer<T>, planes: Int, into y: UnsafeMutablePointer<T>) {
        let g = geometry, k = kernel, s = stride, scale = T(1) / T(k * k)
        for plane in 0..<planes {
            let x = src + plane * g.h * g.w
            let base = plane * g.ho * g.wo
            for oy in 0..<g.ho {
                for ox in 0..<g.wo {
                    let top = oy * s * g.w + ox * s
                    var sum = T(0)
                    for ky in 0..<k { for kx in 0..<k { sum += x[top + ky * g.w + kx] } }
                    y[base + oy * g.wo + ox] = sum * scale
                }
            }
        }
    }

    override func backward(_ x: Tensor<T>, _ y: Tensor<T>, _ dy: Tensor<T>, into dx: inout Tensor<T>, wantsInput: Bool, _ p: Parameters<T>) {
        guard wantsInput else { return }
        let g = geometry, n = x.count / input.count
        if dx.shape != x.shape { dx.resize(x.shape) }
        dy.storage.withUnsafeBufferPointer { dy in
            dx.storage.withUnsafeMutableBufferPointer { dx in
                winners.withUnsafeBufferPointer { win in poolBackward(dy.baseAddress!, planes: g.c * n, winners: win.baseAddress, into: dx) }
            }
        }
    }

    /// ∂x: max pooling routes each output's gradient to its winner, average pooling spreads it.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func poolBackward(_ dy: UnsafePointer<T>, planes: Int, winners: UnsafePointer<Int32>?, into dx: UnsafeMutableBufferPointer<T>) {
        let g = geometry, k = kernel, s = stride, scale = T(1) / T(k * k)
        dx.update(repeating: 0)
        for plane in 0..<planes {
            let dst = dx.baseAddress! + plane * g.h * g.w
            let base = plane * g.ho * g.wo
            if isMax, let winners {
                for o in base..<(base + g.ho * g.wo) { dst[Int(winners[o])] += dy[o] }
                continue
            }
            for oy in 0..<g.ho {
                for ox in 0..<g.wo {
                    let top = oy * s * g.w + ox * s, v = dy[base + oy * g.wo + ox] * scale
                    for ky in 0..<k { for kx in 0..<k { dst[top + ky * g.w + kx] += v } }
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
