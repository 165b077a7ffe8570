import Foundation
import HDF5
import SweepCore

/// The live dashboard's content, without HTTP: the page, and the fragments its server pushes as
/// server-sent events (`live`: progress, workers, running trials and their curves; `report`:
/// the report's tables and charts). Every fragment is HTML drawn here or by `HTMLReport` and
/// `Charts` (the report's own charts), with every name escaped; the page's script only puts each
/// fragment into the element of the same id.
///
/// A coordinator's dashboard reads its `LiveStatus` from a `LiveFeed`; `sweep-analyze --serve`
/// has none and shows the results alone. The results are read again (`SweepResults`) when they
/// change: after a commit (live), or when the index file changes (served results). Drawing is
/// paced by its cost, so a dashboard someone watches costs the sweep a bounded share of a core,
/// and one nobody watches costs nothing: it draws only when a client asks (`refresh`).
public final class DashboardModel: @unchecked Sendable {
    public struct Settings: Sendable {
        /// The results directory (or its sweep.h5).
        public var results: String
        /// The report's grouping and leaderboard length (as `sweep-analyze --group-by/--top`).
        public var groupBy = "optimizer"
        public var top = 10
        /// The least time between two readings of the results, and between two live fragments.
        public var reportInterval = 2.0
        public var liveInterval = 0.5
        /// A reading of the results may take at most this share of the time between two.
        public var reportShare = 0.1

        public init(results: String) { self.results = results }
    }

    /// What a client is sent: each part with a version that grows when the part changes.
    public struct Update: Sendable {
        public var liveVersion: Int
        /// JSON: element id → HTML.
        public var live: String
        public var reportVersion: Int
        public var report: String
    }

    /// The elements the pushed fragments replace.
    public enum Element {
        public static let summary = "dash-summary"
        public static let running = "dash-running"
        public static let workers = "dash-workers"
        public static let tables = "dash-tables"
        public static let charts = "dash-charts"
    }

    public let settings: Settings
    let feed: LiveFeed?
    /// Why the results are not read in this process, if they are not.
    let resultsUnreadable: String?

    private let lock = NSLock()
    private let drawing = NSLock()
    private var update = Update(liveVersion: 0, live: "{}", reportVersion: 0, report: "{}")
    private var liveFragments: [String: String] = [:]
    private var reportFragments: [String: String] = [:]
    /// The sweep's name as the results give it.
    private var sweepName = ""
    // Owned by whoever holds `drawing`.
    private var analysis: SweepAnalysis?
    private var reportProblem: String?
    private var lastLiveSequence = -1
    private var lastLiveDraw = -Double.infinity
    private var lastReportDraw = -Double.infinity
    private var reportCost = 0.0
    /// What the results looked like when last read: the committed count (live) or the index
    /// file's modification time and size (served).
    private var reportKey: String?

    /// `feed`: the coordinator's status (nil: finished results). A coordinator's dashboard
    /// reads the results only when this process's HDF5 library is thread-safe (its writer thread
    /// writes them meanwhile).
    public init(settings: Settings, feed: LiveFeed?) {
        self.settings = settings
        self.feed = feed
        resultsUnreadable =
            feed != nil && !HDF5Library.isThreadSafe
            ? "this HDF5 library is not thread-safe, so the coordinator does not read its own results while it writes them: run sweep-analyze RESULTS --serve beside it for the charts"
            : nil
    }

    private static func clock() -> Double { ProcessInfo.processInfo.systemUptime }

    /// The latest fragments, drawing again what is due. Cheap when nothing is due; when another
    /// thread is drawing, returns what there is without waiting.
    public func refresh() -> Update {
        if drawing.try() {
            defer { drawing.unlock() }
            let t = Self.clock()
            let status = feed?.latest
            var redrawLive = false
            if t - lastReportDraw >= max(settings.reportInterval, reportCost / settings.reportShare), let key = currentReportKey(status), key != reportKey {
                readResults()
                reportKey = key
                reportCost = Self.clock() - t
                lastReportDraw = Self.clock()
                redrawLive = true
            }
            if redrawLive || (t - lastLiveDraw >= settings.liveInterval && (status?.sequence ?? 0) != lastLiveSequence) || lastLiveSequence < 0 {
                let fragments = drawLive(status)
                lastLiveSequence = status?.sequence ?? 0
                lastLiveDraw = t
                lock.lock()
                liveFragments = fragments
                update.liveVersion += 1
                update.live = Self.json(fragments)
                lock.unlock()
            }
        }
        lock.lock()
        defer { lock.unlock() }
        return update
    }

