import Linalg

/// The variational autoencoder of the source documents (784-400-20): a ReLU encoder giving
/// `mu` and `logvar`, the reparameterisation `z = mu + eps·exp(logvar/2)` with `eps` drawn from
/// the trial's seeded generator, a ReLU decoder with a sigmoid output, and the loss
/// `BCE(recon, x) + KL`, both summed over the batch (as the documents' `vae_loss`).
///
/// The BCE is computed from the logits, `softplus(a) − x·a`, which equals PyTorch's
/// `binary_cross_entropy(sigmoid(a), x)` except where the sigmoid saturates in Float32 and PyTorch
/// clamps the log at −100.
public final class VAE<Scalar: BLASScalar>: Model {
    public let parameters: Parameters<Scalar>
    public let isClassifier = false
    public let lossReduction = LossReduction.sum
    let fc1: Linear, fcMu: Linear, fcLogvar: Linear, fc3: Linear, fc4: Linear
    let latent: Int
    // Workspace.
    var h1 = Tensor<Scalar>(zeros: [0]), mu = Tensor<Scalar>(zeros: [0]), logvar = Tensor<Scalar>(zeros: [0])
    var eps = Tensor<Scalar>(zeros: [0]), z = Tensor<Scalar>(zeros: [0]), h3 = Tensor<Scalar>(zeros: [0])
    var logits = Tensor<Scalar>(zeros: [0]), scratch = Tensor<Scalar>(zeros: [0])
    var dLogits = Tensor<Scalar>(zeros: [0]), dH3 = Tensor<Scalar>(zeros: [0]), dZ = Tensor<Scalar>(zeros: [0])
    var dMu = Tensor<Scalar>(zeros: [0]), dLogvar = Tensor<Scalar>(zeros: [0]), dH1 = Tensor<Scalar>(zeros: [0])

    public init(inputs: Int = 784, hidden: Int = 400, latent: Int = 20, rng: inout Xoshiro256) {
        var entries: [(name: String, value: Tensor<Scalar>, role: ParameterRole)] = []
        fc1 = .make("fc1", inputs: inputs, outputs: hidden, into: &entries, rng: &rng)
        fcMu = .make("fc_mu", inputs: hidden, outputs: latent, into: &entries, rng: &rng)
        fcLogvar = .make("fc_logvar", inputs: hidden, outputs: latent, into: &entries, rng: &rng)
        fc3 = .make("fc3", inputs: latent, outputs: hidden, into: &entries, rng: &rng)
        // The decoder's output layer is the model's output (Muon leaves it to AdamW).
        fc4 = .make("fc4", inputs: hidden, outputs: inputs, role: .head, into: &entries, rng: &rng)
        self.latent = latent
        parameters = Parameters(entries)
    }

    public var forwardMACsPerExample: Int {
        [fc1, fcMu, fcLogvar, fc3, fc4].reduce(0) { $0 + $1.inputs * $1.outputs }
    }

