import COpenBLAS
import Foundation
import Learning
import Linalg

/// `engine-benchmark --optimizers`: the time of one optimizer step on the MLP's and the VAE's
/// parameters, for every optimizer in the catalog, with the matrix optimizers' GEMM work against
/// this core's sgemm rate measured in the same run.
///
/// The GEMM FLOP counts (multiply and add counted separately; m ≤ n the short and long side of a
/// matrix, or a block of it):
/// - Muon, per orthogonalised m×n matrix and Newton–Schulz iteration: A = XXᵀ 2m²n, A·A 2m³,
///   (bA + cA²)·X 2m²n; five iterations by default: 5·(4m²n + 2m³).
/// - SOAP, per m×n matrix and step: statistics GGᵀ and GᵀG by rank-k updates m²n + mn², the
///   gradient rotated into the eigenbases QₗᵀGQᵣ and the update back 2·(2m²n + 2mn²); every
///   `precondition_frequency` steps the first moment's round trip out of the old basis and into
///   the new one 2·(2m²n + 2mn²), and per side k ∈ {m, n} a power step 2k³ and a QR (geqrf +
///   orgqr) 8k³/3.
/// - Shampoo, per block m×n and step: statistics 2m²n + 2mn², the preconditioned gradient
///   L^(−1/4)·G·R^(−1/4) 2m²n + 2mn²; every `precondition_frequency` steps an inverse root per
///   side from a symmetric eigendecomposition, counted as 9k³ (LAPACK syevd with vectors) + 2k³.
/// The bound is that count at the sgemm rate; element-wise optimizers are bound by memory, not
/// FLOPs, and get no bound.
extension EngineBenchmark {
    struct StepRow {
        var optimizer: String
        var model: String
        var median: Double
        var mean: Double
        var gemmFLOPs: Double?
    }

    /// The matrices an optimizer multiplies: each 2-D (or flattened) weight as (short, long) sides.
    static func sides(_ shape: [Int]) -> (Double, Double)? {
        guard shape.count >= 2 else { return nil }
        let rows = Double(shape[0]), cols = Double(shape.dropFirst().reduce(1, *))
        return (min(rows, cols), max(rows, cols))
    }

    /// GEMM FLOPs per step, averaged over a refresh period (see the type's documentation).
    static func gemmFLOPs(_ optimizer: String, _ params: Parameters<Float>, _ config: TrialConfig) throws -> Double? {
        var total = 0.0
        switch optimizer {
        case "muon":
            let steps = Double(try config.int("ns_steps", default: 5))
            for (i, shape) in params.values.map(\.shape).enumerated() where params.roles[i] == .weight {
                guard let (m, n) = sides(shape) else { continue }
                total += steps * (4 * m * m * n + 2 * m * m * m)
            }
        case "soap":
            let f = Double(try config.int("precondition_frequency", default: 10))
            for shape in params.values.map(\.shape) {
                guard let (m, n) = sides(shape) else { continue }
                let rotation = 2 * m * m * n + 2 * m * n * n
                total += rotation / 2 + 2 * rotation + (2 * rotation + (2 + 8.0 / 3) * (m * m * m + n * n * n)) / f
            }
        case "shampoo":
            let f = Double(try config.int("precondition_frequency", default: 1)), block = Double(try config.int("max_preconditioner_dim", default: 1024))
            for shape in params.values.map(\.shape) {
                guard shape.count >= 2 else {
                    let k = Double(shape.first ?? 1)
                    total += 4 * k * k + 11 * k * k * k / f
                    continue
                }
                let rows = Double(shape[0]), cols = Double(shape.dropFirst().reduce(1, *))
                // Blocks of at most `block` along each side.
                for r in stride(from: 0.0, to: rows, by: block) {
                    for c in stride(from: 0.0, to: cols, by: block) {
                        let (m, n) = (min(block, rows - r), min(block, cols - c))
                        total += 2 * (2 * m * m * n + 2 * m * n * n) + 11 * (m * m * m + n * n * n) / f
                    }
                }
            }
        default:
            return nil
        }
        return total
    }

