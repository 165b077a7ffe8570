// libyaml's event parser, the one Yams composes from: it is iterative, so it can measure a
// document that Yams' recursive composer could not (CYaml is the C target of the Yams package).
import CYaml
import Yams

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Bounds on what a YAML text from a file or the network may make the parser do. Every YAML
/// text the programs read (sweep files, trial configurations, checkpoint lists, `--set`
/// values) goes through `composeYAML`, which checks them before Yams builds a node tree.
public enum YAMLLimits {
    /// The longest YAML text accepted, in bytes (1 MiB; the largest sweep in the repository is
    /// about 1 KiB).
    public static let maxBytes = 1 << 20
    /// The deepest nesting of lists and mappings, counted with aliases expanded where they are
    /// used. Yams composes recursively: thousands of levels overflow a thread's stack.
    public static let maxDepth = 64
    /// The most nodes (scalars, lists, mappings and keys) a document may have with every alias
    /// expanded: an alias counts as the nodes it stands for, so anchors whose aliases refer to
    /// each other (the "billion laughs") cannot make a few hundred bytes into billions of values.
    public static let maxNodes = 100_000
}

/// Composes a YAML text into a node tree (nil for an empty document), after checking it against
/// `YAMLLimits` with libyaml's event stream, without recursion and without expanding aliases.
/// Every problem, invalid YAML included, is a `ConfigError` naming `source` and the line.
public func composeYAML(_ text: String, source: String) throws -> Node? {
    func failure(_ line: Int?, _ message: String) -> ConfigError {
        ConfigError(location: SourceLocation(file: source, line: line), key: nil, message: message)
    }
    let byteCount = text.utf8.count
    guard byteCount <= YAMLLimits.maxBytes else {
        throw failure(nil, "the YAML text is \(byteCount) bytes; at most \(YAMLLimits.maxBytes) bytes are allowed")
    }
    var bytes = Array(text.utf8)
    if let problem = bytes.withUnsafeMutableBufferPointer({ measureYAML($0) }) {
        throw failure(problem.line, problem.message)
    }
    do {
        return try Yams.compose(yaml: text)
    } catch let error as YamlError {
        throw failure(yamlErrorLine(error), "invalid YAML: \(yamlProblem(error))")
    }
}

/// Walks the events of a YAML text and returns the first bound of `YAMLLimits` it exceeds, with
/// its line. A syntax error ends the walk without a problem: Yams reports it, after composing
/// only the events before it, which were measured.
func measureYAML(_ input: UnsafeMutableBufferPointer<UInt8>) -> (line: Int, message: String)? {
    var parser = yaml_parser_t()
    guard yaml_parser_initialize(&parser) == 1 else { return nil }
    defer { yaml_parser_delete(&parser) }
    yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING)
    yaml_parser_set_input_string(&parser, input.baseAddress, input.count)

    // An open list or mapping: the node count when it began, the height of its tallest child
    // (a scalar is 0 high, a collection one more than its tallest child), and its anchor.
    struct Open {
        let firstNode: Int
        var childHeight = 0
        let anchor: String?
    }
    var open: [Open] = []
    var anchors: [String: (nodes: Int, height: Int)] = [:]
    var nodes = 0
    func anchorName(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        pointer.map { String(cString: $0) }
    }
    /// Counts a finished child of `height` levels in its parent.
    func addChild(height: Int) {
        if !open.isEmpty { open[open.count - 1].childHeight = max(open[open.count - 1].childHeight, height) }
    }
    let depthMessage = "lists and mappings are nested more than \(YAMLLimits.maxDepth) levels deep (aliases counted where they are used); at most \(YAMLLimits.maxDepth) are allowed"
    let nodesMessage = "the document has more than \(YAMLLimits.maxNodes) values, keys, lists and mappings (aliases counted as the nodes they stand for); at most \(YAMLLimits.maxNodes) are allowed"

    var event = yaml_event_t()
    while yaml_parser_parse(&parser, &event) == 1 {
        defer { yaml_event_delete(&event) }
        let line = Int(event.start_mark.line) + 1
        switch event.type {
        case YAML_STREAM_END_EVENT:
            return nil
        case YAML_SCALAR_EVENT:
            nodes += 1
            addChild(height: 0)
            if let anchor = anchorName(event.data.scalar.anchor) { anchors[anchor] = (1, 0) }
        case YAML_ALIAS_EVENT:
            // An undefined alias is Yams' error to report; it counts as one node here.
            let target = anchorName(event.data.alias.anchor).flatMap { anchors[$0] } ?? (nodes: 1, height: 0)
            guard open.count + target.height <= YAMLLimits.maxDepth else { return (line, depthMessage) }
            nodes += target.nodes
            addChild(height: target.height)
        case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
            guard open.count < YAMLLimits.maxDepth else { return (line, depthMessage) }
            let anchor = event.type == YAML_SEQUENCE_START_EVENT ? event.data.sequence_start.anchor : event.data.mapping_start.anchor
            open.append(Open(firstNode: nodes, anchor: anchorName(anchor)))
            nodes += 1
        case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
            guard let closed = open.popLast() else { return nil }
            addChild(height: closed.childHeight + 1)
            // As in Yams, an anchor on a collection is defined once the collection is complete.
            if let anchor = closed.anchor { anchors[anchor] = (nodes - closed.firstNode, closed.childHeight + 1) }
        default:
            break
        }
        guard nodes <= YAMLLimits.maxNodes else { return (line, nodesMessage) }
    }
    return nil
}

