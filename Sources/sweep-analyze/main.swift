import Analysis
import ArgumentParser
import Dashboard
import Dispatch
import Foundation
import Glibc
import SweepCore

/// `sweep-analyze PATH [PATH…]`: the terminal summary of a sweep's results, and optionally the
/// trials as CSV and a self-contained HTML report. Further paths are other sweeps compared in the
/// best-so-far table and chart. All of the work is in the `Analysis` library.
struct SweepAnalyze: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep-analyze",
        abstract: "Ranks trials, compares optimizers and draws a report from a sweep's results.",
        discussion: """
            PATH is a results directory (sweep-coordinator start --out DIR) or its sweep.h5. Works while the sweep \
            runs: queued and running trials are counted, committed ones analysed. Diverged trials and NaN metrics are \
            listed but never ranked. Further PATHs are other sweeps (e.g. TPE and random search on the same problem): \
            they are read with the same metric and filters and shown only in the best-so-far table and chart, one line each.
            """)

    @Argument(help: "A results directory or its sweep.h5; further ones are compared in the best-so-far table and chart.")
    var paths: [String]

    @Option(help: "The metric to rank on: train_loss, test_loss or test_accuracy (default: the sweep's objective).")
    var metric: String?

    @Flag(name: .customLong("maximize"), help: "Higher is better (default: the sweep's objective mode).")
    var maximizeFlag = false

    @Flag(name: .customLong("minimize"), help: "Lower is better.")
    var minimizeFlag = false

    @Option(help: "Leaderboard rows to show.")
    var top = 10

    @Option(name: .customLong("group-by"), help: "Best trial per value of this key: optimizer (default), model, branch, status or any hyperparameter.")
    var groupBy = "optimizer"

    @Option(name: .customLong("filter"), help: "key=value on a hyperparameter, optimizer, status, model, branch or id (repeatable; repeats of one key mean any of them).")
    var filters: [String] = []

    @Option(help: "Also show when each trial's metric first reached this value (epoch, or step for toy objectives).")
    var reach: Double?

    @Option(help: "Write the trials table (one column per hyperparameter) to this CSV file.")
    var csv: String?

    @Option(help: "Write the HTML report (inline SVG charts, no scripts) to this file.")
    var html: String?

    @Option(
        help: ArgumentHelp(
            "The Pareto front of two metrics, M1,M2: listed, and drawn in the HTML report.",
            discussion: "Metrics: \(TrialMeasure.allCases.map(\.rawValue).joined(separator: ", ")) (accuracy is maximised, the rest minimised).", valueName: "M1,M2"))
    var pareto: String?

    @Option(help: "The heatmap's two hyperparameters, KEY1,KEY2 (x, y; default: the two varied numeric ones with the most values).")
    var heatmap: String?

    @Option(
        help: ArgumentHelp(
            "Then serve the results as the live dashboard on HOST:PORT until interrupted (the value may be left out: 127.0.0.1 and a free port), kept current while they change.",
            valueName: "host:port"))
    var serve: String?

    @Option(
        help: ArgumentHelp("The dashboard's access token (required off the loopback), or @FILE to read it from a file.", valueName: "token|@file"))
    var dashboardToken: String?

    func validate() throws {
        if let serve {
            do { _ = try DashboardAddress(parsing: serve) } catch { throw ValidationError("--serve \(error)") }
        }
        if dashboardToken != nil && serve == nil { throw ValidationError("--dashboard-token needs --serve") }
        if maximizeFlag && minimizeFlag { throw ValidationError("give --maximize or --minimize, not both") }
        if let metric, Metric(rawValue: metric) == nil {
            throw ValidationError("--metric \(metric): use one of \(Metric.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let heatmap, heatmap.split(separator: ",").count != 2 { throw ValidationError("--heatmap wants two keys: KEY1,KEY2 (e.g. lr,momentum)") }
        if paths.isEmpty { throw ValidationError("give a results directory") }
        if let pareto {
            do { _ = try TrialMeasure.pair(parsing: pareto) } catch let e as AnalysisError { throw ValidationError(e.description) }
        }
        if top < 1 { throw ValidationError("--top must be at least 1") }
    }

    func run() throws {
        do {
            let results = try SweepResults.load(paths[0])
            let analysis = try SweepAnalysis(
                results: results, metric: metric.flatMap(Metric.init(rawValue:)), maximize: maximizeFlag ? true : minimizeFlag ? false : nil,
                filters: try filters.map(TrialFilter.init(parsing:)))
            // Other sweeps: the first one's metric, direction and filters.
            let compare = try paths.dropFirst().map { path in
                try SweepAnalysis(results: try SweepResults.load(path), metric: analysis.metric, maximize: analysis.maximize, filters: analysis.filters)
            }
            let paretoPair = try pareto.map(TrialMeasure.pair(parsing:))
            print(try TextReport.render(analysis, top: top, groupBy: groupBy, reach: reach, compare: compare, pareto: paretoPair), terminator: "")
            if let csv {
                try CSVExport.render(analysis).write(toFile: csv, atomically: true, encoding: .utf8)
                print("\ntrials table: \(csv) (\(analysis.trials.count) rows)")
            }
            if let html {
                let keys = heatmap.map { $0.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) } }
                let report = try HTMLReport.render(analysis, groupBy: groupBy, heatmap: keys.map { ($0[0], $0[1]) }, top: top, compare: compare, pareto: paretoPair)
                try report.html.write(toFile: html, atomically: true, encoding: .utf8)
                print("\(csv == nil ? "\n" : "")report: \(html) (\(report.charts.count) charts: \(report.charts.joined(separator: ", ")))")
            }
            if let serve { try serveDashboard(serve) }
        } catch let error as AnalysisError {
            FileHandle.standardError.write(Data("sweep-analyze: \(error)\n".utf8))
            throw ExitCode(1)
        } catch let error as DashboardError {
            FileHandle.standardError.write(Data("sweep-analyze: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    /// Serves the dashboard of these results until SIGINT or SIGTERM.
    func serveDashboard(_ address: String) throws {
        let token = try dashboardToken.map(DashboardServer.token(fromArgument:))
        var settings = DashboardModel.Settings(results: paths[0])
        settings.groupBy = groupBy
        settings.top = top
        let server = try DashboardServer.start(
            model: DashboardModel(settings: settings, feed: nil), metrics: nil,
            configuration: DashboardServer.Configuration(address: try DashboardAddress(parsing: address), token: token))
        print("\ndashboard: \(server.url)\(token == nil ? "" : " (append ?token=… to the address)") — Ctrl-C stops it")
        fflush(nil)
        let stop = DispatchSemaphore(value: 0)
        var sources: [any DispatchSourceSignal] = []
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { stop.signal() }
            source.resume()
            sources.append(source)
        }
        stop.wait()
        server.stop()
        print("dashboard stopped")
    }
}

SweepAnalyze.main(DashboardAddress.fillingDefaults(of: ["--serve"], in: Array(CommandLine.arguments.dropFirst())))
