import CHDF5

/// An HDF5 call that failed, with the call's name, the object it concerned and HDF5's own
/// description of the error stack.
public struct HDF5Error: Error, CustomStringConvertible {
    public let call: String
    public let object: String
    public let detail: String
    public var description: String { "HDF5 \(call) failed for \(object): \(detail)" }
}

/// Every HDF5 return code goes through here: negative means failure.
@discardableResult
func check<R: BinaryInteger>(_ call: String, _ object: @autoclosure () -> String, _ result: R) throws -> R {
    if result < 0 {
        var buf = [CChar](repeating: 0, count: 1024)
        chdf5_take_error(&buf)
        throw HDF5Error(call: call, object: object(), detail: String(nulTerminated: buf))
    }
    return result
}

/// A scalar type that maps to an HDF5 native type.
public protocol HDF5Scalar: Sendable {
    static var hdf5Type: hid_t { get }
}
extension Float: HDF5Scalar { public static var hdf5Type: hid_t { chdf5_T_NATIVE_FLOAT() } }
extension Double: HDF5Scalar { public static var hdf5Type: hid_t { chdf5_T_NATIVE_DOUBLE() } }
extension Int64: HDF5Scalar { public static var hdf5Type: hid_t { chdf5_T_NATIVE_INT64() } }
extension Int32: HDF5Scalar { public static var hdf5Type: hid_t { chdf5_T_NATIVE_INT32() } }
extension UInt64: HDF5Scalar { public static var hdf5Type: hid_t { chdf5_T_NATIVE_UINT64() } }
extension UInt8: HDF5Scalar { public static var hdf5Type: hid_t { chdf5_T_NATIVE_UINT8() } }
extension Int8: HDF5Scalar { public static var hdf5Type: hid_t { chdf5_T_NATIVE_INT8() } }

/// Closes an identifier when the owning Swift object goes away.
final class Handle {
    let id: hid_t
    let close: (hid_t) -> herr_t
    init(_ id: hid_t, close: @escaping (hid_t) -> herr_t) {
        self.id = id
        self.close = close
    }
    deinit { _ = close(id) }
}

/// Before the library's first use: errors are reported by `check`, not printed; and no cleanup
/// at exit. Every file this module opens is closed by its owner and made durable by
/// `writeAtomically`'s fsync, so the exit-time cleanup has nothing to save, while after a failed
/// write (a full disk) it would flush the half-written file again and crash the process.
private let silenced: Void = {
    H5dont_atexit()
    chdf5_silence_errors()
}()

/// How a dataset is stored: contiguous, or chunked with deflate + shuffle (readable everywhere).
public struct DatasetLayout: Sendable {
    public var chunk: [Int]?
    public var deflateLevel: Int
    /// Dimensions that may grow later (`nil` = fixed).
    public var extendible: Bool

    public static let contiguous = DatasetLayout(chunk: nil, deflateLevel: 0, extendible: false)
    public static func compressed(chunk: [Int], level: Int = 4, extendible: Bool = false) -> DatasetLayout {
        DatasetLayout(chunk: chunk, deflateLevel: level, extendible: extendible)
    }
}

/// A group (or the root group of a file): creates and reads groups, datasets and attributes.
public class HDF5Group {
    let handle: Handle
    public let path: String
    public var id: hid_t { handle.id }

    init(handle: Handle, path: String) {
        self.handle = handle
        self.path = path
    }

    func child(_ name: String) -> String { path == "/" ? "/\(name)" : "\(path)/\(name)" }

    public func contains(_ name: String) -> Bool {
        // H5Lexists only checks the last component; walk the path so nested names work.
        var prefix = ""
        for part in name.split(separator: "/") {
            prefix += prefix.isEmpty ? String(part) : "/\(part)"
            if H5Lexists(id, prefix, chdf5_P_DEFAULT()) <= 0 { return false }
        }
        return true
    }

    /// Creates a group (and any missing intermediate groups). Its attributes stay in the object
    /// header up to 64 of them (HDF5 would otherwise build a B-tree and heap past 8, which is
    /// most of the cost of writing thousands of small trial groups).
    public func createGroup(_ name: String) throws -> HDF5Group {
        let lcpl = try check("H5Pcreate", name, H5Pcreate(chdf5_P_LINK_CREATE()))
        defer { H5Pclose(lcpl) }
        try check("H5Pset_create_intermediate_group", name, H5Pset_create_intermediate_group(lcpl, 1))
        let gcpl = try check("H5Pcreate", name, H5Pcreate(chdf5_P_GROUP_CREATE()))
        defer { H5Pclose(gcpl) }
        try check("H5Pset_attr_phase_change", name, H5Pset_attr_phase_change(gcpl, 64, 48))
        let gid = try check("H5Gcreate2", child(name), H5Gcreate2(id, name, lcpl, gcpl, chdf5_P_DEFAULT()))
        return HDF5Group(handle: Handle(gid, close: H5Gclose), path: child(name))
    }

