import Foundation

/// One sweep's trials in trial-number order for the best-so-far chart.
struct ProgressSeries {
    var name: String
    var color: String
    /// x: trial number; value: the trial's metric (NaN: not ranked); best: the running best.
    var points: [(x: Double, value: Double, best: Double, title: String)]
}

/// A point of the Pareto scatter.
struct ScatterPoint {
    var x: Double
    var y: Double
    var color: String
    var title: String
    var highlight: Bool
}

extension Charts {
    /// The running best of each sweep as a step line over trial number, every trial's own value
    /// as a faint point, and trials without a finite value as crosses in a strip under the plot.
    static func progress(title: String, subtitle: String?, yLabel: String, series: [ProgressSeries], width: Double = 650, height: Double = 400) -> String? {
        let ys = series.flatMap { $0.points.flatMap { [$0.value, $0.best] } }.filter(\.isFinite)
        let xs = series.flatMap { $0.points.map(\.x) }
        guard !ys.isEmpty, !xs.isEmpty else { return nil }
        let legendRows = series.count > 1 ? (min(series.count, 12) + 1) / 2 : 0
        let svg = SVG(width: width, height: height + 20 * Double(legendRows))
        Charts.title(svg, title, subtitle: subtitle)
        let top = subtitle == nil ? 40.0 : 52
        let strip = 22.0
        let frame = PlotFrame(
            svg: svg, left: 72, top: top, width: width - 72 - 20, height: height - top - 52 - strip,
            x: Axis.fit(xs + [0], nice: true), y: Axis.fit(ys))
        frame.drawAxes(xLabel: "", yLabel: yLabel)
        let stripY = frame.top + frame.height + strip - 4
        svg.text(frame.left + frame.width / 2, height - 14, "trial number", size: 12, anchor: "middle", fill: "#222")
        let failed = series.contains { $0.points.contains { !$0.value.isFinite } }
        if failed { svg.text(frame.left + 4, stripY - 8, "× no finite value (diverged, failed)", size: 10, fill: "#a33") }
        let clipID = "clip\(uniqueID())"
        svg.clip(id: clipID, x: frame.left, y: frame.top, w: frame.width, h: frame.height)
        svg.group(clip: clipID) {
            for s in series {
                for p in s.points where p.value.isFinite {
                    guard let px = frame.x(p.x), let py = frame.y(p.value) else { continue }
                    svg.circle(px, py, 2.6, fill: s.color, title: p.title)
                }
            }
            for s in series {
                // Horizontal to the next trial, then vertical to its best.
                var run: [(Double, Double)] = []
                var previous: Double?
                for p in s.points where p.best.isFinite {
                    guard let px = frame.x(p.x), let py = frame.y(p.best) else { continue }
                    if let previous { run.append((px, previous)) }
                    run.append((px, py))
                    previous = py
                }
                if let previous, let lastX = s.points.last.flatMap({ frame.x($0.x) }) { run.append((lastX, previous)) }
                svg.path([run], stroke: s.color, width: 2.4, title: "\(s.name): best so far")
            }
        }
        for s in series {
            for p in s.points where !p.value.isFinite {
                guard let px = frame.x(p.x) else { continue }
                svg.path([[(px - 3, stripY - 3), (px + 3, stripY + 3)], [(px - 3, stripY + 3), (px + 3, stripY - 3)]], stroke: s.color, width: 1.5, title: p.title)
            }
        }
        if series.count > 1 {
            for (i, s) in series.prefix(12).enumerated() {
                let lx = frame.left + Double(i % 2) * (frame.width / 2), ly = height + 2 + Double(i / 2) * 20
                svg.line(lx, ly, lx + 22, ly, stroke: s.color, width: 3)
                svg.text(lx + 28, ly + 4, truncate(s.name, 44), size: 11.5, fill: "#333")
            }
        }
        return svg.render(label: title)
    }

    /// Trials over two measures, the highlighted ones (the Pareto front) large and outlined and
    /// joined by the front's staircase (`front`, in order along x).
    static func scatter(
        title: String, subtitle: String?, xLabel: String, yLabel: String, points: [ScatterPoint], front: [(x: Double, y: Double)], maximize: (Bool, Bool),
        width: Double = 650, height: Double = 420
    ) -> String? {
        let finite = points.filter { $0.x.isFinite && $0.y.isFinite }
        guard !finite.isEmpty else { return nil }
        let svg = SVG(width: width, height: height)
        Charts.title(svg, title, subtitle: subtitle)
        let top = subtitle == nil ? 40.0 : 52
        let frame = PlotFrame(svg: svg, left: 72, top: top, width: width - 72 - 20, height: height - top - 52, x: Axis.fit(finite.map(\.x)), y: Axis.fit(finite.map(\.y)))
        frame.drawAxes(xLabel: xLabel, yLabel: yLabel)
        let clipID = "clip\(uniqueID())"
        svg.clip(id: clipID, x: frame.left - 6, y: frame.top - 6, w: frame.width + 12, h: frame.height + 12)
        svg.group(clip: clipID) {
            for p in finite where !p.highlight {
                guard let px = frame.x(p.x), let py = frame.y(p.y) else { continue }
                svg.circle(px, py, 3.2, fill: p.color, title: p.title)
            }
            // The staircase: from each front point along x to the next, then along y.
            var run: [(Double, Double)] = []
            for (i, p) in front.enumerated() {
                guard let px = frame.x(p.x), let py = frame.y(p.y) else { continue }
                if i > 0, let last = run.last { run.append((px, last.1)) }
                run.append((px, py))
            }
            svg.path([run], stroke: "#111", width: 1.5, dash: "5 3", title: "Pareto front")
            for p in finite where p.highlight {
                guard let px = frame.x(p.x), let py = frame.y(p.y) else { continue }
                svg.circle(px, py, 5.5, fill: p.color, stroke: "#111", strokeWidth: 1.8, title: p.title)
            }
        }
        let corner = "better: \(maximize.0 ? "right" : "left"), \(maximize.1 ? "up" : "down")"
        svg.text(frame.left + frame.width - 4, frame.top + 14, corner, size: 10.5, anchor: "end", fill: "#666")
        return svg.render(label: title)
    }
}
