import Foundation

/// A minimal SVG writer: the report draws every chart itself (no JavaScript, no network), so
/// the HTML file is the whole report. Coordinates are written with one decimal; a non-finite
/// coordinate is never written (callers skip such points, `coord` is the last guard).
final class SVG {
    let width: Double
    let height: Double
    private(set) var body = ""

    init(width: Double, height: Double) {
        self.width = width
        self.height = height
    }

    func raw(_ s: String) { body += s }

    func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, stroke: String, width: Double = 1, dash: String? = nil, opacity: Double = 1) {
        body += "<line x1=\"\(coord(x1))\" y1=\"\(coord(y1))\" x2=\"\(coord(x2))\" y2=\"\(coord(y2))\" stroke=\"\(stroke)\" stroke-width=\"\(coord(width))\""
        if let dash { body += " stroke-dasharray=\"\(dash)\"" }
        if opacity < 1 { body += " stroke-opacity=\"\(coord(opacity, digits: 2))\"" }
        body += "/>"
    }

    func rect(_ x: Double, _ y: Double, _ w: Double, _ h: Double, fill: String, stroke: String? = nil, title: String? = nil, rx: Double = 0) {
        body += "<rect x=\"\(coord(x))\" y=\"\(coord(y))\" width=\"\(coord(max(w, 0)))\" height=\"\(coord(max(h, 0)))\" fill=\"\(fill)\""
        if let stroke { body += " stroke=\"\(stroke)\"" }
        if rx > 0 { body += " rx=\"\(coord(rx))\"" }
        if let title { body += "><title>\(escapeXML(title))</title></rect>" } else { body += "/>" }
    }

    func circle(_ cx: Double, _ cy: Double, _ r: Double, fill: String, stroke: String? = nil, strokeWidth: Double = 1, title: String? = nil) {
        body += "<circle cx=\"\(coord(cx))\" cy=\"\(coord(cy))\" r=\"\(coord(r))\" fill=\"\(fill)\""
        if let stroke { body += " stroke=\"\(stroke)\" stroke-width=\"\(coord(strokeWidth))\"" }
        if let title { body += "><title>\(escapeXML(title))</title></circle>" } else { body += "/>" }
    }

    /// A path from point runs: each run is one `M … L …` subpath (a gap between runs).
    func path(_ runs: [[(Double, Double)]], stroke: String, width: Double = 1.5, fill: String = "none", opacity: Double = 1, dash: String? = nil, title: String? = nil, extra: String = "") {
        let d = runs.filter { !$0.isEmpty }.map { run in
            "M" + run.map { "\(coord($0.0)),\(coord($0.1))" }.joined(separator: "L")
        }.joined()
        guard !d.isEmpty else { return }
        body += "<path d=\"\(d)\" fill=\"\(fill)\" stroke=\"\(stroke)\" stroke-width=\"\(coord(width))\" stroke-linejoin=\"round\" stroke-linecap=\"round\""
        if opacity < 1 { body += " stroke-opacity=\"\(coord(opacity, digits: 2))\"" }
        if let dash { body += " stroke-dasharray=\"\(dash)\"" }
        body += extra
        if let title { body += "><title>\(escapeXML(title))</title></path>" } else { body += "/>" }
    }

    func text(
        _ x: Double, _ y: Double, _ s: String, size: Double = 12, anchor: String = "start", weight: String? = nil, fill: String = "#333",
        rotate: Double? = nil, baseline: String? = nil
    ) {
        body += "<text x=\"\(coord(x))\" y=\"\(coord(y))\" font-size=\"\(coord(size))\" text-anchor=\"\(anchor)\" fill=\"\(fill)\""
        if let weight { body += " font-weight=\"\(weight)\"" }
        if let baseline { body += " dominant-baseline=\"\(baseline)\"" }
        if let rotate { body += " transform=\"rotate(\(coord(rotate)) \(coord(x)) \(coord(y)))\"" }
        body += ">\(escapeXML(s))</text>"
    }

    func clip(id: String, x: Double, y: Double, w: Double, h: Double) {
        body += "<defs><clipPath id=\"\(id)\"><rect x=\"\(coord(x))\" y=\"\(coord(y))\" width=\"\(coord(w))\" height=\"\(coord(h))\"/></clipPath></defs>"
    }

    func group(clip id: String, _ draw: () -> Void) {
        body += "<g clip-path=\"url(#\(id))\">"
        draw()
        body += "</g>"
    }

    func render(label: String) -> String {
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(coord(width)) \(coord(height))\" width=\"\(coord(width))\" height=\"\(coord(height))\" role=\"img\" aria-label=\"\(escapeXML(label))\" font-family=\"system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif\">"
            + body + "</svg>"
    }
}

