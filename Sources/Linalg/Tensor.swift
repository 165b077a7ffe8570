/// A dense, row-major array of any rank with value semantics.
///
/// Parameters, gradients, optimizer state and activations are all tensors. BLAS and LAPACK see a
/// tensor as a matrix: rank 2 as itself, rank 1 as a single row, higher ranks as
/// `shape[0] × (product of the rest)`, the way PyTorch's Shampoo flattens convolution kernels.
///
/// The basic operations are `@inlinable`, so that other modules' hot loops get them specialised
/// to Float or Double rather than through generic value witnesses.
public struct Tensor<Scalar: BLASScalar>: Sendable, Equatable {
    /// Set only through `reshape` and `resize`, which keep it consistent with `storage`.
    @usableFromInline var dimensions: [Int]
    public var storage: [Scalar]

    @inlinable public var shape: [Int] { dimensions }

    @inlinable public init(shape: [Int], storage: [Scalar]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        precondition(shape.reduce(1, *) == storage.count, "shape \(shape) does not hold \(storage.count) elements")
        self.dimensions = shape
        self.storage = storage
    }

    @inlinable public init(zeros shape: [Int]) {
        self.init(shape: shape, storage: [Scalar](repeating: 0, count: shape.reduce(1, *)))
    }

    @inlinable public init(repeating value: Scalar, shape: [Int]) {
        self.init(shape: shape, storage: [Scalar](repeating: value, count: shape.reduce(1, *)))
    }

    /// A rows × cols matrix from nested arrays (tests and small problems).
    public init(_ rows: [[Scalar]]) {
        let cols = rows.first?.count ?? 0
        precondition(rows.allSatisfy { $0.count == cols }, "ragged matrix literal")
        self.init(shape: [rows.count, cols], storage: rows.flatMap { $0 })
    }

    /// A rank-1 tensor.
    public init(vector: [Scalar]) { self.init(shape: [vector.count], storage: vector) }

    @inlinable public var count: Int { storage.count }
    @inlinable public var rank: Int { shape.count }
    /// Rows when seen as a matrix.
    @inlinable public var rows: Int { shape.count >= 2 ? shape[0] : 1 }
    /// Columns when seen as a matrix.
    @inlinable public var cols: Int {
        switch shape.count {
        case 0: 1
        case 1: shape[0]
        default: shape.dropFirst().reduce(1, *)
        }
    }

    @inlinable public subscript(row: Int, col: Int) -> Scalar {
        get { storage[row * cols + col] }
        set { storage[row * cols + col] = newValue }
    }

    /// Changes the shape, keeping the elements in order.
    @inlinable public func reshaped(_ newShape: [Int]) -> Tensor {
        Tensor(shape: newShape, storage: storage)
    }

    /// Reinterprets the shape in place; the element count must not change.
    @inlinable public mutating func reshape(_ newShape: [Int]) {
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        dimensions = newShape
    }

    /// Resizes to a new shape, reusing storage when the count is unchanged (workspace buffers).
    @inlinable public mutating func resize(_ newShape: [Int]) {
        let n = newShape.reduce(1, *)
        if n != storage.count { storage = [Scalar](repeating: 0, count: n) }
        dimensions = newShape
    }

    @inlinable public var transposed: Tensor {
        let (r, c) = (rows, cols)
        var out = [Scalar](repeating: 0, count: count)
        storage.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for i in 0..<r { for j in 0..<c { dst[j * r + i] = src[i * c + j] } }
            }
        }
        return Tensor(shape: [c, r], storage: out)
    }

    /// Converts precision (Double fixtures to Float engines and back).
    @inlinable public func converted<Other: BLASScalar>(to: Other.Type = Other.self) -> Tensor<Other> {
        Tensor<Other>(shape: shape, storage: storage.map { Other($0) })
    }

    @inlinable public static func identity(_ n: Int) -> Tensor {
        var t = Tensor(zeros: [n, n])
        for i in 0..<n { t.storage[i * n + i] = 1 }
        return t
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String { "Tensor\(shape)(\(storage.prefix(8).map(\.description).joined(separator: ", "))\(count > 8 ? ", …" : ""))" }
}

// MARK: - Element-wise helpers used outside the hot loops

extension Tensor {
    @inlinable public func map(_ f: (Scalar) -> Scalar) -> Tensor {
        Tensor(shape: shape, storage: storage.map(f))
    }

    @inlinable public var squaredNorm: Scalar {
        storage.withUnsafeBufferPointer { p in
            var s: Scalar = 0
            for x in p { s += x * x }
            return s
        }
    }

    @inlinable public var norm: Scalar { squaredNorm.squareRoot() }

    @inlinable public var allFinite: Bool { storage.allSatisfy { $0.isFinite } }

    @inlinable public func maxAbsDifference(_ other: Tensor) -> Scalar {
        precondition(shape == other.shape, "shapes \(shape) and \(other.shape) differ")
        var m: Scalar = 0
        for i in 0..<count { m = Swift.max(m, abs(storage[i] - other.storage[i])) }
        return m
    }

    public static func + (a: Tensor, b: Tensor) -> Tensor {
        precondition(a.shape == b.shape)
        return Tensor(shape: a.shape, storage: zip(a.storage, b.storage).map(+))
    }

    public static func - (a: Tensor, b: Tensor) -> Tensor {
        precondition(a.shape == b.shape)
        return Tensor(shape: a.shape, storage: zip(a.storage, b.storage).map(-))
    }

    public static func * (s: Scalar, a: Tensor) -> Tensor { a.map { s * $0 } }
}
