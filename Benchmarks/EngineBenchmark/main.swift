import ArgumentParser
import COpenBLAS
import Foundation
import Learning
import Linalg

// Choose the OpenBLAS kernel before anything uses BLAS (re-executes the process if needed).
BLASRuntime.selectKernel()

/// One epoch of the documents' models on Fashion-MNIST, timed through the same `Trainer` code
/// path that trials use, side by side with PyTorch in the same run when `torch` is importable.
struct EngineBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "engine-benchmark",
        abstract: "Samples/s and GFLOP/s of one training epoch (MLP, VAE; networks LeNet-5, ResNet, GPT), next to PyTorch.")

    @Option(help: "BLAS threads (and torch threads).") var threads = 1
    @Option(help: "Batch size.") var batchSize = 128
    @Option(help: "Comma-separated workloads: mlp, vae, lenet5, resnet, gpt.") var workloads = "mlp,vae"
    @Option(help: "Epochs to time per workload; the best is reported.") var repeats = 2
    @Flag(help: "Instead of timing: bytes of optimizer state for the VAE, for every optimizer in the catalog.")
    var stateBytes = false
    @Flag(help: "Instead of the engine workloads: VAE epochs with AdamW and with Shampoo refreshing every step (settings below), next to PyTorch's AdamW, the documents' Shampoo and Meta's.")
    var shampoo = false
    @Option(help: "With --shampoo: the settings, `;`-separated, each `optimizer:key=value,…`; the first is the baseline of the ratios.")
    var settings = Self.shampooSettings.joined(separator: ";")
    @Option(help: "With --shampoo: epochs per setting.") var epochs = 3
    @Flag(help: "Instead of the engine workloads: the small float products of blocked preconditioners, the engine's AVX2 kernel next to OpenBLAS.")
    var smallProducts = false
    @Flag(help: "Instead of the engine workloads: one optimizer step on the MLP's and the VAE's parameters for every optimizer, against the sgemm rate and next to PyTorch's optimizers.")
    var optimizers = false
    @Option(help: "With --optimizers: steps timed per optimizer (at least).") var steps = 50
    @Option(help: "With --optimizers: comma-separated optimizers to time (default: all; adamw is always timed, the ratios' base).")
    var only = ""
    @Option(help: "Networks: Fashion-MNIST images per LeNet-5 epoch (0: all 60,000).") var lenetLimit = 12_800
    @Option(help: "Networks: Fashion-MNIST images per ResNet epoch.") var resnetLimit = 1_280
    @Option(help: "Networks: ResNet depth (6n + 2), at width 16.") var resnetDepth = 20
    @Option(help: "Networks: the GPT's text file (bytes as tokens; the workload is skipped without one).") var text: String?
    @Option(help: "Networks: the GPT's context (block_size).") var blockSize = 64
    @Option(help: "Networks: the GPT's batch size (windows per step).") var gptBatch = 32
    @Option(help: "Networks: windows per GPT epoch.") var gptLimit = 640
    @Option(help: "Python with torch for the side-by-side run (skipped if torch is missing).")
    var python = ProcessInfo.processInfo.environment["SWEEP_TORCH_PYTHON"] ?? "python3"

    struct Row {
        var workload: String
        var samplesPerSecond: Double
        var gflops: Double
        var torchSamplesPerSecond: Double?
    }

    /// One training step of the VAE (784-400-20, Float) per optimizer, then the exported state's size.
    func measureStateBytes() throws {
        let data = try DataSource.fashionMNIST.load(trainLimit: 128, testLimit: 10)
        var rows: [(String, Int)] = []
        var perTensor: [String: [TensorStateBytes]] = [:]
        var parameterCount = 0
        for definition in OptimizerCatalog.all {
            var values: [String: ConfigValue] = ["model": .string("vae"), "optimizer": .string(definition.name), "batch_size": .int(128)]
            if definition.name != "adafactor" { values["lr"] = .double(1e-3) }
            let config = TrialConfig(values: values)
            let result = try Trainer.run(config, data: data)
            parameterCount = result.parameterCount
            rows.append((definition.name, result.optimizerStateBytes))
            perTensor[definition.name] = result.optimizerStateByTensor
        }
        let parameterBytes = parameterCount * 4
        print("VAE 784-400-20: \(parameterCount) parameters, \(parameterBytes) bytes in float32")
        print("")
        print("| optimizer | state bytes | × parameter bytes |")
        print("| --- | --- | --- |")
        for (name, bytes) in rows.sorted(by: { $0.1 < $1.1 }) {
            print("| \(name) | \(bytes) | \(fmt(Double(bytes) / Double(parameterBytes), 3)) |")
        }
        // Per parameter tensor, for the optimizers whose state the documents discuss.
        let shown = ["adamw", "adafactor", "adamw8bit", "lion", "muon", "soap", "shampoo"].filter { perTensor[$0] != nil }
        print("")
        print("| tensor | " + shown.joined(separator: " | ") + " |")
        print("| --- |" + String(repeating: " --- |", count: shown.count))
        for (k, row) in (perTensor[shown[0]] ?? []).enumerated() {
            print("| \(row.tensor) | " + shown.map { perTensor[$0].map { k < $0.count ? String($0[k].bytes) : "" } ?? "" }.joined(separator: " | ") + " |")
        }
    }

    static let shampooSettings = [
        "adamw:lr=0.001",
        // Meta's eigendecomposed Shampoo, Adam-grafted, every step, blocks of 64 or 48; the basis is
        // re-decomposed when it no longer diagonalises a factor to 5% (or always, tolerance 0).
        "shampoo:lr=0.001,grafting=adam,precondition_frequency=1,max_preconditioner_dim=64,preconditioner=eigendecomposed,eigendecomposition_tolerance=0.05",
        "shampoo:lr=0.001,grafting=adam,precondition_frequency=1,max_preconditioner_dim=48,preconditioner=eigendecomposed,eigendecomposition_tolerance=0.05",
        "shampoo:lr=0.001,grafting=adam,precondition_frequency=1,max_preconditioner_dim=64,preconditioner=eigendecomposed,eigendecomposition_tolerance=0",
        // AdamW again: this shared machine's speed drifts over minutes, the baseline is the mean.
        "adamw:lr=0.001",
    ]

    /// VAE epochs per optimizer setting, through `Trainer` as trials run them; ratios against the
    /// mean epoch of the runs of the first setting's optimizer.
    func measureShampoo() throws {
        print("engine: \(BLASRuntime.summary), batch \(batchSize), VAE 784-400-20, \(epochs) epochs per setting")
        let data = try DataSource.fashionMNIST.load()
        var rows: [(setting: String, optimizer: String, seconds: [Double], testLoss: Double?, work: String)] = []
        for setting in settings.split(separator: ";").map(String.init) {
            let parts = setting.split(separator: ":", maxSplits: 1).map(String.init)
            let values: [String: ConfigValue] = ["model": .string("vae"), "optimizer": .string(parts[0]), "batch_size": .int(batchSize), "epochs": .int(epochs)]
            let config = try TrialConfig(values: values).overriding((parts.count > 1 ? parts[1] : "").split(separator: ",").map(String.init))
            try config.validate()
            let result = try Trainer.run(config, data: data)
            let work = result.optimizerWork.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            rows.append((setting, parts[0], result.history.map(\.seconds), result.history.last?.testLoss, work))
            print("done: \(setting): \(rows.last!.seconds.map { fmt($0, 1) }.joined(separator: ", ")) s")
        }
        func mean(_ x: [Double]) -> Double { x.reduce(0, +) / Double(max(x.count, 1)) }
        let baselineRuns = rows.filter { $0.optimizer == rows.first?.optimizer }
        let baseline = mean(baselineRuns.flatMap(\.seconds))
        print("")
        print("| setting | seconds per epoch | mean | × \(rows.first?.optimizer ?? "") (mean of \(baselineRuns.count) runs) | test loss | work |")
        print("| --- | --- | --- | --- | --- | --- |")
        for row in rows {
            let m = mean(row.seconds)
            print("| \(row.setting) | \(row.seconds.map { fmt($0, 1) }.joined(separator: ", ")) | \(fmt(m, 1)) | \(fmt(m / baseline, 2))× | \(row.testLoss.map { fmt($0, 2) } ?? "") | \(row.work) |")
        }
        try torchShampooReference()
    }

    /// Microseconds per call of the products Shampoo's 64-blocks of the VAE run (order 64 and the
    /// 16-wide edges): `Float.gemm`/`syrkUpper` (the engine's small-matrix kernel when the CPU has
    /// AVX2) next to `cblas_sgemm`/`cblas_ssyrk`, alternating, best of five rounds each.
    func measureSmallProducts() {
        print("engine: \(BLASRuntime.summary)")
        let shapes: [(name: String, m: Int, n: Int, k: Int, ta: Bool, tb: Bool, syrk: Bool)] = [
            ("64×64×64 NN (into/out of the eigenbasis)", 64, 64, 64, false, false, false),
            ("64×64×64 TN (into the eigenbasis)", 64, 64, 64, true, false, false),
            ("64×64×64 NT (back from the eigenbasis)", 64, 64, 64, false, true, false),
            ("64×16×64 NN (edge block)", 64, 16, 64, false, false, false),
            ("16×64×64 TN (edge block)", 16, 64, 64, true, false, false),
            ("syrk 64, k 64 (statistics, upper triangle)", 64, 64, 64, false, false, true),
            ("syrk 64, k 16 (edge statistics)", 64, 64, 16, true, false, true),
        ]
        var rng = Xoshiro256(seed: 1)
        var a = [Float](repeating: 0, count: 96 * 96), b = a, c = a
        a.withUnsafeMutableBufferPointer { rng.fillNormal($0) }
        b.withUnsafeMutableBufferPointer { rng.fillNormal($0) }
        func time(_ body: () -> Void) -> Double {
            let reps = 2000
            let start = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<reps { body() }
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e3 / Double(reps)
        }
        print("")
        print("| product | engine (µs) | OpenBLAS (µs) | OpenBLAS ÷ engine |")
        print("| --- | --- | --- | --- |")
        for s in shapes {
            let lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n
            var ours = Double.infinity, theirs = Double.infinity
            a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in
                    c.withUnsafeMutableBufferPointer { pc in
                        let (pa, pb, pc) = (pa.baseAddress!, pb.baseAddress!, pc.baseAddress!)
                        for _ in 0..<5 {
                            if s.syrk {
                                ours = min(ours, time { Float.syrkUpper(trans: s.ta, n: s.n, k: s.k, alpha: 1, a: pa, lda: s.ta ? s.n : s.k, beta: 1, c: pc, ldc: s.n) })
                                theirs = min(
                                    theirs,
                                    time {
                                        cblas_ssyrk(CblasRowMajor, CblasUpper, s.ta ? CblasTrans : CblasNoTrans, blasint(s.n), blasint(s.k), 1, pa, blasint(s.ta ? s.n : s.k), 1, pc, blasint(s.n))
                                    })
                            } else {
                                ours = min(ours, time { Float.gemm(transA: s.ta, transB: s.tb, m: s.m, n: s.n, k: s.k, alpha: 1, a: pa, lda: lda, b: pb, ldb: ldb, beta: 0, c: pc, ldc: s.n) })
                                theirs = min(
                                    theirs,
                                    time {
                                        cblas_sgemm(
                                            CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans, blasint(s.m), blasint(s.n), blasint(s.k), 1,
                                            pa, blasint(lda), pb, blasint(ldb), 0, pc, blasint(s.n))
                                    })
                            }
                        }
                    }
                }
            }
            print("| \(s.name) | \(fmt(ours, 2)) | \(fmt(theirs, 2)) | \(fmt(theirs / ours, 2))× |")
        }
    }

    /// Runs `Benchmarks/shampoo_reference.py` when torch and Meta's repository are importable.
    func torchShampooReference() throws {
        let script = "shampoo_reference.py"
        var rows: [(String, Double, Int)] = []
        for object in try pythonJSONLines(script, ["--threads", String(threads), "--batch-size", String(batchSize)]) {
            guard let name = object["optimizer"] as? String, let perStep = object["seconds_per_step"] as? Double, let steps = object["steps"] as? Int
            else { continue }
            rows.append((name, perStep, steps))
        }
        guard let adamw = rows.first(where: { $0.0 == "adamw" })?.1 else {
            print("PyTorch side skipped: \(script) needs torch and Meta's optimizers repository (SHAMPOO_REPO)")
            return
        }
        print("")
        print("PyTorch, seconds per VAE step (after the first steps):")
        print("")
        print("| optimizer | steps timed | seconds per step | × AdamW |")
        print("| --- | --- | --- | --- |")
        for (name, perStep, steps) in rows { print("| \(name) | \(steps) | \(fmt(perStep, 4)) | \(fmt(perStep / adamw, 1))× |") }
    }

    func run() throws {
        BLASRuntime.setThreads(threads)
        if stateBytes { return try measureStateBytes() }
        if shampoo { return try measureShampoo() }
        if smallProducts { return measureSmallProducts() }
        if optimizers { return try measureOptimizerSteps() }
        let all = workloads.split(separator: ",").map(String.init)
        let networks = all.filter { Self.networkWorkloads.contains($0) }
        if !networks.isEmpty { try measureNetworks(networks) }
        let engine = all.filter { !Self.networkWorkloads.contains($0) }
        guard !engine.isEmpty else { return }
        print("engine: \(BLASRuntime.summary), batch \(batchSize)")
        let data = try DataSource.fashionMNIST.load(testLimit: 1000)
        var rows: [Row] = []
        for workload in engine {
            var values: [String: ConfigValue] = ["model": .string(workload), "optimizer": .string("adamw"), "lr": .double(1e-3), "batch_size": .int(batchSize)]
            if workload == "mlp" { values["hidden"] = .list([.int(256), .int(128)]) }
            let config = TrialConfig(values: values)
            let model: any Model<Float> = try Builders.model(config, data: data.train.shape)
            var best = Double.infinity
            for _ in 0..<repeats {
                let result = try Trainer.run(config, data: data)
                best = min(best, result.history[0].seconds)
            }
            let samples = Double(data.train.count)
            // Training FLOPs ≈ 3 × forward (forward, input and weight gradients), 2 per multiply-add.
            let flops = 6 * Double(model.forwardMACsPerExample) * samples
            rows.append(Row(workload: workload, samplesPerSecond: samples / best, gflops: flops / best / 1e9))
            print("\(workload): \(fmt(best, 3)) s per epoch, \(fmt(samples / best, 0)) samples/s, ≈\(fmt(flops / best / 1e9, 1)) GFLOP/s")
        }
        for (workload, rate) in try torchReference(engine) {
            if let i = rows.firstIndex(where: { $0.workload == workload }) { rows[i].torchSamplesPerSecond = rate }
        }
        print("")
        print("| workload | this engine (samples/s) | GFLOP/s | PyTorch (samples/s) | ratio |")
        print("| --- | --- | --- | --- | --- |")
        for r in rows {
            let torch = r.torchSamplesPerSecond.map { fmt($0, 0) } ?? "n/a"
            let ratio = r.torchSamplesPerSecond.map { fmt(r.samplesPerSecond / $0, 2) + "×" } ?? "n/a"
            print("| \(r.workload) | \(fmt(r.samplesPerSecond, 0)) | \(fmt(r.gflops, 1)) | \(torch) | \(ratio) |")
        }
    }

    /// Runs `Benchmarks/torch_reference.py`; returns workload → samples/s, or nothing without torch.
    func torchReference(_ workloads: [String]) throws -> [(String, Double)] {
        guard torchImportable() else { return [] }
        var rates: [(String, Double)] = []
        let arguments = ["--threads", String(threads), "--batch-size", String(batchSize), "--workloads", workloads.joined(separator: ","), "--repeats", String(repeats)]
        for object in try pythonJSONLines("torch_reference.py", arguments) {
            guard let workload = object["workload"] as? String, let rate = object["samples_per_s"] as? Double else { continue }
            print("PyTorch \(object["torch"] ?? "?") \(workload): \(fmt(object["seconds"] as? Double ?? 0, 3)) s per epoch, \(fmt(rate, 0)) samples/s")
            rates.append((workload, rate))
        }
        return rates
    }

    /// Whether `python` imports torch (says why not otherwise).
    func torchImportable() -> Bool {
        let check = Process()
        check.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        check.arguments = [python, "-c", "import torch"]
        check.standardError = FileHandle.nullDevice
        check.standardOutput = FileHandle.nullDevice
        do { try check.run() } catch {
            print("PyTorch: \(python) not found; side-by-side skipped")
            return false
        }
        check.waitUntilExit()
        guard check.terminationStatus == 0 else {
            print("PyTorch: not importable by \(python); side-by-side skipped (set SWEEP_TORCH_PYTHON)")
            return false
        }
        return true
    }

    /// Runs a script of `Benchmarks/` with `python` and returns its JSON-object lines (other
    /// output, and a script that fails to start, give none).
    func pythonJSONLines(_ script: String, _ arguments: [String]) throws -> [[String: Any]] {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(script).path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [python, path] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        do { try process.run() } catch { return [] }
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: output, as: UTF8.self).split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }
}

func fmt(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }

EngineBenchmark.main()