    public func group(_ name: String) throws -> HDF5Group {
        let gid = try check("H5Gopen2", child(name), H5Gopen2(id, name, chdf5_P_DEFAULT()))
        return HDF5Group(handle: Handle(gid, close: H5Gclose), path: child(name))
    }

    /// Names of the links in this group, in creation-independent (alphabetical) order.
    public func memberNames() throws -> [String] {
        var info = H5G_info_t()
        try check("H5Gget_info", path, H5Gget_info(id, &info))
        var names: [String] = []
        for i in 0..<info.nlinks {
            let size = H5Lget_name_by_idx(id, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, chdf5_P_DEFAULT())
            try check("H5Lget_name_by_idx", path, size)
            var buf = [CChar](repeating: 0, count: Int(size) + 1)
            H5Lget_name_by_idx(id, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buf, size + 1, chdf5_P_DEFAULT())
            names.append(String(nulTerminated: buf))
        }
        return names
    }

    // MARK: Datasets

    /// Writes a whole dataset of the given shape (a scalar dataset for `shape == []`).
    @discardableResult
    public func write<T: HDF5Scalar>(
        _ name: String, _ values: [T], shape: [Int]? = nil, layout: DatasetLayout = .contiguous
    ) throws -> HDF5Dataset {
        let shape = shape ?? [values.count]
        // Shapes come from data that may be ragged or hostile: a mismatch is an error, not a trap.
        let (size, overflow) = shape.reduce((1, false)) { acc, d in
            let (p, o) = acc.0.multipliedReportingOverflow(by: d)
            return (p, acc.1 || o || d < 0)
        }
        guard !overflow, size == values.count else {
            throw HDF5Error(call: "write", object: child(name), detail: "shape \(shape) does not hold \(values.count) values")
        }
        let dataset = try createDataset(name, type: T.self, shape: shape, layout: layout)
        if !values.isEmpty {
            _ = try values.withUnsafeBytes { (p) in
                try check("H5Dwrite", child(name), H5Dwrite(dataset.id, T.hdf5Type, chdf5_S_ALL(), chdf5_S_ALL(), chdf5_P_DEFAULT(), p.baseAddress))
            }
        }
        return dataset
    }

    public func createDataset<T: HDF5Scalar>(
        _ name: String, type: T.Type, shape: [Int], layout: DatasetLayout = .contiguous
    ) throws -> HDF5Dataset {
        _ = silenced
        let dims = shape.map { hsize_t($0) }
        let maxDims = layout.extendible ? shape.map { _ in chdf5_S_UNLIMITED() } : dims
        let space = try check("H5Screate_simple", child(name), shape.isEmpty ? H5Screate(H5S_SCALAR) : H5Screate_simple(Int32(dims.count), dims, maxDims))
        defer { H5Sclose(space) }
        let dcpl = try check("H5Pcreate", child(name), H5Pcreate(chdf5_P_DATASET_CREATE()))
        defer { H5Pclose(dcpl) }
        if let chunk = layout.chunk, !shape.isEmpty {
            let c = zip(chunk, shape).map { hsize_t(max(1, layout.extendible ? $0.0 : min($0.0, max($0.1, 1)))) }
            try check("H5Pset_chunk", child(name), H5Pset_chunk(dcpl, Int32(c.count), c))
            if layout.deflateLevel > 0 {
                try check("H5Pset_shuffle", child(name), H5Pset_shuffle(dcpl))
                try check("H5Pset_deflate", child(name), H5Pset_deflate(dcpl, UInt32(layout.deflateLevel)))
            }
        }
        let lcpl = try check("H5Pcreate", name, H5Pcreate(chdf5_P_LINK_CREATE()))
        defer { H5Pclose(lcpl) }
        H5Pset_create_intermediate_group(lcpl, 1)
        let did = try check("H5Dcreate2", child(name), H5Dcreate2(id, name, T.hdf5Type, space, lcpl, dcpl, chdf5_P_DEFAULT()))
        return HDF5Dataset(handle: Handle(did, close: H5Dclose), path: child(name))
    }

    public func dataset(_ name: String) throws -> HDF5Dataset {
        let did = try check("H5Dopen2", child(name), H5Dopen2(id, name, chdf5_P_DEFAULT()))
        return HDF5Dataset(handle: Handle(did, close: H5Dclose), path: child(name))
    }

    /// Reads a whole dataset, converting to `T` (HDF5 converts between numeric types).
    public func read<T: HDF5Scalar & Numeric>(_ name: String, as: T.Type = T.self, atMost limit: Int = HDF5Dataset.readLimit) throws -> (values: [T], shape: [Int]) {
        try dataset(name).read(as: T.self, atMost: limit)
    }

