import Linalg

/// Element-wise nonlinearities, applied fused with the bias add in the forward pass and fused
/// with the derivative in the backward pass.
public enum Activation: String, Sendable, CaseIterable, Codable {
    case relu, tanh, gelu, sigmoid

    /// Whether the backward pass needs the pre-activation (GELU) rather than the output.
    var needsPreactivation: Bool { self == .gelu }
}

/// A fully connected layer `y = x·Wᵀ + b` whose weight (`out × in`) and bias (`out`) live in a
/// model's `Parameters` at the given indices, initialised as `torch.nn.Linear` does.
struct Linear {
    let weight: Int
    let bias: Int
    let inputs: Int
    let outputs: Int

    /// Appends `NAME.weight` and `NAME.bias`, uniform in ±1/√fan_in (PyTorch's default).
    /// A layer registered as `<name>.weight` (role `role`: a hidden layer's `weight`, or the
    /// model's output layer, `head`) and `<name>.bias`.
    static func make<T: BLASScalar>(
        _ name: String, inputs: Int, outputs: Int, role: ParameterRole = .weight,
        into entries: inout [(name: String, value: Tensor<T>, role: ParameterRole)], rng: inout Xoshiro256
    ) -> Linear {
        let bound = 1 / Double(inputs).squareRoot()
        var w = Tensor<T>(zeros: [outputs, inputs])
        var b = Tensor<T>(zeros: [outputs])
        w.storage.withUnsafeMutableBufferPointer { rng.fillUniform($0, low: -bound, high: bound) }
        b.storage.withUnsafeMutableBufferPointer { rng.fillUniform($0, low: -bound, high: bound) }
        entries.append((name: "\(name).weight", value: w, role: role))
        entries.append((name: "\(name).bias", value: b, role: .bias))
        return Linear(weight: entries.count - 2, bias: entries.count - 1, inputs: inputs, outputs: outputs)
    }

    /// `out ← x·Wᵀ + b`, then the activation in place (keeping the pre-activation if needed).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func forward<T: BLASScalar>(_ x: Tensor<T>, _ p: Parameters<T>, into out: inout Tensor<T>, activation: Activation? = nil, pre: inout Tensor<T>) {
        gemm(x, p.values[weight], transposeB: true, into: &out)
        let rows = x.rows, cols = outputs
        if activation?.needsPreactivation == true && pre.shape != out.shape { pre.resize(out.shape) }
        p.values[bias].storage.withUnsafeBufferPointer { b in
            out.storage.withUnsafeMutableBufferPointer { o in
                switch activation {
                case nil:
                    for r in 0..<rows { for c in 0..<cols { o[r * cols + c] += b[c] } }
                case .relu:
                    for r in 0..<rows { for c in 0..<cols { o[r * cols + c] = Swift.max(o[r * cols + c] + b[c], 0) } }
                case .tanh:
                    for i in 0..<(rows * cols) { o[i] = T.tanh(o[i] + b[i % cols]) }
                case .sigmoid:
                    for i in 0..<(rows * cols) { o[i] = sigmoid(o[i] + b[i % cols]) }
                case .gelu:
                    pre.storage.withUnsafeMutableBufferPointer { z in
                        for i in 0..<(rows * cols) { z[i] = o[i] + b[i % cols] }
                        geluForward(z.baseAddress!, into: o.baseAddress!, count: rows * cols)
                    }
                }
            }
        }
    }

    /// Multiplies `delta` (∂L/∂output) by the activation's derivative, giving ∂L/∂pre-activation.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    static func activationBackward<T: BLASScalar>(_ activation: Activation, output: Tensor<T>, pre: Tensor<T>, delta: inout Tensor<T>) {
        let n = delta.count
        output.storage.withUnsafeBufferPointer { y in
            delta.storage.withUnsafeMutableBufferPointer { d in
                switch activation {
                case .relu: for i in 0..<n where y[i] <= 0 { d[i] = 0 }
                case .tanh: for i in 0..<n { d[i] *= 1 - y[i] * y[i] }
                case .sigmoid: for i in 0..<n { d[i] *= y[i] * (1 - y[i]) }
                case .gelu:
                    pre.storage.withUnsafeBufferPointer { z in geluBackward(z.baseAddress!, d.baseAddress!, into: d.baseAddress!, count: n) }
                }
            }
        }
    }

    /// Writes ∂L/∂W = δᵀ·x and ∂L/∂b = Σ_rows δ into the parameters' gradients.
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func parameterGradients<T: BLASScalar>(input x: Tensor<T>, delta: Tensor<T>, _ p: Parameters<T>) {
        gemm(delta, transposeA: true, x, into: &p.gradients[weight])
        p.gradients[bias].storage.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
        addColumnSums(delta, to: &p.gradients[bias])
    }

    /// Writes ∂L/∂x = δ·W into `dx` (or adds it, for layers whose input feeds several layers).
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    func inputGradient<T: BLASScalar>(delta: Tensor<T>, _ p: Parameters<T>, into dx: inout Tensor<T>, accumulate: Bool = false) {
        gemm(delta, p.values[weight], into: &dx, beta: accumulate ? 1 : 0)
    }
}

@inline(__always)
func sigmoid<T: BLASScalar>(_ x: T) -> T {
    if x >= 0 { return 1 / (1 + T.exp(-x)) }
    let e = T.exp(x)
    return e / (1 + e)
}
