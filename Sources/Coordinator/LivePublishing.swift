import Foundation
import SweepCore
import Telemetry

/// What the event loop shows outside itself, at a bounded pace (`Options.publishInterval`): a
/// `LiveStatus` for the dashboard and a sample of the Prometheus metrics. Both are built from
/// the loop's own state on its own thread and handed over whole; nothing here waits for a reader.
extension Coordinator {
    /// Points kept of one running trial's progress: beyond it every other one is dropped, so a
    /// trial of a million steps costs the same as one of a few thousand.
    static let maxLivePoints = 2000

    /// A running trial's accepted progress record (`SweepState.Effects.progressed`). A record at
    /// or before the last one kept starts a new attempt's curve (a retry, a resume).
    func observe(_ trial: Int, _ record: EpochRecord) {
        let point = LiveStatus.Point(
            epoch: Double(record.epoch), trainLoss: record.trainLoss, testLoss: record.testLoss, testAccuracy: record.testAccuracy,
            objective: sweep.objective.value(in: record))
        var points = liveCurves[trial] ?? []
        while let last = points.last, last.epoch >= point.epoch { points.removeLast() }
        points.append(point)
        if points.count > Self.maxLivePoints { points = points.enumerated().filter { $0.offset % 2 == 1 || $0.offset == points.count - 1 }.map(\.element) }
        liveCurves[trial] = points
    }

    /// Publishes the status and the metrics' sample (each only when asked for).
    func publish(now t: Double, finished: Bool = false) {
        lastPublish = t
        if let metrics = options.metrics { metrics.record(metricsSample()) }
        guard let feed = options.live else { return }
        publishedSequence += 1
        feed.publish(liveStatus(now: t, finished: finished))
    }

    func metricsSample() -> SweepMetrics.Sample {
        var s = SweepMetrics.Sample()
        s.trials = state.counts()
        s.trialsPlanned = state.total
        s.leasesOutstanding = state.inFlight
        s.workersConnected = state.workers.count
        s.workersLost = state.workersLost
        s.workersReplaced = localWorkers?.restarts ?? 0
        s.messagesReceived = messagesReceived
        s.messagesSent = messagesSent
        s.messagesRejected = state.rejectedByKind
        s.connectionsRefused = refusedConnections
        return s
    }

    func liveStatus(now t: Double, finished: Bool) -> LiveStatus {
        // Curves of trials no longer leased are dropped: their committed history takes over.
        for i in liveCurves.keys where state.states[i] != .leased { liveCurves[i] = nil }
        let counts = state.counts()
        var holder: [String: String] = [:]
        let workers = state.workers.values.sorted { ($0.host, $0.name) < ($1.host, $1.name) }.map { w in
            let trials = w.leases.map(\.trial).sorted()
            for id in trials { holder[id] = w.name }
            return LiveStatus.Worker(name: w.name, host: w.host, slots: w.slots, threads: w.threads, kernel: w.kernel, trials: trials, silentSeconds: max(0, t - w.lastSeen))
        }
        let running = state.leased.sorted().map { i in
            let trial = state.trials[i]
            return LiveStatus.RunningTrial(
                id: trial.id, branch: trial.branch, worker: holder[trial.id] ?? "", length: state.lengths[i],
                unit: trial.config.isToyObjective ? "step" : "epoch", points: liveCurves[i] ?? [])
        }
        let departed = state.departures.map { LiveStatus.Departure(name: $0.worker.name, host: $0.worker.host, reason: $0.reason, at: $0.at - started) }
        let finishedTrials = state.finishedCount
        return LiveStatus(
            sweep: sweep.name, objectiveMetric: sweep.objective.metric, maximize: sweep.objective.maximize, search: sweep.search?.algorithm.rawValue,
            total: state.total, counts: counts, elapsedSeconds: t - started,
            etaSeconds: ProgressDisplay.eta(finished: finishedTrials, total: state.total, elapsed: t - started), best: state.best(), workers: workers,
            departed: departed, workersLost: state.workersLost, workersReplaced: localWorkers?.restarts ?? 0, running: running, committed: state.committed.count, finished: finished,
            sequence: publishedSequence)
    }
}
