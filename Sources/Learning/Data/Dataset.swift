import Glibc
import HDF5
import Linalg

/// What one example of a data set is, beyond its `features` values.
public enum ExampleLayout: Sendable, Equatable, CustomStringConvertible {
    /// A vector of features.
    case vector
    /// An image, channel-major (`channels × height × width` values, as PyTorch's NCHW).
    case image(channels: Int, height: Int, width: Int)
    /// `length` token ids (stored as floats, exact below 2²⁴), each labelled with the token that
    /// follows it: a language model's window.
    case tokens(length: Int)

    /// Labels per example: one class, or the next token at each position.
    public var labelsPerExample: Int { if case .tokens(let t) = self { t } else { 1 } }

    public var description: String {
        switch self {
        case .vector: "vector"
        case .image(let c, let h, let w): "\(c)×\(h)×\(w) image"
        case .tokens(let t): "\(t)-token window"
        }
    }
}

/// A supervised data set in memory: `count` examples of `features` values each (scaled to
/// [0, 1] for images, token ids for text), with integer labels: a class per example, or a next
/// token per position for text (`layout`).
public struct Dataset: Sendable {
    public let name: String
    public let features: Int
    public let count: Int
    /// Row-major `count × features`.
    public let x: [Float]
    /// `count × layout.labelsPerExample`.
    public let labels: [Int32]
    public let classes: Int
    public let layout: ExampleLayout

    public init(name: String, features: Int, x: [Float], labels: [Int32], classes: Int? = nil, layout: ExampleLayout = .vector) throws {
        guard features > 0, x.count % features == 0 else {
            throw DataError.invalid("\(name): \(x.count) values do not split into rows of \(features) features")
        }
        switch layout {
        case .vector: break
        case .image(let c, let h, let w):
            guard c > 0, h > 0, w > 0, c * h * w == features else { throw DataError.invalid("\(name): a \(layout) does not hold \(features) values") }
        case .tokens(let t):
            guard t == features else { throw DataError.invalid("\(name): a \(layout) does not hold \(features) values") }
        }
        let count = x.count / features
        guard labels.count == count * layout.labelsPerExample else {
            throw DataError.mismatch("\(name): \(count) examples need \(count * layout.labelsPerExample) labels, found \(labels.count)")
        }
        if let bad = labels.first(where: { $0 < 0 }) { throw DataError.invalid("\(name): negative label \(bad)") }
        self.name = name
        self.features = features
        self.count = count
        self.x = x
        self.labels = labels
        self.classes = classes ?? Int((labels.max() ?? 0) + 1)
        self.layout = layout
        if let classes, let bad = labels.first(where: { $0 >= classes }) {
            throw DataError.invalid("\(name): label \(bad) is not below the \(classes) classes")
        }
    }

    /// The first `n` examples (the `limit` trial key), or all of them.
    public func prefix(_ n: Int?) -> Dataset {
        guard let n, n < count else { return self }
        let l = layout.labelsPerExample
        // Cannot fail: a prefix of a valid data set is valid.
        return try! Dataset(
            name: name, features: features, x: Array(x[0..<(n * features)]), labels: Array(labels[0..<(n * l)]), classes: classes, layout: layout)
    }

    /// What the model and the resource limits need to know of it.
    public var shape: DataShape { DataShape(features: features, classes: classes, trainingExamples: count, layout: layout) }

    /// The same examples, laid out as `layout` (which must hold `features` values).
    public func laidOut(_ layout: ExampleLayout) throws -> Dataset {
        try Dataset(name: name, features: features, x: x, labels: labels, classes: classes, layout: layout)
    }

