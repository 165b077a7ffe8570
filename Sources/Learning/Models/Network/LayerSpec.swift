import Linalg

/// One layer of a network, as a trial's `layers` list (or a preset) describes it. Parameters keep
/// PyTorch's names: a layer's `name` (default: its position, as in `nn.Sequential`) prefixes its
/// tensors' names (`conv1.weight`, `layer1.0.bn1.running_mean`, `blocks.0.attn.qkv.weight`).
public struct LayerSpec: Sendable, Equatable {
    public indirect enum Kind: Sendable, Equatable {
        /// `y = x·Wᵀ + b` on the last dimension; `outputs` nil: the data's classes (or vocabulary).
        /// `tied`: the weight is that embedding layer's (GPT's tied input and output embeddings).
        case linear(outputs: Int?, bias: Bool, tied: String?)
        case conv2d(outputs: Int, kernel: Int, stride: Int, padding: Int, bias: Bool)
        case maxPool(kernel: Int, stride: Int)
        case avgPool(kernel: Int, stride: Int)
        /// Channels × height × width → channels (mean over the positions).
        case globalAvgPool
        /// Channels × height × width → one vector, in PyTorch's order (channel, row, column).
        case flatten
        /// Per channel (images) or per feature (vectors), with running statistics for evaluation.
        case batchNorm(momentum: Double, epsilon: Double)
        /// Over the last dimension.
        case layerNorm(epsilon: Double)
        case dropout(Double)
        case activation(Activation)
        /// Token ids → vectors of `dimension` (the vocabulary is the data's).
        case embedding(dimension: Int)
        /// Adds a learned vector per position (the window length is the data's).
        case positional
        /// Causal multi-head self-attention: `qkv` and `proj` linear layers around the heads.
        case attention(heads: Int, dropout: Double)
        /// `body(x) + shortcut(x)`; an empty shortcut is the identity.
        case residual(body: [LayerSpec], shortcut: [LayerSpec])
    }

    public var kind: Kind
    public var name: String?

    public init(_ kind: Kind, name: String? = nil) {
        self.kind = kind
        self.name = name
    }

    /// Every layer type's keyword in a `layers` list, and its keys (the first is the one a
    /// scalar shorthand sets: `linear: 120`, `maxpool: 2`, `dropout: 0.1`).
    static let vocabulary: [(kind: String, keys: [String], help: String)] = [
        ("linear", ["out", "bias", "tied", "name"], "fully connected; `out` defaults to the data's classes"),
        ("conv2d", ["out", "kernel", "stride", "padding", "bias", "name"], "2-D convolution (dilation 1)"),
        ("maxpool", ["kernel", "stride", "name"], "max pooling (stride defaults to the kernel)"),
        ("avgpool", ["kernel", "stride", "name"], "average pooling (stride defaults to the kernel)"),
        ("global_avgpool", ["name"], "mean over each channel's positions"),
        ("flatten", ["name"], "channels × height × width → a vector"),
        ("batchnorm", ["momentum", "eps", "name"], "batch normalisation (momentum 0.1, eps 1e-5)"),
        ("layernorm", ["eps", "name"], "layer normalisation over the last dimension (eps 1e-5)"),
        ("dropout", ["p", "name"], "dropout with probability p"),
        ("relu", ["name"], "max(x, 0)"),
        ("tanh", ["name"], "tanh"),
        ("gelu", ["name"], "x·Φ(x) (exact, as nn.GELU)"),
        ("sigmoid", ["name"], "1/(1 + e^−x)"),
        ("embedding", ["dim", "name"], "token embedding (text data)"),
        ("positional", ["name"], "learned position embedding (text data)"),
        ("attention", ["heads", "dropout", "name"], "causal multi-head self-attention"),
        ("residual", ["body", "shortcut", "name"], "body(x) + shortcut(x); no shortcut: the identity"),
    ]

    /// Nesting depth and layer count a `layers` list may have (residual blocks nest).
    static let maxDepth = 8
    static let maxLayers = 10_000
}

/// A `layers` value that does not describe a network: `path` says where (`layers[3].conv2d`).
struct LayerSpecError: Error {
    var path: String
    var message: String
}

