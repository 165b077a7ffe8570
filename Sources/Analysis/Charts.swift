import Foundation

/// A named series of (x, y) points; non-finite points break the line instead of being drawn.
struct Series {
    var name: String
    var color: String
    var points: [(x: Double, y: Double)]
    var width: Double = 2
    var dash: String? = nil
    var opacity: Double = 1
    /// Shown in the legend (faint context lines are not).
    var inLegend: Bool = true
}

struct Bar {
    var label: String
    var value: Double
    var color: String
    /// Shown instead of a bar when the value is not finite (e.g. "diverged").
    var note: String = "n/a"
}

/// A heatmap cell: the mean metric over its trials, how many there are, how many were ranked.
struct HeatCell {
    var mean: Double
    var trials: Int
    var ranked: Int
}

/// A parallel-coordinates axis: numeric (linear or log) or categorical.
struct ParallelAxis {
    var name: String
    var numeric: Axis?
    var categories: [String] = []
}

struct ParallelLine {
    /// One value per axis (nil where the trial does not set the key).
    var values: [Double?]
    var metric: Double
    var title: String
    var highlight: Bool = false
}

/// The chart renderers. Each returns nil when it has nothing finite to draw, and the report then
/// omits the chart rather than drawing an empty frame.
enum Charts {
    static let titleSize = 15.0

    static func title(_ svg: SVG, _ title: String, subtitle: String? = nil) {
        svg.text(16, 22, title, size: titleSize, weight: "600", fill: "#111")
        if let subtitle { svg.text(16, 39, subtitle, size: 11.5, fill: "#666") }
    }

    /// Lines over a shared x axis. `logY` nil: log when the data spans more than two decades.
    static func lines(
        title: String, subtitle: String? = nil, xLabel: String, yLabel: String, series: [Series], width: Double = 650, height: Double = 380,
        logX: Bool = false, logY: Bool? = nil
    ) -> String? {
        let drawable = series.map { s in s.points.filter { $0.x.isFinite && $0.y.isFinite && (!logX || $0.x > 0) } }
        let ys = drawable.flatMap { $0.map(\.y) }, xs = drawable.flatMap { $0.map(\.x) }
        guard !ys.isEmpty else { return nil }
        let useLogY = logY ?? Axis.wantsLog(ys)
        guard !useLogY || ys.contains(where: { $0 > 0 }) else { return nil }
        let legendItems = series.filter(\.inLegend).map { ($0.name, $0.color, $0.dash) }
        // The legend goes under the plot, two entries a row, so long names stay whole.
        let legendRows = (min(legendItems.count, 12) + 1) / 2
        let svg = SVG(width: width, height: height + 20 * Double(legendRows))
        Charts.title(svg, title, subtitle: subtitle)
        let top = subtitle == nil ? 40.0 : 52
        let frame = PlotFrame(
            svg: svg, left: 72, top: top, width: width - 72 - 20, height: height - top - 52,
            x: Axis.fit(xs, log: logX, nice: !logX), y: Axis.fit(ys, log: useLogY))
        frame.drawAxes(xLabel: xLabel, yLabel: yLabel)
        let clipID = "clip\(uniqueID())"
        svg.clip(id: clipID, x: frame.left, y: frame.top, w: frame.width, h: frame.height)
        svg.group(clip: clipID) {
            for s in series {
                var runs: [[(Double, Double)]] = [[]]
                for p in s.points {
                    if let px = frame.x(p.x), let py = frame.y(p.y) { runs[runs.count - 1].append((px, py)) } else if !runs[runs.count - 1].isEmpty { runs.append([]) }
                }
                let n = runs.reduce(0) { $0 + $1.count }
                svg.path(runs, stroke: s.color, width: s.width, opacity: s.opacity, dash: s.dash, title: s.name)
                if n <= 40, s.inLegend {
                    for run in runs { for (px, py) in run { svg.circle(px, py, 3, fill: s.color) } }
                }
            }
        }
        for (i, item) in legendItems.prefix(12).enumerated() {
            let lx = frame.left + Double(i % 2) * (frame.width / 2), ly = height + 2 + Double(i / 2) * 20
            svg.line(lx, ly, lx + 22, ly, stroke: item.1, width: 3, dash: item.2)
            svg.text(lx + 28, ly + 4, truncate(item.0, 44), size: 11.5, fill: "#333")
        }
        if legendItems.count > 12 { svg.text(frame.left + frame.width, height - 10, "+ \(legendItems.count - 12) more", size: 11, anchor: "end", fill: "#777") }
        return svg.render(label: title)
    }

