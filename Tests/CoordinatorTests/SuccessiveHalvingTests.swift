import Foundation
import HDF5
import Learning
import TestSupport
import Testing

/// ASHA on a real sweep through the executables: trials pause at their rungs, the best are
/// promoted and continue from their checkpoints, the rest end `stopped` with the reason.
/// Nested in the serialized end-to-end suite so that it never competes with it for the CPU.
extension SweepEndToEndTests {
    @Suite(.serialized) struct SuccessiveHalvingTests {
        @Test func ashaPromotesTheBestFromTheirCheckpointsAndStopsTheRest() throws {
            let dir = Harness.temporaryDirectory("asha")
            Harness.write(
                """
                name: asha
                early_stopping: {rule: asha, min_epochs: 1, reduction_factor: 3}
                base: {model: mlp, hidden: [16], limit: 1200, test_limit: 300, epochs: 9, optimizer: sgd, momentum: 0.9}
                grid: {lr: [0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005, 0.0002]}
                """, to: "\(dir)/s.yaml")
            let p = try Harness.start("sweep-coordinator", ["start", "\(dir)/s.yaml", "--local-workers", "2", "--out", "\(dir)/out", "--plain"], log: "\(dir)/log")
            #expect(Harness.wait(p, timeout: 180))
            let log = Harness.read("\(dir)/log")
            #expect(p.terminationStatus == 0, Comment(rawValue: log))
            #expect(log.contains("ASHA: promoting"), Comment(rawValue: log))

            let file = try HDF5File("\(dir)/out/sweep.h5", mode: .readOnly)
            let byID = try file.group("by_id")
            var done: [(config: TrialConfig, history: [Double])] = []
            var epochsRun = 0
            for id in try byID.memberNames() {
                let g = try byID.group(id)
                let status = try g.stringAttribute("status"), message = try g.stringAttribute("message")
                let epochs = try g.readTableColumn("history", field: "epoch")
                epochsRun += epochs.count
                // Histories run 1, 2, … without gaps or repeats: promotion continued, it did not restart.
                #expect(epochs == (1...epochs.count).map(Double.init), "\(id): \(epochs)")
                switch status {
                case "done":
                    #expect(epochs.count == 9)
                    let config = try TrialConfig.parse(yaml: try g.stringAttribute("config"), source: id)
                    done.append((config, try g.readTableColumn("history", field: "test_loss")))
                case "stopped":
                    // Stopped at a rung (epoch 1 or 3), saying which rule and why.
                    #expect([1, 3].contains(epochs.count) && message.hasPrefix("ASHA: not promoted from rung"), "\(id): \(epochs.count) \(message)")
                default:
                    Issue.record("\(id) ended \(status): \(message)")
                }
            }
            // Successive halving: at least one trial reached the end, most did not.
            #expect(!done.isEmpty && done.count <= 3, "\(done.count) trials ran to the end")
            #expect(epochsRun < 9 * 9 / 2, "\(epochsRun) epochs run of 81")
            #expect(try file.attribute("count_stopped", as: Int64.self) == Int64(9 - done.count))
            // A trial paused twice and resumed from its checkpoints each time ends exactly as an
            // uninterrupted run of the same configuration.
            for (config, history) in done {
                let straight = try Trainer.run(config)
                #expect(straight.history.map(\.testLoss) == history, "\(config.canonicalJSON)")
            }
        }
    }
}