/// The whole file at `path` (a `what`: "sweep file", …) as UTF-8 text; a `ConfigError` when it
/// cannot be read, is longer than `YAMLLimits.maxBytes` (reading stops there) or is not valid
/// UTF-8 (at the bad byte's line).
public func readYAMLFile(_ path: String, what: String) throws -> String {
    guard let file = fopen(path, "rb") else {
        let reason = String(cString: strerror(errno))
        throw ConfigError(location: SourceLocation(file: path, line: nil), key: nil, message: "cannot read the \(what): \(reason)")
    }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
        if n > 0 { bytes.append(contentsOf: chunk[0..<n]) }
        if bytes.count > YAMLLimits.maxBytes {
            throw ConfigError(location: SourceLocation(file: path, line: nil), key: nil, message: "the \(what) is larger than \(YAMLLimits.maxBytes) bytes, the most a YAML file may have")
        }
        if n < chunk.count {
            if ferror(file) != 0 {
                throw ConfigError(location: SourceLocation(file: path, line: nil), key: nil, message: "cannot read the \(what) (is it a directory?)")
            }
            break
        }
    }
    return try decodeUTF8(bytes, source: path)
}

/// Decodes a file's bytes as UTF-8; invalid UTF-8 is a `ConfigError` at the line of the first
/// bad byte (instead of being replaced by U+FFFD, which would change what the file says).
public func decodeUTF8(_ bytes: [UInt8], source: String) throws -> String {
    var iterator = bytes.makeIterator()
    var decoder = UTF8()
    var line = 1
    var offset = 0
    while true {
        switch decoder.decode(&iterator) {
        case .scalarValue(let scalar):
            if scalar == "\n" { line += 1 }
            offset += scalar.utf8.count
        case .emptyInput:
            return String(decoding: bytes, as: UTF8.self)
        case .error:
            throw ConfigError(
                location: SourceLocation(file: source, line: line), key: nil,
                message: "the file is not valid UTF-8 (byte \(offset) of the file); save it as UTF-8")
        }
    }
}

func yamlErrorLine(_ error: YamlError) -> Int? {
    switch error {
    case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _): mark.line
    default: nil
    }
}

func yamlProblem(_ error: YamlError) -> String {
    switch error {
    case .scanner(let context, let problem, _, _), .parser(let context, let problem, _, _), .composer(let context, let problem, _, _):
        (context.map { "\($0.text) " } ?? "") + problem
    default: "\(error)"
    }
}
