import Foundation

/// A running sweep as its coordinator sees it: progress, workers, the trials running now with
/// the epochs they have reported so far. The coordinator's event loop builds one at a bounded
/// rate and publishes it through a `LiveFeed`; the dashboard reads the latest one on its own
/// threads (it never touches the loop's state). An immutable value: publishing swaps it whole.
public struct LiveStatus: Sendable {
    /// A registered worker and what it runs.
    public struct Worker: Sendable, Equatable {
        public var name: String
        public var host: String
        public var slots: Int
        public var threads: Int
        /// The OpenBLAS kernel it chose.
        public var kernel: String
        /// Ids of the trials it holds leases for.
        public var trials: [String]
        /// Seconds since its last message.
        public var silentSeconds: Double

        public init(name: String, host: String, slots: Int, threads: Int, kernel: String, trials: [String], silentSeconds: Double) {
            self.name = name
            self.host = host
            self.slots = slots
            self.threads = threads
            self.kernel = kernel
            self.trials = trials
            self.silentSeconds = silentSeconds
        }
    }

    /// A worker that left the sweep: lost (silent too long), left (BYE), unreachable, or a
    /// local worker that died and was replaced.
    public struct Departure: Sendable, Equatable {
        public var name: String
        public var host: String
        public var reason: String
        /// Seconds since the sweep started.
        public var at: Double

        public init(name: String, host: String, reason: String, at: Double) {
            self.name = name
            self.host = host
            self.reason = reason
            self.at = at
        }
    }

    /// One epoch (step) a running trial reported.
    public struct Point: Sendable, Equatable {
        public var epoch: Double
        public var trainLoss: Double
        public var testLoss: Double
        public var testAccuracy: Double
        /// The sweep objective's value (it may be a program's own metric).
        public var objective: Double

        public init(epoch: Double, trainLoss: Double, testLoss: Double, testAccuracy: Double, objective: Double) {
            self.epoch = epoch
            self.trainLoss = trainLoss
            self.testLoss = testLoss
            self.testAccuracy = testAccuracy
            self.objective = objective
        }
    }

    /// A trial with a live lease and the progress its worker streamed.
    public struct RunningTrial: Sendable, Equatable {
        public var id: String
        public var branch: String
        public var worker: String
        /// Its length, in `unit`s: epochs, or steps for toy objectives.
        public var length: Int
        public var unit: String
        public var points: [Point]

        public init(id: String, branch: String, worker: String, length: Int, unit: String, points: [Point]) {
            self.id = id
            self.branch = branch
            self.worker = worker
            self.length = length
            self.unit = unit
            self.points = points
        }
    }

    public var sweep: String
    public var objectiveMetric: String
    public var maximize: Bool
    /// The search algorithm, for an adaptive sweep.
    public var search: String?
    /// Trials the sweep will have run in all (a search's budget).
    public var total: Int
    /// Trials by status, as the sweep index names them.
    public var counts: [String: Int]
    public var elapsedSeconds: Double
    public var etaSeconds: Double?
    public var best: (id: String, value: Double)?
    public var workers: [Worker]
    /// The latest departures, newest last (bounded).
    public var departed: [Departure]
    /// Workers declared lost so far, and local workers started again after dying.
    public var workersLost: Int
    public var workersReplaced: Int
    public var running: [RunningTrial]
    /// Trials committed so far: when it changes, the results on disk have changed.
    public var committed: Int
    /// The sweep is over (every trial committed, or it was interrupted).
    public var finished: Bool
    /// Increases with each published status.
    public var sequence: Int

    public init(
        sweep: String, objectiveMetric: String, maximize: Bool, search: String?, total: Int, counts: [String: Int], elapsedSeconds: Double, etaSeconds: Double?,
        best: (id: String, value: Double)?, workers: [Worker], departed: [Departure], workersLost: Int = 0, workersReplaced: Int = 0,
        running: [RunningTrial], committed: Int, finished: Bool, sequence: Int
    ) {
        self.sweep = sweep
        self.objectiveMetric = objectiveMetric
        self.maximize = maximize
        self.search = search
        self.total = total
        self.counts = counts
        self.elapsedSeconds = elapsedSeconds
        self.etaSeconds = etaSeconds
        self.best = best
        self.workers = workers
        self.departed = departed
        self.workersLost = workersLost
        self.workersReplaced = workersReplaced
        self.running = running
        self.committed = committed
        self.finished = finished
        self.sequence = sequence
    }
}

/// Where the event loop publishes its `LiveStatus` and readers take the latest: a value swapped
/// under a lock held only for the swap, so a reader can never hold up the loop.
public final class LiveFeed: @unchecked Sendable {
    private let lock = NSLock()
    private var status: LiveStatus?

    public init() {}

    public func publish(_ status: LiveStatus) {
        lock.lock()
        self.status = status
        lock.unlock()
    }

    /// The latest status, nil before the first.
    public var latest: LiveStatus? {
        lock.lock()
        defer { lock.unlock() }
        return status
    }
}
