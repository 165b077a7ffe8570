import Foundation
import HDF5
import Learning
import TestSupport
import Testing

/// Search sweeps through the executables: a TPE search on two local workers, and one whose
/// coordinator is killed with SIGKILL and restarted. Nested in the serialized end-to-end suite so
/// that it never competes with it for the CPU.
extension SweepEndToEndTests {
    @Suite(.serialized) struct SearchSweepTests {
        static func sweep(trials: Int, steps: Int) -> String {
            """
            name: tpe
            seed: 11
            objective: {metric: train_loss, mode: min}
            search:
              algorithm: tpe
              trials: \(trials)
              startup_trials: 6
              params: {lr: {loguniform: [1.0e-5, 1.0e-1]}}
            base: {model: rosenbrock, start: [-1.5, 2], steps: \(steps)}
            optimizers:
              adam:
                search: {params: {beta1: {uniform: [0.5, 0.99]}}}
              sgd:
                search: {params: {momentum: {uniform: [0.0, 0.99]}}}
            """
        }

        /// The journal's suggested trials: (index, id) in order.
        static func suggested(_ dir: String) -> [(index: Int, id: String)] {
            Harness.read("\(dir)/out/leases.journal").split(separator: "\n").compactMap { line in
                guard line.hasPrefix("trial "), let data = line.dropFirst(6).data(using: .utf8),
                    let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let index = object["index"] as? Int, let id = object["id"] as? String
                else { return nil }
                return (index, id)
            }
        }

        static func configs(_ dir: String) throws -> [String: TrialConfig] {
            let file = try HDF5File("\(dir)/out/sweep.h5", mode: .readOnly)
            let byID = try file.group("by_id")
            var out: [String: TrialConfig] = [:]
            for id in try byID.memberNames() { out[id] = try TrialConfig.parse(yaml: try byID.group(id).stringAttribute("config"), source: id) }
            return out
        }

        @Test func aTPESearchRunsItsBudgetOnTwoWorkersWithoutRepeatingAConfiguration() throws {
            let dir = Harness.temporaryDirectory("tpe")
            Harness.write(Self.sweep(trials: 24, steps: 200), to: "\(dir)/s.yaml")
            let p = try Harness.start("sweep-coordinator", ["start", "\(dir)/s.yaml", "--local-workers", "2", "--out", "\(dir)/out", "--plain"], log: "\(dir)/log")
            defer { Harness.stop(p) }
            #expect(Harness.wait(p, timeout: 120))
            let log = Harness.read("\(dir)/log")
            #expect(p.terminationStatus == 0, Comment(rawValue: log))
            #expect(log.contains("24 trials (tpe search)"), Comment(rawValue: log))

            let rows = try Harness.trials("\(dir)/out")
            #expect(rows.count == 24)
            #expect(rows.allSatisfy { ["done", "diverged"].contains($0.status) }, "\(rows.map(\.status))")
            let journal = Self.suggested(dir)
            #expect(journal.map(\.index) == Array(0..<24))
            #expect(Set(journal.map(\.id)) == Set(rows.map(\.id)))
            // Each entry samples its own keys only, within their distributions.
            for (id, config) in try Self.configs(dir) {
                let lr = try #require(config.values["lr"]?.asDouble)
                #expect(lr >= 1e-5 && lr <= 1e-1, "\(id)")
                switch config.values["optimizer"] {
                case .string("adam")?: #expect(config.values["beta1"] != nil && config.values["momentum"] == nil, "\(id)")
                case .string("sgd")?: #expect(config.values["momentum"] != nil && config.values["beta1"] == nil, "\(id)")
                default: Issue.record("\(id): optimizer \(String(describing: config.values["optimizer"]))")
                }
            }
        }

        @Test func tpeThroughASHARungsIsBOHB() throws {
            let dir = Harness.temporaryDirectory("bohb")
            Harness.write(
                Self.sweep(trials: 30, steps: 270).replacingOccurrences(of: "seed: 11", with: "seed: 11\nearly_stopping: {rule: asha, min_epochs: 10, reduction_factor: 3}"),
                to: "\(dir)/s.yaml")
            let p = try Harness.start("sweep-coordinator", ["start", "\(dir)/s.yaml", "--local-workers", "2", "--out", "\(dir)/out", "--plain"], log: "\(dir)/log")
            defer { Harness.stop(p) }
            #expect(Harness.wait(p, timeout: 120))
            let log = Harness.read("\(dir)/log")
            #expect(p.terminationStatus == 0, Comment(rawValue: log))
            // The model is fitted on a rung before enough trials have run to their end.
            #expect(log.contains("search: modelled on ASHA's rung"), Comment(rawValue: log))
            #expect(log.contains("ASHA: promoting"), Comment(rawValue: log))
            let rows = try Harness.trials("\(dir)/out")
            #expect(rows.count == 30)
            let stopped = rows.filter { $0.status == "stopped" }.count
            #expect(stopped >= 10 && rows.contains { $0.status == "done" }, "\(rows.map(\.status))")
            #expect(Self.suggested(dir).map(\.index) == Array(0..<30))
        }

