import Foundation
import HDF5
import Learning
import Results
import TestSupport
import Testing

/// Population-based training through the executables: a population of four on two local workers.
/// Nested in the serialized end-to-end suite so that it never competes with it for the CPU.
extension SweepEndToEndTests {
    @Suite(.serialized) struct PBTSweepTests {
        struct Row {
            var id: String
            var status: String
            var config: TrialConfig
            var member: Int64, generation: Int64, parentEpoch: Int64, exploited: Int64
            var parent: String
            var history: [[Double]]
            var trajectory: [Double]
        }

        /// Histories equal bit for bit in every column but the two wall times (NaN equal to NaN).
        static func same(_ a: [[Double]], _ b: [[Double]]) -> Bool {
            a.count == b.count && zip(a, b).allSatisfy { x, y in (0..<7).allSatisfy { x[$0].bitPattern == y[$0].bitPattern } }
        }

        static func rows(_ dir: String) throws -> [String: Row] {
            let file = try HDF5File("\(dir)/out/sweep.h5", mode: .readOnly)
            let byID = try file.group("by_id")
            var out: [String: Row] = [:]
            for id in try byID.memberNames() {
                let g = try byID.group(id)
                let columns = try EpochRecord.columns.map { try g.readTableColumn("history", field: $0) }
                let history = (0..<(columns.first?.count ?? 0)).map { r in columns.map { $0[r] } }
                out[id] = Row(
                    id: id, status: try g.stringAttribute("status"), config: try TrialConfig.parse(yaml: try g.stringAttribute("config"), source: id),
                    member: try g.attribute("pbt_member", as: Int64.self), generation: try g.attribute("pbt_generation", as: Int64.self),
                    parentEpoch: try g.attribute("pbt_parent_epoch", as: Int64.self), exploited: try g.attribute("pbt_exploited", as: Int64.self),
                    parent: try g.stringAttribute("pbt_parent"), history: history, trajectory: try g.read("trajectory", as: Double.self).values)
            }
            return out
        }

