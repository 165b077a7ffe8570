import Foundation
import Glibc
import HDF5
import Transport

public struct HarnessError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The end-to-end suites' tools: the real executables started as processes with their output in
/// a log file, temporary directories, and a results directory's trials read back.
public enum Harness {
    public static var products: URL {
        Bundle.allBundles.map(\.bundleURL).first { $0.pathExtension == "xctest" }?.deletingLastPathComponent()
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    }

    public static func temporaryDirectory(_ name: String) -> String {
        let path = NSTemporaryDirectory() + "\(name)-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    public static func write(_ text: String, to path: String) { try! text.write(toFile: path, atomically: true, encoding: .utf8) }

    /// Starts a process whose output goes to a file; returns it and the file's path.
    public static func start(_ tool: String, _ arguments: [String], log: String) throws -> Process {
        let p = Process()
        p.executableURL = products.appendingPathComponent(tool)
        p.arguments = arguments
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        return p
    }

    public static func wait(_ p: Process, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(50_000) }
        if p.isRunning { p.terminate(); p.waitUntilExit(); return false }
        p.waitUntilExit()
        return true
    }

    public static func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    /// Trials a coordinator's log says have ended (done, diverged, failed or stopped). The log
    /// says so at once; the index on disk follows within seconds.
    public static func endedTrials(log path: String) -> Int {
        read(path).split(separator: "\n").filter { line in ["done", "diverged", "failed", "stopped"].contains { line.contains("] \($0) after") } }.count
    }

    /// A TCP port on the loopback interface that is free now: below the kernel's ephemeral range
    /// (32768 and up), so that no outgoing connection takes it before the test binds it, and
    /// checked by binding it once (a random guess collided with ports in use).
    public static func freePort() -> Int {
        while true {
            let port = Int.random(in: 20_000..<32_768)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { return port }
            defer { close(fd) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = in_addr_t(UInt32(0x7F00_0001).bigEndian)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if bound == 0 { return port }
        }
    }

    /// The committed trials of a results directory (rows of the index's /trials with a batch
    /// file), each read from its batch file as a user would: its group (through /by_id), or its
    /// row of the batch file's /trials table and rows of its /history.
    public static func trials(_ directory: String) throws -> [(id: String, status: String, attempts: Int64, trainLoss: Double, file: String)] {
        let file = try HDF5File("\(directory)/sweep.h5", mode: .readOnly)
        let count = Int(try file.attribute("trial_count", as: Int64.self))
        let (ids, files) = (try file.readTableStringColumn("trials", field: "id"), try file.readTableStringColumn("trials", field: "file"))
        guard ids.count == count, files.count == count else { throw HarnessError("\(directory)/sweep.h5 has \(ids.count) rows but counts \(count)") }
        return try zip(ids, files).filter { !$0.1.isEmpty }.map { id, batch in
            let t = try committed(directory, id: id, file: batch)
            return (id: id, status: t.text["status"] ?? "", attempts: t.attempts, trainLoss: t.trainLoss.last ?? .nan, file: batch)
        }
    }

    /// A committed trial as readers see it: its text attributes (status, config, engine, …), its
    /// attempts and its history's train_loss column.
    public static func committed(_ directory: String, id: String, file batch: String) throws -> (text: [String: String], attempts: Int64, trainLoss: [Double]) {
        let index = try HDF5File("\(directory)/sweep.h5", mode: .readOnly)
        let names = ["status", "config", "engine", "message", "host"]
        let byID = try index.group("by_id")
        if byID.contains(id) {
            let g = try byID.group(id)
            let text = Dictionary(uniqueKeysWithValues: try names.map { ($0, try g.stringAttribute($0)) })
            return (text, try g.attribute("attempts", as: Int64.self), try g.readTableColumn("history", field: "train_loss"))
        }
        let file = try HDF5File("\(directory)/\(batch)", mode: .readOnly)
        guard let k = try file.readTableStringColumn("trials", field: "id").firstIndex(of: id) else { throw HarnessError("\(batch) has no trial \(id)") }
        let text = Dictionary(uniqueKeysWithValues: try names.map { ($0, try file.readTableStringColumn("trials", field: $0)[k]) })
        let (start, rows) = (Int(try file.readTableColumn("trials", field: "history_start")[k]), Int(try file.readTableColumn("trials", field: "history_rows")[k]))
        let losses = try file.readTableColumn("history", field: "train_loss")
        guard start >= 0, rows >= 0, start + rows <= losses.count else { throw HarnessError("\(batch): trial \(id)'s history rows are outside /history") }
        return (text, Int64(try file.readTableColumn("trials", field: "attempts")[k]), Array(losses[start..<(start + rows)]))
    }
}

extension Harness {
    /// Starts `sweep-coordinator start` with `arguments` and waits (up to 30 s) until it listens.
    public static func startCoordinator(_ arguments: [String], log: String) throws -> Process {
        let p = try start("sweep-coordinator", ["start"] + arguments, log: log)
        let deadline = Date().addingTimeInterval(30)
        while !read(log).contains("listening on") && p.isRunning && Date() < deadline { usleep(50_000) }
        return p
    }

    /// Ends the processes a test started that still run (a failed expectation or a thrown error
    /// must not leave a coordinator waiting for workers).
    public static func stop(_ processes: Process?...) {
        for case let p? in processes where p.isRunning {
            p.terminate()
            p.waitUntilExit()
        }
    }
}

/// A peer that speaks the protocol but not honestly: a raw DEALER driven by the test.
public final class RoguePeer {
    public let context = Context()
    public let socket: Socket

    public init(_ endpoint: String) throws {
        socket = try Socket(context, .dealer)
        try socket.set(.sendHighWaterMark(0))
        try socket.connect(endpoint)
    }

    public func send(_ message: Message) throws { try socket.send(try message.frames()) }

    /// Sends a message whose payload is the given JSON text.
    public func send(_ command: Command, json: String) throws {
        try socket.send([Protocol.header, Array(command.rawValue.utf8), Array(json.utf8)])
    }

    /// The next message within `timeout` seconds, or nil.
    public func receive(timeout: Double) throws -> Message? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let frames = try socket.receive(wait: false) { return try Message.decode(frames) }
            _ = try Poller.poll([.socket(socket)], timeout: 20)
        }
        return nil
    }

    /// Every message that arrives within `seconds`.
    public func drain(for seconds: Double) throws -> [Message] {
        var out: [Message] = []
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let m = try receive(timeout: max(0.01, deadline.timeIntervalSinceNow)) { out.append(m) }
        }
        return out
    }

    public func ready(name: String = "rogue", slots: Int = 1, free: Int = 1, running: [HeldLease] = []) throws {
        try send(.ready(Ready(name: name, host: "rogue-host", pid: 1, threads: 1, slots: slots, kernel: "x", version: Protocol.version, running: running, free: free)))
    }

    /// Registers and waits for the first lease.
    public func nextTrial(timeout: Double = 20) throws -> Assignment? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            guard let m = try receive(timeout: deadline.timeIntervalSinceNow) else { return nil }
            if case .trial(let a) = m { return a }
        }
        return nil
    }

    public func close() { socket.close() }
}