    /// The whole page as it stands; the script then keeps it current.
    public func page() -> String {
        _ = refresh()
        lock.lock()
        let fragments = liveFragments.merging(reportFragments) { a, _ in a }
        let name = feed?.latest?.sweep ?? sweepName
        lock.unlock()
        var h = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        h += "<title>Sweep \(escapeXML(name)) — dashboard</title><link rel=\"stylesheet\" href=\"dashboard.css\"></head>\n"
        h += "<body class=\"dashboard\" data-live=\"\(feed == nil ? "false" : "true")\">\n"
        h += "<header><h1>Sweep <code>\(escapeXML(name.isEmpty ? "(unnamed)" : name))</code> <span id=\"dash-connection\" class=\"conn\">static</span></h1>"
        h += "<div id=\"\(Element.summary)\">\(fragments[Element.summary] ?? "")</div></header>\n"
        for id in [Element.running, Element.workers, Element.tables, Element.charts] {
            h += "<div id=\"\(id)\">\(fragments[id] ?? "")</div>\n"
        }
        h += "<script src=\"dashboard.js\"></script>\n</body></html>\n"
        return h
    }

    // MARK: Results

    /// What tells whether the results changed since they were last read; nil when they are not
    /// to be read.
    private func currentReportKey(_ status: LiveStatus?) -> String? {
        if resultsUnreadable != nil { return reportKey == nil ? "unreadable" : reportKey }
        if let status { return "\(status.committed) \(status.finished)" }
        let path = settings.results.hasSuffix(".h5") ? settings.results : (settings.results as NSString).appendingPathComponent(ResultsLayout.indexFile)
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else { return "missing" }
        let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        return "\(modified) \((attributes[.size] as? NSNumber)?.intValue ?? 0)"
    }

    private func readResults() {
        var fragments: [String: String] = [:]
        if let resultsUnreadable {
            analysis = nil
            fragments[Element.tables] = "<p class=\"note\">No tables or charts here: \(escapeXML(resultsUnreadable)).</p>"
            fragments[Element.charts] = ""
        } else {
            do {
                let a = try SweepAnalysis(results: try SweepResults.load(settings.results))
                let builder = try HTMLReport.draw(a, groupBy: settings.groupBy, heatmap: nil, compare: [], pareto: nil)
                analysis = a
                reportProblem = nil
                fragments[Element.tables] = HTMLReport.tablesSection(a, builder: builder, top: settings.top)
                fragments[Element.charts] = HTMLReport.chartsSection(builder)
            } catch {
                // Kept: the last good reading (a sweep's first moments have no index yet).
                reportProblem = "\(error)"
                fragments[Element.tables] = "<p class=\"note\">The results cannot be read yet: \(escapeXML("\(error)"))</p>"
                fragments[Element.charts] = ""
            }
        }
        lock.lock()
        sweepName = analysis?.results.name ?? sweepName
        reportFragments = fragments
        update.reportVersion += 1
        update.report = Self.json(fragments)
        lock.unlock()
    }

    // MARK: Live

    private func drawLive(_ status: LiveStatus?) -> [String: String] {
        if let status {
            return [Element.summary: summary(status), Element.running: running(status), Element.workers: workers(status)]
        }
        return [Element.summary: summary(analysis), Element.running: running(nil), Element.workers: ""]
    }

    func summary(_ s: LiveStatus) -> String {
        let finished = s.counts.filter { TrialStatus(rawValue: $0.key) != nil }.values.reduce(0, +)
        var h = "<p class=\"meta\"><span class=\"state \(s.finished ? "finished" : "running")\">\(s.finished ? "finished" : "running")</span> "
        h += statusChips(s.counts.sorted { Self.statusOrder($0.key) < Self.statusOrder($1.key) }.map { ($0.key, $0.value) })
        h += " · \(s.search.map { "\(escapeXML($0)) search · " } ?? "")objective <b>\(escapeXML(s.objectiveMetric))</b> (\(s.maximize ? "higher" : "lower") is better)</p>"
        let fraction = s.total > 0 ? Double(finished) / Double(s.total) : 0
        h += "<div class=\"progress\" title=\"\(finished) of \(s.total) trials finished\"><div class=\"bar\" style=\"width:\(String(format: "%.1f", 100 * fraction))%\"></div></div>"
        h += "<p class=\"meta\"><b>\(finished)</b> of \(s.total) trials finished · elapsed \(Self.duration(s.elapsedSeconds))"
        if let eta = s.etaSeconds, !s.finished { h += " · ETA \(Self.duration(eta))" }
        if let best = s.best { h += " · best \(escapeXML(s.objectiveMetric)) <b>\(formatMetric(best.value))</b> (<code>\(escapeXML(best.id))</code>)" }
        return h + "</p>"
    }