/// A coordinate with one decimal (two for opacities); never "nan" or "inf" in the output.
func coord(_ x: Double, digits: Int = 1) -> String {
    guard x.isFinite else { return "0" }
    let clamped = min(max(x, -1e6), 1e6)
    let s = String(format: "%.\(digits)f", clamped)
    return s.hasSuffix(".0") ? String(s.dropLast(2)) : (s == "-0" ? "0" : s)
}

func escapeXML(_ s: String) -> String {
    var out = ""
    for c in s {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        default: out.append(c)
        }
    }
    return out
}

/// Categorical colours (Tableau 10): one per group, the same group the same colour in every chart.
enum Palette {
    static let colors = ["#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f", "#bab0ac"]
    static func color(_ i: Int) -> String { colors[((i % colors.count) + colors.count) % colors.count] }
}

/// A sequential colour map (viridis) from 0 (dark purple) to 1 (yellow).
enum ColorMap {
    static let stops: [(Double, Double, Double)] = [
        (68, 1, 84), (72, 40, 120), (62, 73, 137), (49, 104, 142), (38, 130, 142),
        (31, 158, 137), (53, 183, 121), (110, 206, 88), (181, 222, 43), (253, 231, 37),
    ]

    static func rgb(_ t: Double) -> (Double, Double, Double) {
        let t = min(max(t.isFinite ? t : 0, 0), 1) * Double(stops.count - 1)
        let i = min(Int(t), stops.count - 2)
        let f = t - Double(i)
        let (a, b) = (stops[i], stops[i + 1])
        return (a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f, a.2 + (b.2 - a.2) * f)
    }

    static func color(_ t: Double) -> String {
        let (r, g, b) = rgb(t)
        return String(format: "#%02x%02x%02x", Int(r.rounded()), Int(g.rounded()), Int(b.rounded()))
    }

    /// Black or white, whichever reads better on the colour at `t`.
    static func textColor(_ t: Double) -> String {
        let (r, g, b) = rgb(t)
        return 0.299 * r + 0.587 * g + 0.114 * b > 140 ? "#111" : "#fff"
    }
}

/// One axis: a data range mapped onto a pixel range, linear or log10.
struct Axis {
    var lo: Double
    var hi: Double
    var log: Bool
    var p0: Double = 0
    var p1: Double = 1

    /// Log scale once the positive data spans more than two decades.
    static func wantsLog(_ values: [Double]) -> Bool {
        let v = values.filter { $0.isFinite }
        guard let mn = v.min(), let mx = v.max(), mn > 0 else { return false }
        return mx / mn > 100
    }

    /// A range that holds the values, widened to round numbers (whole decades on a log axis).
    static func fit(_ values: [Double], log: Bool? = nil, includeZero: Bool = false, nice: Bool = true) -> Axis {
        let useLog = log ?? wantsLog(values)
        let v = values.filter { $0.isFinite && (!useLog || $0 > 0) }
        guard var lo = v.min(), var hi = v.max() else { return Axis(lo: 0, hi: 1, log: false) }
        if useLog {
            var a = Foundation.log10(lo).rounded(.down), b = Foundation.log10(hi).rounded(.up)
            if a == b { a -= 1; b += 1 }
            return Axis(lo: pow(10, a), hi: pow(10, b), log: true)
        }
        if includeZero { lo = min(lo, 0); hi = max(hi, 0) }
        if lo == hi {
            let d = lo == 0 ? 1 : abs(lo) * 0.1
            lo -= d
            hi += d
        }
        if nice {
            let step = niceStep((hi - lo) / 5)
            lo = (lo / step).rounded(.down) * step
            hi = (hi / step).rounded(.up) * step
        }
        return Axis(lo: lo, hi: hi, log: false)
    }

