import Foundation
import Glibc
import HDF5
import SweepCore

/// One coordinator per results directory, and one sweep per results directory.
///
/// - `OUT/coordinator.lock`: an advisory `flock` held for the life of the process (the kernel
///   drops it when the process dies, `kill -9` included). The file names its holder (host, pid,
///   start time) so that a second coordinator can say who holds it.
/// - `OUT/sweep.identity`: the sweep's name and a hash of its file's text, written when the
///   directory is first used. A different sweep is refused; the same sweep edited since is
///   refused unless the user asks for it (`force`), since its results would then mix two
///   versions of the file (trials whose configuration is unchanged keep their ids and results).
///   A directory holding anything else is refused too, unless `force`.
public final class ResultsOwnership {
    public static let lockName = ResultsLayout.lockFile
    public static let identityName = ResultsLayout.identityFile

    public enum Refusal: Error, CustomStringConvertible, Equatable {
        case locked(directory: String, holder: String)
        case otherSweep(directory: String, found: String, expected: String)
        case changedSweep(directory: String, name: String)
        case foreign(directory: String, entries: [String])

        public var description: String {
            switch self {
            case .locked(let d, let holder):
                "results directory \(d) is in use by another coordinator (\(holder.isEmpty ? "holder unknown" : holder)); stop it, or give this sweep another --out"
            case .otherSweep(let d, let found, let expected):
                "results directory \(d) holds the results of sweep '\(found)', not '\(expected)'; give this sweep another --out"
            case .changedSweep(let d, let name):
                "results directory \(d) holds sweep '\(name)' started from a different version of its file; pass --force-out to continue it with this version (trials whose configuration is unchanged keep their results), or give it another --out"
            case .foreign(let d, let entries):
                "\(d) is not empty and holds no sweep results (\(entries.prefix(5).joined(separator: ", "))\(entries.count > 5 ? ", …" : "")); pass --force-out to write into it anyway, or give another --out"
            }
        }
    }

    public let directory: String
    private let fd: Int32

    /// Takes the lock and checks (or writes) the identity; throws a `Refusal` or a `FileSystemError`.
    public init(directory: String, sweepName: String, sweepText: String, force: Bool) throws {
        self.directory = directory
        try makeDirectories(directory)
        let listing = try listDirectory(directory)
        let existing = listing.filter { $0 != Self.lockName }
        let path = "\(directory)/\(Self.lockName)"
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileSystemError(operation: "open", path: path, code: errno) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            var buffer = [UInt8](repeating: 0, count: 512)
            let n = pread(fd, &buffer, buffer.count, 0)
            close(fd)
            guard code == EWOULDBLOCK else { throw FileSystemError(operation: "flock", path: path, code: code) }
            let holder = n > 0 ? String(decoding: buffer.prefix(n), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : ""
            throw Refusal.locked(directory: directory, holder: String(holder.prefix(200)))
        }
        do {
            try claim(existing: existing, sweepName: sweepName, sweepText: sweepText, force: force)
            let holder = "pid \(getpid()) on host \(Self.hostName()), since \(ISO8601DateFormatter().string(from: Date()))\n"
            guard ftruncate(fd, 0) == 0, pwrite(fd, holder, holder.utf8.count, 0) == holder.utf8.count else {
                throw FileSystemError(operation: "write", path: path, code: errno)
            }
        } catch {
            // Refused: leave a directory that was not ours as it was.
            if !listing.contains(Self.lockName) { unlink(path) }
            close(fd)
            throw error
        }
    }

    deinit { close(fd) }

    private func claim(existing: [String], sweepName: String, sweepText: String, force: Bool) throws {
        let identity = "name \(sweepName)\nfile-hash \(Self.hash(sweepText))\n"
        let identityPath = "\(directory)/\(Self.identityName)"
        if let data = FileManager.default.contents(atPath: identityPath) {
            let fields = Self.fields(String(decoding: data.prefix(4096), as: UTF8.self))
            let name = fields["name"] ?? ""
            guard name == sweepName else { throw Refusal.otherSweep(directory: directory, found: name, expected: sweepName) }
            if fields["file-hash"] == Self.hash(sweepText) { return }
            guard force else { throw Refusal.changedSweep(directory: directory, name: name) }
        } else if !existing.isEmpty && !force {
            // Results written before this file existed: their index names the sweep.
            guard existing.contains(SweepStore.indexName), let name = Self.indexedSweepName("\(directory)/\(SweepStore.indexName)") else {
                throw Refusal.foreign(directory: directory, entries: existing.sorted())
            }
            guard name == sweepName else { throw Refusal.otherSweep(directory: directory, found: name, expected: sweepName) }
        }
        try writeAtomically(identityPath) { temporary in
            try Data(identity.utf8).write(to: URL(fileURLWithPath: temporary))
        }
    }

    static func indexedSweepName(_ path: String) -> String? {
        guard let file = try? HDF5File(path, mode: .readOnly) else { return nil }
        return try? file.stringAttribute(ResultsLayout.Index.name)
    }

    static func fields(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            if parts.count == 2 { out[String(parts[0])] = String(parts[1]) }
        }
        return out
    }

    /// FNV-1a-64 of the text: tells one version of a sweep file from another (not a secret).
    static func hash(_ text: String) -> String {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in text.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    static func hostName() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, buf.count)
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
