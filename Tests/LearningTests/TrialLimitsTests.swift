import Foundation
import HDF5
import Learning
import Testing

@Suite struct TrialLimitsTests {
    func parse(_ yaml: String) throws -> TrialConfig { try TrialConfig.parse(yaml: yaml, source: "trial.yaml") }

    func error(_ yaml: String) -> ConfigError? {
        do {
            _ = try parse(yaml)
            Issue.record("expected a ConfigError: \(yaml)")
        } catch let e as ConfigError {
            return e
        } catch {
            Issue.record("unexpected error type: \(error)")
        }
        return nil
    }

    @Test func modelsTooLargeAreRefusedAtTheirKey() throws {
        // `hidden: [1e8, 1e8]` passed validation, and every worker aborted allocating 313 GB.
        let e = try #require(error("model: mlp\nlr: 0.1\nhidden: [100000000, 100000000]\n"))
        #expect(e.location == SourceLocation(file: "trial.yaml", line: 3) && e.key == "hidden", "\(e)")
        #expect(e.message.contains("parameters") && e.message.contains("at most \(TrialLimits.maxParameters)"), "\(e)")
        // On Fashion-MNIST (784 inputs, 10 classes): 785·h + 10·(h + 1) parameters.
        let widest = (TrialLimits.maxParameters - 10) / 795
        #expect(throws: Never.self) { _ = try parse("model: mlp\nhidden: [\(widest)]\n") }
        #expect(error("model: mlp\nhidden: [\(widest + 1)]\n")?.key == "hidden")
        // Each built-in model, counted without building it.
        #expect(error("model: vae\nlatent: 100000000\n")?.key == "latent")
        #expect(error("model: vae\nhidden: 100000000\n")?.key == "hidden")
        #expect(error("model: polyfit\ndegree: \(TrialLimits.maxParameters)\n")?.key == "degree")
        #expect(throws: Never.self) { _ = try parse("model: polyfit\ndegree: 1000\npoints: 1000\n") }
        // A data set known only once loaded: at least one input and one class are counted.
        #expect(error("model: mlp\ndata: idx:/nonexistent\nhidden: [20000, 20000]\n")?.message.contains("at least") == true)
        let loaded = try parse("model: logreg\ndata: idx:/nonexistent\n")
        let wide = try #require(throws: ConfigError.self) {
            try loaded.checkResources(data: DataShape(features: 20_000_000, classes: 10, trainingExamples: 100))
        }
        #expect(wide.key == "data" && wide.message.contains("20000000 inputs"), "\(wide)")
    }

    @Test func stepsEpochsAndBatchesAreBounded() throws {
        // `steps: 1e12` was accepted, and the worker grew by 55 MB/s recording them.
        let steps = try #require(error("model: rosenbrock\noptimizer: adam\nsteps: 1e12\n"))
        #expect(steps.location.line == 3 && steps.key == "steps" && steps.message.contains("at most \(TrialLimits.maxSteps)"), "\(steps)")
        #expect(throws: Never.self) { _ = try parse("model: quadratic\nsteps: \(TrialLimits.maxSteps)\n") }
        #expect(error("model: mlp\nmode: lr_range_test\nrange_steps: \(TrialLimits.maxSteps + 1)\n")?.key == "range_steps")
        #expect(error("model: mlp\nepochs: \(TrialLimits.maxEpochs + 1)\n")?.key == "epochs")
        #expect(error("model: mlp\nbatch_size: \(TrialLimits.maxBatchSize + 1)\n")?.key == "batch_size")
        #expect(error("model: vae\neval_batch_size: \(TrialLimits.maxBatchSize + 1)\n")?.key == "eval_batch_size")
        #expect(error("model: polyfit\npoints: \(TrialLimits.maxBatchSize + 1)\n")?.key == "points")
        // A batch's layer outputs: 65,536 examples through a 784-20000-10 MLP are 1.3 billion values.
        let batch = try #require(error("model: mlp\nhidden: [20000]\nbatch_size: \(TrialLimits.maxBatchSize)\n"))
        #expect(batch.key == "batch_size" && batch.message.contains("at most \(TrialLimits.maxBatchValues)"), "\(batch)")
        // A VAE with a latent of 70,000 holds 282,368 values per example: 128 of them fit, the
        // default evaluation batch of 1000 does not, and the error names it rather than batch_size.
        let evaluation = try #require(error("model: vae\nlatent: 70000\nbatch_size: 128\n"))
        #expect(evaluation.key == "eval_batch_size" && evaluation.message.hasPrefix("1000 by default: a batch of 1000"), "\(evaluation)")
        #expect(throws: Never.self) { _ = try parse("model: vae\nlatent: 70000\neval_batch_size: 500\n") }
        // Epochs × training examples, with the data set's size once it is known.
        let many = try parse("model: logreg\ndata: idx:/nonexistent\nepochs: \(TrialLimits.maxEpochs)\n")
        let seen = try #require(throws: ConfigError.self) {
            try many.checkResources(data: DataShape(features: 10, classes: 2, trainingExamples: TrialLimits.maxExamplesSeen / TrialLimits.maxEpochs + 1))
        }
        #expect(seen.key == "epochs" && seen.message.contains("at most \(TrialLimits.maxExamplesSeen)"), "\(seen)")
        #expect(throws: Never.self) {
            try many.checkResources(data: DataShape(features: 10, classes: 2, trainingExamples: TrialLimits.maxExamplesSeen / TrialLimits.maxEpochs))
        }
    }

    @Test func theTrainerChecksTheModelOnceTheDataSetIsLoaded() throws {
        // 200,000 features, known only once the file is read: hidden [600] is 120 million parameters.
        let path = NSTemporaryDirectory() + "wide-\(UUID().uuidString).h5"
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            let file = try HDF5File(path, mode: .create)
            try file.write("X_train", [Float](repeating: 0.5, count: 2 * 200_000), shape: [2, 200_000])
            try file.write("y_train", [Int64(0), 1])
            try file.write("X_test", [Float](repeating: 0.5, count: 200_000), shape: [1, 200_000])
            try file.write("y_test", [Int64(1)])
        }
        let config = try parse("model: mlp\ndata: hdf5:\(path)\nhidden: [600]\n")
        let e = try #require(throws: ConfigError.self) { _ = try Trainer.run(config) }
        #expect(e.location == SourceLocation(file: "trial.yaml", line: 3) && e.key == "hidden", "\(e)")
        #expect(e.message.contains("120001802 parameters (200000 inputs, hidden [600], 2 classes)"), "\(e)")
    }
}
