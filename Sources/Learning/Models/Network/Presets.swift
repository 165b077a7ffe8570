/// The named architectures, written as layer lists with PyTorch's module names.
public enum NetworkPresets {
    /// LeNet-5 as PyTorch code usually writes it: two 5×5 convolutions (6 and 16 channels) each
    /// followed by the activation and 2×2 pooling, then 120-84-classes fully connected layers.
    /// A 28×28 input is padded by 2 so that the second pooling leaves 16×5×5, as on 32×32.
    public static func lenet5(activation: Activation, pooling: String, height: Int) -> [LayerSpec] {
        let act = LayerSpec(.activation(activation))
        let pool = LayerSpec(pooling == "avg" ? .avgPool(kernel: 2, stride: 2) : .maxPool(kernel: 2, stride: 2))
        return [
            LayerSpec(.conv2d(outputs: 6, kernel: 5, stride: 1, padding: max(0, (32 - height) / 2), bias: true), name: "conv1"), act, pool,
            LayerSpec(.conv2d(outputs: 16, kernel: 5, stride: 1, padding: 0, bias: true), name: "conv2"), act, pool,
            LayerSpec(.flatten),
            LayerSpec(.linear(outputs: 120, bias: true, tied: nil), name: "fc1"), act,
            LayerSpec(.linear(outputs: 84, bias: true, tied: nil), name: "fc2"), act,
            LayerSpec(.linear(outputs: nil, bias: true, tied: nil), name: "fc3"),
        ]
    }

    /// The CIFAR ResNet of He et al. (2016, §4.2): a 3×3 convolution of `width` channels, three
    /// stages of (depth − 2)/6 basic blocks at width, 2·width and 4·width (the first block of the
    /// second and third stage strides 2, its shortcut a 1×1 convolution with batch norm), global
    /// average pooling and a linear layer. Names follow the common PyTorch code (`layer1.0.conv1`,
    /// `layer2.0.shortcut.0`, `linear`).
    public static func resnet(depth: Int, width: Int) -> [LayerSpec] {
        let blocks = (depth - 2) / 6
        func conv(_ out: Int, _ k: Int, stride: Int, _ name: String?) -> LayerSpec {
            LayerSpec(.conv2d(outputs: out, kernel: k, stride: stride, padding: k / 2, bias: false), name: name)
        }
        func bn(_ name: String?) -> LayerSpec { LayerSpec(.batchNorm(momentum: 0.1, epsilon: 1e-5), name: name) }
        let relu = LayerSpec(.activation(.relu))
        var layers = [conv(width, 3, stride: 1, "conv1"), bn("bn1"), relu]
        var channels = width
        for stage in 0..<3 {
            let out = width << stage
            for b in 0..<blocks {
                let stride = stage > 0 && b == 0 ? 2 : 1
                let body = [conv(out, 3, stride: stride, "conv1"), bn("bn1"), relu, conv(out, 3, stride: 1, "conv2"), bn("bn2")]
                let shortcut = stride != 1 || channels != out ? [conv(out, 1, stride: stride, nil), bn(nil)] : []
                layers += [LayerSpec(.residual(body: body, shortcut: shortcut), name: "layer\(stage + 1).\(b)"), relu]
                channels = out
            }
        }
        return layers + [LayerSpec(.globalAvgPool), LayerSpec(.linear(outputs: nil, bias: true, tied: nil), name: "linear")]
    }

    /// A plain convolutional net: per entry of `channels` a 3×3 convolution (padding 1), ReLU and
    /// 2×2 max pooling; then a hidden fully connected layer with ReLU and the output layer.
    public static func cnn(channels: [Int], hidden: Int) -> [LayerSpec] {
        var layers: [LayerSpec] = []
        for (i, c) in channels.enumerated() {
            layers += [
                LayerSpec(.conv2d(outputs: c, kernel: 3, stride: 1, padding: 1, bias: true), name: "conv\(i + 1)"),
                LayerSpec(.activation(.relu)), LayerSpec(.maxPool(kernel: 2, stride: 2)),
            ]
        }
        return layers + [
            LayerSpec(.flatten), LayerSpec(.linear(outputs: hidden, bias: true, tied: nil), name: "fc1"), LayerSpec(.activation(.relu)),
            LayerSpec(.linear(outputs: nil, bias: true, tied: nil), name: "fc2"),
        ]
    }

    /// A GPT decoder (as nanoGPT): token and position embeddings, `layers` pre-norm blocks of
    /// causal self-attention and a 4× GELU MLP, each on a residual branch, a final layer norm and
    /// the head (without bias; its weight the token embedding's when `tied`). Dropout `dropout`
    /// after the embeddings, on the attention weights and at the end of each residual branch.
    public static func gpt(layers: Int, heads: Int, width: Int, dropout: Double, tied: Bool) -> [LayerSpec] {
        var specs = [LayerSpec(.embedding(dimension: width), name: "wte"), LayerSpec(.positional, name: "wpe")]
        if dropout > 0 { specs.append(LayerSpec(.dropout(dropout), name: "drop")) }
        let branchDropout = dropout > 0 ? [LayerSpec(.dropout(dropout), name: "drop")] : []
        for i in 0..<layers {
            let block = "blocks.\(i)"
            let attention = [LayerSpec(.layerNorm(epsilon: 1e-5), name: "ln1"), LayerSpec(.attention(heads: heads, dropout: dropout), name: "attn")]
            let mlp = [
                LayerSpec(.layerNorm(epsilon: 1e-5), name: "ln2"), LayerSpec(.linear(outputs: 4 * width, bias: true, tied: nil), name: "mlp.fc"),
                LayerSpec(.activation(.gelu), name: "mlp.gelu"), LayerSpec(.linear(outputs: width, bias: true, tied: nil), name: "mlp.proj"),
            ]
            specs.append(LayerSpec(.residual(body: attention + branchDropout, shortcut: []), name: block))
            specs.append(LayerSpec(.residual(body: mlp + branchDropout, shortcut: []), name: block))
        }
        return specs + [LayerSpec(.layerNorm(epsilon: 1e-5), name: "ln_f"), LayerSpec(.linear(outputs: nil, bias: false, tied: tied ? "wte" : nil), name: "head")]
    }
}
