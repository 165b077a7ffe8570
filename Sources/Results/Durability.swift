import Glibc
import SweepCore

public struct FileSystemError: Error, CustomStringConvertible {
    public let operation: String
    public let path: String
    public let code: Int32
    public var description: String { "\(operation) \(path): \(String(cString: strerror(code)))" }
    public init(operation: String, path: String, code: Int32) {
        self.operation = operation
        self.path = path
        self.code = code
    }
}

/// Writes a file so that it appears whole or not at all, and survives a power loss once this
/// returns: write `PATH.tmp`, fsync it, rename it over `PATH`, fsync the directory.
/// (HDF5's flush does not fsync, and a file killed mid-write may be unreadable.)
public func writeAtomically(_ path: String, _ write: (String) throws -> Void) throws {
    let temporary = path + ResultsLayout.temporarySuffix
    unlink(temporary)
    do {
        try write(temporary)
        try fsyncPath(temporary)
        guard rename(temporary, path) == 0 else { throw FileSystemError(operation: "rename to", path: path, code: errno) }
    } catch {
        unlink(temporary)
        throw error
    }
    try fsyncPath(directoryOf(path))
}

func fsyncPath(_ path: String) throws {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw FileSystemError(operation: "open", path: path, code: errno) }
    defer { close(fd) }
    guard fsync(fd) == 0 else { throw FileSystemError(operation: "fsync", path: path, code: errno) }
}

func directoryOf(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
}

/// Creates a directory and its parents (like `mkdir -p`).
public func makeDirectories(_ path: String) throws {
    var prefix = path.hasPrefix("/") ? "/" : ""
    for part in path.split(separator: "/") {
        prefix += part + "/"
        if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
            throw FileSystemError(operation: "mkdir", path: prefix, code: errno)
        }
    }
}
