import CZlib
import Foundation
import HDF5
import Learning
import Testing

/// Writes IDX files (raw or gzip) into a fresh temporary directory.
struct IDXFixture {
    let directory: String

    init() {
        directory = NSTemporaryDirectory() + "idx-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    static func idx(shape: [Int], fill: (Int) -> UInt8) -> [UInt8] {
        var bytes: [UInt8] = [0, 0, 0x08, UInt8(shape.count)]
        for d in shape { bytes += [UInt8(d >> 24 & 0xFF), UInt8(d >> 16 & 0xFF), UInt8(d >> 8 & 0xFF), UInt8(d & 0xFF)] }
        bytes += (0..<shape.reduce(1, *)).map(fill)
        return bytes
    }

    func write(_ name: String, _ bytes: [UInt8], gzip: Bool) {
        let path = "\(directory)/\(name)" + (gzip ? ".gz" : "")
        if gzip {
            let f = gzopen(path, "wb")!
            _ = bytes.withUnsafeBytes { gzwrite(f, $0.baseAddress, UInt32($0.count)) }
            gzclose(f)
        } else {
            _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        }
    }

    /// A complete four-file data set: `train` and `test` examples of 3×4 pixels, 5 classes.
    func writeDataSet(train: Int = 12, test: Int = 6, gzip: Bool = true) {
        write("train-images-idx3-ubyte", Self.idx(shape: [train, 3, 4]) { UInt8($0 % 256) }, gzip: gzip)
        write("train-labels-idx1-ubyte", Self.idx(shape: [train]) { UInt8($0 % 5) }, gzip: gzip)
        write("t10k-images-idx3-ubyte", Self.idx(shape: [test, 3, 4]) { UInt8(255 - $0 % 256) }, gzip: gzip)
        write("t10k-labels-idx1-ubyte", Self.idx(shape: [test]) { UInt8($0 % 5) }, gzip: gzip)
    }
}

@Suite struct IDXTests {
    @Test(arguments: [true, false])
    func readsGzipAndRaw(gzip: Bool) throws {
        let f = IDXFixture()
        f.writeDataSet(gzip: gzip)
        let splits = try DataSource(parsing: "idx:\(f.directory)").load()
        #expect(splits.train.count == 12 && splits.test.count == 6 && splits.train.features == 12)
        #expect(splits.train.classes == 5)
        #expect(splits.train.x[13] == Float(13) / 255 && splits.test.x[0] == 1)
        #expect(splits.train.labels[7] == 2)
        let limited = try DataSource(parsing: "idx:\(f.directory)").load(trainLimit: 5, testLimit: 2)
        #expect(limited.train.count == 5 && limited.test.count == 2)
    }

    @Test func missingFileNamesThePath() throws {
        let f = IDXFixture()
        #expect(throws: DataError.missingFile("\(f.directory)/train-images-idx3-ubyte[.gz]", hint: nil)) {
            try DataSource(parsing: "idx:\(f.directory)").load()
        }
    }

    @Test func truncatedFileSaysHowMuchIsMissing() throws {
        let f = IDXFixture()
        f.writeDataSet()
        f.write("t10k-images-idx3-ubyte", Array(IDXFixture.idx(shape: [6, 3, 4]) { _ in 1 }.dropLast(10)), gzip: true)
        #expect(throws: DataError.truncated("\(f.directory)/t10k-images-idx3-ubyte.gz", expected: 72, found: 62)) {
            try DataSource(parsing: "idx:\(f.directory)").load()
        }
    }

    @Test func badMagicAndMismatchedCounts() throws {
        let f = IDXFixture()
        f.writeDataSet()
        f.write("train-labels-idx1-ubyte", IDXFixture.idx(shape: [11]) { _ in 0 }, gzip: true)
        #expect(throws: DataError.mismatch("\(f.directory)/train-images-idx3-ubyte.gz has 12 images but \(f.directory)/train-labels-idx1-ubyte.gz has 11 labels")) {
            try DataSource(parsing: "idx:\(f.directory)").load()
        }
        f.write("train-labels-idx1-ubyte", [0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0], gzip: true)
        #expect(throws: DataError.badMagic("\(f.directory)/train-labels-idx1-ubyte.gz", found: 0x1234_5678)) {
            try DataSource(parsing: "idx:\(f.directory)").load()
        }
    }

    @Test func fashionMNISTFromTheDebianPackage() throws {
        let splits = try DataSource.fashionMNIST.load(trainLimit: 100)
        #expect(splits.train.count == 100 && splits.test.count == 10_000)
        #expect(splits.train.features == 784 && splits.train.classes == 10)
        #expect(splits.train.x.allSatisfy { (0...1).contains($0) })
    }

    @Test func hdf5DataWithSplitsOrXY() throws {
        let path = NSTemporaryDirectory() + "data-\(UUID().uuidString).h5"
        do {
            let file = try HDF5File(path, mode: .create)
            try file.write("X_train", (0..<40).map { Float($0) / 40 }, shape: [10, 4])
            try file.write("y_train", (0..<10).map { Int64($0 % 3) })
            try file.write("X_test", (0..<8).map { Float($0) / 8 }, shape: [2, 4])
            try file.write("y_test", [Int64(1), 2])
        }
        let splits = try DataSource(parsing: "hdf5:\(path)").load()
        #expect(splits.train.count == 10 && splits.test.count == 2 && splits.train.features == 4 && splits.train.classes == 3)
        #expect(splits.test.labels == [1, 2])

        let xy = NSTemporaryDirectory() + "xy-\(UUID().uuidString).h5"
        do {
            let file = try HDF5File(xy, mode: .create)
            try file.write("X", (0..<70).map { UInt8($0) }, shape: [14, 5])
            try file.write("y", (0..<14).map { Int32($0 % 2) })
        }
        let s2 = try DataSource(parsing: xy).load()
        #expect(s2.train.count == 12 && s2.test.count == 2 && s2.test.x[0] == 60)

        let bad = NSTemporaryDirectory() + "bad-\(UUID().uuidString).h5"
        do { try HDF5File(bad, mode: .create).write("X_train", [Float(1)]) }
        #expect(throws: DataError.self) { try DataSource(parsing: "hdf5:\(bad)").load() }
    }
}