        @Test func aSearchKilledWithSIGKILLContinuesTheSameSearchAfterARestart() throws {
            let dir = Harness.temporaryDirectory("tpe-kill")
            // Long enough trials (tenths of a second each) that the kill lands mid-search.
            Harness.write(Self.sweep(trials: 16, steps: 200_000), to: "\(dir)/s.yaml")
            let arguments = ["start", "\(dir)/s.yaml", "--local-workers", "1", "--out", "\(dir)/out", "--plain"]
            let first = try Harness.start("sweep-coordinator", arguments, log: "\(dir)/log1")
            defer { Harness.stop(first) }
            // Killed once 8 trials have ended: the log says so at once (the index on disk follows
            // within seconds, so it may list fewer); what it lists must not run again.
            var committed: [(id: String, status: String, attempts: Int64, trainLoss: Double, file: String)] = []
            var endedAtKill = 0
            let deadline = Date().addingTimeInterval(120)
            while Date() < deadline && first.isRunning {
                usleep(50_000)
                endedAtKill = Harness.endedTrials(log: "\(dir)/log1")
                if endedAtKill >= 8 {
                    committed = (try? Harness.trials("\(dir)/out")) ?? []
                    break
                }
            }
            #expect(first.isRunning, Comment(rawValue: Harness.read("\(dir)/log1")))
            kill(first.processIdentifier, SIGKILL)
            first.waitUntilExit()
            let before = Self.suggested(dir)
            #expect(endedAtKill >= 8 && endedAtKill < 16 && committed.count < 16, "\(endedAtKill) ended, \(committed.count) in the index")
            // Its orphaned local worker gives up on its own; the restart brings a new one.
            let second = try Harness.start("sweep-coordinator", arguments, log: "\(dir)/log2")
            defer { Harness.stop(second) }
            #expect(Harness.wait(second, timeout: 180))
            let log = Harness.read("\(dir)/log2")
            #expect(second.terminationStatus == 0, Comment(rawValue: log))
            #expect(log.contains("suggested before the restart"), Comment(rawValue: log))

            let after = Self.suggested(dir)
            let rows = try Harness.trials("\(dir)/out")
            #expect(rows.count == 16, "the budget is the search's, across restarts")
            #expect(Set(rows.map(\.id)).count == 16)
            // Every trial suggested before the kill keeps its number and configuration; what was
            // committed stays committed (run once).
            #expect(Array(after.prefix(before.count)).map(\.id) == before.map(\.id))
            #expect(after.map(\.index) == Array(0..<16))
            for c in committed { #expect(rows.first { $0.id == c.id }?.attempts == c.attempts, "\(c.id) ran again") }
        }
    }
}

extension SweepEndToEndTests {
    /// A trial whose loss passes 1e300 before it overflows ends `diverged`, and the worker goes on
    /// to its next trial (it used to wait for ever on a result it could not decode itself).
    @Suite(.serialized) struct SlowDivergenceTests {
        @Test func aLossPast1e300IsADivergenceNotAStall() throws {
            let dir = Harness.temporaryDirectory("slow-divergence")
            Harness.write(
                """
                name: big
                objective: {metric: train_loss, mode: min}
                base: {model: quadratic, curvatures: [1, 1000], steps: 2000, optimizer: sgd}
                grid: {lr: [0.0025, 0.001]}
                """, to: "\(dir)/s.yaml")
            let p = try Harness.start("sweep-coordinator", ["start", "\(dir)/s.yaml", "--local-workers", "1", "--out", "\(dir)/out", "--plain"], log: "\(dir)/log")
            defer { Harness.stop(p) }
            #expect(Harness.wait(p, timeout: 60))
            let log = Harness.read("\(dir)/log")
            #expect(p.terminationStatus == 0, Comment(rawValue: log))
            let statuses = try Harness.trials("\(dir)/out").map(\.status).sorted()
            #expect(statuses == ["diverged", "done"], Comment(rawValue: log))
            #expect(!log.contains("rejected"), Comment(rawValue: log))
        }
    }
}