    func summary(_ a: SweepAnalysis?) -> String {
        guard let a else { return "<p class=\"meta\">\(escapeXML(reportProblem ?? "reading the results…"))</p>" }
        var h = "<p class=\"meta\"><span class=\"state results\">results</span> \(statusChips(a.statusCounts.map { ($0.status, $0.count) }))"
        h += " · ranked by <b>\(a.metric.rawValue)</b> (\(a.maximize ? "higher" : "lower") is better) · <code>\(escapeXML(a.results.indexPath))</code></p>"
        return h
    }

    func statusChips(_ counts: [(String, Int)]) -> String {
        counts.map { "<span class=\"status \(escapeXML($0.0))\">\($0.1) \(escapeXML($0.0))</span>" }.joined(separator: " ")
    }

    static func statusOrder(_ status: String) -> Int {
        let order = [ResultsLayout.Index.running, ResultsLayout.Index.queued, ResultsLayout.Index.paused] + TrialStatus.allCases.map(\.rawValue)
        return order.firstIndex(of: status) ?? order.count
    }

    /// The running trials' curves so far beside each group's best committed one, and the table
    /// of running trials (each row says how many points its curve has).
    func running(_ s: LiveStatus?) -> String {
        var h = "<section class=\"panel\"><h2>Running trials</h2>"
        guard let s else {
            let running = analysis?.trials.filter { $0.status == ResultsLayout.Index.running } ?? []
            h +=
                running.isEmpty
                ? "<p class=\"note\">None: these are finished results.</p>"
                : "<p class=\"note\">\(running.count) running when the index was last written; their curves show on the coordinator's dashboard.</p>"
            return h + "</section>"
        }
        guard !s.running.isEmpty else { return h + "<p class=\"note\">\(s.finished ? "None: the sweep is over." : "None right now.")</p></section>" }
        let metric = Metric(rawValue: s.objectiveMetric)
        func value(_ p: LiveStatus.Point) -> Double {
            switch metric {
            case .trainLoss: p.trainLoss
            case .testLoss: p.testLoss.isNaN ? p.trainLoss : p.testLoss
            case .testAccuracy: p.testAccuracy
            case nil: p.objective
            }
        }
        var series: [Series] = []
        if let a = analysis, let groups = try? a.bestPerGroup(by: settings.groupBy) {
            for (k, g) in groups.enumerated() {
                guard let t = g.best?.trial, let history = t.details?.history else { continue }
                series.append(
                    Series(
                        name: "best \(g.group) (committed)", color: Palette.color(k), points: downsample(Array(zip(history.epoch, history.column(a.metric))), 400),
                        width: 1.5, dash: "5 4", opacity: 0.6))
            }
        }
        let shown = s.running.prefix(12)
        for (k, trial) in shown.enumerated() {
            series.append(Series(name: "\(trial.id) on \(trial.worker)", color: Palette.color(k + 3), points: downsample(trial.points.map { (x: $0.epoch, y: value($0)) }, 800)))
        }
        let unit = s.running.allSatisfy { $0.unit == s.running[0].unit } ? s.running[0].unit : "epoch"
        if let svg = Charts.lines(
            title: "\(metric?.label.capitalizedFirst ?? s.objectiveMetric) of the running trials",
            subtitle: "solid: running now (\(shown.count) of \(s.running.count) drawn); dashed: each \(settings.groupBy)'s best committed trial",
            xLabel: unit, yLabel: metric?.label ?? s.objectiveMetric, series: series, logY: metric == .testAccuracy ? false : nil)
        {
            h += "<figure class=\"chart\" id=\"chart-live-curves\">\(svg)</figure>"
        } else {
            h += "<p class=\"note\">No progress reported yet.</p>"
        }
        let rows = s.running.prefix(50).map { t -> String in
            let last = t.points.last
            return "<tr data-trial=\"\(escapeXML(t.id))\" data-points=\"\(t.points.count)\"><td><code>\(escapeXML(t.id))</code></td><td>\(escapeXML(t.branch))</td><td>\(escapeXML(t.worker))</td>"
                + "<td class=\"num\">\(last.map { String(Int($0.epoch)) } ?? "–") / \(t.length)</td><td class=\"num\">\(last.map { formatMetric(value($0)) } ?? "–")</td></tr>"
        }
        h +=
            "<div class=\"table\"><table><thead><tr><th>trial</th><th>branch</th><th>worker</th><th class=\"num\">\(unit)</th><th class=\"num\">\(escapeXML(s.objectiveMetric))</th></tr></thead><tbody>"
        h += rows.joined() + "</tbody></table>"
        if s.running.count > 50 { h += "<p class=\"note\">and \(s.running.count - 50) more</p>" }
        return h + "</div></section>"
    }

