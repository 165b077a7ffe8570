import Learning

/// One line a program wrote on its report descriptor (`ProgramContract`): an epoch's metrics, or
/// a checkpoint. Parsed from hostile bytes: a flat JSON object of at most
/// `ProgramLimits.maxReportFields` keys whose values are numbers (Python's `NaN`, `Infinity` and
/// `-Infinity` included), `null` (not measured), strings or booleans; anything else is an error
/// that says what is wrong.
enum ReportLine: Equatable {
    case epoch(Int, metrics: [String: Double])
    case checkpoint(String)

    enum Value: Equatable {
        case number(Double), string(String), bool(Bool), null
    }

    struct Problem: Error, CustomStringConvertible, Equatable {
        var description: String
        init(_ description: String) { self.description = description }
    }

    static func parse(_ bytes: ArraySlice<UInt8>) throws(Problem) -> ReportLine {
        guard let text = String(validating: bytes, as: UTF8.self) else { throw Problem("is not UTF-8 text") }
        let fields = try parseObject(text)
        var seen: [String: Value] = [:]
        for (key, value) in fields {
            guard seen.updateValue(value, forKey: key) == nil else { throw Problem("gives '\(key.prefix(64))' twice") }
        }
        if let path = seen[ProgramContract.Report.checkpoint] {
            guard seen.count == 1 else { throw Problem("a checkpoint line has only the key '\(ProgramContract.Report.checkpoint)'") }
            guard case .string(let p) = path, !p.isEmpty else { throw Problem("'\(ProgramContract.Report.checkpoint)' must be the checkpoint's path, a non-empty string") }
            return .checkpoint(p)
        }
        guard let epochValue = seen.removeValue(forKey: ProgramContract.Report.epoch) else {
            throw Problem("has neither 'epoch' (an epoch's metrics) nor 'checkpoint'")
        }
        guard case .number(let e) = epochValue, e == e.rounded(), e >= 1, e <= Double(TrialLimits.maxEpochs) else {
            throw Problem("'epoch' must be a whole number from 1, got \(describe(epochValue))")
        }
        var metrics: [String: Double] = [:]
        for (key, value) in seen {
            guard ProgramContract.isMetricName(key) else {
                throw Problem("key \(key.prefix(64).debugDescription) is not a metric name (a letter or '_', then letters, digits, '_' or '.'; at most 64 bytes)")
            }
            switch value {
            case .number(let x): metrics[key] = x
            case .null: metrics[key] = .nan
            default: throw Problem("metric '\(key)' is \(describe(value)); metrics are numbers (or null)")
            }
        }
        return .epoch(Int(e), metrics: metrics)
    }

    static func describe(_ v: Value) -> String {
        switch v {
        case .number(let x): "\(x)"
        case .string(let s): "the string \(s.prefix(40).debugDescription)"
        case .bool(let b): "\(b)"
        case .null: "null"
        }
    }

    /// The key–value pairs of a flat JSON object, in order.
    static func parseObject(_ text: String) throws(Problem) -> [(String, Value)] {
        var scanner = Scanner(Array(text.unicodeScalars))
        scanner.skipSpace()
        guard scanner.take("{") else { throw Problem("is not a JSON object (it must start with '{')") }
        var fields: [(String, Value)] = []
        scanner.skipSpace()
        if scanner.take("}") {
            scanner.skipSpace()
            guard scanner.atEnd else { throw Problem("has text after the object") }
            return fields
        }
        while true {
            scanner.skipSpace()
            guard scanner.peek == "\"" else { throw Problem("expected a key in double quotes at character \(scanner.position + 1)") }
            let key = try scanner.string()
            scanner.skipSpace()
            guard scanner.take(":") else { throw Problem("expected ':' after key '\(key.prefix(64))'") }
            scanner.skipSpace()
            fields.append((key, try scanner.value()))
            guard fields.count <= ProgramLimits.maxReportFields else { throw Problem("has more than \(ProgramLimits.maxReportFields) keys") }
            scanner.skipSpace()
            if scanner.take(",") { continue }
            if scanner.take("}") { break }
            throw Problem("expected ',' or '}' at character \(scanner.position + 1)")
        }
        scanner.skipSpace()
        guard scanner.atEnd else { throw Problem("has text after the object") }
        return fields
    }

    struct Scanner {
        let scalars: [Unicode.Scalar]
        var position = 0
        init(_ scalars: [Unicode.Scalar]) { self.scalars = scalars }

        var atEnd: Bool { position >= scalars.count }
        var peek: Unicode.Scalar? { atEnd ? nil : scalars[position] }

        mutating func take(_ c: Unicode.Scalar) -> Bool {
            guard peek == c else { return false }
            position += 1
            return true
        }

        mutating func take(word: String) -> Bool {
            let w = Array(word.unicodeScalars)
            guard position + w.count <= scalars.count, Array(scalars[position..<position + w.count]) == w else { return false }
            position += w.count
            return true
        }

        mutating func skipSpace() {
            while let c = peek, c == " " || c == "\t" || c == "\r" || c == "\n" { position += 1 }
        }

        mutating func value() throws(Problem) -> Value {
            switch peek {
            case "\""?: return .string(try string())
            case "{"?, "["?: throw Problem("has a nested object or list at character \(position + 1); report flat objects of numbers")
            default: break
            }
            if take(word: "null") { return .null }
            if take(word: "true") { return .bool(true) }
            if take(word: "false") { return .bool(false) }
            if take(word: "NaN") { return .number(.nan) }
            if take(word: "Infinity") { return .number(.infinity) }
            if take(word: "-Infinity") { return .number(-.infinity) }
            let start = position
            while let c = peek, ("0"..."9").contains(c) || c == "-" || c == "+" || c == "." || c == "e" || c == "E" { position += 1 }
            guard position > start, position - start <= 64, let x = Double(String(String.UnicodeScalarView(scalars[start..<position]))) else {
                throw Problem("has a value that is not a number, string, true, false or null at character \(start + 1)")
            }
            return .number(x)
        }

        mutating func string() throws(Problem) -> String {
            _ = take("\"")  // the opening quote, checked by the caller
            var out = String.UnicodeScalarView()
            while let c = peek {
                position += 1
                switch c {
                case "\"": return String(out)
                case "\\":
                    guard let e = peek else { break }
                    position += 1
                    switch e {
                    case "\"", "\\", "/": out.append(e)
                    case "b": out.append("\u{08}")
                    case "f": out.append("\u{0C}")
                    case "n": out.append("\n")
                    case "r": out.append("\r")
                    case "t": out.append("\t")
                    case "u":
                        var unit = try hex4()
                        if (0xD800..<0xDC00).contains(unit), take("\\"), take("u") {
                            let low = try hex4()
                            guard (0xDC00..<0xE000).contains(low) else { throw Problem("has an invalid surrogate pair at character \(position)") }
                            unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                        }
                        guard let scalar = Unicode.Scalar(unit) else { throw Problem("has an invalid \\u escape at character \(position)") }
                        out.append(scalar)
                    default: throw Problem("has an invalid escape '\\\(e)' at character \(position)")
                    }
                default:
                    guard c.value >= 0x20 else { throw Problem("has a control character in a string at character \(position)") }
                    out.append(c)
                }
            }
            throw Problem("has a string that does not end")
        }

        mutating func hex4() throws(Problem) -> UInt32 {
            guard position + 4 <= scalars.count, let v = UInt32(String(String.UnicodeScalarView(scalars[position..<position + 4])), radix: 16) else {
                throw Problem("has an invalid \\u escape at character \(position)")
            }
            position += 4
            return v
        }
    }
}
