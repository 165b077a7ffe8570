import ArgumentParser
import COpenBLAS
import Foundation
import Learning
import Linalg

/// The network workloads: one epoch on a fixed subset, through `Trainer` as trials run them,
/// next to the same architecture in PyTorch (`torch_reference.py`) in the same run, and both
/// against the single-thread sgemm rate of each side's BLAS measured in that run too.
///
/// Time is measured twice: wall-clock (the trainer's epoch seconds) and the process's CPU
/// seconds from the start of the run to the end of the epoch (the model's construction and the
/// evaluation of 10 test examples included, both negligible). The ratios use CPU seconds: on
/// a machine that others share, wall-clock time measures the load more than the code.
extension EngineBenchmark {
    static let networkWorkloads = ["lenet5", "resnet", "gpt"]

    /// This process's CPU seconds (every thread).
    static func cpuSeconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    /// GFLOP/s of `cblas_sgemm` on an (m × k)·(k × n) product of normal values, best of `repeats`,
    /// timed by `clock` (seconds): the hardware limit the benchmarks' rates are read against.
    static func sgemmRate(m: Int, k: Int, n: Int, repeats: Int, clock: () -> Double = cpuSeconds) -> Double {
        var rng = Xoshiro256(seed: 9)
        var a = [Float](repeating: 0, count: m * k), b = [Float](repeating: 0, count: k * n), c = [Float](repeating: 0, count: m * n)
        a.withUnsafeMutableBufferPointer { rng.fillNormal($0) }
        b.withUnsafeMutableBufferPointer { rng.fillNormal($0) }
        var best = Double.infinity
        for _ in 0..<repeats {
            let start = clock()
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blasint(m), blasint(n), blasint(k), 1, a, blasint(k), b, blasint(n), 0, &c, blasint(n))
            best = min(best, clock() - start)
        }
        return 2 * Double(m * k * n) / best / 1e9
    }

    /// A workload's trial settings, its data (the timed subset) and a description for the table.
    func networkTrial(_ workload: String) throws -> (config: TrialConfig, data: DataSplits, batch: Int, description: String)? {
        var values: [String: ConfigValue] = [
            "model": .string(workload), "optimizer": .string("adamw"), "lr": .double(1e-3), "batch_size": .int(batchSize), "eval_batch_size": .int(10),
        ]
        switch workload {
        case "lenet5":
            values["activation"] = .string("relu")
            values["pool"] = .string("max")
            let data = try DataSource.fashionMNIST.load(trainLimit: lenetLimit > 0 ? lenetLimit : nil, testLimit: 10)
            return (TrialConfig(values: values), data, batchSize, "LeNet-5 (ReLU, max pool), Fashion-MNIST, batch \(batchSize)")
        case "resnet":
            values["depth"] = .int(resnetDepth)
            values["width"] = .int(16)
            let data = try DataSource.fashionMNIST.load(trainLimit: resnetLimit, testLimit: 10)
            return (TrialConfig(values: values), data, batchSize, "ResNet-\(resnetDepth) (width 16), Fashion-MNIST, batch \(batchSize)")
        case "gpt":
            guard let text else {
                print("gpt: skipped (give --text FILE)")
                return nil
            }
            values.merge(
                [
                    "data": .string("text:\(text)"), "block_size": .int(blockSize), "batch_size": .int(gptBatch), "n_layer": .int(4), "n_head": .int(4),
                    "n_embd": .int(128), "dropout": .double(0), "tied": .bool(true),
                ], uniquingKeysWith: { $1 })
            let data = try DataSource.text(text).load(trainLimit: gptLimit, testLimit: 10, text: TextOptions(blockSize: blockSize))
            return (TrialConfig(values: values), data, gptBatch, "GPT 4 layers, 4 heads, width 128, block \(blockSize), bytes, batch \(gptBatch)")
        default:
            return nil
        }
    }

    struct NetworkRow {
        var workload: String
        var description: String
        var samples: Int
        var steps: Int
        var macsPerExample: Int
        var wall: Double
        var cpu: Double
        var torchWall: Double?
        var torchCPU: Double?
        /// Training FLOPs of the epoch: 3 × forward (forward, input and weight gradients), 2 per MAC.
        var flops: Double { 6 * Double(macsPerExample) * Double(samples) }
    }

    func measureNetworks(_ workloads: [String]) throws {
        print("engine: \(BLASRuntime.summary), \(threads) thread(s)")
        let peak = Self.sgemmRate(m: 1024, k: 1024, n: 1024, repeats: 5)
        print("sgemm 1024³ (OpenBLAS, this run): \(fmt(peak, 1)) GFLOP/s")
        var rows: [NetworkRow] = []
        for workload in workloads {
            guard let (config, data, batch, description) = try networkTrial(workload) else { continue }
            let model: any Model<Float> = try Builders.model(config, data: data.train.shape)
            var wall = Double.infinity, cpu = Double.infinity
            for _ in 0..<repeats {
                let start = Self.cpuSeconds()
                var end = start
                let result = try Trainer.run(config, data: data, onEpoch: { _ in end = Self.cpuSeconds() })
                guard result.status == .done, let epoch = result.history.first else { throw ValidationError("\(workload): \(result.status) \(result.message ?? "")") }
                wall = min(wall, epoch.seconds)
                cpu = min(cpu, end - start)
            }
            let steps = (data.train.count + batch - 1) / batch
            let row = NetworkRow(
                workload: workload, description: description, samples: data.train.count, steps: steps, macsPerExample: model.forwardMACsPerExample, wall: wall, cpu: cpu)
            print("\(workload): \(row.samples) examples in \(steps) steps: \(fmt(wall, 2)) s wall, \(fmt(cpu, 2)) s CPU, ≈\(fmt(row.flops / cpu / 1e9, 1)) GFLOP/s")
            rows.append(row)
        }
        var torchPeak: Double?
        if torchImportable() {
            var arguments = [
                "--threads", String(threads), "--batch-size", String(batchSize), "--workloads", rows.map(\.workload).joined(separator: ","), "--repeats", String(repeats),
                "--limit", String(lenetLimit), "--resnet-limit", String(resnetLimit), "--resnet-depth", String(resnetDepth), "--block-size", String(blockSize),
                "--gpt-batch", String(gptBatch), "--gpt-limit", String(gptLimit), "--sgemm",
            ]
            if let text { arguments += ["--text", text] }
            for object in try pythonJSONLines("torch_reference.py", arguments) {
                guard let workload = object["workload"] as? String else { continue }
                if workload == "sgemm" {
                    torchPeak = object["gflops"] as? Double
                    continue
                }
                guard let i = rows.firstIndex(where: { $0.workload == workload }), let wall = object["seconds"] as? Double, let cpu = object["cpu_seconds"] as? Double else { continue }
                if let samples = object["samples"] as? Int, samples != rows[i].samples { print("PyTorch \(workload): \(samples) examples, not \(rows[i].samples)") }
                rows[i].torchWall = wall
                rows[i].torchCPU = cpu
                print("PyTorch \(object["torch"] ?? "?") \(workload): \(fmt(wall, 2)) s wall, \(fmt(cpu, 2)) s CPU")
            }
        }
        print("")
        print("sgemm 1024³, one thread: OpenBLAS \(fmt(peak, 1)) GFLOP/s" + (torchPeak.map { ", PyTorch (torch.mm) \(fmt($0, 1)) GFLOP/s" } ?? ""))
        print("")
        print(
            "| workload | examples (steps) | MFLOP per example | ms per step (CPU) | PyTorch ms per step (CPU) | speed vs PyTorch | GFLOP/s | % of sgemm | PyTorch GFLOP/s | wall s (ours / PyTorch) |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in rows {
            let gflops = r.flops / r.cpu / 1e9
            let torchStep = r.torchCPU.map { fmt($0 / Double(r.steps) * 1e3, 1) } ?? "n/a"
            let speed = r.torchCPU.map { fmt($0 / r.cpu, 2) + "×" } ?? "n/a"
            let torchRate = r.torchCPU.map { fmt(r.flops / $0 / 1e9, 1) } ?? "n/a"
            let walls = "\(fmt(r.wall, 1)) / " + (r.torchWall.map { fmt($0, 1) } ?? "n/a")
            print(
                "| \(r.description) | \(r.samples) (\(r.steps)) | \(fmt(6 * Double(r.macsPerExample) / 1e6, 1)) | \(fmt(r.cpu / Double(r.steps) * 1e3, 1)) | \(torchStep) | \(speed) | \(fmt(gflops, 1)) | \(fmt(100 * gflops / peak, 0))% | \(torchRate) | \(walls) |"
            )
        }
    }
}