    /// Copies the examples at `indices` into a batch (features converted to `T`), with their labels.
    @inlinable
    public func gather<T: BLASScalar>(_ indices: ArraySlice<Int>, into batch: inout Tensor<T>, labels out: inout [Int32]) {
        let b = indices.count
        let l = layout.labelsPerExample
        if batch.shape != [b, features] { batch.resize([b, features]) }
        if out.count != b * l { out = [Int32](repeating: 0, count: b * l) }
        let f = features
        x.withUnsafeBufferPointer { src in
            batch.storage.withUnsafeMutableBufferPointer { dst in
                for (row, i) in indices.enumerated() {
                    let s = src.baseAddress! + i * f
                    let d = dst.baseAddress! + row * f
                    if T.self == Float.self {
                        UnsafeMutableRawPointer(d).copyMemory(from: s, byteCount: f * 4)
                    } else {
                        for k in 0..<f { d[k] = T(s[k]) }
                    }
                    for k in 0..<l { out[row * l + k] = labels[i * l + k] }
                }
            }
        }
    }
}

/// A train/test pair, as a trial's `data` key names it.
public struct DataSplits: Sendable {
    public let train: Dataset
    public let test: Dataset
}

/// Where a trial's data come from.
public enum DataSource: Sendable, Equatable, CustomStringConvertible {
    /// Debian's `dataset-fashion-mnist` package.
    case fashionMNIST
    /// A directory holding the four standard IDX files (MNIST, Fashion-MNIST, KMNIST…).
    case idxDirectory(String)
    /// An HDF5 file with `X_train`, `y_train`, `X_test`, `y_test`, or just `X` and `y`, whose last
    /// seventh becomes the test split (Fashion-MNIST's 60k/10k proportion).
    case hdf5(String)
    /// Modular addition `a + b mod p` (the grokking experiments of Power et al. 2022): every pair
    /// (a, b) as the one-hot codes of a and b side by side (2p features), labelled (a + b) mod p;
    /// the pairs are shuffled with the trial's seed and the first `trainFraction` of them train.
    case modular(modulus: Int, trainFraction: Double)
    /// The CIFAR-10 binary files in a directory (`data_batch_N.bin`, `test_batch.bin`).
    case cifar10(String)
    /// A text file, as next-token windows (`TextOptions`).
    case text(String)

    public static let fashionMNISTDirectory = "/usr/share/datasets/fashion-mnist"

    public var description: String {
        switch self {
        case .fashionMNIST: "fashion-mnist"
        case .idxDirectory(let d): "idx:\(d)"
        case .hdf5(let p): "hdf5:\(p)"
        case .modular(let p, let f): "modular:\(p):\(f)"
        case .cifar10(let d): "cifar10:\(d)"
        case .text(let p): "text:\(p)"
        }
    }

    /// Generated from the trial's seed (so a worker caches it per seed).
    public var isSynthetic: Bool { if case .modular = self { true } else { false } }

    /// Parses a trial's `data` value: `fashion-mnist`, `idx:DIR` (or a bare directory) or
    /// `hdf5:FILE` (or a path ending in `.h5`/`.hdf5`).
    public init(parsing text: String) throws {
        if text == "fashion-mnist" || text == "fashion_mnist" {
            self = .fashionMNIST
        } else if text.hasPrefix("modular:") {
            let parts = text.split(separator: ":").dropFirst()
            guard let p = parts.first.flatMap({ Int($0) }), p >= 2, p <= 1000,
                let f = parts.count > 1 ? Double(parts[parts.startIndex + 1]) : 0.5, f > 0, f < 1, parts.count <= 2
            else {
                throw DataError.invalid("'\(text)': use modular:P or modular:P:TRAIN_FRACTION with 2 ≤ P ≤ 1000 and 0 < TRAIN_FRACTION < 1 (e.g. modular:97:0.4)")
            }
            self = .modular(modulus: p, trainFraction: f)
        } else if text.hasPrefix("cifar10:") {
            self = .cifar10(String(text.dropFirst(8)))
        } else if text.hasPrefix("text:") {
            self = .text(String(text.dropFirst(5)))
        } else if text.hasPrefix("idx:") {
            self = .idxDirectory(String(text.dropFirst(4)))
        } else if text.hasPrefix("hdf5:") {
            self = .hdf5(String(text.dropFirst(5)))
        } else if text.hasSuffix(".h5") || text.hasSuffix(".hdf5") {
            self = .hdf5(text)
        } else if text.contains("/") {
            self = .idxDirectory(text)
        } else {
            throw DataError.invalid(
                "unknown data set '\(text)': use fashion-mnist, idx:DIRECTORY (four IDX files, e.g. MNIST), hdf5:FILE (datasets X_train, y_train, X_test, y_test), cifar10:DIRECTORY (the binary batches) or text:FILE"
            )
        }
    }

