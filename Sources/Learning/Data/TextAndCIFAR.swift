import Glibc

/// How a text file becomes token windows (the text trial keys).
public struct TextOptions: Sendable, Hashable {
    /// Tokens per window: the model's context.
    public var blockSize: Int
    /// A token per character (the text's own characters, sorted) instead of per byte.
    public var characters: Bool
    /// The last fraction of the text, held out for evaluation.
    public var validationFraction: Double

    public init(blockSize: Int = 64, characters: Bool = false, validationFraction: Double = 0.1) {
        (self.blockSize, self.characters, self.validationFraction) = (blockSize, characters, validationFraction)
    }
}

extension DataSource {
    /// The largest text file read: its tokens become about 12 bytes each in memory (ids, inputs
    /// and labels), 16 as characters.
    static let maxTextBytes = 256 << 20
    /// The largest CIFAR-10 batch file read (a batch of 10,000 images is 30,730,000 bytes).
    static let maxCIFARBatchBytes = 32 << 20

    /// A whole file, refusing files larger than `limit` bytes.
    static func readFile(_ path: String, limit: Int) throws -> [UInt8] {
        guard let file = fopen(path, "rb") else {
            if access(path, F_OK) != 0 { throw DataError.missingFile(path, hint: nil) }
            throw DataError.unreadable(path, reason: String(cString: strerror(errno)))
        }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
            if n == 0 {
                if ferror(file) != 0 { throw DataError.unreadable(path, reason: String(cString: strerror(errno))) }
                break
            }
            guard bytes.count + n <= limit else { throw DataError.invalid("\(path) is larger than \(limit) bytes") }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return bytes
    }

    /// A text as next-token windows: the first 1 − `validationFraction` of its tokens train, the
    /// rest evaluate; each split is cut into non-overlapping windows of `blockSize` tokens, each
    /// labelled with the tokens one position later.
    static func loadText(path: String, options: TextOptions) throws -> DataSplits {
        let bytes = try readFile(path, limit: maxTextBytes)
        let tokens: [Int32]
        let vocabulary: Int
        if options.characters {
            var scalars: [Unicode.Scalar] = []
            var decoder = UTF8()
            var iterator = bytes.makeIterator()
            var offset = 0
            decoding: while true {
                switch decoder.decode(&iterator) {
                case .scalarValue(let s):
                    scalars.append(s)
                    offset += UTF8.width(s)
                case .emptyInput: break decoding
                case .error: throw DataError.invalid("\(path): invalid UTF-8 near byte \(offset) (use tokens: bytes for binary text)")
                }
            }
            let alphabet = Array(Set(scalars)).sorted { $0.value < $1.value }
            let ids = Dictionary(uniqueKeysWithValues: alphabet.enumerated().map { ($1, Int32($0)) })
            tokens = scalars.map { ids[$0]! }
            vocabulary = alphabet.count
        } else {
            tokens = bytes.map { Int32($0) }
            vocabulary = 256
        }
        let t = options.blockSize
        let split = Int(Double(tokens.count) * (1 - options.validationFraction))
        func windows(_ part: ArraySlice<Int32>, _ label: String) throws -> Dataset {
            let count = (part.count - 1) / t
            guard part.count > t else {
                throw DataError.invalid("\(path): the \(label) text has \(part.count) tokens, too few for one window of block_size \(t) (plus the next token)")
            }
            var x = [Float](repeating: 0, count: count * t)
            var labels = [Int32](repeating: 0, count: count * t)
            let base = part.startIndex
            for i in 0..<(count * t) {
                x[i] = Float(part[base + i])
                labels[i] = part[base + i + 1]
            }
            return try Dataset(name: "\(path) \(label)", features: t, x: x, labels: labels, classes: vocabulary, layout: .tokens(length: t))
        }
        return DataSplits(train: try windows(tokens[..<split], "training"), test: try windows(tokens[split...], "validation"))
    }

    /// The CIFAR-10 binary format: `data_batch_1.bin` … `data_batch_5.bin` (those present, at
    /// least one) train and `test_batch.bin` tests; each record is a label byte (0–9) and a
    /// 32×32 image as 1,024 red, 1,024 green and 1,024 blue bytes.
    static func loadCIFAR10(directory: String) throws -> DataSplits {
        let record = 1 + 3 * 32 * 32
        func read(_ paths: [String], _ label: String) throws -> Dataset {
            var x: [Float] = [], labels: [Int32] = []
            for path in paths {
                let bytes = try readFile(path, limit: maxCIFARBatchBytes)
                guard !bytes.isEmpty, bytes.count % record == 0 else {
                    throw DataError.invalid("\(path): \(bytes.count) bytes are not whole CIFAR-10 records of \(record) bytes (a label and a 3×32×32 image)")
                }
                x.reserveCapacity(x.count + bytes.count / record * (record - 1))
                for r in 0..<(bytes.count / record) {
                    let y = bytes[r * record]
                    guard y < 10 else { throw DataError.invalid("\(path): record \(r) has label \(y); CIFAR-10 labels are 0–9") }
                    labels.append(Int32(y))
                    for i in 1..<record { x.append(Float(bytes[r * record + i]) / 255) }
                }
            }
            return try Dataset(name: "cifar10 \(label)", features: record - 1, x: x, labels: labels, classes: 10, layout: .image(channels: 3, height: 32, width: 32))
        }
        let train = (1...5).map { "\(directory)/data_batch_\($0).bin" as String }.filter { access($0, F_OK) == 0 }
        guard !train.isEmpty else { throw DataError.missingFile("\(directory)/data_batch_1.bin", hint: "the CIFAR-10 binary version: cifar-10-binary.tar.gz, unpacked") }
        return DataSplits(train: try read(train, "train"), test: try read(["\(directory)/test_batch.bin"], "test"))
    }
}
