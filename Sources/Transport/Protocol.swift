import Foundation
import Learning

/// The sweep protocol, version 2. Every message is three frames after the ROUTER's identity:
///
///     "SWP2" | COMMAND | JSON payload
///
/// Workers (DEALER) send READY (capabilities and free slots), HEARTBEAT (with progress),
/// PROGRESS (an epoch), RESULT (a finished attempt) and BYE; the coordinator (ROUTER) sends
/// WELCOME, TRIAL (a lease: trial id + attempt + configuration), CANCEL, HEARTBEAT, REGISTER
/// (asks an unknown peer to send READY again) and SHUTDOWN. Anything else — wrong header,
/// unknown command, a payload that does not decode or breaks a bound of `ProtocolLimits`, JSON
/// nested too deep, an oversized frame — is rejected by `Message.decode` with a reason naming
/// the field, logged (rate-limited) and dropped by the receiver.
///
/// Every lease carries a token (128 random bits) that only the coordinator and the worker it
/// was sent to know: a worker that still runs an attempt after a coordinator restart proves
/// it holds the lease by sending the token back in READY (`HeldLease`).
public enum Protocol {
    public static let header: [UInt8] = Array("SWP\(version)".utf8)
    /// Larger messages are refused by libzmq itself (`ZMQ_MAXMSGSIZE`).
    public static let maxMessageSize: Int64 = 64 << 20
    public static let version = "2"
}

public enum Command: String, Sendable, CaseIterable {
    case ready = "READY", heartbeat = "HEARTBEAT", progress = "PROGRESS", checkpoint = "CHECKPOINT", result = "RESULT", bye = "BYE"
    case welcome = "WELCOME", trial = "TRIAL", cancel = "CANCEL", register = "REGISTER", shutdown = "SHUTDOWN"
}

/// One attempt of one trial. Results and progress carry it so that a superseded attempt's
/// messages are recognised and rejected.
public struct Lease: Codable, Hashable, Sendable, CustomStringConvertible {
    public var trial: String
    public var attempt: Int
    public init(trial: String, attempt: Int) {
        self.trial = trial
        self.attempt = attempt
    }
    public var description: String { "\(trial)#\(attempt)" }
}

/// A lease as its worker holds it: the attempt and the token the coordinator sent with it.
public struct HeldLease: Codable, Hashable, Sendable {
    public var lease: Lease
    public var token: String
    public init(lease: Lease, token: String) {
        self.lease = lease
        self.token = token
    }
}

public struct Ready: Codable, Sendable {
    public init(name: String, host: String, pid: Int32, threads: Int, slots: Int, kernel: String, version: String, running: [HeldLease], free: Int) {
        self.name = name
        self.host = host
        self.pid = pid
        self.threads = threads
        self.slots = slots
        self.kernel = kernel
        self.version = version
        self.running = running
        self.free = free
    }
    public var name: String
    public var host: String
    public var pid: Int32
    public var threads: Int
    public var slots: Int
    public var kernel: String
    public var version: String
    /// Attempts still running or waiting on this worker, each with its lease token (after a
    /// coordinator restart, or a reconnect).
    public var running: [HeldLease]
    /// Free slots right now (credit).
    public var free: Int
}

public struct Heartbeat: Codable, Sendable {
    public init(running: [RunningTrial]) {
        self.running = running
    }
    /// Each running attempt and the last epoch it finished (0 before the first).
    public var running: [RunningTrial]
    public struct RunningTrial: Codable, Sendable {
        public init(lease: Lease, epoch: Int) {
            self.lease = lease
            self.epoch = epoch
        }
        public var lease: Lease
        public var epoch: Int
    }
}

public struct EpochProgress: Codable, Sendable {
    public init(lease: Lease, record: EpochRecord) {
        self.lease = lease
        self.record = record
    }
    public var lease: Lease
    public var record: EpochRecord
}

public struct Assignment: Codable, Sendable {
    public init(
        lease: Lease, token: String, config: String, checkpointEvery: Int? = nil, checkpoint: String? = nil, pauseAfter: Int? = nil, explored: [String]? = nil
    ) {
        self.lease = lease
        self.token = token
        self.config = config
        self.checkpointEvery = checkpointEvery
        self.checkpoint = checkpoint
        self.pauseAfter = pauseAfter
        self.explored = explored
    }
    public var lease: Lease
    /// The lease's secret: the worker shows it to claim the attempt again (`Ready.running`).
    public var token: String
    /// The trial's canonical configuration (JSON, which is also YAML).
    public var config: String
    /// Send a CHECKPOINT every this many epochs (steps for toy objectives).
    public var checkpointEvery: Int?
    /// A checkpoint file (HDF5, base64) to resume from: the trial's earlier attempt got this far.
    public var checkpoint: String?
    /// Stop after this epoch (step for toy objectives), checkpoint, and report `stopped`: the
    /// trial has reached an ASHA rung and waits there to be promoted.
    public var pauseAfter: Int?
    /// Keys whose values in `checkpoint` may differ from `config`: population-based training
    /// continues another trial's checkpoint with these hyperparameters changed.
    public var explored: [String]?
    /// A program trial's `files`, read from the sweep file's folder by the coordinator.
    public var files: [ShippedFile]?
    /// A program trial: the sweep file's folder on the coordinator's host, which a relative (or
    /// missing) `workdir` is taken from.
    public var directory: String?
    /// The sweep's objective metric: a program trial must report it every epoch, and a NaN or
    /// infinite value ends it as diverged.
    public var objective: String?
}