    // MARK: Attributes

    public func setAttribute(_ name: String, _ value: String) throws {
        try writeStringAttribute(objectID: id, objectPath: path, name: name, value: value)
    }

    public func setAttribute<T: HDF5Scalar>(_ name: String, _ value: T) throws {
        try writeScalarAttribute(objectID: id, objectPath: path, name: name, value: value)
    }

    public func stringAttribute(_ name: String) throws -> String {
        try readStringAttribute(objectID: id, objectPath: path, name: name)
    }

    public func attribute<T: HDF5Scalar & Numeric>(_ name: String, as: T.Type = T.self) throws -> T {
        try readScalarAttribute(objectID: id, objectPath: path, name: name)
    }

    public func hasAttribute(_ name: String) -> Bool { H5Aexists(id, name) > 0 }
}

/// An HDF5 file. Created files use the 1.8 object format (dense attributes for large configs,
/// readable by HDF5 1.8 and later, no 1.10 "file open for write" flags to clear after a crash).
public final class HDF5File: HDF5Group {
    public let filePath: String

    public enum Mode { case create, createExclusive, readOnly, readWrite }

    public init(_ filePath: String, mode: Mode) throws {
        _ = silenced
        self.filePath = filePath
        let fid: hid_t
        switch mode {
        case .create, .createExclusive:
            let fapl = try check("H5Pcreate", filePath, H5Pcreate(chdf5_P_FILE_ACCESS()))
            defer { H5Pclose(fapl) }
            try check("H5Pset_libver_bounds", filePath, H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18))
            let flags = mode == .create ? chdf5_F_ACC_TRUNC() : chdf5_F_ACC_EXCL()
            fid = try check("H5Fcreate", filePath, H5Fcreate(filePath, flags, chdf5_P_DEFAULT(), fapl))
        case .readOnly:
            fid = try check("H5Fopen", filePath, H5Fopen(filePath, chdf5_F_ACC_RDONLY(), chdf5_P_DEFAULT()))
        case .readWrite:
            fid = try check("H5Fopen", filePath, H5Fopen(filePath, chdf5_F_ACC_RDWR(), chdf5_P_DEFAULT()))
        }
        super.init(handle: Handle(fid, close: H5Fclose), path: "/")
    }

    /// Pushes HDF5's buffers to the operating system (not to disk: see `Durability`).
    public func flush() throws {
        try check("H5Fflush", filePath, H5Fflush(id, H5F_SCOPE_GLOBAL))
    }
}

public final class HDF5Dataset {
    let handle: Handle
    public let path: String
    public var id: hid_t { handle.id }

    init(handle: Handle, path: String) {
        self.handle = handle
        self.path = path
    }

    public var shape: [Int] {
        get throws {
            let space = try check("H5Dget_space", path, H5Dget_space(id))
            defer { H5Sclose(space) }
            let rank = Int(try check("H5Sget_simple_extent_ndims", path, H5Sget_simple_extent_ndims(space)))
            var dims = [hsize_t](repeating: 0, count: rank)
            if rank > 0 { try check("H5Sget_simple_extent_dims", path, H5Sget_simple_extent_dims(space, &dims, nil)) }
            return dims.map { Int($0) }
        }
    }

    /// The most elements a read allocates: a file is hostile input, and a few kilobytes can declare
    /// a dataset of 2⁴⁰ elements never written (HDF5 fills them in). More than any results or
    /// checkpoint dataset holds (a model has at most 10⁸ parameters).
    public static let readLimit = 1 << 28