    /// Vertical bars from zero (from the bottom decade on a log axis), value written on each.
    static func bars(
        title: String, subtitle: String? = nil, yLabel: String, bars: [Bar], width: Double = 650, height: Double = 380, logY: Bool? = nil, format: (Double) -> String
    ) -> String? {
        let values = bars.map(\.value).filter(\.isFinite)
        guard !values.isEmpty else { return nil }
        let svg = SVG(width: width, height: height)
        Charts.title(svg, title, subtitle: subtitle)
        let log = logY ?? Axis.wantsLog(values)
        // Headroom above the tallest bar for its label.
        let yAxis = Axis.fit(log ? values : values + [values.max()! * 1.1], log: log, includeZero: !log)
        let top = subtitle == nil ? 44.0 : 56
        let labelRotate = bars.count > 6 || (bars.map(\.label.count).max() ?? 0) > 12
        let bottom = labelRotate ? 92.0 : 56
        let frame = PlotFrame(svg: svg, left: 72, top: top, width: width - 72 - 20, height: height - top - bottom, x: Axis(lo: 0, hi: Double(bars.count), log: false), y: yAxis)
        frame.drawAxes(xLabel: "", yLabel: yLabel, xTicks: [])
        let slot = frame.width / Double(bars.count)
        let base = frame.y(log ? yAxis.lo : 0) ?? (frame.top + frame.height)
        for (i, b) in bars.enumerated() {
            let cx = frame.left + slot * (Double(i) + 0.5)
            let bw = min(slot * 0.62, 90)
            if let py = frame.y(b.value) {
                svg.rect(cx - bw / 2, min(py, base), bw, abs(base - py), fill: b.color, title: "\(b.label): \(format(b.value))", rx: 2)
                svg.text(cx, min(py, base) - 5, format(b.value), size: 11, anchor: "middle", fill: "#222")
            } else {
                svg.text(cx, base - 8, b.note, size: 11, anchor: "middle", fill: "#b00")
            }
            let ly = frame.top + frame.height + 16
            if labelRotate {
                svg.text(cx + 4, ly, truncate(b.label, 18), size: 11, anchor: "end", fill: "#333", rotate: -35)
            } else {
                svg.text(cx, ly, b.label, size: 11.5, anchor: "middle", fill: "#333")
            }
        }
        return svg.render(label: title)
    }

    /// A grid of cells coloured by the metric (the better, the brighter), each with its value;
    /// cells whose trials all diverged are hatched grey, cells without trials left blank.
    static func heatmap(
        title: String, subtitle: String?, xKey: String, yKey: String, xs: [String], ys: [String], cells: [[HeatCell?]], metric: String,
        maximize: Bool, width: Double = 650, height: Double = 440
    ) -> String? {
        let finite = cells.flatMap { $0.compactMap { $0?.mean } }.filter(\.isFinite)
        guard !finite.isEmpty, !xs.isEmpty, !ys.isEmpty else { return nil }
        let svg = SVG(width: width, height: height)
        Charts.title(svg, title, subtitle: subtitle)
        let colorAxis = Axis.fit(finite, nice: false)
        func t(_ v: Double) -> Double {
            let f = colorAxis.hi == colorAxis.lo ? 0.5 : colorAxis.fraction(v)
            return maximize ? f : 1 - f
        }
        let left = 90.0, top = subtitle == nil ? 44.0 : 56, barWidth = 70.0
        let plotW = width - left - 20 - barWidth, plotH = height - top - 56
        let cw = plotW / Double(xs.count), ch = plotH / Double(ys.count)
        svg.raw(
            "<defs><pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#ddd\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#aaa\" stroke-width=\"2\"/></pattern></defs>"
        )
        let fontSize = min(13, max(8, min(cw / 5.5, ch / 2.2)))
        for (j, _) in ys.enumerated() {
            for (i, _) in xs.enumerated() {
                // Rows from the bottom up: the y key grows upwards like a plot's axis.
                let x = left + Double(i) * cw, y = top + Double(ys.count - 1 - j) * ch
                guard let cell = cells[j][i] else {
                    svg.rect(x + 1, y + 1, cw - 2, ch - 2, fill: "#f7f7f7")
                    continue
                }
                if cell.mean.isFinite {
                    svg.rect(
                        x + 1, y + 1, cw - 2, ch - 2, fill: ColorMap.color(t(cell.mean)),
                        title: "\(xKey)=\(xs[i]), \(yKey)=\(ys[j]): \(metric) \(formatMetric(cell.mean)) (\(cell.ranked) of \(cell.trials) trials)")
                    if cw > 26 && ch > 14 {
                        svg.text(x + cw / 2, y + ch / 2 + fontSize * 0.35, formatMetric(cell.mean), size: fontSize, anchor: "middle", fill: ColorMap.textColor(t(cell.mean)))
                    }
                } else {
                    svg.rect(x + 1, y + 1, cw - 2, ch - 2, fill: "url(#hatch)", title: "\(xKey)=\(xs[i]), \(yKey)=\(ys[j]): no finite \(metric) (\(cell.trials) trials)")
                    if cw > 40 && ch > 14 { svg.text(x + cw / 2, y + ch / 2 + 4, "diverged", size: min(fontSize, 11), anchor: "middle", fill: "#700") }
                }
            }
        }
        let every = max(1, xs.count / 10)
        for (i, label) in xs.enumerated() where i % every == 0 {
            svg.text(left + (Double(i) + 0.5) * cw, top + plotH + 17, truncate(label, 10), size: 11, anchor: "middle", fill: "#444")
        }
        let everyY = max(1, ys.count / 14)
        for (j, label) in ys.enumerated() where j % everyY == 0 {
            svg.text(left - 6, top + Double(ys.count - 1 - j) * ch + ch / 2 + 4, truncate(label, 12), size: 11, anchor: "end", fill: "#444")
        }
        svg.text(left + plotW / 2, top + plotH + 38, xKey, size: 12, anchor: "middle", fill: "#222")
        svg.text(18, top + plotH / 2, yKey, size: 12, anchor: "middle", fill: "#222", rotate: -90)
        colorBar(svg, x: width - barWidth + 4, top: top, height: plotH, axis: colorAxis, maximize: maximize, label: metric)
        return svg.render(label: title)
    }