    func placed(_ p0: Double, _ p1: Double) -> Axis {
        var a = self
        a.p0 = p0
        a.p1 = p1
        return a
    }

    func fraction(_ v: Double) -> Double {
        if log { return (Foundation.log10(v) - Foundation.log10(lo)) / (Foundation.log10(hi) - Foundation.log10(lo)) }
        return (v - lo) / (hi - lo)
    }

    /// The pixel of a value, or nil when it cannot be drawn (non-finite, or ≤ 0 on a log axis).
    func callAsFunction(_ v: Double) -> Double? {
        guard v.isFinite, !log || v > 0 else { return nil }
        let p = p0 + fraction(v) * (p1 - p0)
        return p.isFinite ? p : nil
    }

    /// Tick values: decades on a log axis (every other when there are many), round steps otherwise.
    func ticks() -> [Double] {
        if log {
            let a = Int(Foundation.log10(lo).rounded()), b = Int(Foundation.log10(hi).rounded())
            let every = max(1, (b - a + 7) / 8)
            return stride(from: a, through: b, by: every).map { pow(10, Double($0)) }
        }
        let step = Axis.niceStep((hi - lo) / 5)
        var out: [Double] = []
        var v = (lo / step).rounded(.up) * step
        while v <= hi + step * 1e-9 {
            out.append(abs(v) < step * 1e-9 ? 0 : v)
            v += step
        }
        return out
    }

    func label(_ v: Double) -> String {
        if log {
            let k = Int(Foundation.log10(v).rounded())
            return (-3...4).contains(k) ? formatNumber(pow(10, Double(k))) : "10" + superscript(k)
        }
        let step = Axis.niceStep((hi - lo) / 5)
        let decimals = max(0, -Int(Foundation.log10(step).rounded(.down)))
        if abs(v) >= 1e5 || (abs(v) < 1e-3 && v != 0) { return String(format: "%.2g", v) }
        return String(format: "%.\(decimals)f", v)
    }

    static func niceStep(_ raw: Double) -> Double {
        guard raw > 0, raw.isFinite else { return 1 }
        let p = pow(10, Foundation.log10(raw).rounded(.down))
        let f = raw / p
        return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p
    }
}

func superscript(_ k: Int) -> String {
    let digits: [Character: Character] = ["0": "⁰", "1": "¹", "2": "²", "3": "³", "4": "⁴", "5": "⁵", "6": "⁶", "7": "⁷", "8": "⁸", "9": "⁹", "-": "⁻"]
    return String(String(k).map { digits[$0] ?? $0 })
}

/// A plot area inside an SVG with its two axes, drawn with grid lines, ticks and labels.
struct PlotFrame {
    let svg: SVG
    let left: Double, top: Double, width: Double, height: Double
    let x: Axis
    let y: Axis

    init(svg: SVG, left: Double, top: Double, width: Double, height: Double, x: Axis, y: Axis) {
        self.svg = svg
        self.left = left
        self.top = top
        self.width = width
        self.height = height
        self.x = x.placed(left, left + width)
        self.y = y.placed(top + height, top)
    }

    func drawAxes(xLabel: String, yLabel: String, xTicks: [(Double, String)]? = nil) {
        svg.rect(left, top, width, height, fill: "#fcfcfd", stroke: "#d0d4da")
        for v in y.ticks() {
            guard let py = y(v) else { continue }
            svg.line(left, py, left + width, py, stroke: "#e6e8eb")
            svg.line(left - 4, py, left, py, stroke: "#555")
            svg.text(left - 7, py + 4, y.label(v), size: 11, anchor: "end", fill: "#444")
        }
        for (v, label) in xTicks ?? x.ticks().map({ ($0, x.label($0)) }) {
            guard let px = x(v) else { continue }
            svg.line(px, top, px, top + height, stroke: "#eef0f2")
            svg.line(px, top + height, px, top + height + 4, stroke: "#555")
            svg.text(px, top + height + 17, label, size: 11, anchor: "middle", fill: "#444")
        }
        svg.text(left + width / 2, top + height + 36, xLabel + (x.log ? " (log)" : ""), size: 12, anchor: "middle", fill: "#222")
        svg.text(left - 52, top + height / 2, yLabel + (y.log ? " (log)" : ""), size: 12, anchor: "middle", fill: "#222", rotate: -90)
    }
}
