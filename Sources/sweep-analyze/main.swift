import ArgumentParser

/// Results analysis. Its leaderboard, plots and report arrive with the analysis work; until then
/// it says so instead of printing anything that looks like a result.
struct SweepAnalyze: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep-analyze",
        abstract: "Ranks trials, compares optimizers and draws a report from a results file.",
        discussion: "Not implemented yet. A single trial's results file can be read with h5py or h5dump (see README).")

    func run() throws {
        print(Self.helpMessage())
        throw ExitCode(2)
    }
}

SweepAnalyze.main()
