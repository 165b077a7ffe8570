import Foundation
import Prometheus

/// The coordinator's Prometheus metrics, served at the dashboard's `/metrics` in Prometheus'
/// text format. Each name, its help text and its buckets are defined here alone
/// (docs/running-sweeps.md lists them).
///
/// The event loop never touches a metric per message: it keeps plain counts and hands them over
/// in a `Sample` when it publishes its status (a few times a second); counters then grow by the
/// difference from the last sample. Commit and index latencies are recorded as they complete.
public final class SweepMetrics: @unchecked Sendable {
    /// The metrics' names: one definition each.
    public enum Name {
        public static let trials = "sweep_trials"
        public static let trialsPlanned = "sweep_trials_planned"
        public static let leasesOutstanding = "sweep_leases_outstanding"
        public static let workersConnected = "sweep_workers_connected"
        public static let workersLost = "sweep_workers_lost_total"
        public static let workersReplaced = "sweep_workers_replaced_total"
        public static let messagesReceived = "sweep_messages_received_total"
        public static let messagesSent = "sweep_messages_sent_total"
        public static let messagesRejected = "sweep_messages_rejected_total"
        public static let connectionsRefused = "sweep_connections_refused_total"
        public static let commitSeconds = "sweep_commit_seconds"
        public static let indexRebuildSeconds = "sweep_index_rebuild_seconds"
    }

    /// Latency buckets (seconds) of group commits and index rebuilds: 1 ms to 30 s.
    public static let secondsBuckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

    /// Cumulative counts and current levels, as the event loop sees them.
    public struct Sample: Sendable, Equatable {
        /// Trials by status (as the sweep index names them).
        public var trials: [String: Int] = [:]
        public var trialsPlanned = 0
        public var leasesOutstanding = 0
        public var workersConnected = 0
        public var workersLost = 0
        public var workersReplaced = 0
        public var messagesReceived = 0
        public var messagesSent = 0
        /// Messages not used, by reason (`decode`, `rate`, `result`, …).
        public var messagesRejected: [String: Int] = [:]
        public var connectionsRefused = 0

        public init() {}
    }

    public let registry: PrometheusCollectorRegistry
    private let lock = NSLock()
    private var last = Sample()
    private var trialGauges: [String: Gauge] = [:]
    private var rejectedCounters: [String: Counter] = [:]
    private let trialsPlanned, leasesOutstanding, workersConnected: Gauge
    private let workersLost, workersReplaced, messagesReceived, messagesSent, connectionsRefused: Counter
    private let commitSeconds, indexRebuildSeconds: ValueHistogram

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        trialsPlanned = registry.makeGauge(descriptor: Self.describe(Name.trialsPlanned, "Trials the sweep will have run in all (a search's budget)."))
        leasesOutstanding = registry.makeGauge(descriptor: Self.describe(Name.leasesOutstanding, "Trials leased to a worker or waiting for their group commit."))
        workersConnected = registry.makeGauge(descriptor: Self.describe(Name.workersConnected, "Workers registered now."))
        workersLost = registry.makeCounter(descriptor: Self.describe(Name.workersLost, "Workers declared lost after a silence of --dead-after seconds."))
        workersReplaced = registry.makeCounter(descriptor: Self.describe(Name.workersReplaced, "Local workers that died and were started again."))
        messagesReceived = registry.makeCounter(descriptor: Self.describe(Name.messagesReceived, "Messages read off the coordinator's socket."))
        messagesSent = registry.makeCounter(descriptor: Self.describe(Name.messagesSent, "Messages the coordinator sent."))
        connectionsRefused = registry.makeCounter(descriptor: Self.describe(Name.connectionsRefused, "Connections refused at the door (keys not allowed, plaintext, failed handshakes)."))
        commitSeconds = registry.makeValueHistogram(descriptor: Self.describe(Name.commitSeconds, "Seconds per group commit (write, fsync, rename)."), buckets: Self.secondsBuckets)
        indexRebuildSeconds = registry.makeValueHistogram(descriptor: Self.describe(Name.indexRebuildSeconds, "Seconds per rebuild of the sweep index."), buckets: Self.secondsBuckets)
    }

    /// Brings the metrics to `sample`: levels are set, counters grow by what was added since the
    /// last sample.
    public func record(_ sample: Sample) {
        lock.lock()
        defer { lock.unlock() }
        for status in Set(sample.trials.keys).union(trialGauges.keys) {
            let gauge = trialGauges[status] ?? registry.makeGauge(descriptor: Self.describe(Name.trials, "Trials by status."), labels: [("status", status)])
            trialGauges[status] = gauge
            gauge.set(to: Double(sample.trials[status] ?? 0))
        }
        trialsPlanned.set(to: Double(sample.trialsPlanned))
        leasesOutstanding.set(to: Double(sample.leasesOutstanding))
        workersConnected.set(to: Double(sample.workersConnected))
        func grow(_ counter: Counter, _ now: Int, _ before: Int) { if now > before { counter.increment(by: Int64(now - before)) } }
        grow(workersLost, sample.workersLost, last.workersLost)
        grow(workersReplaced, sample.workersReplaced, last.workersReplaced)
        grow(messagesReceived, sample.messagesReceived, last.messagesReceived)
        grow(messagesSent, sample.messagesSent, last.messagesSent)
        grow(connectionsRefused, sample.connectionsRefused, last.connectionsRefused)
        for (reason, count) in sample.messagesRejected {
            let counter =
                rejectedCounters[reason] ?? registry.makeCounter(descriptor: Self.describe(Name.messagesRejected, "Messages not used, by reason."), labels: [("reason", reason)])
            rejectedCounters[reason] = counter
            grow(counter, count, last.messagesRejected[reason] ?? 0)
        }
        last = sample
    }

    /// A metric's full name (its unit is in the name) and help text.
    static func describe(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    public func observeCommit(seconds: Double) { commitSeconds.record(seconds) }
    public func observeIndexRebuild(seconds: Double) { indexRebuildSeconds.record(seconds) }

    /// The metrics in Prometheus' text exposition format (version 0.0.4).
    public func exposition() -> String { registry.emitToString() }

    /// The content type of `exposition()`.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"
}
