import Foundation
import Learning
import Results
import Transport

/// What a checkpoint from a worker must be: a checkpoint file (HDF5, our format) of this trial's
/// configuration (its length aside, as on resume) at the epoch the message names.
public struct CheckpointExpectation {
    public var config: TrialConfig
    public var epoch: Int
    public var lease: Lease

    public init(config: TrialConfig, epoch: Int, lease: Lease) {
        self.config = config
        self.epoch = epoch
        self.lease = lease
    }

    /// Why the file at `path` is not that checkpoint, or nil.
    func problem(with path: String) -> String? {
        let checkpoint: TrainingCheckpoint
        do { checkpoint = try CheckpointFile.read(path) } catch { return "not a readable checkpoint: \(error)" }
        guard checkpoint.epoch == epoch else { return "the file is at epoch \(checkpoint.epoch), the message says \(epoch)" }
        do { try CheckpointPolicy.check(checkpoint, against: config) } catch { return "not this trial's checkpoint: \(error)" }
        return nil
    }
}

/// Work for the results writer.
public enum ResultsJob {
    case commit([FinishedTrial])
    case index(metadata: [String: String], text: String, rows: [IndexRow])
    /// A trial's latest checkpoint file (HDF5 bytes from a worker), written durably once it
    /// proves to be a checkpoint of that trial at that epoch.
    case checkpoint(id: String, bytes: Data, expect: CheckpointExpectation)
    /// Deletes a finished trial's checkpoint.
    case prune(id: String)
}

/// The coordinator's disk side on its own thread: group commits (write, fsync, rename) and index
/// rebuilds run here so the event loop keeps dispatching while a commit waits for the disk.
/// It is the only thread that writes HDF5 once the sweep runs; a watched dashboard reads the
/// committed files meanwhile only when the library is thread-safe (`HDF5Library.isThreadSafe`).
final class ResultsWriter: @unchecked Sendable {
    typealias Job = ResultsJob

    enum Completion {
        case committed([FinishedTrial], [CommittedTrial], seconds: Double)
        case indexed(seconds: Double)
        /// A checkpoint stored (with its epoch) or pruned (nil).
        case checkpointed(String, epoch: Int?)
        case checkpointRejected(Lease, String)
        case failed(any Error)
    }

    private let store: SweepStore
    private let condition = NSCondition()
    private var jobs: [Job] = []
    private var completions: [Completion] = []
    private var running = false
    private var stopped = false
    private var commitsQueued = 0
    private var indexesQueued = 0
    var commitInFlight: Bool { condition.lock(); defer { condition.unlock() }; return commitsQueued > 0 }
    var indexInFlight: Bool { condition.lock(); defer { condition.unlock() }; return indexesQueued > 0 }

    init(store: SweepStore) {
        self.store = store
        let thread = Thread { [unowned self] in self.loop() }
        thread.name = "results-writer"
        thread.start()
    }

    func submit(_ job: Job) {
        condition.lock()
        switch job {
        case .commit: commitsQueued += 1
        case .index: indexesQueued += 1
        case .checkpoint, .prune: break
        }
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Finished jobs since the last call.
    func take() -> [Completion] {
        condition.lock()
        defer { condition.unlock() }
        let c = completions
        completions.removeAll()
        return c
    }

    /// Blocks until every submitted job has finished.
    func drain() {
        condition.lock()
        while !jobs.isEmpty || running { condition.wait() }
        condition.unlock()
    }

    func stop() {
        condition.lock()
        stopped = true
        condition.signal()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopped { condition.wait() }
            if jobs.isEmpty && stopped {
                condition.unlock()
                return
            }
            let job = jobs.removeFirst()
            running = true
            condition.unlock()

            let started = Date()
            let completion: Completion
            do {
                switch job {
                case .commit(let trials):
                    try store.commit(trials)
                    completion = .committed(trials, trials.compactMap { store.committed[$0.id] }, seconds: -started.timeIntervalSinceNow)
                case .index(let metadata, let text, let rows):
                    try store.writeIndex(metadata: metadata, sweepText: text, rows: rows)
                    completion = .indexed(seconds: -started.timeIntervalSinceNow)
                case .checkpoint(let id, let bytes, let expect):
                    if let problem = try store.saveCheckpoint(id: id, bytes: bytes, check: { expect.problem(with: $0) }) {
                        completion = .checkpointRejected(expect.lease, problem)
                    } else {
                        completion = .checkpointed(id, epoch: expect.epoch)
                    }
                case .prune(let id):
                    store.deleteCheckpoint(id: id)
                    completion = .checkpointed(id, epoch: nil)
                }
            } catch {
                completion = .failed(error)
            }
            condition.lock()
            switch job {
            case .commit: commitsQueued -= 1
            case .index: indexesQueued -= 1
            case .checkpoint, .prune: break
            }
            completions.append(completion)
            running = false
            condition.broadcast()
            condition.unlock()
        }
    }
}