    /// Whether the data are text (read with `TextOptions`).
    public var isText: Bool { if case .text = self { true } else { false } }

    public func load(trainLimit: Int? = nil, testLimit: Int? = nil, seed: UInt64 = 0, text options: TextOptions = TextOptions()) throws -> DataSplits {
        let splits: DataSplits
        switch self {
        case .modular(let p, let fraction):
            splits = try Self.modularAddition(p, trainFraction: fraction, seed: seed)
        case .fashionMNIST:
            let dir = Self.fashionMNISTDirectory
            if access(dir, F_OK) != 0 {
                throw DataError.missingFile(dir, hint: "install Debian's dataset-fashion-mnist package: apt-get install dataset-fashion-mnist")
            }
            splits = try Self.loadIDX(directory: dir, name: "fashion-mnist")
        case .idxDirectory(let dir):
            splits = try Self.loadIDX(directory: dir, name: dir)
        case .hdf5(let path):
            splits = try Self.loadHDF5(path: path)
        case .cifar10(let dir):
            splits = try Self.loadCIFAR10(directory: dir)
        case .text(let path):
            splits = try Self.loadText(path: path, options: options)
        }
        return DataSplits(train: splits.train.prefix(trainLimit), test: splits.test.prefix(testLimit))
    }

    /// How many of the p² pairs of `modular:P:FRACTION` are training examples.
    static func modularTrainingCount(_ p: Int, trainFraction: Double) -> Int {
        max(1, min(p * p - 1, Int((trainFraction * Double(p * p)).rounded())))
    }

    static func modularAddition(_ p: Int, trainFraction: Double, seed: UInt64) throws -> DataSplits {
        var rng = Xoshiro256(seed: seed, stream: "modular")
        let order = rng.permutation(p * p)
        let trainCount = modularTrainingCount(p, trainFraction: trainFraction)
        func make(_ pairs: ArraySlice<Int>, _ name: String) throws -> Dataset {
            var x = [Float](repeating: 0, count: pairs.count * 2 * p)
            var labels: [Int32] = []
            for (row, pair) in pairs.enumerated() {
                let (a, b) = (pair / p, pair % p)
                x[row * 2 * p + a] = 1
                x[row * 2 * p + p + b] = 1
                labels.append(Int32((a + b) % p))
            }
            return try Dataset(name: name, features: 2 * p, x: x, labels: labels, classes: p)
        }
        return DataSplits(train: try make(order[..<trainCount], "modular-\(p) train"), test: try make(order[trainCount...], "modular-\(p) test"))
    }

    static func findIDX(_ directory: String, _ stem: String) throws -> String {
        for candidate in ["\(stem).gz", stem, stem.replacingDash()] where access("\(directory)/\(candidate)", F_OK) == 0 {
            return "\(directory)/\(candidate)"
        }
        throw DataError.missingFile("\(directory)/\(stem)[.gz]", hint: nil)
    }

