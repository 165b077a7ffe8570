import Foundation
import Learning
import Results
import Testing

/// The network models through the trainer: exact resume (batch-norm statistics, dropout and
/// augmentation streams), learning on real data, and the CIFAR-10 and text formats.
@Suite struct NetworkTrainingTests {
    static let fortunes = "/usr/share/games/fortunes/fortunes"

    static func config(_ yaml: String) throws -> TrialConfig { try TrialConfig.parse(yaml: yaml, source: "test.yaml") }

    static let resumable = [
        // Batch norm's running statistics, augmentation drawn from the data-order stream.
        """
        model: resnet
        depth: 8
        width: 2
        augment_crop: 2
        augment_flip: true
        optimizer: sgd
        momentum: 0.9
        lr: 0.05
        limit: 300
        test_limit: 100
        batch_size: 50
        epochs: 4
        """,
        // Dropout on embeddings, attention weights and residual branches; text windows.
        """
        model: gpt
        data: text:\(fortunes)
        n_layer: 1
        n_head: 2
        n_embd: 16
        block_size: 16
        dropout: 0.2
        optimizer: adamw
        lr: 0.003
        limit: 200
        test_limit: 50
        batch_size: 20
        epochs: 4
        """,
        // A layer list with batch norm on vectors and dropout, in float64.
        """
        model: sequential
        precision: float64
        layers:
          - {conv2d: {out: 3, kernel: 5, stride: 2}}
          - batchnorm
          - relu
          - {maxpool: 2}
          - flatten
          - {linear: 16}
          - batchnorm
          - {dropout: 0.3}
          - relu
          - linear
        optimizer: adam
        lr: 0.003
        limit: 300
        test_limit: 100
        batch_size: 50
        epochs: 4
        """,
    ]

    @Test(arguments: resumable.indices)
    func resumedRunEqualsUninterruptedRun(_ index: Int) throws {
        let config = try Self.config(Self.resumable[index])
        var saved: [TrainingCheckpoint] = []
        let straight = try Trainer.run(config, checkpoints: CheckpointPolicy(every: 2) { saved.append($0) })
        #expect(straight.status == .done, "\(straight.message ?? "")")
        let path = NSTemporaryDirectory() + "net-ckpt-\(UUID().uuidString).h5"
        defer { unlink(path) }
        try CheckpointFile.write(saved[0], to: path)
        var resumedEnd: [TrainingCheckpoint] = []
        let resumed = try Trainer.run(config, checkpoints: CheckpointPolicy(every: 2, resume: try CheckpointFile.read(path)) { resumedEnd.append($0) })
        let strip: (EpochRecord) -> [Double] = { [Double($0.step), $0.trainLoss, $0.testLoss, $0.testAccuracy, $0.gradientNorm] }
        #expect(resumed.history.map(strip) == straight.history.map(strip))
        switch (saved[1].payload, resumedEnd[0].payload) {
        case (.float32(let a), .float32(let b)):
            #expect(a.parameters == b.parameters && a.optimizer == b.optimizer)
            #expect(a.bufferNames == b.bufferNames && a.buffers == b.buffers)
            #expect(index != 0 || a.bufferNames.contains("layer1.0.bn1.running_var"))
        case (.float64(let a), .float64(let b)):
            #expect(a.parameters == b.parameters && a.optimizer == b.optimizer)
            #expect(a.bufferNames == b.bufferNames && a.buffers == b.buffers && !a.buffers.isEmpty)
        default:
            Issue.record("precision changed")
        }
    }

    @Test func lenet5LearnsFashionMNIST() throws {
        let result = try Trainer.run(
            try Self.config("model: lenet5\noptimizer: adamw\nlr: 0.002\nlimit: 3000\ntest_limit: 1000\nepochs: 2\nbatch_size: 64"))
        #expect(result.status == .done)
        #expect(result.final!.testAccuracy > 0.6, "accuracy (chance: 0.1) \(result.final!.testAccuracy)")
        #expect(result.parameterCount == 61_706)
    }

    /// Next-byte prediction on a public-domain text: from log 256 ≈ 5.5 nats per token at the start.
    @Test func gptLearnsText() throws {
        let result = try Trainer.run(
            try Self.config(
                "model: gpt\ndata: text:\(Self.fortunes)\nn_layer: 2\nn_head: 2\nn_embd: 32\nblock_size: 32\noptimizer: adamw\nlr: 0.003\nbatch_size: 16\nepochs: 3"))
        #expect(result.status == .done)
        let losses = result.history.map(\.testLoss)
        #expect(losses.last! < 3.0 && losses.last! < losses.first!, "validation nats per token \(losses)")
        #expect(result.final!.testAccuracy > 0.15 && result.final!.testAccuracy < 1)
    }

