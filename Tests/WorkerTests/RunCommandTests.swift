import Foundation
import HDF5
import Testing

/// End-to-end: the real `sweep-worker` executable on small trials.
@Suite struct RunCommandTests {
    static var executable: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    func productsDirectory() -> URL {
        // The test bundle lives in the build products directory, beside the executables.
        Bundle.allBundles.map(\.bundleURL).first { $0.pathExtension == "xctest" }?.deletingLastPathComponent()
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    }

    func run(_ arguments: [String], stdin: String? = nil) throws -> (status: Int32, out: String, err: String) {
        let process = Process()
        process.executableURL = productsDirectory().appendingPathComponent("sweep-worker")
        process.arguments = arguments
        let out = Pipe(), err = Pipe(), input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        try process.run()
        if let stdin { input.fileHandleForWriting.write(stdin.data(using: .utf8)!) }
        try input.fileHandleForWriting.close()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    func temporary(_ name: String) -> String { NSTemporaryDirectory() + "\(UUID().uuidString)-\(name)" }

    @Test func runsATrialAndWritesItsResults() throws {
        let trial = temporary("trial.yaml"), out = temporary("trial.h5")
        try "model: mlp\nhidden: [16]\noptimizer: sgd\nlr: 0.1\nmomentum: 0.9\nepochs: 2\nlimit: 600\ntest_limit: 300\n".write(toFile: trial, atomically: true, encoding: .utf8)
        let r = try run(["run", trial, "--set", "seed=3", "--out", out, "--threads", "1"])
        #expect(r.status == 0, "\(r.err)")
        let lines = r.out.split(separator: "\n").map(String.init)
        #expect(lines[0].hasPrefix("engine: OpenBLAS ") && lines[0].contains("1 thread"))
        #expect(lines.filter { $0.hasPrefix("epoch ") }.count == 2)
        #expect(lines.contains { $0.hasPrefix("status: done") })

        let file = try HDF5File(out, mode: .readOnly)
        #expect(try file.stringAttribute("status") == "done")
        #expect(try file.stringAttribute("optimizer") == "sgd")
        #expect(try file.stringAttribute("config").contains("\"seed\":3"))
        #expect(try file.group("config").attribute("momentum", as: Double.self) == 0.9)
        let epochs = try file.readTableColumn("history", field: "epoch")
        #expect(epochs == [1, 2])
        let accuracy = try file.readTableColumn("history", field: "test_accuracy")
        // The printed accuracy of the last epoch is the stored one.
        let printed = lines.last { $0.hasPrefix("epoch 2:") }!
        #expect(printed.contains(String(format: "test_acc %.4f", accuracy[1])))
        #expect(!FileManager.default.fileExists(atPath: out + ".tmp"))
    }

    /// The results say how much optimizer state each parameter tensor has (summing to the total)
    /// and how much expensive work the optimizer did (Shampoo's eigendecompositions).
    @Test func recordsOptimizerStatePerTensorAndWork() throws {
        let trial = temporary("shampoo.yaml"), out = temporary("shampoo.h5")
        try """
        model: mlp
        hidden: [16]
        optimizer: shampoo
        lr: 0.001
        grafting: adam
        max_preconditioner_dim: 16
        preconditioner: eigendecomposed
        eigendecomposition_tolerance: 0.05
        epochs: 1
        limit: 640
        test_limit: 100
        """.write(toFile: trial, atomically: true, encoding: .utf8)
        let r = try run(["run", trial, "--out", out])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("optimizer work: eigenbases_kept "), "\(r.out)")
        let file = try HDF5File(out, mode: .readOnly)
        let tensors = try file.readTableStringColumn("optimizer_state", field: "tensor")
        let bytes = try file.readTableColumn("optimizer_state", field: "bytes")
        #expect(tensors.count == 4 + 1 && tensors.last == "(global)", "\(tensors)")
        #expect(Int64(bytes.reduce(0, +)) == (try file.attribute("optimizer_state_bytes", as: Int64.self)))
        // The 784×16 weight in 16×16 blocks (49 of them): per block two 16×16 factors, their
        // eigenvectors, 16 eigenvalues and the 16 diagonal entries of QᵀFQ each, Adam grafting's
        // second moment and the filtered gradient, also in the eigenbasis (16×16 each), in float32.
        let perBlock = 2 * (2 * 16 * 16 + 2 * 16) + 3 * 16 * 16
        #expect(bytes.max() == Double(49 * perBlock * 4), "\(tensors): \(bytes)")
        let decompositions = try file.attribute("optimizer_work_eigendecompositions", as: Int64.self)
        let kept = try file.attribute("optimizer_work_eigenbases_kept", as: Int64.self)
        // 5 steps, every factor refreshed at each: the first decomposes, later ones may keep.
        #expect(decompositions > 0 && kept > 0)
        // Factors: 2 per weight block (49 + 1), 1 per bias.
        #expect(decompositions + kept == 5 * Int64(2 * 49 + 2 + 1 + 1), "\(decompositions) + \(kept)")
    }

    @Test func toyTrialFromStandardInputStoresTheTrajectory() throws {
        let out = temporary("toy.h5")
        let r = try run(["run", "-", "--out", out], stdin: "model: rosenbrock\noptimizer: sgd\nlr: 0.001\nmomentum: 0.9\nsteps: 40\n")
        #expect(r.status == 0, "\(r.err)")
        let (points, shape) = try HDF5File(out, mode: .readOnly).read("trajectory", as: Double.self)
        #expect(shape == [41, 2] && Array(points.prefix(2)) == [-1.5, 2])
    }

    @Test func badTrialFileIsAClearErrorWithItsLocation() throws {
        let trial = temporary("bad.yaml")
        try "model: mlp\noptimizer: adamw\nlearning_rate: 0.1\n".write(toFile: trial, atomically: true, encoding: .utf8)
        let r = try run(["run", trial])
        #expect(r.status != 0)
        #expect(r.err.contains("\(trial):3: 'learning_rate': unknown key"))
        let missing = try run(["run", temporary("absent.yaml")])
        #expect(missing.status != 0 && missing.err.contains("cannot read the trial file: No such file or directory"), "\(missing.err)")
    }

    @Test func reportsTheKernel() throws {
        let r = try run(["info"])
        #expect(r.status == 0 && r.out.hasPrefix("OpenBLAS "))
    }
}
