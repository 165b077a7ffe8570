// swift-tools-version: 6.0
import PackageDescription

/// Shared by every Swift target of this package: Swift 6 language mode with strict concurrency;
/// with `SWEEP_STRICT=1` (CI) warnings are errors (in this package's targets, not its dependencies).
let swiftSettings: [SwiftSetting] =
    [
        .enableUpcomingFeature("ExistentialAny")
    ] + (Context.environment["SWEEP_STRICT"] == "1" ? [.unsafeFlags(["-warnings-as-errors"])] : [])

let package = Package(
    name: "optimizer-sweeps",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "sweep-coordinator", targets: ["sweep-coordinator"]),
        .executable(name: "sweep-worker", targets: ["sweep-worker"]),
        .executable(name: "sweep-analyze", targets: ["sweep-analyze"]),
        .executable(name: "engine-benchmark", targets: ["engine-benchmark"]),
        .executable(name: "worker-swarm", targets: ["worker-swarm"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // C bindings: a module map and one shim header each, flags from pkg-config.
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5", providers: [.apt(["libhdf5-dev", "zlib1g-dev"])]),
        .systemLibrary(name: "CZeroMQ", pkgConfig: "libzmq", providers: [.apt(["libzmq3-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),

        // Products of small matrices without OpenBLAS's packing (AVX2), for blocked preconditioners.
        .target(name: "CKernels"),
        // fork/exec of a program trial with PR_SET_PDEATHSIG (posix_spawn cannot set it).
        .target(name: "CSpawn"),
        // Numerics: matrices over BLAS, LAPACK factorizations, the BLAS kernel choice.
        .target(name: "Linalg", dependencies: ["COpenBLAS", "CKernels"], swiftSettings: swiftSettings),
        // A small, typed HDF5 layer (files, groups, datasets, attributes).
        .target(name: "HDF5", dependencies: ["CHDF5"], swiftSettings: swiftSettings),
        // The value types several modules share, without numerics or HDF5: trial configurations
        // (YAML), epoch records, trial statuses, metrics, the toy objectives' formulas and the
        // results layout's names. What sweep-analyze needs besides HDF5.
        .target(name: "SweepCore", dependencies: [.product(name: "Yams", package: "Yams")], swiftSettings: swiftSettings),
        // Models with manual backprop, data sets, optimizers, the training loop, the trial keys.
        .target(
            name: "Learning",
            dependencies: ["SweepCore", "Linalg", "HDF5", "CZlib", .product(name: "Yams", package: "Yams")],
            swiftSettings: swiftSettings),
        // Sweep files: parsing, validation and expansion into trials.
        .target(
            name: "Sweeps",
            dependencies: ["Learning", "Linalg", .product(name: "Yams", package: "Yams")],
            swiftSettings: swiftSettings),
        // ZeroMQ sockets and the sweep wire protocol.
        .target(name: "Transport", dependencies: ["CZeroMQ", "Learning"], swiftSettings: swiftSettings),
        // The results layout: trial files, histories, (later) checkpoints and the sweep index.
        .target(name: "Results", dependencies: ["HDF5", "SweepCore", "Learning"], swiftSettings: swiftSettings),
        // The three programs' logic.
        .target(name: "Worker", dependencies: ["Learning", "Results", "Linalg", "Transport", "CSpawn"], swiftSettings: swiftSettings),

        // Prometheus metrics (their names and registry) and swift-log's output (plain lines or JSON).
        .target(
            name: "Telemetry",
            dependencies: ["SweepCore", .product(name: "Logging", package: "swift-log"), .product(name: "Prometheus", package: "swift-prometheus")],
            swiftSettings: swiftSettings),
        .target(name: "Coordinator", dependencies: ["Sweeps", "Transport", "Results", "SweepCore", "Learning", "Telemetry"], swiftSettings: swiftSettings),
        // Results analysis: leaderboards, sensitivity, CSV and the self-contained HTML report.
        // Reads results through SweepCore and HDF5 only: sweep-analyze does not link OpenBLAS.
        .target(name: "Analysis", dependencies: ["HDF5", "SweepCore"], swiftSettings: swiftSettings),
        // The live dashboard's HTTP server (Hummingbird): the page, its server-sent events and
        // /metrics, read-only. Only sweep-coordinator and sweep-analyze link it (its build is long).
        .target(
            name: "Dashboard",
            dependencies: [
                "Analysis", "SweepCore", .product(name: "Hummingbird", package: "hummingbird"), .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"), .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),

        // Thin commands.
        .executableTarget(
            name: "sweep-worker",
            dependencies: ["Worker", "Transport", "Learning", "Linalg", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "sweep-coordinator",
            dependencies: [
                "Coordinator", "Sweeps", "Transport", "Linalg", "Analysis", "Dashboard", "Telemetry", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "sweep-analyze",
            dependencies: ["Analysis", "SweepCore", "Dashboard", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "engine-benchmark",
            dependencies: ["Learning", "Linalg", "COpenBLAS", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Benchmarks/EngineBenchmark",
            swiftSettings: swiftSettings),
        // A coordinator under many simulated workers (docs/performance.md, "A thousand workers").
        .executableTarget(
            name: "worker-swarm",
            dependencies: ["Worker", "Transport", "Learning", "Linalg", "CSpawn", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Benchmarks/WorkerSwarm",
            swiftSettings: swiftSettings),

        .testTarget(name: "LinalgTests", dependencies: ["Linalg"], swiftSettings: swiftSettings),
        .testTarget(name: "LearningTests", dependencies: ["Learning", "Linalg", "HDF5", "CZlib"], exclude: ["Fixtures"], swiftSettings: swiftSettings),
        .testTarget(name: "WorkerTests", dependencies: ["Worker", "Results", "HDF5", "Learning"], swiftSettings: swiftSettings),
        // The end-to-end suites' harness: executables as processes, results read back, a rogue peer.
        .target(name: "TestSupport", dependencies: ["HDF5", "Transport"], path: "Tests/TestSupport", swiftSettings: swiftSettings),
        .testTarget(name: "CoordinatorTests", dependencies: ["Coordinator", "Transport", "Learning", "Linalg", "HDF5", "Results", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "SweepsTests", dependencies: ["Sweeps", "Learning", "Linalg"], exclude: ["Fixtures"], swiftSettings: swiftSettings),
        .testTarget(name: "DashboardTests", dependencies: ["Dashboard", "Analysis", "SweepCore", "Telemetry", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "AnalysisTests", dependencies: ["Analysis", "HDF5", "Learning", "Results"], exclude: ["Fixtures"], swiftSettings: swiftSettings),
    ],
    swiftLanguageModes: [.v6]
)

// Coverage-guided fuzz targets (libFuzzer), added only with SWEEP_FUZZ=1: their main calls
// libFuzzer's driver, linked by -sanitize=fuzzer, so a plain build would not link them.
// scripts/fuzz.sh builds them into .build-fuzz and runs them.
if Context.environment["SWEEP_FUZZ"] == "1" {
    package.products += [
        .executable(name: "fuzz-protocol", targets: ["fuzz-protocol"]),
        .executable(name: "fuzz-files", targets: ["fuzz-files"]),
    ]
    package.targets += [
        .systemLibrary(name: "CLibFuzzer", path: "Fuzz/CLibFuzzer"),
        .executableTarget(name: "fuzz-protocol", dependencies: ["CLibFuzzer", "Transport"], path: "Fuzz/Protocol", swiftSettings: swiftSettings),
        .executableTarget(name: "fuzz-files", dependencies: ["CLibFuzzer", "Sweeps", "Learning"], path: "Fuzz/Files", swiftSettings: swiftSettings),
    ]
}