    /// Per-layer diagnostics cover convolutions, norms, embeddings and attention's two projections.
    @Test func diagnosticsCoverTheNewLayers() throws {
        let resnet = try Trainer.run(try Self.config("model: resnet\ndepth: 8\nwidth: 2\nlimit: 200\ntest_limit: 50\nepochs: 1\ndiagnostics: true\noptimizer: sgd\nlr: 0.1"))
        let layers = Set(resnet.layerStatistics.map(\.layer))
        #expect(["conv1", "bn1", "layer1.0.conv2", "layer1.0.bn2", "layer2.0.shortcut.0", "layer2.0.shortcut.1", "linear"].allSatisfy(layers.contains), "\(layers.sorted())")
        let gpt = try Trainer.run(
            try Self.config(
                "model: gpt\ndata: text:\(Self.fortunes)\nn_layer: 1\nn_head: 2\nn_embd: 8\nblock_size: 8\nlimit: 50\ntest_limit: 20\nepochs: 1\ndiagnostics: true\noptimizer: adamw"))
        let names = Set(gpt.layerStatistics.map(\.layer))
        #expect(["wte", "wpe", "blocks.0.ln1", "blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.mlp.fc", "ln_f"].allSatisfy(names.contains), "\(names.sorted())")
        #expect(gpt.layerStatistics.allSatisfy { $0.updateNorm.isFinite && $0.activationDelta.isFinite })
    }

    @Test func textWindowsAndCharacterTokens() throws {
        let path = NSTemporaryDirectory() + "text-\(UUID().uuidString).txt"
        defer { unlink(path) }
        try "abcabcabcabcabcabcabcabcabcabcé".write(toFile: path, atomically: true, encoding: .utf8)
        let splits = try DataSource.text(path).load(text: TextOptions(blockSize: 4, characters: true, validationFraction: 0.2))
        #expect(splits.train.classes == 4, "a, b, c and é")
        #expect(splits.train.layout == .tokens(length: 4))
        // 31 characters: 24 train (5 windows of 4 plus the next token), 7 validate (1 window).
        #expect(splits.train.count == 5 && splits.test.count == 1)
        #expect(Array(splits.train.x[0..<4]) == [0, 1, 2, 0] && Array(splits.train.labels[0..<4]) == [1, 2, 0, 1])
        #expect(throws: DataError.self) { try DataSource.text(path).load(text: TextOptions(blockSize: 30)) }
        let config = try Self.config("model: mlp\nblock_size: 8")
        #expect(throws: ConfigError.self) { try Trainer.run(config.setting("limit", .int(10))) }
    }

    @Test func cifar10BinaryFiles() throws {
        let dir = NSTemporaryDirectory() + "cifar-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func records(_ n: Int, seed: UInt8) -> Data {
            var bytes: [UInt8] = []
            for r in 0..<n {
                bytes.append(UInt8(r % 10))
                for i in 0..<3072 { bytes.append(UInt8(truncatingIfNeeded: i &* 7 &+ r &+ Int(seed))) }
            }
            return Data(bytes)
        }
        try records(30, seed: 1).write(to: URL(fileURLWithPath: "\(dir)/data_batch_1.bin"))
        try records(20, seed: 2).write(to: URL(fileURLWithPath: "\(dir)/data_batch_2.bin"))
        try records(10, seed: 3).write(to: URL(fileURLWithPath: "\(dir)/test_batch.bin"))
        let splits = try DataSource(parsing: "cifar10:\(dir)").load()
        #expect(splits.train.count == 50 && splits.test.count == 10 && splits.train.classes == 10)
        #expect(splits.train.layout == .image(channels: 3, height: 32, width: 32))
        // Record 31 is the second file's first: its green channel's first pixel is byte 1 + 1024.
        #expect(splits.train.x[30 * 3072 + 1024] == Float(UInt8(truncatingIfNeeded: 1024 * 7 + 0 + 2)) / 255)
        #expect(splits.train.labels[30] == 0 && splits.train.labels[31] == 1)
        let result = try Trainer.run(try Self.config("model: cnn\ndata: cifar10:\(dir)\nchannels: [4]\nhidden: 8\noptimizer: adam\nlr: 0.001\nepochs: 1\nbatch_size: 25"))
        #expect(result.status == .done && result.parameterCount == 3 * 4 * 9 + 4 + 4 * 16 * 16 * 8 + 8 + 8 * 10 + 10)
        // Malformed files: a truncated record, a label beyond 9.
        try records(10, seed: 3).dropLast().write(to: URL(fileURLWithPath: "\(dir)/test_batch.bin"))
        #expect { try DataSource(parsing: "cifar10:\(dir)").load() } throws: { "\($0)".contains("not whole CIFAR-10 records") }
        var bad = [UInt8](records(1, seed: 0))
        bad[0] = 10
        try Data(bad).write(to: URL(fileURLWithPath: "\(dir)/test_batch.bin"))
        #expect { try DataSource(parsing: "cifar10:\(dir)").load() } throws: { "\($0)".contains("record 0 has label 10") }
    }
}
