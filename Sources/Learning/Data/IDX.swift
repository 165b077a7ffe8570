import CZlib
import Glibc

/// The IDX format of MNIST and Fashion-MNIST: a magic number giving the element type and rank,
/// big-endian dimensions, then the data. Files may be gzip-compressed or raw (zlib reads both).
public struct IDXArray: Sendable {
    public let shape: [Int]
    /// Elements as unsigned bytes (the only element type these data sets use).
    public let bytes: [UInt8]
}

public enum DataError: Error, CustomStringConvertible, Equatable {
    case missingFile(String, hint: String?)
    case unreadable(String, reason: String)
    case badMagic(String, found: UInt32)
    case unsupportedType(String, code: UInt8)
    case truncated(String, expected: Int, found: Int)
    case mismatch(String)
    case invalid(String)

    public var description: String {
        switch self {
        case .missingFile(let path, let hint):
            "data file not found: \(path)" + (hint.map { " (\($0))" } ?? "")
        case .unreadable(let path, let reason): "cannot read \(path): \(reason)"
        case .badMagic(let path, let found):
            "\(path) is not an IDX file: magic number 0x\(String(found, radix: 16)) (expected 0x000008NN for unsigned bytes)"
        case .unsupportedType(let path, let code):
            "\(path): IDX element type 0x\(String(code, radix: 16)) is not supported (only unsigned bytes, 0x08)"
        case .truncated(let path, let expected, let found):
            "\(path) is truncated: the header promises \(expected) bytes of data, the file has \(found)"
        case .mismatch(let what): what
        case .invalid(let what): what
        }
    }
}

extension IDXArray {
    /// Reads an IDX file, gzip-compressed or not.
    public static func read(path: String) throws -> IDXArray {
        guard let file = gzopen(path, "rb") else {
            if access(path, F_OK) != 0 { throw DataError.missingFile(path, hint: nil) }
            throw DataError.unreadable(path, reason: "gzopen failed")
        }
        defer { gzclose(file) }
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = chunk.withUnsafeMutableBytes { gzread(file, $0.baseAddress, UInt32($0.count)) }
            if n < 0 {
                var errnum: Int32 = 0
                let message = gzerror(file, &errnum).map { String(cString: $0) } ?? "unknown error"
                throw DataError.unreadable(path, reason: message)
            }
            if n == 0 { break }
            data.append(contentsOf: chunk[0..<Int(n)])
        }
        return try parse(data, path: path)
    }

    static func parse(_ data: [UInt8], path: String) throws -> IDXArray {
        guard data.count >= 4 else { throw DataError.truncated(path, expected: 4, found: data.count) }
        let magic = UInt32(data[0]) << 24 | UInt32(data[1]) << 16 | UInt32(data[2]) << 8 | UInt32(data[3])
        guard data[0] == 0, data[1] == 0, (1...4).contains(data[3]) else { throw DataError.badMagic(path, found: magic) }
        guard data[2] == 0x08 else { throw DataError.unsupportedType(path, code: data[2]) }
        let rank = Int(data[3])
        let headerSize = 4 + 4 * rank
        guard data.count >= headerSize else { throw DataError.truncated(path, expected: headerSize, found: data.count) }
        var shape: [Int] = []
        for d in 0..<rank {
            let o = 4 + 4 * d
            shape.append(Int(UInt32(data[o]) << 24 | UInt32(data[o + 1]) << 16 | UInt32(data[o + 2]) << 8 | UInt32(data[o + 3])))
        }
        let expected = shape.reduce(1, *)
        let found = data.count - headerSize
        guard found >= expected else { throw DataError.truncated(path, expected: expected, found: found) }
        guard found == expected else {
            throw DataError.invalid("\(path): \(found - expected) unexpected bytes after the \(expected) promised by the header \(shape)")
        }
        return IDXArray(shape: shape, bytes: Array(data[headerSize...]))
    }
}
