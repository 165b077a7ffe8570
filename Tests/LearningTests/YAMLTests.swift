import Learning
import Testing

/// `[[…]]` nested `depth` levels deep.
func nestedList(_ depth: Int) -> String { String(repeating: "[", count: depth) + String(repeating: "]", count: depth) }

/// A "billion laughs": a list of nine strings, then `levels - 1` anchors, each a list of nine
/// aliases of the one before; the last one stands for 9^levels strings.
func aliasBomb(levels: Int, indent: String = "") -> String {
    let names = (0..<levels).map { "l\($0)" }
    var lines = ["\(indent)\(names[0]): &\(names[0]) [" + Array(repeating: "lol", count: 9).joined(separator: ", ") + "]"]
    for (previous, name) in zip(names, names.dropFirst()) {
        lines.append("\(indent)\(name): &\(name) [" + Array(repeating: "*\(previous)", count: 9).joined(separator: ", ") + "]")
    }
    return lines.joined(separator: "\n") + "\n"
}

@Suite struct YAMLLimitTests {
    func trialError(_ yaml: String) -> ConfigError? {
        do {
            _ = try TrialConfig.parse(yaml: yaml, source: "trial.yaml")
            Issue.record("expected a ConfigError")
        } catch let e as ConfigError {
            return e
        } catch {
            Issue.record("unexpected error type: \(error)")
        }
        return nil
    }

    @Test func deepNestingIsAnErrorAtItsLineNotACrash() throws {
        // 5,000 levels overflowed the stack of Yams' recursive composer (exit 139).
        let e = try #require(trialError("model: quadratic\ncurvatures: \(nestedList(5000))\n"))
        #expect(e.location == SourceLocation(file: "trial.yaml", line: 2) && e.key == nil)
        #expect(e.message.contains("nested more than \(YAMLLimits.maxDepth) levels"), "\(e)")
        // Exactly the limit is allowed, one more level is not: in flow and in block style.
        #expect(throws: Never.self) { _ = try composeYAML(nestedList(YAMLLimits.maxDepth), source: "t") }
        #expect(throws: ConfigError.self) { _ = try composeYAML(nestedList(YAMLLimits.maxDepth + 1), source: "t") }
        let block = { (depth: Int) in String(repeating: "- ", count: depth) + "x\n" }
        #expect(throws: Never.self) { _ = try composeYAML(block(YAMLLimits.maxDepth), source: "t") }
        #expect(throws: ConfigError.self) { _ = try composeYAML(block(YAMLLimits.maxDepth + 1), source: "t") }
        // An alias counts at the depth where it is used.
        let half = YAMLLimits.maxDepth / 2 + 1
        let aliased = "a: &a \(nestedList(half))\nb: \(String(repeating: "[", count: half))*a\(String(repeating: "]", count: half))\n"
        let a = try #require(trialError(aliased))
        #expect(a.location.line == 2 && a.message.contains("aliases counted where they are used"), "\(a)")
        // Checkpoints' lists of names go through the same check.
        #expect(throws: ConfigError.self) { _ = try parseStringList(nestedList(5000)) }
    }

    @Test func aliasExpansionIsBounded() throws {
        // 9^7 ≈ 4.8 million strings from 500 bytes (9^9 took 17 s and 3.5 GB): refused at the
        // line of the alias that goes over YAMLLimits.maxNodes, before anything is expanded.
        let e = try #require(trialError("model: quadratic\n" + aliasBomb(levels: 7)))
        #expect(e.location == SourceLocation(file: "trial.yaml", line: 7), "\(e)")
        #expect(e.message.contains("more than \(YAMLLimits.maxNodes) values"), "\(e)")
        // Small anchors and aliases keep working.
        let c = try TrialConfig.parse(yaml: "model: quadratic\ncurvatures: &h [1, 2]\nstart: *h\n", source: "trial.yaml")
        #expect(c.values["start"] == .list([.int(1), .int(2)]))
    }

    @Test func longTextIsRefused() throws {
        let padding = String(repeating: "# padding\n", count: YAMLLimits.maxBytes / 10 + 1)
        let e = try #require(trialError("model: quadratic\n" + padding))
        #expect(e.location.file == "trial.yaml" && e.message.contains("at most \(YAMLLimits.maxBytes) bytes"), "\(e)")
    }

    @Test func invalidUTF8IsAnErrorAtItsLine() throws {
        let e = try #require(throws: ConfigError.self) { _ = try decodeUTF8(Array("model: mlp\noptimizer: sg".utf8) + [0xFF] + Array("d\n".utf8), source: "t.yaml") }
        #expect(e.location == SourceLocation(file: "t.yaml", line: 2) && e.message.contains("not valid UTF-8"), "\(e)")
        #expect(try decodeUTF8(Array("lr: 0.1 # ≤ 1\n".utf8), source: "t.yaml") == "lr: 0.1 # ≤ 1\n")
    }
}