    /// Forward pass; returns the summed loss. Leaves `dLogits = sigmoid(a) − x` when asked.
    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    func forward(_ x: Tensor<Scalar>, rng: inout Xoshiro256, wantGradient: Bool) -> Double {
        fc1.forward(x, parameters, into: &h1, activation: .relu, pre: &scratch)
        fcMu.forward(h1, parameters, into: &mu, pre: &scratch)
        fcLogvar.forward(h1, parameters, into: &logvar, pre: &scratch)
        let b = x.rows, k = latent
        eps.resize([b, k])
        z.resize([b, k])
        eps.storage.withUnsafeMutableBufferPointer { rng.fillNormal($0) }
        var kl = 0.0
        mu.storage.withUnsafeBufferPointer { m in
            logvar.storage.withUnsafeBufferPointer { lv in
                eps.storage.withUnsafeBufferPointer { e in
                    z.storage.withUnsafeMutableBufferPointer { zz in
                        var s: Scalar = 0
                        for i in 0..<(b * k) {
                            let v = Scalar.exp(lv[i])
                            zz[i] = m[i] + e[i] * Scalar.exp(lv[i] * 0.5)
                            s += 1 + lv[i] - m[i] * m[i] - v
                        }
                        kl = -0.5 * Double(s)
                    }
                }
            }
        }
        fc3.forward(z, parameters, into: &h3, activation: .relu, pre: &scratch)
        fc4.forward(h3, parameters, into: &logits, pre: &scratch)
        if wantGradient { dLogits.resize(logits.shape) }
        let n = logits.count
        var bce = 0.0
        logits.storage.withUnsafeBufferPointer { a in
            x.storage.withUnsafeBufferPointer { xs in
                // One row at a time: partial sums stay short, the total accumulates in Double.
                let cols = logits.cols
                for r in 0..<(n / cols) {
                    let offset = r * cols
                    if wantGradient {
                        bce += dLogits.storage.withUnsafeMutableBufferPointer { d in
                            binaryCrossEntropyWithLogits(logits: a.baseAddress! + offset, targets: xs.baseAddress! + offset, count: cols, gradient: d.baseAddress! + offset)
                        }
                    } else {
                        bce += binaryCrossEntropyWithLogits(logits: a.baseAddress! + offset, targets: xs.baseAddress! + offset, count: cols, gradient: nil)
                    }
                }
            }
        }
        return bce + kl
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func lossAndGradients(x: Tensor<Scalar>, labels: [Int32], rng: inout Xoshiro256) -> Double {
        let loss = forward(x, rng: &rng, wantGradient: true)
        backward(x)
        return loss
    }

    /// The reconstruction targets are drawn from the decoder's Bernoulli, `x̂ ~ Bernoulli(σ(a))`,
    /// so the output gradient becomes `σ(a) − x̂`; the KL term's gradient is kept as it is (it has
    /// no sampled target). The gradient of the summed loss is divided by the batch size.
    public func sampledTargetGradients(x: Tensor<Scalar>, rng: inout Xoshiro256) {
        _ = forward(x, rng: &rng, wantGradient: true)
        dLogits.storage.withUnsafeMutableBufferPointer { d in
            x.storage.withUnsafeBufferPointer { xs in
                for i in 0..<d.count {
                    let p = d[i] + xs[i]  // σ(a)
                    d[i] = p - (Scalar(rng.nextUnit()) < p ? 1 : 0)
                }
            }
        }
        backward(x)
        let scale = Scalar(1) / Scalar(x.rows)
        for i in 0..<parameters.count {
            parameters.gradients[i].storage.withUnsafeMutableBufferPointer { g in
                for j in 0..<g.count { g[j] *= scale }
            }
        }
    }

    public func layerOutputs(x: Tensor<Scalar>, rng: inout Xoshiro256) -> [(layer: String, values: [Scalar])] {
        _ = forward(x, rng: &rng, wantGradient: false)
        return [("fc1", h1.storage), ("fc_mu", mu.storage), ("fc_logvar", logvar.storage), ("fc3", h3.storage), ("fc4", logits.storage)]
    }

    /// Backpropagation from `dLogits` (left by `forward`) into the parameters' gradients.
    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    func backward(_ x: Tensor<Scalar>) {
        let b = x.rows, k = latent
        fc4.parameterGradients(input: h3, delta: dLogits, parameters)
        fc4.inputGradient(delta: dLogits, parameters, into: &dH3)
        Linear.activationBackward(.relu, output: h3, pre: scratch, delta: &dH3)
        fc3.parameterGradients(input: z, delta: dH3, parameters)
        fc3.inputGradient(delta: dH3, parameters, into: &dZ)
        // Through the reparameterisation and the KL term:
        //   ∂/∂mu = dz + mu,   ∂/∂logvar = dz·eps·std/2 + (exp(logvar) − 1)/2.
        dMu.resize([b, k])
        dLogvar.resize([b, k])
        dZ.storage.withUnsafeBufferPointer { dz in
            mu.storage.withUnsafeBufferPointer { m in
                logvar.storage.withUnsafeBufferPointer { lv in
                    eps.storage.withUnsafeBufferPointer { e in
                        dMu.storage.withUnsafeMutableBufferPointer { dm in
                            dLogvar.storage.withUnsafeMutableBufferPointer { dl in
                                for i in 0..<(b * k) {
                                    dm[i] = dz[i] + m[i]
                                    dl[i] = dz[i] * e[i] * 0.5 * Scalar.exp(lv[i] * 0.5) + 0.5 * (Scalar.exp(lv[i]) - 1)
                                }
                            }
                        }
                    }
                }
            }
        }
        fcMu.parameterGradients(input: h1, delta: dMu, parameters)
        fcLogvar.parameterGradients(input: h1, delta: dLogvar, parameters)
        fcMu.inputGradient(delta: dMu, parameters, into: &dH1)
        fcLogvar.inputGradient(delta: dLogvar, parameters, into: &dH1, accumulate: true)
        Linear.activationBackward(.relu, output: h1, pre: scratch, delta: &dH1)
        fc1.parameterGradients(input: x, delta: dH1, parameters)
    }

    @_specialize(where Scalar == Float)
    @_specialize(where Scalar == Double)
    public func evaluate(x: Tensor<Scalar>, labels: [Int32], rng: inout Xoshiro256) -> (lossSum: Double, correct: Int) {
        (forward(x, rng: &rng, wantGradient: false), 0)
    }
}
