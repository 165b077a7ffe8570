/// The trials table as CSV: the index's columns, two measured ones, then one column per
/// hyperparameter (named by its key; a key that clashes with a column, like `epochs`, which
/// the table uses for epochs run, becomes `config_epochs`). Unset hyperparameters are empty,
/// NaN metrics `nan`; pandas reads both as NaN.
public enum CSVExport {
    public static let columns = [
        "id", "index", "branch", "model", "optimizer", "status", "epochs", "train_loss", "test_loss", "test_accuracy",
        "wall_seconds", "attempts", "host", "file", "seconds_per_epoch", "optimizer_state_bytes",
    ]

    public static func header(for a: SweepAnalysis) -> [String] {
        columns + hparamColumns(a).map(\.name)
    }

    /// The hyperparameter columns: `model` and `optimizer` are already columns, with the same values.
    static func hparamColumns(_ a: SweepAnalysis) -> [(key: String, name: String)] {
        a.results.hparamKeys.filter { $0 != "model" && $0 != "optimizer" }.map { ($0, columns.contains($0) ? "config_\($0)" : $0) }
    }

    public static func render(_ a: SweepAnalysis) -> String {
        let hp = hparamColumns(a)
        var out = (columns + hp.map(\.name)).map(quote).joined(separator: ",") + "\n"
        for t in a.trials {
            var cells = [
                t.id, String(t.index), t.branch, t.model, t.optimizer, t.status, String(t.epochs), number(t.trainLoss), number(t.testLoss),
                number(t.testAccuracy), number(t.wallSeconds), String(t.attempts), t.host, t.file,
                t.details.map { number($0.secondsPerEpoch) } ?? "", t.details?.optimizerStateBytes.map(String.init) ?? "",
            ]
            for (key, _) in hp {
                switch t.hparams[key] {
                case .number(let x)?: cells.append(number(x))
                case .text(let s)?: cells.append(s)
                case nil: cells.append("")
                }
            }
            out += cells.map(quote).joined(separator: ",") + "\n"
        }
        return out
    }

    /// Shortest round-trip form, so the CSV holds exactly what the results hold.
    static func number(_ x: Double) -> String { x.isNaN ? "nan" : x.isInfinite ? (x > 0 ? "inf" : "-inf") : "\(x)" }

    static func quote(_ s: String) -> String {
        guard s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return s }
        return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