    /// A vertical colour scale: the better end at the top (bright), ticks on the right.
    static func colorBar(_ svg: SVG, x: Double, top: Double, height: Double, axis: Axis, maximize: Bool, label: String) {
        let steps = 40
        for k in 0..<steps {
            let f0 = Double(k) / Double(steps)
            // Top of the bar is the best value: max when maximising, min when minimising.
            let tColor = 1 - f0
            svg.rect(x, top + f0 * height, 14, height / Double(steps) + 0.5, fill: ColorMap.color(tColor))
        }
        svg.rect(x, top, 14, height, fill: "none", stroke: "#999")
        let a = maximize ? axis.placed(top + height, top) : axis.placed(top, top + height)
        var ticks = axis.ticks().filter { $0 >= axis.lo - 1e-12 && $0 <= axis.hi + 1e-12 }
        if ticks.count < 2 { ticks = [axis.lo, axis.hi] }
        for v in ticks {
            guard let py = a(v) else { continue }
            svg.line(x + 14, py, x + 18, py, stroke: "#555")
            svg.text(x + 20, py + 4, axis.log ? axis.label(v) : formatMetric(v), size: 10.5, fill: "#444")
        }
        svg.text(x + 7, top - 6, maximize ? "best ▲" : "best ▲", size: 10, anchor: "middle", fill: "#666")
        _ = label
    }

