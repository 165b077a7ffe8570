import Foundation

/// Durations in a histogram of constant size (log-scale buckets 2^(1/8) apart from 1 µs, so
/// about 9% resolution up to half a minute): how long the event loop's passes take and how late
/// its heartbeats leave, for a sweep of any length.
public struct DurationHistogram: Sendable {
    static let bucketsPerDoubling = 8.0
    static let smallest = 1e-6
    private var counts = [Int](repeating: 0, count: 200)
    public private(set) var count = 0
    public private(set) var maximum = 0.0

    public init() {}

    public mutating func record(_ seconds: Double) {
        count += 1
        maximum = max(maximum, seconds)
        let bucket = seconds <= Self.smallest ? 0 : Int((log2(seconds / Self.smallest) * Self.bucketsPerDoubling).rounded(.up))
        counts[min(counts.count - 1, max(0, bucket))] += 1
    }

    /// The duration below which a fraction `q` of the recorded ones fall (a bucket's upper
    /// bound, at most the maximum); 0 when nothing was recorded.
    public func quantile(_ q: Double) -> Double {
        guard count > 0 else { return 0 }
        let rank = max(1, Int((q * Double(count)).rounded(.up)))
        var seen = 0
        for (k, n) in counts.enumerated() {
            seen += n
            if seen >= rank { return min(maximum, Self.smallest * exp2(Double(k) / Self.bucketsPerDoubling)) }
        }
        return maximum
    }

    /// "p50 a / p99 b / max c ms".
    public var summary: String {
        func ms(_ s: Double) -> String { String(format: "%.1f", s * 1000) }
        return "p50 \(ms(quantile(0.5))) / p99 \(ms(quantile(0.99))) / max \(ms(maximum)) ms"
    }
}
