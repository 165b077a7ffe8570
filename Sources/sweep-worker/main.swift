import ArgumentParser
import Glibc
import Linalg
import Worker

// One line per epoch must reach a pipe or log file as it happens.
setvbuf(stdout, nil, _IOLBF, 0)

// OpenBLAS picks its kernel when it loads; choose it (re-executing if needed) before anything else.
BLASRuntime.selectKernel()

struct SweepWorker: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep-worker",
        abstract: "Trains the trials of an optimizer sweep on this machine.",
        subcommands: [Run.self, Info.self])
}

extension SweepWorker {
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run one trial locally, print a line per epoch, write its results to HDF5.")

        @Argument(help: "Trial file (YAML mapping of trial keys), or - for standard input.")
        var trial: String

        @Option(name: .customLong("set"), help: "Override a trial key: --set lr=3e-4 (repeatable).")
        var overrides: [String] = []

        @Option(help: "Write the trial's configuration and history to this HDF5 file.")
        var out: String?

        @Option(help: "BLAS threads.")
        var threads: Int = 1

        func validate() throws {
            guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        }

        func run() throws {
            do {
                let result = try LocalRun.run(.init(trialPath: trial, overrides: overrides, outputPath: out, threads: threads)) { print($0) }
                if result.status == .failed { throw ExitCode(2) }
            } catch let error as ExitCode {
                throw error
            } catch {
                printError("error: \(error)")
                throw ExitCode(1)
            }
        }
    }

    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the BLAS kernel and threads this worker would use.")
        @Option(help: "BLAS threads.")
        var threads: Int = 1
        func run() {
            BLASRuntime.setThreads(threads)
            print(BLASRuntime.summary)
            if let preferred = BLASRuntime.preferredCoreName { print("best kernel for this CPU: \(preferred)") }
        }
    }
}

SweepWorker.main()
