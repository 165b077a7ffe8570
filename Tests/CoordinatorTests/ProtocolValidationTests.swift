import Coordinator
import Foundation
import Glibc
import Learning
import Results
import Testing
import Transport

/// The checks that stand between a peer's bytes and the coordinator, without sockets.
@Suite struct ProtocolValidationTests {
    static func frames(_ command: Command, _ json: String) -> [[UInt8]] {
        [Protocol.header, Array(command.rawValue.utf8), Array(json.utf8)]
    }

    static let lease = #"{"trial":"0123456789abcdef","attempt":1}"#
    static let record = #"{"epoch":1,"step":1,"trainLoss":0.5,"testLoss":0.6,"testAccuracy":0.8,"gradientNorm":1,"learningRate":0.01,"seconds":0.1,"evalSeconds":0}"#
    static func result(_ extra: String = "", history: String = "[\(record)]", trajectory: String = "[]") -> String {
        #"{"lease":\#(lease),"status":"done","history":\#(history),"trajectory":\#(trajectory),"parameterCount":10,"optimizerStateBytes":80,"wallSeconds":1,"engine":"x"\#(extra)}"#
    }
    static func ready(free: String = "1", slots: String = "1", running: String = "[]", name: String = "w") -> String {
        #"{"name":"\#(name)","host":"h","pid":1,"threads":1,"slots":\#(slots),"kernel":"Haswell","version":"2","running":\#(running),"free":\#(free)}"#
    }