    /// The element count `shape` declares, refused beyond `limit` (and before it can overflow).
    public func elementCount(_ shape: [Int], limit: Int = HDF5Dataset.readLimit) throws -> Int {
        var count = 1
        for d in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            guard d >= 0, !overflow, product <= limit else {
                throw HDF5Error(call: "read", object: path, detail: "the dataset declares shape \(shape), more than the \(limit) elements a read allows")
            }
            count = product
        }
        return count
    }

    /// Reads the whole dataset, at most `limit` elements (see `readLimit`).
    public func read<T: HDF5Scalar & Numeric>(as: T.Type = T.self, atMost limit: Int = HDF5Dataset.readLimit) throws -> (values: [T], shape: [Int]) {
        let shape = try self.shape
        var values = [T](repeating: 0, count: try elementCount(shape, limit: limit))
        if !values.isEmpty {
            _ = try values.withUnsafeMutableBytes { (p) in
                try check("H5Dread", path, H5Dread(id, T.hdf5Type, chdf5_S_ALL(), chdf5_S_ALL(), chdf5_P_DEFAULT(), p.baseAddress))
            }
        }
        return (values, shape)
    }

    /// Appends rows along the first dimension of an extendible dataset.
    public func append<T: HDF5Scalar>(_ values: [T], rows: Int) throws {
        var dims = try shape.map { hsize_t($0) }
        let rowSize = dims.dropFirst().reduce(1) { $0 * Int($1) }
        guard !dims.isEmpty, rows >= 0, values.count == rows * rowSize else {
            throw HDF5Error(call: "append", object: path, detail: "\(values.count) values are not \(rows) rows of \(rowSize)")
        }
        let start = dims[0]
        dims[0] += hsize_t(rows)
        try check("H5Dset_extent", path, H5Dset_extent(id, dims))
        let file = try check("H5Dget_space", path, H5Dget_space(id))
        defer { H5Sclose(file) }
        var offset = [hsize_t](repeating: 0, count: dims.count)
        offset[0] = start
        var count = dims
        count[0] = hsize_t(rows)
        try check("H5Sselect_hyperslab", path, H5Sselect_hyperslab(file, H5S_SELECT_SET, offset, nil, count, nil))
        let mem = try check("H5Screate_simple", path, H5Screate_simple(Int32(count.count), count, nil))
        defer { H5Sclose(mem) }
        _ = try values.withUnsafeBytes { (p) in
            try check("H5Dwrite", path, H5Dwrite(id, T.hdf5Type, mem, file, chdf5_P_DEFAULT(), p.baseAddress))
        }
    }

    public func setAttribute(_ name: String, _ value: String) throws {
        try writeStringAttribute(objectID: id, objectPath: path, name: name, value: value)
    }

    public func setAttribute<T: HDF5Scalar>(_ name: String, _ value: T) throws {
        try writeScalarAttribute(objectID: id, objectPath: path, name: name, value: value)
    }

    public func stringAttribute(_ name: String) throws -> String {
        try readStringAttribute(objectID: id, objectPath: path, name: name)
    }
}

// MARK: - Attribute helpers shared by groups and datasets

/// The variable-length UTF-8 string type and the scalar space, created once, on first use, by
/// whichever thread gets there first (Swift initialises globals exactly once; HDF5 ids are
/// process-wide). -1 if HDF5 refused.
private let sharedStringType: hid_t = {
    let t = H5Tcopy(chdf5_T_C_S1())
    guard t >= 0, H5Tset_size(t, chdf5_T_VARIABLE()) >= 0, H5Tset_cset(t, H5T_CSET_UTF8) >= 0 else { return -1 }
    return t
}()
private let sharedScalarSpace: hid_t = H5Screate(H5S_SCALAR)

private func utf8StringType() throws -> hid_t { try check("H5Tcopy", "string type", sharedStringType) }

private func scalarSpace() throws -> hid_t { try check("H5Screate", "scalar space", sharedScalarSpace) }

/// The HDF5 library this process runs with.
public enum HDF5Library {
    /// Whether it was built thread-safe (one lock around every call): then two threads may read
    /// and write files at once, e.g. the coordinator's results writer and its dashboard.
    public static var isThreadSafe: Bool {
        var threadSafe: hbool_t = false
        return H5is_library_threadsafe(&threadSafe) >= 0 && threadSafe
    }
}

private func replaceAttribute(objectID: hid_t, name: String) {
    if H5Aexists(objectID, name) > 0 { H5Adelete(objectID, name) }
}

func writeStringAttribute(objectID: hid_t, objectPath: String, name: String, value: String) throws {
    let what = "attribute \(name) of \(objectPath)"
    replaceAttribute(objectID: objectID, name: name)
    let type = try utf8StringType()
    let space = try scalarSpace()
    let attr = try check("H5Acreate2", what, H5Acreate2(objectID, name, type, space, chdf5_P_DEFAULT(), chdf5_P_DEFAULT()))
    defer { H5Aclose(attr) }
    try value.withCString { (c) in
        var ptr: UnsafePointer<CChar>? = c
        try check("H5Awrite", what, H5Awrite(attr, type, &ptr))
    }
}

func readStringAttribute(objectID: hid_t, objectPath: String, name: String) throws -> String {
    let what = "attribute \(name) of \(objectPath)"
    let attr = try check("H5Aopen", what, H5Aopen(objectID, name, chdf5_P_DEFAULT()))
    defer { H5Aclose(attr) }
    let fileType = try check("H5Aget_type", what, H5Aget_type(attr))
    defer { H5Tclose(fileType) }
    if H5Tis_variable_str(fileType) > 0 {
        let type = try utf8StringType()
        var ptr: UnsafeMutablePointer<CChar>? = nil
        try check("H5Aread", what, H5Aread(attr, type, &ptr))
        defer { if ptr != nil { H5free_memory(ptr) } }
        return ptr.map { String(cString: $0) } ?? ""
    }
    let size = H5Tget_size(fileType)
    var buf = [CChar](repeating: 0, count: size + 1)
    try check("H5Aread", what, H5Aread(attr, fileType, &buf))
    return String(nulTerminated: buf)
}