    /// Every trial as a polyline across one axis per hyperparameter and the metric, coloured by
    /// the metric (bright = better); trials without a finite metric in grey at the bottom slot.
    static func parallel(title: String, subtitle: String?, axes: [ParallelAxis], lines: [ParallelLine], metric: String, maximize: Bool, width: Double = 1334, height: Double = 440) -> String? {
        guard axes.count >= 2, !lines.isEmpty else { return nil }
        let svg = SVG(width: width, height: height)
        Charts.title(svg, title, subtitle: subtitle)
        let top = 84.0, bottom = height - 66, nanY = height - 30
        let left = 90.0, right = width - 110
        let gap = (right - left) / Double(axes.count - 1)
        let metricAxis = axes.last!.numeric!
        func t(_ v: Double) -> Double {
            let f = metricAxis.hi == metricAxis.lo ? 0.5 : metricAxis.fraction(v)
            return maximize ? f : 1 - f
        }
        func py(_ a: ParallelAxis, _ v: Double?) -> Double? {
            guard let v else { return nil }
            if let n = a.numeric { return n.placed(bottom, top)(v) }
            let k = Int(v)
            guard a.categories.indices.contains(k) else { return nil }
            return a.categories.count == 1 ? (top + bottom) / 2 : bottom - Double(k) / Double(a.categories.count - 1) * (bottom - top)
        }
        // Faint grey first (no finite metric), then the rest worst to best, the best on top.
        let order = lines.indices.sorted { i, j in
            let (a, b) = (lines[i], lines[j])
            if a.highlight != b.highlight { return !a.highlight }
            if a.metric.isFinite != b.metric.isFinite { return !a.metric.isFinite }
            return a.metric.isFinite && t(a.metric) < t(b.metric)
        }
        let opacity = lines.count > 300 ? 0.35 : lines.count > 60 ? 0.6 : 0.85
        for i in order {
            let l = lines[i]
            var runs: [[(Double, Double)]] = [[]]
            // A key the trial does not set, or a metric it has no finite value of, sits in the
            // slot under its axis, so every trial stays one connected line.
            for (k, a) in axes.enumerated() {
                let y = (k == axes.count - 1 && !l.metric.isFinite) ? nanY : (py(a, l.values[k]) ?? nanY)
                runs[runs.count - 1].append((left + Double(k) * gap, y))
            }
            let color = l.highlight ? "#111" : l.metric.isFinite ? ColorMap.color(t(l.metric)) : "#bbb"
            svg.path(runs, stroke: color, width: l.highlight ? 3 : 1.4, opacity: l.highlight ? 1 : opacity, dash: l.metric.isFinite ? nil : "4 3", title: l.title)
        }
        for (k, a) in axes.enumerated() {
            let x = left + Double(k) * gap
            svg.line(x, top, x, bottom, stroke: "#333", width: 1.2)
            svg.text(x, top - 26, truncate(a.name, 16), size: 12.5, anchor: "middle", weight: "600", fill: "#222")
            if let n = a.numeric {
                if n.log { svg.text(x, top - 12, "(log)", size: 10.5, anchor: "middle", fill: "#777") }
                let placed = n.placed(bottom, top)
                var ticks = n.ticks()
                if ticks.count > 6 { ticks = stride(from: 0, to: ticks.count, by: 2).map { ticks[$0] } }
                for v in ticks {
                    guard let y = placed(v) else { continue }
                    svg.line(x - 4, y, x, y, stroke: "#333")
                    svg.raw(
                        "<text x=\"\(coord(x - 7))\" y=\"\(coord(y + 4))\" font-size=\"10.5\" text-anchor=\"end\" fill=\"#444\" stroke=\"#fff\" stroke-width=\"3\" paint-order=\"stroke\">\(escapeXML(n.label(v)))</text>"
                    )
                }
            } else {
                for (c, name) in a.categories.enumerated() {
                    guard let y = py(a, Double(c)) else { continue }
                    svg.line(x - 4, y, x, y, stroke: "#333")
                    svg.raw(
                        "<text x=\"\(coord(x - 7))\" y=\"\(coord(y + 4))\" font-size=\"11\" text-anchor=\"end\" fill=\"#222\" stroke=\"#fff\" stroke-width=\"3\" paint-order=\"stroke\">\(escapeXML(truncate(name, 14)))</text>"
                    )
                }
            }
        }
        for (k, _) in axes.enumerated() where lines.contains(where: { k == axes.count - 1 ? !$0.metric.isFinite : $0.values[k] == nil }) {
            let x = left + Double(k) * gap
            svg.circle(x, nanY, 2.5, fill: "#888")
            svg.text(x + 6, nanY + 4, k == axes.count - 1 ? "no finite value" : "unset", size: 10.5, fill: "#888")
        }
        colorBar(svg, x: width - 62, top: top, height: bottom - top, axis: metricAxis, maximize: maximize, label: metric)
        return svg.render(label: title)
    }