extension LayerSpec {
    /// Reads a `layers` list. Every entry is a layer keyword (`relu`) or a one-key mapping from
    /// the keyword to its settings (`{conv2d: {out: 6, kernel: 5}}`) or to its main setting
    /// (`{linear: 120}`).
    static func parseList(_ value: ConfigValue, path: String = "layers", depth: Int = 0, count: inout Int) throws(LayerSpecError) -> [LayerSpec] {
        guard case .list(let items) = value else { throw LayerSpecError(path: path, message: "expected a list of layers, got \(value.typeName) \(value)") }
        guard depth < maxDepth else { throw LayerSpecError(path: path, message: "residual blocks nest deeper than \(maxDepth) levels") }
        return try items.enumerated().map { (i, item) throws(LayerSpecError) in
            count += 1
            guard count <= maxLayers else { throw LayerSpecError(path: path, message: "more than \(maxLayers) layers") }
            return try parse(item, path: "\(path)[\(i)]", depth: depth, count: &count)
        }
    }

    private static func parse(_ item: ConfigValue, path: String, depth: Int, count: inout Int) throws(LayerSpecError) -> LayerSpec {
        let keyword: String
        var settings: [String: ConfigValue] = [:]
        switch item {
        case .string(let s):
            keyword = s
        case .mapping(let m) where m.count == 1:
            keyword = m.keys.first!
            guard let entry = vocabulary.first(where: { $0.kind == keyword }) else { throw unknown(keyword, path) }
            switch m[keyword]! {
            case .mapping(let s): settings = s
            case let v:
                guard keyword != "residual" else { settings = ["body": v]; break }
                guard let main = entry.keys.first, main != "name" else {
                    throw LayerSpecError(path: "\(path).\(keyword)", message: "takes settings \(entry.keys), not \(v)")
                }
                settings = [main: v]
            }
        default:
            throw LayerSpecError(path: path, message: "expected a layer keyword (e.g. relu) or a one-key mapping (e.g. {conv2d: {out: 6, kernel: 5}}), got \(item)")
        }
        guard let entry = vocabulary.first(where: { $0.kind == keyword }) else { throw unknown(keyword, path) }
        let here = "\(path).\(keyword)"
        if let extra = settings.keys.sorted().first(where: { !entry.keys.contains($0) }) {
            let hint = suggestions(for: extra, among: entry.keys).first.map { " (did you mean '\($0)'?)" } ?? ""
            throw LayerSpecError(path: here, message: "unknown setting '\(extra)'\(hint); \(keyword) takes \(entry.keys.joined(separator: ", "))")
        }
        let reader = Settings(values: settings, path: here)
        let name = try reader.name()
        let kind: Kind
        switch keyword {
        case "linear": kind = .linear(outputs: try reader.optionalInt("out"), bias: try reader.bool("bias", true), tied: try reader.optionalString("tied"))
        case "conv2d":
            kind = .conv2d(
                outputs: try reader.int("out"), kernel: try reader.int("kernel"), stride: try reader.int("stride", 1),
                padding: try reader.int("padding", 0, minimum: 0), bias: try reader.bool("bias", true))
        case "maxpool", "avgpool":
            let k = try reader.int("kernel")
            let s = try reader.int("stride", k)
            kind = keyword == "maxpool" ? .maxPool(kernel: k, stride: s) : .avgPool(kernel: k, stride: s)
        case "global_avgpool": kind = .globalAvgPool
        case "flatten": kind = .flatten
        case "batchnorm": kind = .batchNorm(momentum: try reader.double("momentum", 0.1, open: 0, 1), epsilon: try reader.double("eps", 1e-5, open: 0, 1))
        case "layernorm": kind = .layerNorm(epsilon: try reader.double("eps", 1e-5, open: 0, 1))
        case "dropout": kind = .dropout(try reader.double("p", nil, closed: 0, below: 1))
        case "relu", "tanh", "gelu", "sigmoid": kind = .activation(Activation(rawValue: keyword)!)
        case "embedding": kind = .embedding(dimension: try reader.int("dim"))
        case "positional": kind = .positional
        case "attention": kind = .attention(heads: try reader.int("heads"), dropout: try reader.double("dropout", 0, closed: 0, below: 1))
        case "residual":
            guard let body = settings["body"] else { throw LayerSpecError(path: here, message: "needs a body: a list of layers") }
            let b = try parseList(body, path: "\(here).body", depth: depth + 1, count: &count)
            let s = try settings["shortcut"].map { v throws(LayerSpecError) in try parseList(v, path: "\(here).shortcut", depth: depth + 1, count: &count) } ?? []
            kind = .residual(body: b, shortcut: s)
        default: throw unknown(keyword, path)
        }
        return LayerSpec(kind, name: name)
    }