/// A file shipped with a program trial: its path relative to the trial's working directory and
/// its bytes (base64).
public struct ShippedFile: Codable, Sendable, Equatable {
    public var path: String
    public var content: String

    public init(path: String, content: String) {
        self.path = path
        self.content = content
    }
}

/// A trial's checkpoint file (HDF5, base64), streamed to the coordinator, which keeps the latest
/// so that another attempt can continue from it.
public struct CheckpointMessage: Codable, Sendable {
    public init(lease: Lease, epoch: Int, file: String) {
        self.lease = lease
        self.epoch = epoch
        self.file = file
    }
    public var lease: Lease
    public var epoch: Int
    public var file: String
}

public struct ResultMessage: Codable, Sendable {
    public init(lease: Lease, status: TrialStatus, message: String?, history: [EpochRecord], trajectory: [[Double]], parameterCount: Int, optimizerStateBytes: Int, wallSeconds: Double, engine: String)
    {
        self.lease = lease
        self.status = status
        self.message = message
        self.history = history
        self.trajectory = trajectory
        self.parameterCount = parameterCount
        self.optimizerStateBytes = optimizerStateBytes
        self.wallSeconds = wallSeconds
        self.engine = engine
    }
    public var lease: Lease
    public var status: TrialStatus
    public var message: String?
    public var history: [EpochRecord]
    public var trajectory: [[Double]]
    public var parameterCount: Int
    public var optimizerStateBytes: Int
    public var wallSeconds: Double
    public var engine: String
    /// `mode: lr_range_test`, `diagnostics: true` and `sharpness_rho` results.
    public var lrRangeTest: LRRangeTest?
    public var layerStatistics: [LayerStatistics]?
    public var sharpness: Double?
    /// Optimizer state bytes per parameter tensor, and the optimizer's work counters.
    public var optimizerStateByTensor: [TensorStateBytes]?
    public var optimizerWork: [String: Int]?
    /// A program trial's own metrics, by name, each aligned with `history`.
    public var extraHistory: [String: [Double]]?
    /// A program trial: how its process ended and the tails of its output.
    public var programOutput: ProgramOutput?
}

public struct Welcome: Codable, Sendable {
    public init(sweep: String, heartbeatSeconds: Double, deadAfterSeconds: Double) {
        self.sweep = sweep
        self.heartbeatSeconds = heartbeatSeconds
        self.deadAfterSeconds = deadAfterSeconds
    }
    public var sweep: String
    public var heartbeatSeconds: Double
    public var deadAfterSeconds: Double
}

public struct Cancel: Codable, Sendable {
    public init(lease: Lease, reason: String) {
        self.lease = lease
        self.reason = reason
    }
    public var lease: Lease
    public var reason: String
}

public struct Empty: Codable, Sendable { public init() {} }

/// A decoded message.
public enum Message: Sendable {
    case ready(Ready), heartbeat(Heartbeat), progress(EpochProgress), checkpoint(CheckpointMessage), result(ResultMessage), bye(Empty)
    case welcome(Welcome), trial(Assignment), cancel(Cancel), register(Empty), shutdown(Empty)

    public var command: Command {
        switch self {
        case .ready: .ready
        case .heartbeat: .heartbeat
        case .progress: .progress
        case .checkpoint: .checkpoint
        case .result: .result
        case .bye: .bye
        case .welcome: .welcome
        case .trial: .trial
        case .cancel: .cancel
        case .register: .register
        case .shutdown: .shutdown
        }
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return e
    }()

    static let decoder: JSONDecoder = {
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return d
    }()

    /// The frames to send (without a ROUTER identity).
    public func frames() throws -> [[UInt8]] {
        let payload: Data =
            switch self {
            case .ready(let p): try Self.encoder.encode(p)
            case .heartbeat(let p): try Self.encoder.encode(p)
            case .progress(let p): try Self.encoder.encode(p)
            case .checkpoint(let p): try Self.encoder.encode(p)
            case .result(let p): try Self.encoder.encode(p)
            case .bye(let p), .register(let p), .shutdown(let p): try Self.encoder.encode(p)
            case .welcome(let p): try Self.encoder.encode(p)
            case .trial(let p): try Self.encoder.encode(p)
            case .cancel(let p): try Self.encoder.encode(p)
            }
        return [Protocol.header, Array(command.rawValue.utf8), Array(payload)]
    }