func writeScalarAttribute<T: HDF5Scalar>(objectID: hid_t, objectPath: String, name: String, value: T) throws {
    let what = "attribute \(name) of \(objectPath)"
    replaceAttribute(objectID: objectID, name: name)
    let space = try scalarSpace()
    let attr = try check("H5Acreate2", what, H5Acreate2(objectID, name, T.hdf5Type, space, chdf5_P_DEFAULT(), chdf5_P_DEFAULT()))
    defer { H5Aclose(attr) }
    var v = value
    _ = try withUnsafeBytes(of: &v) { p in try check("H5Awrite", what, H5Awrite(attr, T.hdf5Type, p.baseAddress)) }
}

func readScalarAttribute<T: HDF5Scalar & Numeric>(objectID: hid_t, objectPath: String, name: String) throws -> T {
    let what = "attribute \(name) of \(objectPath)"
    let attr = try check("H5Aopen", what, H5Aopen(objectID, name, chdf5_P_DEFAULT()))
    defer { H5Aclose(attr) }
    var v: T = 0
    _ = try withUnsafeMutableBytes(of: &v) { p in try check("H5Aread", what, H5Aread(attr, T.hdf5Type, p.baseAddress)) }
    return v
}

extension String {
    /// Decodes a NUL-terminated C character buffer as UTF-8.
    init(nulTerminated buffer: [CChar]) {
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        self = String(decoding: bytes, as: UTF8.self)
    }
}

// MARK: - Tables (compound datasets) and links

/// One column of a table written as a compound dataset (one row per record).
public enum TableColumn {
    case int64(String, [Int64])
    case float64(String, [Double])
    /// Fixed-width UTF-8 strings (h5py returns them as `bytes`; `.asstr()` decodes).
    case string(String, [String], width: Int)

    var name: String {
        switch self {
        case .int64(let n, _), .float64(let n, _), .string(let n, _, _): n
        }
    }
    var count: Int {
        switch self {
        case .int64(_, let v): v.count
        case .float64(_, let v): v.count
        case .string(_, let v, _): v.count
        }
    }
    var size: Int {
        switch self {
        case .int64, .float64: 8
        case .string(_, _, let w): w
        }
    }
}

extension HDF5Group {
    /// Writes a compound dataset with one row per record: chunked and compressed (deflate +
    /// shuffle) unless `compact`, which suits small per-trial tables (no chunk index to create).
    public func writeTable(_ name: String, _ columns: [TableColumn], compact: Bool = false) throws {
        let rows = columns.first?.count ?? 0
        guard columns.allSatisfy({ $0.count == rows }) else {
            throw HDF5Error(call: "writeTable", object: child(name), detail: "columns of different lengths (\(columns.map { "\($0.name): \($0.count)" }.joined(separator: ", ")))")
        }
        let rowSize = columns.reduce(0) { $0 + $1.size }
        let type = try check("H5Tcreate", name, H5Tcreate(H5T_COMPOUND, rowSize))
        defer { H5Tclose(type) }
        var offsets: [Int] = []
        var offset = 0
        var stringTypes: [hid_t] = []
        defer { for t in stringTypes { H5Tclose(t) } }
        for column in columns {
            offsets.append(offset)
            let memberType: hid_t
            switch column {
            case .int64: memberType = chdf5_T_STD_I64LE()
            case .float64: memberType = chdf5_T_IEEE_F64LE()
            case .string(_, _, let width):
                let t = try check("H5Tcopy", name, H5Tcopy(chdf5_T_C_S1()))
                try check("H5Tset_size", name, H5Tset_size(t, width))
                try check("H5Tset_strpad", name, H5Tset_strpad(t, H5T_STR_NULLPAD))
                try check("H5Tset_cset", name, H5Tset_cset(t, H5T_CSET_UTF8))
                stringTypes.append(t)
                memberType = t
            }
            try check("H5Tinsert", "\(name).\(column.name)", H5Tinsert(type, column.name, offset, memberType))
            offset += column.size
        }
        var buffer = [UInt8](repeating: 0, count: max(rowSize * rows, 1))
        buffer.withUnsafeMutableBytes { raw in
            for (c, column) in columns.enumerated() {
                for r in 0..<rows {
                    let at = raw.baseAddress! + r * rowSize + offsets[c]
                    switch column {
                    case .int64(_, let v): at.storeBytes(of: v[r].littleEndian, as: Int64.self)
                    case .float64(_, let v): at.storeBytes(of: v[r].bitPattern.littleEndian, as: UInt64.self)
                    case .string(_, let v, let width):
                        // Truncate on a character boundary so the bytes stay valid UTF-8.
                        var bytes = Array(v[r].utf8)
                        if bytes.count > width {
                            bytes = Array(bytes.prefix(width))
                            while let last = bytes.last, last & 0xC0 == 0x80 { bytes.removeLast() }
                            if let last = bytes.last, last >= 0xC0 { bytes.removeLast() }
                        }
                        for (i, b) in bytes.enumerated() { at.storeBytes(of: b, toByteOffset: i, as: UInt8.self) }
                    }
                }
            }
        }
        var dims = [hsize_t(rows)]
        var maxDims = [compact ? hsize_t(rows) : chdf5_S_UNLIMITED()]
        let space = try check("H5Screate_simple", name, H5Screate_simple(1, &dims, &maxDims))
        defer { H5Sclose(space) }
        let dcpl = try check("H5Pcreate", name, H5Pcreate(chdf5_P_DATASET_CREATE()))
        defer { H5Pclose(dcpl) }
        if !compact {
            var chunk = [hsize_t(max(1, min(rows, max(1, (64 << 10) / max(rowSize, 1)))))]
            try check("H5Pset_chunk", name, H5Pset_chunk(dcpl, 1, &chunk))
            try check("H5Pset_shuffle", name, H5Pset_shuffle(dcpl))
            try check("H5Pset_deflate", name, H5Pset_deflate(dcpl, 4))
        }
        let did = try check("H5Dcreate2", child(name), H5Dcreate2(id, name, type, space, chdf5_P_DEFAULT(), dcpl, chdf5_P_DEFAULT()))
        defer { H5Dclose(did) }
        if rows > 0 {
            try check("H5Dwrite", child(name), buffer.withUnsafeBytes { H5Dwrite(did, type, chdf5_S_ALL(), chdf5_S_ALL(), chdf5_P_DEFAULT(), $0.baseAddress) })
        }
    }