    private static func unknown(_ keyword: String, _ path: String) -> LayerSpecError {
        let names = vocabulary.map(\.kind)
        let hint = suggestions(for: keyword, among: names).first.map { " (did you mean '\($0)'?)" } ?? ""
        return LayerSpecError(path: path, message: "unknown layer '\(keyword)'\(hint); layers are \(names.joined(separator: ", "))")
    }

    /// Typed access to one layer's settings, with errors at `path.key`.
    private struct Settings {
        var values: [String: ConfigValue]
        var path: String

        func fail(_ key: String, _ message: String) -> LayerSpecError { LayerSpecError(path: "\(path).\(key)", message: message) }

        func name() throws(LayerSpecError) -> String? {
            guard let v = values["name"] else { return nil }
            guard case .string(let s) = v, !s.isEmpty, s.count <= 200, !s.hasPrefix("."), !s.hasSuffix("."), !s.contains(".."),
                s.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || $0.properties.numericType != nil || "._-".unicodeScalars.contains($0)) })
            else { throw fail("name", "expected a name of letters, digits, '_', '-' and inner dots (at most 200), got \(v)") }
            return s
        }

        func optionalInt(_ key: String) throws(LayerSpecError) -> Int? {
            guard let v = values[key] else { return nil }
            guard case .int(let i) = v, i >= 1, i <= 1 << 24 else { throw fail(key, "expected a positive integer (at most \(1 << 24)), got \(v)") }
            return i
        }

        func int(_ key: String, _ fallback: Int? = nil, minimum: Int = 1) throws(LayerSpecError) -> Int {
            guard let v = values[key] else {
                guard let fallback else { throw fail(key, "is required") }
                return fallback
            }
            guard case .int(let i) = v, i >= minimum, i <= 1 << 24 else { throw fail(key, "expected an integer in [\(minimum), \(1 << 24)], got \(v)") }
            return i
        }

        func optionalString(_ key: String) throws(LayerSpecError) -> String? {
            guard let v = values[key] else { return nil }
            guard case .string(let s) = v, !s.isEmpty else { throw fail(key, "expected a layer name, got \(v)") }
            return s
        }

        func bool(_ key: String, _ fallback: Bool) throws(LayerSpecError) -> Bool {
            guard let v = values[key] else { return fallback }
            guard case .bool(let b) = v else { throw fail(key, "expected true or false, got \(v)") }
            return b
        }

        /// A number in (lower, upper) (`open`) or [lower, upper) (`closed`/`below`).
        func double(_ key: String, _ fallback: Double?, open lower: Double, _ upper: Double) throws(LayerSpecError) -> Double {
            let x = try number(key, fallback)
            guard x > lower, x < upper else { throw fail(key, "must be in (\(TrialSchema.Key.Bounds.number(lower)), \(TrialSchema.Key.Bounds.number(upper))), got \(formatDouble(x))") }
            return x
        }

        func double(_ key: String, _ fallback: Double?, closed lower: Double, below upper: Double) throws(LayerSpecError) -> Double {
            let x = try number(key, fallback)
            guard x >= lower, x < upper else { throw fail(key, "must be in [\(TrialSchema.Key.Bounds.number(lower)), \(TrialSchema.Key.Bounds.number(upper))), got \(formatDouble(x))") }
            return x
        }

        private func number(_ key: String, _ fallback: Double?) throws(LayerSpecError) -> Double {
            guard let v = values[key] else {
                guard let fallback else { throw fail(key, "is required") }
                return fallback
            }
            guard let x = v.asDouble, x.isFinite else { throw fail(key, "expected a number, got \(v)") }
            return x
        }
    }
}