    @Test(arguments: [
        (Command.ready, ready(free: "9223372036854775807"), "free is 9223372036854775807"),
        (.ready, ready(slots: "0"), "slots is 0"),
        (.ready, ready(slots: "100000"), "slots is 100000"),
        (.ready, ready(name: ""), "name is empty"),
        (.ready, ready(name: String(repeating: "x", count: 300)), "name is 300 bytes long"),
        (.ready, ready(running: #"[{"lease":{"trial":"../../etc","attempt":1},"token":"00000000000000000000000000000000"}]"#), "running[0].lease.trial may hold only"),
        (.ready, ready(running: #"[{"lease":\#(lease),"token":"short"}]"#), "running[0].token is not 32 lowercase hex digits"),
        (.ready, ready(running: #"[{"lease":{"trial":"0123456789abcdef","attempt":0},"token":"00000000000000000000000000000000"}]"#), "attempt is 0"),
        (.progress, #"{"lease":\#(lease),"record":\#(record.replacingOccurrences(of: "\"epoch\":1", with: "\"epoch\":1000000000"))}"#, "record.epoch is 1000000000"),
        (.progress, #"{"lease":\#(lease),"record":\#(record.replacingOccurrences(of: "0.8", with: "1000000000"))}"#, "record.testAccuracy is 1000000000"),
        (.progress, #"{"lease":\#(lease),"record":\#(record.replacingOccurrences(of: "\"seconds\":0.1", with: "\"seconds\":-1"))}"#, "record.seconds is -1"),
        (.result, result(trajectory: "[[0,0],[1,2,3]]"), "trajectory[1] has 3 values where row 0 has 2"),
        (.result, result(history: "[\(record),\(record)]"), "history[1].epoch is 1, not after the previous row's 1"),
        (.result, result().replacingOccurrences(of: #""optimizerStateBytes":80"#, with: #""optimizerStateBytes":4611686018427387904"#), "optimizerStateBytes is 4611686018427387904"),
        (.result, result().replacingOccurrences(of: #""wallSeconds":1"#, with: #""wallSeconds":-5"#), "wallSeconds is -5"),
        (.result, result(#","lrRangeTest":{"learningRates":[0.1,0.2],"smoothedLosses":[1],"stopReason":"x"}"#), "has 2 learning rates but 1 losses"),
        (.result, result(#","optimizerStateByTensor":[{"tensor":"w","bytes":-1}]"#), "optimizerStateByTensor[0].bytes is -1"),
        (.result, result(#","optimizerWork":{"eigh":-3}"#), "optimizerWork[eigh] is -3"),
        (.checkpoint, #"{"lease":\#(lease),"epoch":0,"file":"AAAA"}"#, "epoch is 0"),
        (.trial, #"{"lease":\#(lease),"token":"nothex","config":"{}"}"#, "lease.token is not 32"),
        (.welcome, #"{"sweep":"s","heartbeatSeconds":0,"deadAfterSeconds":5}"#, "heartbeatSeconds is 0.0"),
    ])
    func fieldsOutsideTheirBoundsAreRefusedWithTheFieldNamed(command: Command, json: String, expected: String) {
        do {
            _ = try Message.decode(Self.frames(command, json))
            Issue.record("accepted: \(json)")
        } catch {
            #expect(error.description.contains(expected), "\(error.description)")
            if case .field = error {} else { Issue.record("not a field error: \(error)") }
        }
    }

    /// A run that diverges slowly reports losses past 1e300 before they overflow: any finite loss
    /// (and NaN or ±infinity, a divergence) is a loss the trainer can report.
    @Test func everyLossTheTrainerCanReportDecodes() throws {
        for loss in ["1.9642547337157346e300", "-1e308", "1.7976931348623157e308"] {
            let json = Self.result(history: "[\(Self.record.replacingOccurrences(of: "0.5", with: loss))]")
            guard case .result(let r) = try Message.decode(Self.frames(.result, json)) else { throw DecodeFailure() }
            #expect(r.history[0].trainLoss == Double(loss))
        }
    }

    struct DecodeFailure: Error {}

    @Test func wellFormedMessagesOfEveryKindDecode() throws {
        let held = HeldLease(lease: Lease(trial: "0123456789abcdef", attempt: 2), token: LeaseJournal.newToken())
        var result = ResultMessage(
            lease: held.lease, status: .done, message: "ok",
            history: [EpochRecord(epoch: 1, step: 5, trainLoss: 0.4, testLoss: .nan, testAccuracy: .nan, gradientNorm: .infinity, learningRate: 0.1, seconds: 0.1, evalSeconds: 0)],
            trajectory: [[1, 2], [3, 4]], parameterCount: 2, optimizerStateBytes: 16, wallSeconds: 0.5, engine: "OpenBLAS")
        result.lrRangeTest = try JSONDecoder().decode(LRRangeTest.self, from: Data(#"{"learningRates":[0.1],"smoothedLosses":[2.5],"stopReason":"diverged"}"#.utf8))
        let messages: [Message] = [
            .ready(Ready(name: "w", host: "h", pid: 7, threads: 2, slots: 3, kernel: "Haswell", version: Protocol.version, running: [held], free: 2)),
            .heartbeat(Heartbeat(running: [.init(lease: held.lease, epoch: 0)])),
            .progress(EpochProgress(lease: held.lease, record: result.history[0])),
            .checkpoint(CheckpointMessage(lease: held.lease, epoch: 1, file: "AAAA")),
            .result(result),
            .trial(Assignment(lease: held.lease, token: held.token, config: "{}", checkpointEvery: 2, pauseAfter: 3)),
            .welcome(Welcome(sweep: "s", heartbeatSeconds: 1, deadAfterSeconds: 5)),
            .cancel(Cancel(lease: held.lease, reason: "r")), .bye(Empty()), .register(Empty()), .shutdown(Empty()),
        ]
        for m in messages { #expect(try Message.decode(try m.frames()).command == m.command) }
    }

    @Test func deepNestingAndOtherVersionsAreRefusedBeforeDecoding() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: Message.DecodeError.payload(.result, "JSON nested deeper than \(ProtocolLimits.maxJSONDepth) levels")) {
            _ = try Message.decode(Self.frames(.result, deep))
        }
        // Brackets inside strings do not count.
        #expect(throws: Never.self) { _ = try Message.decode(Self.frames(.bye, #"{"x":"[[[[[[[[[[[[[[[[[[[[[[[[[[["}"#)) }
        #expect(throws: Message.DecodeError.version("1")) { _ = try Message.decode([Array("SWP1".utf8), Array("READY".utf8), Array("{}".utf8)]) }
        #expect(Message.DecodeError.version("1").description.contains("this build speaks version \(Protocol.version)"))
    }

    @Test func theLeaseOfAnInvalidResultIsStillKnown() {
        let frames = Self.frames(.result, Self.result(trajectory: "[[0,0],[1]]"))
        #expect(throws: (any Error).self) { _ = try Message.decode(frames) }
        #expect(Message.lease(ofResult: frames) == Lease(trial: "0123456789abcdef", attempt: 1))
        #expect(Message.lease(ofResult: Self.frames(.result, #"{"lease":{"trial":"a/b","attempt":1}}"#)) == nil)
    }

    @Test func theLeaseJournalProvesOnlyWhatItRecorded() throws {
        let dir = NSTemporaryDirectory() + "journal-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let tokens = (0..<3).map { _ in LeaseJournal.newToken() }
        #expect(Set(tokens).count == 3 && tokens.allSatisfy { $0.count == 32 && $0.allSatisfy(\.isHexDigit) })
        do {
            let journal = try LeaseJournal(directory: dir)
            try journal.record(trial: "aaaaaaaaaaaaaaaa", .init(attempt: 1, token: tokens[0], promoted: false, worker: "w1@h"))
            try journal.record(trial: "aaaaaaaaaaaaaaaa", .init(attempt: 2, token: tokens[1], promoted: true, worker: "w 2\nforged line"))
            try journal.record(trial: "bbbbbbbbbbbbbbbb", .init(attempt: 1, token: tokens[2], promoted: false, worker: "w3"))
        }
        #expect(try KeyFiles.mode(of: "\(dir)/\(LeaseJournal.fileName)") == 0o600, "the journal holds tokens")
        // A torn last line, and lines that are not grants.
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: "\(dir)/\(LeaseJournal.fileName)"))
        handle.seekToEndOfFile()
        handle.write(Data("garbage\nlease cccccccccccccccc 1 nothex 0 w\nlease dddddddddddddddd 1 \(tokens[0].prefix(10))".utf8))
        try handle.close()
        let reread = try LeaseJournal(directory: dir)
        #expect(reread.latest["aaaaaaaaaaaaaaaa"] == .init(attempt: 2, token: tokens[1], promoted: true, worker: "w 2 forged line"))
        #expect(reread.latest["bbbbbbbbbbbbbbbb"]?.token == tokens[2])
        #expect(reread.latest["cccccccccccccccc"] == nil && reread.latest["dddddddddddddddd"] == nil)
        #expect(reread.skipped == 3)
        // The torn line is ended, so the next grant is read back whole.
        try reread.record(trial: "eeeeeeeeeeeeeeee", .init(attempt: 1, token: tokens[0], promoted: false, worker: "w"))
        #expect(try LeaseJournal(directory: dir).latest["eeeeeeeeeeeeeeee"]?.token == tokens[0])
    }

    @Test func aPeerOverItsRateIsDroppedAndRefilledWithTime() {
        var limiter = PeerLimiter(rate: 100, burst: 10)
        let a: [UInt8] = [1], b: [UInt8] = [2]
        var admitted = (0..<10).map { _ in limiter.admit(a, bytes: 10, now: 0) }
        #expect(admitted.allSatisfy { $0 })
        admitted = [limiter.admit(a, bytes: 10, now: 0), limiter.admit(b, bytes: 10, now: 0), limiter.admit(a, bytes: 10, now: 0.011), limiter.admit(a, bytes: 1 << 20, now: 0.02)]
        // Over the burst; another peer's budget is its own; refilled at 100/s; a megabyte costs 17 tokens.
        #expect(admitted == [false, true, true, false])
        let dropped = limiter.takeDropped()
        #expect(dropped.count == 1 && dropped[0].identity == a && dropped[0].count == 2)
        #expect(limiter.takeDropped().isEmpty)
        // A registered worker's result may run the bucket into debt, down to −burst, not further.
        let essential = (0..<25).map { _ in limiter.admit(b, bytes: 0, now: 0.02, essential: true) }
        #expect(essential.filter { $0 }.count == 20 && !essential.last!, "from 10 tokens to −10: \(essential)")
        _ = limiter.admit(b, bytes: 0, now: 100)
        #expect(limiter.buckets.count == 1, "idle peers are forgotten")
    }

    @Test func rejectionLinesAreRateLimitedPerKind() {
        var log = RateLimitedLog(perWindow: 2, window: 10)
        #expect(log.line("decode", "a", now: 0) == "a")
        #expect(log.line("decode", "b", now: 1) == "b")
        #expect(log.line("decode", "c", now: 2) == nil)
        #expect(log.line("decode", "d", now: 3) == nil)
        #expect(log.line("claim", "x", now: 3) == "x", "kinds are counted apart")
        #expect(log.line("decode", "e", now: 11) == "e (and 2 more like it not shown)")
    }

    @Test func aResultsDirectoryHasOneOwnerAndOneSweep() throws {
        let dir = NSTemporaryDirectory() + "owner-\(UUID().uuidString)"
        let first = try ResultsOwnership(directory: dir, sweepName: "s", sweepText: "name: s\n", force: false)
        do {
            _ = try ResultsOwnership(directory: dir, sweepName: "s", sweepText: "name: s\n", force: false)
            Issue.record("a second owner was let in")
        } catch let refusal as ResultsOwnership.Refusal {
            guard case .locked(_, let holder) = refusal else { throw refusal }
            #expect(holder.hasPrefix("pid \(getpid()) on host "), "\(holder)")
        }
        withExtendedLifetime(first) {}
    }

    @Test func aResultsDirectoryRefusesOtherSweepsAndForeignFiles() throws {
        let dir = NSTemporaryDirectory() + "identity-\(UUID().uuidString)"
        do { _ = try ResultsOwnership(directory: dir, sweepName: "s", sweepText: "name: s\n", force: false) }
        #expect(throws: ResultsOwnership.Refusal.otherSweep(directory: dir, found: "s", expected: "t")) {
            _ = try ResultsOwnership(directory: dir, sweepName: "t", sweepText: "name: t\n", force: false)
        }
        #expect(throws: ResultsOwnership.Refusal.changedSweep(directory: dir, name: "s")) {
            _ = try ResultsOwnership(directory: dir, sweepName: "s", sweepText: "name: s\nseed: 1\n", force: false)
        }
        do { _ = try ResultsOwnership(directory: dir, sweepName: "s", sweepText: "name: s\nseed: 1\n", force: true) }
        do { _ = try ResultsOwnership(directory: dir, sweepName: "s", sweepText: "name: s\nseed: 1\n", force: false) }
        let foreign = NSTemporaryDirectory() + "foreign-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: foreign, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: "\(foreign)/notes.txt", contents: Data("mine".utf8))
        #expect(throws: ResultsOwnership.Refusal.foreign(directory: foreign, entries: ["notes.txt"])) {
            _ = try ResultsOwnership(directory: foreign, sweepName: "s", sweepText: "name: s\n", force: false)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: foreign) == ["notes.txt"], "a refused directory is left as it was")
    }
}
