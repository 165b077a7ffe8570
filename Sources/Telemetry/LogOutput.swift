import Foundation
import Glibc
import Logging
import SweepCore

/// How log lines look: `plain` is the message alone, worded as it always was; `json` is one JSON
/// object per line for log collectors (`{"time":…,"level":…,"logger":…,"message":…}` and the
/// metadata as further string fields).
public enum LogFormat: String, CaseIterable, Sendable {
    case plain, json
}

/// swift-log's output for the sweep programs: lines on standard output at `level` and above, in
/// `format`. `bootstrap` is called once, before any `Logger` is made.
public enum LogOutput {
    /// The `--log-level` names, lowest first.
    public static let levelNames = Logger.Level.allCases.map(\.rawValue)

    public static func bootstrap(level: Logger.Level, format: LogFormat) {
        LoggingSystem.bootstrap { label in LineLogHandler(label: label, level: level, format: format) }
    }
}

/// One line per message, on standard output by default.
public struct LineLogHandler: LogHandler {
    public let label: String
    public let format: LogFormat
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    /// Where lines go (standard output by default).
    let output: @Sendable (String) -> Void

    public init(label: String, level: Logger.Level, format: LogFormat, output: @escaping @Sendable (String) -> Void = LineLogHandler.standardOutput) {
        self.label = label
        self.logLevel = level
        self.format = format
        self.output = output
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        output(Self.line(event.message.description, level: event.level, label: label, metadata: all, format: format, time: Date()) + "\n")
    }

    /// The text of one line (without its newline).
    public static func line(_ message: String, level: Logger.Level, label: String, metadata: Logger.Metadata, format: LogFormat, time: Date) -> String {
        switch format {
        case .plain:
            return metadata.isEmpty ? message : message + " " + metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        case .json:
            var fields = [("time", timestamp(time)), ("level", level.rawValue), ("logger", label), ("message", message)]
            fields += metadata.sorted { $0.key < $1.key }.map { ($0.key, "\($0.value)") }
            return "{" + fields.map { "\(jsonQuote($0.0)):\(jsonQuote($0.1))" }.joined(separator: ",") + "}"
        }
    }

    /// RFC 3339 in UTC with milliseconds, e.g. 2026-05-04T12:00:00.123Z.
    static func timestamp(_ date: Date) -> String {
        let t = date.timeIntervalSince1970
        var seconds = time_t(t.rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let millis = Int((t - t.rounded(.down)) * 1000)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min),
            Int(parts.tm_sec), min(999, millis))
    }

    /// Standard output, one `write` per line (the programs' `print`s are line-buffered, so their
    /// lines and these keep their order, and lines from two threads do not interleave).
    public static let standardOutput: @Sendable (String) -> Void = { text in
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(1, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            offset += n
        }
    }
}