    /// Step times per optimizer on the MLP 784-256-128-10 and the VAE 784-400-20 parameters, with
    /// fixed random gradients.
    func measureOptimizerSteps() throws {
        BLASRuntime.setThreads(threads)
        // The MLP's first layer's size, in wall time as the steps are timed.
        let rate = Self.sgemmRate(m: 256, k: 784, n: 256, repeats: 20, clock: { Date().timeIntervalSince1970 })
        print("engine: \(BLASRuntime.summary); sgemm 256×784×256: \(fmt(rate, 1)) GFLOP/s")
        let shape = DataShape(features: 784, classes: 10, trainingExamples: 1)
        var rows: [StepRow] = []
        for model in ["mlp", "vae"] {
            var base: [String: ConfigValue] = ["model": .string(model)]
            if model == "mlp" { base["hidden"] = .list([.int(256), .int(128)]) }
            let chosen = Set(only.split(separator: ",").map(String.init) + ["adamw"])
            for definition in OptimizerCatalog.all where !(definition is any WrapperDefinition.Type) && (only.isEmpty || chosen.contains(definition.name)) {
                var values = base
                values["optimizer"] = .string(definition.name)
                if definition.keys.contains(where: { $0.name == "lr" && $0.defaultValue == nil }) { values["lr"] = .double(1e-3) }
                let config = TrialConfig(values: values)
                let network: any Model<Float> = try Builders.model(config, data: shape)
                let params = network.parameters
                var rng = Xoshiro256(seed: 7, stream: "gradients")
                for i in 0..<params.count {
                    params.gradients[i].storage.withUnsafeMutableBufferPointer { rng.fillNormal($0) }
                    params.gradients[i].storage = params.gradients[i].storage.map { $0 * 0.01 }
                }
                let optimizer: any Optimizer<Float> = try Builders.optimizer(config, parameters: params)
                for _ in 0..<3 { optimizer.update(params) }
                var times: [Double] = []
                let started = Date()
                while times.count < steps || (times.count < 5 * steps && Date().timeIntervalSince(started) < 0.5) {
                    let t0 = Date()
                    optimizer.update(params)
                    times.append(Date().timeIntervalSince(t0))
                }
                times.sort()
                rows.append(
                    StepRow(
                        optimizer: definition.name, model: model, median: times[times.count / 2], mean: times.reduce(0, +) / Double(times.count),
                        gemmFLOPs: try Self.gemmFLOPs(definition.name, params, config)))
            }
        }
        print("")
        print("| optimizer | model | median step (ms) | mean step (ms) | × AdamW (mean) | GEMM GFLOP per step | GFLOP/s | × GEMM bound |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for row in rows {
            let adamw = rows.first { $0.model == row.model && $0.optimizer == "adamw" }!.mean
            let flops = row.gemmFLOPs.map { fmt($0 / 1e9, 3) } ?? "n/a"
            let gflops = row.gemmFLOPs.map { fmt($0 / row.mean / 1e9, 1) } ?? "n/a"
            let bound = row.gemmFLOPs.map { fmt(row.mean / ($0 / (rate * 1e9)), 2) + "×" } ?? "n/a"
            print("| \(row.optimizer) | \(row.model) | \(fmt(row.median * 1e3, 3)) | \(fmt(row.mean * 1e3, 3)) | \(fmt(row.mean / adamw, 1))× | \(flops) | \(gflops) | \(bound) |")
        }
        try torchOptimizerReference()
    }

    /// PyTorch's own optimizers on the same parameter shapes (`Benchmarks/optimizer_reference.py`).
    func torchOptimizerReference() throws {
        let lines = try pythonJSONLines("optimizer_reference.py", ["--threads", String(threads), "--steps", String(steps)])
        guard !lines.isEmpty else {
            print("\nPyTorch: not run (set SWEEP_TORCH_PYTHON to a python with torch)")
            return
        }
        print("")
        print("| PyTorch optimizer | model | median step (ms) | mean step (ms) |")
        print("| --- | --- | --- | --- |")
        for object in lines {
            guard let name = object["optimizer"] as? String, let model = object["model"] as? String, let median = object["median_ms"] as? Double,
                let mean = object["mean_ms"] as? Double
            else { continue }
            print("| torch.optim.\(name) (\(object["torch"] ?? "?")) | \(model) | \(fmt(median, 3)) | \(fmt(mean, 3)) |")
        }
    }
}
