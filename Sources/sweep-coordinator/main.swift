import ArgumentParser
import Linalg

/// The sweep coordinator. Its subcommands (`plan`, `start`, `keys`) arrive with the distributed
/// sweep; until then it says so instead of pretending.
struct SweepCoordinator: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep-coordinator",
        abstract: "Expands optimizer sweeps into trials and hands them to sweep-worker processes.",
        discussion: "Not implemented yet: the sweep file format, ZeroMQ protocol and results index are being built. Run single trials with `sweep-worker run TRIAL.yaml`.")

    func run() throws {
        print(Self.helpMessage())
        throw ExitCode(2)
    }
}

SweepCoordinator.main()
