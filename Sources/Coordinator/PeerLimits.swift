import Foundation

/// Per-peer message budgets: a token bucket per ZeroMQ identity, charged before a message is
/// decoded, so a peer that floods the coordinator costs it one dictionary lookup per message and
/// cannot starve the others (ROUTER queues each peer's messages separately and reads them in
/// turn). Large messages cost more: one token per started 64 KiB.
public struct PeerLimiter {
    public struct Bucket {
        var tokens: Double
        var last: Double
        /// Messages dropped since the last report.
        var dropped = 0
    }

    /// Sustained messages per second, and the burst a peer may send at once.
    public let rate: Double
    public let burst: Double
    public private(set) var buckets: [[UInt8]: Bucket] = [:]
    /// Peers are forgotten after this long without a message (bounds the table's size).
    public let idleSeconds = 30.0
    private var lastSweep = 0.0
    /// Peers with dropped messages not yet reported (the report looks at these, not at every peer).
    private var dropping: Set<[UInt8]> = []

    public init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = burst
    }

    /// Whether the peer may send this message now. An `essential` message (a registered
    /// worker's RESULT, READY or BYE: dropping one would strand a trial) may run the bucket into
    /// debt down to −burst, so a flood of them is still bounded.
    public mutating func admit(_ identity: [UInt8], bytes: Int, now t: Double, essential: Bool = false) -> Bool {
        let cost = 1 + Double(bytes >> 16)
        var b = buckets[identity] ?? Bucket(tokens: burst, last: t)
        b.tokens = min(burst, b.tokens + (t - b.last) * rate)
        b.last = t
        let admitted = b.tokens >= (essential ? cost - burst : cost)
        if admitted {
            b.tokens -= cost
        } else {
            b.dropped += 1
            dropping.insert(identity)
        }
        buckets[identity] = b
        if t - lastSweep > idleSeconds {
            lastSweep = t
            buckets = buckets.filter { t - $0.value.last < idleSeconds }
        }
        return admitted
    }

    /// Peers whose messages were dropped since the last call, and how many.
    public mutating func takeDropped() -> [(identity: [UInt8], count: Int)] {
        var out: [([UInt8], Int)] = []
        for k in dropping {
            guard let b = buckets[k], b.dropped > 0 else { continue }
            out.append((k, b.dropped))
            buckets[k]?.dropped = 0
        }
        dropping.removeAll(keepingCapacity: true)
        return out.map { (identity: $0.0, count: $0.1) }
    }
}

/// Log lines about rejected input, at most `perWindow` per kind in each window; what is held
/// back is counted and reported with the next line of that kind that gets through.
public struct RateLimitedLog {
    public let perWindow: Int
    public let window: Double
    private var kinds: [String: (start: Double, lines: Int, suppressed: Int)] = [:]

    public init(perWindow: Int = 5, window: Double = 10) {
        self.perWindow = perWindow
        self.window = window
    }

    /// The line to log now (with a count of the lines held back before it), or nil.
    public mutating func line(_ kind: String, _ text: @autoclosure () -> String, now t: Double) -> String? {
        var k = kinds[kind] ?? (start: t, lines: 0, suppressed: 0)
        if t - k.start >= window { k = (start: t, lines: 0, suppressed: k.suppressed) }
        guard k.lines < perWindow else {
            k.suppressed += 1
            kinds[kind] = k
            return nil
        }
        k.lines += 1
        let held = k.suppressed
        k.suppressed = 0
        kinds[kind] = k
        if kinds.count > 1024 { kinds = kinds.filter { t - $0.value.start < window } }
        return held > 0 ? "\(text()) (and \(held) more like it not shown)" : text()
    }
}
