import Foundation
import Glibc
import Results
import SweepCore
import Transport

/// `OUT/leases.journal`: every lease the coordinator hands out, one line each, appended before
/// the TRIAL message leaves:
///
///     lease TRIAL ATTEMPT TOKEN PROMOTED WORKER
///
/// and, in a search sweep, every trial the search suggested, before it is leased:
///
///     trial {"index": N, "id": ID, "branch": ENTRY, "config": CANONICAL-JSON}
///
/// (`PROMOTED` is 1 for an ASHA promotion, 0 for a first run or a retry; `WORKER` is the rest of
/// the line). After a restart it tells the coordinator which attempt of each trial is the live
/// one and its token, so a worker that still runs that attempt can prove it (`HeldLease`) and
/// be adopted, while a peer that merely names trial ids gets nothing. The file is the coordinator's
/// own (mode 0600: it holds the tokens). A torn last line (a crash mid-append) and any line that
/// does not parse are skipped, which can only make an attempt unadoptable, never adopt one.
public final class LeaseJournal {
    public struct Grant: Equatable, Sendable {
        public var attempt: Int
        public var token: String
        public var promoted: Bool
        public var worker: String
        public init(attempt: Int, token: String, promoted: Bool, worker: String) {
            self.attempt = attempt
            self.token = token
            self.promoted = promoted
            self.worker = worker
        }
    }

    public static let fileName = ResultsLayout.leaseJournalFile

    public let path: String
    private let fd: Int32
    /// Each trial's latest grant.
    public private(set) var latest: [String: Grant] = [:]
    /// Lines that did not parse when the journal was read.
    public private(set) var skipped = 0

    /// A trial a search suggested, as journaled (the coordinator checks it against the search).
    public struct SuggestedTrial: Codable, Equatable, Sendable {
        public var index: Int
        public var id: String
        public var branch: String
        public var config: String
        /// Population-based training: the trial whose checkpoint it continues, and whether its
        /// member exploited another.
        public var parent: String?
        public var exploited: Bool?
        public init(index: Int, id: String, branch: String, config: String, parent: String? = nil, exploited: Bool? = nil) {
            self.index = index
            self.id = id
            self.branch = branch
            self.config = config
            self.parent = parent
            self.exploited = exploited
        }
    }

    /// The suggested trials, in order (numbered 0, 1, … without gaps; a line out of order is skipped).
    public private(set) var suggested: [SuggestedTrial] = []

    public init(directory: String) throws {
        path = "\(directory)/\(Self.fileName)"
        let existing = FileManager.default.contents(atPath: path).map { [UInt8]($0) } ?? []
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileSystemError(operation: "open", path: path, code: errno) }
        for line in existing.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) { read(line) }
        // A line torn by a crash is ended here, so the next grant starts a line of its own.
        if let last = existing.last, last != UInt8(ascii: "\n") { _ = write(fd, "\n", 1) }
    }

    deinit { close(fd) }

    private func read(_ line: ArraySlice<UInt8>) {
        if line.starts(with: Array("trial ".utf8)) {
            guard let t = try? JSONDecoder().decode(SuggestedTrial.self, from: Data(line.dropFirst(6))), t.index == suggested.count else {
                skipped += 1
                return
            }
            suggested.append(t)
            return
        }
        let fields = line.split(separator: UInt8(ascii: " "), maxSplits: 5, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        guard fields.count == 6, fields[0] == "lease", let attempt = Int(fields[2]), fields[4] == "0" || fields[4] == "1" else {
            skipped += 1
            return
        }
        let held = HeldLease(lease: Lease(trial: fields[1], attempt: attempt), token: fields[3])
        guard (try? held.validate("journal")) != nil else {
            skipped += 1
            return
        }
        let grant = Grant(attempt: attempt, token: fields[3], promoted: fields[4] == "1", worker: fields[5])
        if attempt >= latest[fields[1]]?.attempt ?? 0 { latest[fields[1]] = grant }
    }

    /// Appends a grant (one `write`, so a line is never interleaved with another).
    public func record(trial: String, _ grant: Grant) throws {
        let worker = grant.worker.map { $0 == "\n" || $0 == "\r" ? " " : $0 }
        try append("lease \(trial) \(grant.attempt) \(grant.token) \(grant.promoted ? 1 : 0) \(String(worker))\n")
        latest[trial] = grant
    }

    /// Appends a suggested trial (its JSON escapes every line break).
    public func record(suggested trial: SuggestedTrial) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        try append("trial " + String(decoding: try encoder.encode(trial), as: UTF8.self) + "\n")
        suggested.append(trial)
    }

    private func append(_ line: String) throws {
        let written = line.utf8CString.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count - 1) }
        guard written == line.utf8.count else {
            throw FileSystemError(operation: "write", path: path, code: written < 0 ? errno : ENOSPC)
        }
    }

    /// A new lease token: 128 bits from the system's generator, as 32 lowercase hex digits.
    public static func newToken() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<2).map { _ in
            let hex = String(g.next() as UInt64, radix: 16)
            return String(repeating: "0", count: 16 - hex.count) + hex
        }.joined()
    }
}