    /// Writes fixed-width UTF-8 strings as a 1-D dataset.
    public func writeStrings(_ name: String, _ values: [String]) throws {
        let width = max(1, values.map { $0.utf8.count }.max() ?? 1)
        let type = try check("H5Tcopy", name, H5Tcopy(chdf5_T_C_S1()))
        defer { H5Tclose(type) }
        try check("H5Tset_size", name, H5Tset_size(type, width))
        try check("H5Tset_strpad", name, H5Tset_strpad(type, H5T_STR_NULLPAD))
        try check("H5Tset_cset", name, H5Tset_cset(type, H5T_CSET_UTF8))
        var buffer = [UInt8](repeating: 0, count: max(width * values.count, 1))
        for (i, v) in values.enumerated() { for (j, b) in v.utf8.enumerated() { buffer[i * width + j] = b } }
        var dims = [hsize_t(values.count)]
        let space = try check("H5Screate_simple", name, H5Screate_simple(1, &dims, nil))
        defer { H5Sclose(space) }
        let lcpl = try check("H5Pcreate", name, H5Pcreate(chdf5_P_LINK_CREATE()))
        defer { H5Pclose(lcpl) }
        H5Pset_create_intermediate_group(lcpl, 1)
        let did = try check("H5Dcreate2", child(name), H5Dcreate2(id, name, type, space, lcpl, chdf5_P_DEFAULT(), chdf5_P_DEFAULT()))
        defer { H5Dclose(did) }
        if !values.isEmpty {
            try check("H5Dwrite", child(name), buffer.withUnsafeBytes { H5Dwrite(did, type, chdf5_S_ALL(), chdf5_S_ALL(), chdf5_P_DEFAULT(), $0.baseAddress) })
        }
    }

    /// An external link `name` → `file:object` (h5py follows it; `h5ls -E` shows it). A relative
    /// file name is resolved from the directory of the file holding the link.
    public func linkExternal(_ name: String, file: String, object: String) throws {
        let lcpl = try check("H5Pcreate", name, H5Pcreate(chdf5_P_LINK_CREATE()))
        defer { H5Pclose(lcpl) }
        H5Pset_create_intermediate_group(lcpl, 1)
        try check("H5Lcreate_external", child(name), H5Lcreate_external(file, object, id, name, lcpl, chdf5_P_DEFAULT()))
    }

    /// Number of rows of a 1-D dataset, or nil when absent.
    public func rowCount(_ name: String) -> Int? {
        guard contains(name), let d = try? dataset(name), let shape = try? d.shape, let n = shape.first else { return nil }
        return n
    }
}