    static func loadIDX(directory: String, name: String) throws -> DataSplits {
        func split(_ images: String, _ labels: String, _ label: String) throws -> Dataset {
            let imagePath = try findIDX(directory, images)
            let labelPath = try findIDX(directory, labels)
            let x = try IDXArray.read(path: imagePath)
            let y = try IDXArray.read(path: labelPath)
            guard x.shape.count >= 2 else { throw DataError.mismatch("\(imagePath): expected images (rank ≥ 2), found shape \(x.shape)") }
            guard y.shape.count == 1 else { throw DataError.mismatch("\(labelPath): expected a vector of labels, found shape \(y.shape)") }
            guard x.shape[0] == y.shape[0] else {
                throw DataError.mismatch("\(imagePath) has \(x.shape[0]) images but \(labelPath) has \(y.shape[0]) labels")
            }
            let features = x.shape.dropFirst().reduce(1, *)
            // Pixels / 255, as torchvision's ToTensor.
            return try Dataset(
                name: "\(name) \(label)", features: features, x: x.bytes.map { Float($0) / 255 }, labels: y.bytes.map { Int32($0) },
                layout: Self.imageLayout(Array(x.shape.dropFirst())))
        }
        let train = try split("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "train")
        let test = try split("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "test")
        guard train.features == test.features else {
            throw DataError.mismatch("\(directory): train images have \(train.features) pixels, test images \(test.features)")
        }
        let classes = max(train.classes, test.classes)
        return DataSplits(
            train: try Dataset(name: train.name, features: train.features, x: train.x, labels: train.labels, classes: classes, layout: train.layout),
            test: try Dataset(name: test.name, features: test.features, x: test.x, labels: test.labels, classes: classes, layout: test.layout))
    }

    /// Examples of shape H×W are one-channel images, C×H×W images; anything else is a vector.
    static func imageLayout(_ shape: [Int]) -> ExampleLayout {
        switch shape.count {
        case 2: .image(channels: 1, height: shape[0], width: shape[1])
        case 3: .image(channels: shape[0], height: shape[1], width: shape[2])
        default: .vector
        }
    }

    static func loadHDF5(path: String) throws -> DataSplits {
        if access(path, F_OK) != 0 { throw DataError.missingFile(path, hint: nil) }
        let file = try HDF5File(path, mode: .readOnly)
        func split(_ xName: String, _ yName: String) throws -> Dataset {
            for n in [xName, yName] where !file.contains(n) {
                throw DataError.invalid("\(path) has no dataset '\(n)' (expected X_train, y_train, X_test, y_test, or X and y)")
            }
            let (x, xShape) = try file.read(xName, as: Float.self)
            let (y, yShape) = try file.read(yName, as: Int64.self)
            guard xShape.count >= 2, yShape.count == 1, xShape[0] == yShape[0] else {
                throw DataError.mismatch("\(path): \(xName) has shape \(xShape) and \(yName) has shape \(yShape); expected (N, features) and (N,)")
            }
            return try Dataset(
                name: "\(path):\(xName)", features: xShape.dropFirst().reduce(1, *), x: x, labels: y.map { Int32($0) },
                layout: Self.imageLayout(Array(xShape.dropFirst())))
        }
        if !file.contains("X_train") && file.contains("X") {
            let all = try split("X", "y")
            let testCount = max(1, all.count / 7)
            let trainCount = all.count - testCount
            guard trainCount > 0 else { throw DataError.invalid("\(path): \(all.count) examples are too few to split into train and test") }
            let f = all.features
            return DataSplits(
                train: try Dataset(
                    name: "\(path) train", features: f, x: Array(all.x[0..<(trainCount * f)]), labels: Array(all.labels[0..<trainCount]), classes: all.classes,
                    layout: all.layout),
                test: try Dataset(
                    name: "\(path) test", features: f, x: Array(all.x[(trainCount * f)...]), labels: Array(all.labels[trainCount...]), classes: all.classes,
                    layout: all.layout))
        }
        let train = try split("X_train", "y_train")
        let test = try split("X_test", "y_test")
        guard train.features == test.features else { throw DataError.mismatch("\(path): X_train has \(train.features) features, X_test \(test.features)") }
        let classes = max(train.classes, test.classes)
        return DataSplits(
            train: try Dataset(name: train.name, features: train.features, x: train.x, labels: train.labels, classes: classes, layout: train.layout),
            test: try Dataset(name: test.name, features: test.features, x: test.x, labels: test.labels, classes: classes, layout: test.layout))
    }
}

extension String {
    /// `train-images-idx3-ubyte` → `train-images.idx3-ubyte` (the original MNIST site's naming).
    fileprivate func replacingDash() -> String {
        let parts = split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 3 else { return self }
        return parts[0..<2].joined(separator: "-") + "." + parts[2...].joined(separator: "-")
    }
}