    public enum DecodeError: Error, CustomStringConvertible, Equatable {
        case frameCount(Int)
        case header
        /// A peer speaking another version of the protocol (e.g. an older worker build).
        case version(String)
        case unknownCommand(String)
        case payload(Command, String)
        /// The payload decoded but a field breaks the protocol's bounds.
        case field(Command, FieldError)

        public var description: String {
            switch self {
            case .frameCount(let n): "expected 3 frames (header, command, payload), got \(n)"
            case .header: "bad protocol header (expected SWP\(Protocol.version))"
            case .version(let v): "protocol version \(v.prefix(8)) from the peer; this build speaks version \(Protocol.version) (upgrade the older side)"
            case .unknownCommand(let c): "unknown command '\(c.prefix(40))'"
            case .payload(let c, let why): "\(c.rawValue) payload does not decode: \(why.prefix(200))"
            case .field(let c, let e): "\(c.rawValue) rejected: \(e.description.prefix(300))"
            }
        }
    }

    /// The lease a RESULT names, when the rest of it does not decode or breaks a bound: the
    /// receiver can then spend that attempt instead of waiting for a result that never comes.
    public static func lease(ofResult frames: [[UInt8]]) -> Lease? {
        struct Named: Decodable { var lease: Lease }
        guard frames.count == 3, frames[0] == Protocol.header, frames[1] == Array(Command.result.rawValue.utf8),
            jsonDepth(frames[2], limit: ProtocolLimits.maxJSONDepth) <= ProtocolLimits.maxJSONDepth,
            let named = try? decoder.decode(Named.self, from: Data(frames[2])), (try? named.lease.validate()) != nil
        else { return nil }
        return named.lease
    }

    /// Checks a result about to be sent as the coordinator's `decode` will check it (the
    /// payload's nesting, then every field against `ProtocolLimits`), without decoding again
    /// the JSON just encoded from it: for a trivial trial that decoding cost more than the trial.
    public static func check(outgoing result: ResultMessage, frames: [[UInt8]]) throws(DecodeError) {
        guard frames.count == 3, jsonDepth(frames[2], limit: ProtocolLimits.maxJSONDepth) <= ProtocolLimits.maxJSONDepth else {
            throw .payload(.result, "JSON nested deeper than \(ProtocolLimits.maxJSONDepth) levels")
        }
        do { try result.validate() } catch { throw .field(.result, error) }
    }

    /// Validates and decodes frames (identity already removed): the header, the command, the
    /// payload's nesting, its decoding, then every field against `ProtocolLimits`.
    public static func decode(_ frames: [[UInt8]]) throws(DecodeError) -> Message {
        guard frames.count == 3 else { throw .frameCount(frames.count) }
        guard frames[0] == Protocol.header else {
            if frames[0].count == 4, frames[0].starts(with: Array("SWP".utf8)) { throw .version(String(decoding: frames[0].suffix(1), as: UTF8.self)) }
            throw .header
        }
        guard frames[1].count <= 16, let command = Command(rawValue: String(decoding: frames[1], as: UTF8.self)) else {
            throw .unknownCommand(String(decoding: frames[1].prefix(40), as: UTF8.self))
        }
        guard jsonDepth(frames[2], limit: ProtocolLimits.maxJSONDepth) <= ProtocolLimits.maxJSONDepth else {
            throw .payload(command, "JSON nested deeper than \(ProtocolLimits.maxJSONDepth) levels")
        }
        let data = Data(frames[2])
        func d<T: Decodable & ValidatedPayload>(_: T.Type) throws(DecodeError) -> T {
            let value: T
            do { value = try decoder.decode(T.self, from: data) } catch { throw .payload(command, "\(error)") }
            do { try value.validate() } catch { throw .field(command, error) }
            return value
        }
        return switch command {
        case .ready: .ready(try d(Ready.self))
        case .heartbeat: .heartbeat(try d(Heartbeat.self))
        case .progress: .progress(try d(EpochProgress.self))
        case .checkpoint: .checkpoint(try d(CheckpointMessage.self))
        case .result: .result(try d(ResultMessage.self))
        case .bye: .bye(try d(Empty.self))
        case .welcome: .welcome(try d(Welcome.self))
        case .trial: .trial(try d(Assignment.self))
        case .cancel: .cancel(try d(Cancel.self))
        case .register: .register(try d(Empty.self))
        case .shutdown: .shutdown(try d(Empty.self))
        }
    }
}