extension HDF5Group {
    /// Reads one float64 field of a compound dataset (HDF5 converts the field by name).
    public func readTableColumn(_ name: String, field: String) throws -> [Double] {
        let d = try dataset(name)
        let rows = try d.elementCount(d.shape)
        let type = try check("H5Tcreate", name, H5Tcreate(H5T_COMPOUND, 8))
        defer { H5Tclose(type) }
        try check("H5Tinsert", "\(name).\(field)", H5Tinsert(type, field, 0, chdf5_T_NATIVE_DOUBLE()))
        var values = [Double](repeating: 0, count: rows)
        if rows > 0 {
            try check("H5Dread", "\(name).\(field)", values.withUnsafeMutableBytes { H5Dread(d.id, type, chdf5_S_ALL(), chdf5_S_ALL(), chdf5_P_DEFAULT(), $0.baseAddress) })
        }
        return values
    }
}

// MARK: - Reading strings (the sweep index's string columns and /hparams)

extension HDF5Group {
    /// Reads one fixed-length string field of a compound dataset by name (the `/trials` table's
    /// id, optimizer, status, … columns), trailing NULs and spaces removed.
    public func readTableStringColumn(_ name: String, field: String) throws -> [String] {
        let d = try dataset(name)
        let rows = try d.elementCount(d.shape)
        let what = "\(name).\(field)"
        let fileType = try check("H5Dget_type", what, H5Dget_type(d.id))
        defer { H5Tclose(fileType) }
        let member = try check("H5Tget_member_index", what, H5Tget_member_index(fileType, field))
        let memberType = try check("H5Tget_member_type", what, H5Tget_member_type(fileType, UInt32(member)))
        defer { H5Tclose(memberType) }
        guard H5Tget_class(memberType) == H5T_STRING, H5Tis_variable_str(memberType) <= 0 else {
            throw HDF5Error(call: "readTableStringColumn", object: child(what), detail: "not a fixed-length string field")
        }
        let width = H5Tget_size(memberType)
        let stringType = try check("H5Tcopy", what, H5Tcopy(chdf5_T_C_S1()))
        defer { H5Tclose(stringType) }
        try check("H5Tset_size", what, H5Tset_size(stringType, width))
        try check("H5Tset_strpad", what, H5Tset_strpad(stringType, H5T_STR_NULLPAD))
        try check("H5Tset_cset", what, H5Tset_cset(stringType, H5Tget_cset(memberType)))
        let memType = try check("H5Tcreate", what, H5Tcreate(H5T_COMPOUND, width))
        defer { H5Tclose(memType) }
        try check("H5Tinsert", what, H5Tinsert(memType, field, 0, stringType))
        var buffer = [UInt8](repeating: 0, count: max(rows * width, 1))
        if rows > 0 {
            try check("H5Dread", what, buffer.withUnsafeMutableBytes { H5Dread(d.id, memType, chdf5_S_ALL(), chdf5_S_ALL(), chdf5_P_DEFAULT(), $0.baseAddress) })
        }
        return (0..<rows).map { decodeFixedString(buffer[($0 * width)..<(($0 + 1) * width)]) }
    }

    /// The field names of a compound dataset, in order. (Reading a field that is not there is not
    /// an error in HDF5 — the memory is left as it was — so readers check first.)
    public func tableFields(_ name: String) throws -> [String] {
        let d = try dataset(name)
        let type = try check("H5Dget_type", child(name), H5Dget_type(d.id))
        defer { H5Tclose(type) }
        guard H5Tget_class(type) == H5T_COMPOUND else { return [] }
        let n = try check("H5Tget_nmembers", child(name), H5Tget_nmembers(type))
        return (0..<UInt32(n)).map { i in
            guard let p = H5Tget_member_name(type, i) else { return "" }
            defer { H5free_memory(p) }
            return String(cString: p)
        }
    }