        @Test func membersExploitAndExploreFromExactCopiesOfEachOthersCheckpoints() throws {
            let dir = Harness.temporaryDirectory("pbt")
            Harness.write(
                """
                name: pbt
                seed: 2
                objective: {metric: train_loss, mode: min}
                checkpoints: {keep: last}
                search:
                  algorithm: pbt
                  population: 4
                  interval: 100
                  params:
                    lr: {loguniform: [1.0e-4, 1.0e-1]}
                    beta1: {uniform: [0.5, 0.99]}
                base: {model: rosenbrock, start: [-1.5, 2], steps: 500, optimizer: adam}
                """, to: "\(dir)/s.yaml")
            let arguments = ["start", "\(dir)/s.yaml", "--local-workers", "2", "--out", "\(dir)/out", "--plain"]
            let p = try Harness.start("sweep-coordinator", arguments, log: "\(dir)/log")
            defer { Harness.stop(p) }
            #expect(Harness.wait(p, timeout: 120))
            let log = Harness.read("\(dir)/log")
            #expect(p.terminationStatus == 0, Comment(rawValue: log))
            let rows = try Self.rows(dir)
            #expect(rows.count == 20 && rows.values.allSatisfy { $0.status == "done" }, Comment(rawValue: log))
            #expect(Set(rows.values.map { "\($0.member)/\($0.generation)" }).count == 20)

            var exploited = 0
            for row in rows.values where row.generation > 0 {
                let parent = try #require(rows[row.parent], "\(row.id)'s parent \(row.parent)")
                #expect(parent.generation == row.generation - 1 && row.parentEpoch == 100 * row.generation)
                // Its history and path up to the copy are its parent's, bit for bit.
                #expect(Self.same(Array(row.history.prefix(parent.history.count)), parent.history), "\(row.id)")
                #expect(Array(row.trajectory.prefix(parent.trajectory.count)) == parent.trajectory, "\(row.id)")
                #expect(row.history.map { Int($0[0]) } == Array(1...Int(100 * (row.generation + 1))))
                let lr = try #require(row.config.values["lr"]?.asDouble), beta1 = try #require(row.config.values["beta1"]?.asDouble)
                #expect(lr >= 1e-4 && lr <= 1e-1 && beta1 >= 0.5 && beta1 <= 0.99)
                if row.exploited == 1 {
                    exploited += 1
                    #expect(parent.member != row.member)
                    // It continues the copied state with its explored values exactly as the trainer
                    // does from the parent's stored checkpoint.
                    let checkpoint = try CheckpointFile.read("\(dir)/out/checkpoints/\(parent.id).h5")
                    let again = try Trainer.run(row.config, checkpoints: CheckpointPolicy(resume: checkpoint, mayDiffer: ["lr", "beta1"]))
                    #expect(Self.same(again.history.map(\.row), row.history), "\(row.id)")
                } else {
                    #expect(parent.member == row.member)
                    #expect(parent.config.values.filter { $0.key != "steps" } == row.config.values.filter { $0.key != "steps" })
                }
            }
            // Four generations after the first, the bottom one of four exploiting each time.
            #expect(exploited == 4, Comment(rawValue: log))
            // A member that never exploited ends exactly as one uninterrupted run of its values.
            let lastGeneration = rows.values.filter { $0.generation == 4 }
            var straightRuns = 0
            for row in lastGeneration {
                var chain = [row]
                while let p = rows[chain.last!.parent] { chain.append(p) }
                guard chain.allSatisfy({ $0.exploited == 0 }) else { continue }
                let straight = try Trainer.run(row.config)
                #expect(Self.same(straight.history.map(\.row), row.history), "member \(row.member)")
                straightRuns += 1
            }
            #expect(straightRuns >= 1, "some member never exploited (seed 2)")

            // The report draws the population: each member's ancestry and each key's schedule.
            let report = try Harness.start("sweep-analyze", ["\(dir)/out", "--html", "\(dir)/report.html"], log: "\(dir)/analyze.log")
            #expect(Harness.wait(report, timeout: 60) && report.terminationStatus == 0, Comment(rawValue: Harness.read("\(dir)/analyze.log")))
            let html = Harness.read("\(dir)/report.html")
            for chart in ["pbt-lineage", "pbt-lr", "pbt-beta1"] { #expect(html.contains("id=\"chart-\(chart)\""), "\(chart)") }
            #expect(html.contains("4 exploits"))

            // Started again, the finished sweep reads its generations back and has nothing to do.
            let again = try Harness.start("sweep-coordinator", arguments, log: "\(dir)/log2")
            defer { Harness.stop(again) }
            #expect(Harness.wait(again, timeout: 60))
            let log2 = Harness.read("\(dir)/log2")
            #expect(again.terminationStatus == 0 && log2.contains("20 trials suggested before the restart"), Comment(rawValue: log2))
            #expect(try Self.rows(dir).count == 20)
        }

        @Test func aPopulationKilledWithSIGKILLResumesItsGenerations() throws {
            let dir = Harness.temporaryDirectory("pbt-kill")
            Harness.write(
                """
                name: pbt-kill
                seed: 5
                objective: {metric: train_loss, mode: min}
                search:
                  algorithm: pbt
                  population: 4
                  interval: 15000
                  params: {lr: {loguniform: [1.0e-4, 1.0e-2]}}
                base: {model: rosenbrock, start: [-1.5, 2], steps: 60000, optimizer: adam}
                """, to: "\(dir)/s.yaml")
            let arguments = ["start", "\(dir)/s.yaml", "--local-workers", "1", "--out", "\(dir)/out", "--plain"]
            let first = try Harness.start("sweep-coordinator", arguments, log: "\(dir)/log1")
            defer { Harness.stop(first) }
            let deadline = Date().addingTimeInterval(120)
            // Killed once 6 trials have ended, as its log says (the index on disk lags by seconds).
            var ended = 0
            while Date() < deadline && first.isRunning {
                usleep(50_000)
                ended = Harness.endedTrials(log: "\(dir)/log1")
                if ended >= 6 { break }
            }
            #expect(first.isRunning && ended >= 6 && ended < 16, Comment(rawValue: Harness.read("\(dir)/log1")))
            kill(first.processIdentifier, SIGKILL)
            first.waitUntilExit()
            let second = try Harness.start("sweep-coordinator", arguments, log: "\(dir)/log2")
            defer { Harness.stop(second) }
            #expect(Harness.wait(second, timeout: 180))
            let log = Harness.read("\(dir)/log2")
            #expect(second.terminationStatus == 0, Comment(rawValue: log))
            #expect(log.contains("suggested before the restart"), Comment(rawValue: log))
            let rows = try Self.rows(dir)
            #expect(rows.count == 16 && rows.values.allSatisfy { $0.status == "done" }, Comment(rawValue: log))
            // Every child still continues its parent exactly, across the restart.
            for row in rows.values where row.generation > 0 {
                let parent = try #require(rows[row.parent])
                #expect(Self.same(Array(row.history.prefix(parent.history.count)), parent.history), "\(row.id)")
            }
        }
    }
}