    /// Trajectories over the contour lines of a 2-D objective, on equal x and y scales.
    static func trajectories(
        title: String, subtitle: String?, objective: ToyObjective, paths: [Series], width: Double = 650, height: Double = 600
    ) -> String? {
        let finitePoints = paths.filter(\.inLegend).flatMap { $0.points.filter { $0.x.isFinite && $0.y.isFinite } }
        guard !finitePoints.isEmpty else { return nil }
        var pts = finitePoints + [(objective.minimum.0, objective.minimum.1)]
        if let s = paths.first?.points.first { pts.append(s) }
        var (x0, x1) = (pts.map(\.x).min()!, pts.map(\.x).max()!)
        var (y0, y1) = (pts.map(\.y).min()!, pts.map(\.y).max()!)
        let svg = SVG(width: width, height: height)
        Charts.title(svg, title, subtitle: subtitle)
        let legendItems = paths.filter(\.inLegend).map { ($0.name, $0.color, $0.dash) }
        let legendHeight = 10 + 22.0 * Double((legendItems.count + 2) / 3)
        let left = 64.0, top = subtitle == nil ? 44.0 : 56
        let plotW = width - left - 20, plotH = height - top - 52 - legendHeight
        // Pad, then widen the shorter side so one unit is as long on both axes.
        let pad = 0.08 * max(x1 - x0, y1 - y0, 1e-9)
        x0 -= pad; x1 += pad; y0 -= pad; y1 += pad
        let unit = max((x1 - x0) / plotW, (y1 - y0) / plotH)
        let cx = (x0 + x1) / 2, cy = (y0 + y1) / 2
        x0 = cx - unit * plotW / 2; x1 = cx + unit * plotW / 2
        y0 = cy - unit * plotH / 2; y1 = cy + unit * plotH / 2
        let frame = PlotFrame(svg: svg, left: left, top: top, width: plotW, height: plotH, x: Axis(lo: x0, hi: x1, log: false), y: Axis(lo: y0, hi: y1, log: false))
        frame.drawAxes(xLabel: "x", yLabel: "y")
        let clipID = "clip\(uniqueID())"
        svg.clip(id: clipID, x: frame.left, y: frame.top, w: frame.width, h: frame.height)
        svg.group(clip: clipID) {
            let contours = Contours.lines(objective.value, x: (x0, x1), y: (y0, y1), resolution: 140)
            for (k, level) in contours.enumerated() {
                let shade = 0.15 + 0.75 * Double(k) / Double(max(contours.count - 1, 1))
                let runs = level.segments.compactMap { s -> [(Double, Double)]? in
                    guard let ax = frame.x(s.0.0), let ay = frame.y(s.0.1), let bx = frame.x(s.1.0), let by = frame.y(s.1.1) else { return nil }
                    return [(ax, ay), (bx, by)]
                }
                svg.path(runs, stroke: ColorMap.color(0.15 + 0.8 * (1 - shade)), width: 1, opacity: 0.55, title: "f = \(formatMetric(level.value))")
            }
            for p in paths {
                var runs: [[(Double, Double)]] = [[]]
                for q in p.points {
                    if let px = frame.x(q.x), let py = frame.y(q.y) { runs[runs.count - 1].append((px, py)) } else if !runs[runs.count - 1].isEmpty { runs.append([]) }
                }
                svg.path(runs, stroke: p.color, width: p.width, opacity: p.opacity, dash: p.dash, title: p.name)
                if p.inLegend, let last = runs.last(where: { !$0.isEmpty })?.last {
                    svg.circle(last.0, last.1, 4.5, fill: p.color, stroke: "#fff", strokeWidth: 1.5, title: "\(p.name): end")
                }
            }
            if let s = paths.first?.points.first, let px = frame.x(s.x), let py = frame.y(s.y) {
                svg.circle(px, py, 5, fill: "#fff", stroke: "#111", strokeWidth: 2, title: "start (\(formatNumber(s.x)), \(formatNumber(s.y)))")
            }
            if let mx = frame.x(objective.minimum.0), let my = frame.y(objective.minimum.1) {
                svg.path([[(mx - 6, my - 6), (mx + 6, my + 6)], [(mx - 6, my + 6), (mx + 6, my - 6)]], stroke: "#111", width: 2.5, title: "minimum")
            }
        }
        for (i, item) in legendItems.enumerated() {
            let lx = left + Double(i % 3) * (plotW / 3), ly = top + plotH + 54 + Double(i / 3) * 22
            svg.line(lx, ly, lx + 22, ly, stroke: item.1, width: 3, dash: item.2)
            svg.text(lx + 28, ly + 4, truncate(item.0, 30), size: 11.5, fill: "#333")
        }
        return svg.render(label: title)
    }
}

func truncate(_ s: String, _ n: Int) -> String { s.count <= n ? s : String(s.prefix(n - 1)) + "…" }

nonisolated(unsafe) private var idCounter = 0
private let idLock = NSLock()
/// Ids for clip paths, unique within the process (the dashboard draws on several threads), so
/// within any page.
func uniqueID() -> Int {
    idLock.lock()
    defer { idLock.unlock() }
    idCounter += 1
    return idCounter
}