    /// Reads several float64 fields of a compound dataset in one pass (fields the table does not
    /// have are left out of the result). The rows are read in the file's own type, so HDF5
    /// converts nothing: one `readTableColumn` per field costs a conversion with a zero-filled
    /// megabyte background buffer each, which dominates reading thousands of small histories.
    /// Fields stored as anything but little-endian float64 go through `readTableColumn`.
    public func readTableColumns(_ name: String, fields wanted: [String]) throws -> [String: [Double]] {
        let d = try dataset(name)
        let rows = try d.elementCount(d.shape)
        let fileType = try check("H5Dget_type", child(name), H5Dget_type(d.id))
        defer { H5Tclose(fileType) }
        guard H5Tget_class(fileType) == H5T_COMPOUND else { return [:] }
        let rowSize = H5Tget_size(fileType)
        var direct: [(field: String, offset: Int)] = []
        var converted: [String] = []
        for i in 0..<UInt32(try check("H5Tget_nmembers", child(name), H5Tget_nmembers(fileType))) {
            guard let p = H5Tget_member_name(fileType, i) else { continue }
            let field = String(cString: p)
            H5free_memory(p)
            guard wanted.contains(field) else { continue }
            let memberType = try check("H5Tget_member_type", "\(name).\(field)", H5Tget_member_type(fileType, i))
            defer { H5Tclose(memberType) }
            if H5Tget_class(memberType) == H5T_FLOAT, H5Tget_size(memberType) == 8, H5Tget_order(memberType) == H5T_ORDER_LE {
                direct.append((field, H5Tget_member_offset(fileType, i)))
            } else {
                converted.append(field)
            }
        }
        var out: [String: [Double]] = [:]
        if !direct.isEmpty {
            var buffer = [UInt8](repeating: 0, count: max(rows * rowSize, 1))
            if rows > 0 {
                try check("H5Dread", child(name), buffer.withUnsafeMutableBytes { H5Dread(d.id, fileType, chdf5_S_ALL(), chdf5_S_ALL(), chdf5_P_DEFAULT(), $0.baseAddress) })
            }
            buffer.withUnsafeBytes { raw in
                for (field, offset) in direct {
                    out[field] = (0..<rows).map { r in
                        Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: r * rowSize + offset, as: UInt64.self)))
                    }
                }
            }
        }
        for field in converted { out[field] = try readTableColumn(name, field: field) }
        return out
    }

    /// Whether a dataset holds strings (fixed- or variable-length) rather than numbers.
    public func isStringDataset(_ name: String) throws -> Bool {
        let d = try dataset(name)
        let type = try check("H5Dget_type", child(name), H5Dget_type(d.id))
        defer { H5Tclose(type) }
        return H5Tget_class(type) == H5T_STRING
    }

    /// Reads a 1-D string dataset (`writeStrings`' fixed-length strings, or variable-length ones).
    public func readStrings(_ name: String) throws -> [String] {
        let d = try dataset(name)
        let rows = try d.elementCount(d.shape)
        let fileType = try check("H5Dget_type", child(name), H5Dget_type(d.id))
        defer { H5Tclose(fileType) }
        guard H5Tget_class(fileType) == H5T_STRING else {
            throw HDF5Error(call: "readStrings", object: child(name), detail: "not a string dataset")
        }
        guard rows > 0 else { return [] }
        let memType = try check("H5Tcopy", child(name), H5Tcopy(chdf5_T_C_S1()))
        defer { H5Tclose(memType) }
        try check("H5Tset_cset", child(name), H5Tset_cset(memType, H5Tget_cset(fileType)))
        if H5Tis_variable_str(fileType) > 0 {
            try check("H5Tset_size", child(name), H5Tset_size(memType, chdf5_T_VARIABLE()))
            var pointers = [UnsafeMutablePointer<CChar>?](repeating: nil, count: rows)
            try check("H5Dread", child(name), pointers.withUnsafeMutableBytes { H5Dread(d.id, memType, chdf5_S_ALL(), chdf5_S_ALL(), chdf5_P_DEFAULT(), $0.baseAddress) })
            defer { for p in pointers where p != nil { H5free_memory(p) } }
            return pointers.map { $0.map { String(cString: $0) } ?? "" }
        }
        let width = H5Tget_size(fileType)
        try check("H5Tset_size", child(name), H5Tset_size(memType, width))
        try check("H5Tset_strpad", child(name), H5Tset_strpad(memType, H5T_STR_NULLPAD))
        var buffer = [UInt8](repeating: 0, count: rows * width)
        try check("H5Dread", child(name), buffer.withUnsafeMutableBytes { H5Dread(d.id, memType, chdf5_S_ALL(), chdf5_S_ALL(), chdf5_P_DEFAULT(), $0.baseAddress) })
        return (0..<rows).map { decodeFixedString(buffer[($0 * width)..<(($0 + 1) * width)]) }
    }
}

/// A fixed-length string cell: up to the first NUL, trailing spaces (space padding) removed.
private func decodeFixedString(_ bytes: ArraySlice<UInt8>) -> String {
    var cell = bytes.prefix { $0 != 0 }
    while cell.last == 0x20 { cell = cell.dropLast() }
    return String(decoding: cell, as: UTF8.self)
}

extension HDF5Dataset {
    /// Whether the stored element type is an integer (of any size).
    public var isInteger: Bool {
        get throws {
            let type = try check("H5Dget_type", path, H5Dget_type(id))
            defer { H5Tclose(type) }
            return H5Tget_class(type) == H5T_INTEGER
        }
    }

    /// Whether the stored element type is a one-byte integer (quantised optimizer states).
    public var isByte: Bool {
        get throws {
            let type = try check("H5Dget_type", path, H5Dget_type(id))
            defer { H5Tclose(type) }
            return H5Tget_class(type) == H5T_INTEGER && H5Tget_size(type) == 1
        }
    }
}