    func workers(_ s: LiveStatus) -> String {
        var h = "<section class=\"panel\"><h2>Workers (\(s.workers.count) connected · \(s.workersLost) lost · \(s.workersReplaced) local replaced)</h2>"
        let rows = s.workers.prefix(200).map { w in
            "<tr><td>\(escapeXML(w.name))</td><td>\(escapeXML(w.host))</td><td class=\"num\">\(w.slots)</td><td class=\"num\">\(w.threads)</td><td>\(escapeXML(w.kernel))</td>"
                + "<td>\(w.trials.prefix(8).map { "<code>\(escapeXML($0))</code>" }.joined(separator: " "))\(w.trials.count > 8 ? " …" : "")</td>"
                + "<td class=\"num\">\(String(format: "%.1f", w.silentSeconds)) s ago</td></tr>"
        }
        h +=
            "<div class=\"table\"><table><thead><tr><th>worker</th><th>host</th><th class=\"num\">slots</th><th class=\"num\">threads</th><th>BLAS kernel</th><th>trials</th><th class=\"num\">last heard</th></tr></thead><tbody>"
        h += rows.joined() + "</tbody></table>"
        if s.workers.count > 200 { h += "<p class=\"note\">and \(s.workers.count - 200) more</p>" }
        h += "</div>"
        if !s.departed.isEmpty {
            h += "<h3>Departed</h3><ul class=\"departed\">"
            h += s.departed.suffix(10).reversed().map { "<li>\(escapeXML($0.name)) on \(escapeXML($0.host)): \(escapeXML($0.reason)) at \(Self.duration($0.at))</li>" }.joined()
            h += "</ul>"
        }
        return h + "</section>"
    }

    static func duration(_ s: Double) -> String {
        guard s.isFinite, s >= 0 else { return "–" }
        if s < 60 { return "\(Int(s.rounded()))s" }
        if s < 3600 { return "\(Int(s / 60))m\(Int(s.truncatingRemainder(dividingBy: 60)))s" }
        return "\(Int(s / 3600))h\(Int(s.truncatingRemainder(dividingBy: 3600) / 60))m"
    }

    /// One line of JSON (server-sent events' data may not hold a line break).
    static func json(_ fragments: [String: String]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(fragments)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    // MARK: Assets

    /// The page's style: the report's, and the dashboard's own parts.
    public static let css =
        HTMLReport.css + """

            header h1 .conn{font-size:12px;font-weight:500;vertical-align:middle;padding:1px 8px;border-radius:9px;background:#e4e7eb;color:#555}
            header h1 .conn.on{background:#dcefdc;color:#245a24}header h1 .conn.off{background:#f6ecd0;color:#7a5a00}
            .state{display:inline-block;padding:0 8px;border-radius:9px;font-size:12px;font-weight:600;margin-right:4px}
            .state.running{background:#4e79a7;color:#fff}.state.finished{background:#59a14f;color:#fff}.state.results{background:#76b7b2;color:#fff}
            .progress{height:10px;background:#e4e7eb;border-radius:5px;overflow:hidden;max-width:900px;margin:2px 0 6px}.progress .bar{height:100%;background:#4e79a7;transition:width .4s}
            .panel{background:#fff;border:1px solid #dde0e4;border-radius:6px;padding:8px 12px;margin-bottom:14px;display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
            .panel h2{flex-basis:100%;font-size:14px;margin:2px 0 0}.panel h3{flex-basis:100%;font-size:13px;margin:4px 0 0}.panel .table{border:none;padding:0}
            .panel figure.chart{border:none}.note{color:#666;font-size:12.5px;margin:2px 0}ul.departed{margin:0;padding-left:18px;font-size:12.5px;flex-basis:100%}
            """

    /// The page's script: server-sent events (reconnecting by themselves), each a JSON object of
    /// element id → HTML. `window.dashboard` counts what arrived (the browser test reads it).
    public static let script = """
        "use strict";
        (function () {
          var state = window.dashboard = { loadedAt: Date.now(), updates: 0, live: 0, report: 0 };
          var connection = document.getElementById("dash-connection");
          if (!window.EventSource) { connection.textContent = "no live updates in this browser"; return; }
          var token = new URLSearchParams(location.search).get("token");
          var source = new EventSource("events" + (token ? "?token=" + encodeURIComponent(token) : ""));
          function apply(kind) {
            return function (event) {
              var parts;
              try { parts = JSON.parse(event.data); } catch (e) { return; }
              Object.keys(parts).forEach(function (id) {
                var element = document.getElementById(id);
                if (element && typeof parts[id] === "string") { element.innerHTML = parts[id]; }
              });
              state.updates += 1;
              state[kind] += 1;
              document.body.setAttribute("data-updates", String(state.updates));
            };
          }
          source.addEventListener("live", apply("live"));
          source.addEventListener("report", apply("report"));
          source.addEventListener("open", function () { connection.textContent = "live"; connection.className = "conn on"; });
          source.addEventListener("error", function () {
            connection.textContent = source.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting…";
            connection.className = "conn off";
          });
        })();
        """
}
