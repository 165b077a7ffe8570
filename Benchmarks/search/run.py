#!/usr/bin/env python3
"""Our searches (random, TPE, GP) side by side with Optuna's samplers on the same objectives.

Every objective value on both sides comes from our trainer: our searches run as sweeps
(`sweep-coordinator start`, one local worker, so suggestions are sequential); Optuna's samplers call
`sweep-worker run` on the same trial keys. Raw values go to results/<problem>.json (one list of
values in trial order per sampler and seed); `report` turns them into Markdown tables.

    python run.py run [--problems rosenbrock,quadratic,mlp] [--seeds 20] [--samplers ...]
    python run.py report [--doc ../../docs/search-benchmark.md]
"""
import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
BIN = os.environ.get("SWEEP_BIN", "")  # directory of sweep-coordinator / sweep-worker; else PATH
ENV = dict(os.environ, OPENBLAS_CORETYPE=os.environ.get("OPENBLAS_CORETYPE", "Haswell"),
           OPENBLAS_NUM_THREADS="1")

# The problems: fixed trial keys, the searched keys (the same distributions on both sides), the
# objective (final value of the metric), and the budget N.
PROBLEMS = {
    "rosenbrock": dict(
        title="Adam (lr, β1, β2) on Rosenbrock",
        base={"model": "rosenbrock", "start": [-1.5, 2], "steps": 500, "optimizer": "adam"},
        params={"lr": ("loguniform", 1e-5, 1.0), "beta1": ("uniform", 0.5, 0.999),
                "beta2": ("uniform", 0.9, 0.9999)},
        metric="train_loss", mode="min", trials=100),
    "quadratic": dict(
        title="SGD (lr, momentum) on an ill-conditioned quadratic (curvatures 1…1000)",
        base={"model": "quadratic", "curvatures": [1, 3.16, 10, 31.6, 100, 316, 1000],
              "steps": 300, "optimizer": "sgd",
              # a diverging run ends as diverged at 1e8 (the start is 731); without it, a run
              # whose loss passes 1e300 while still finite has its result refused by the
              # coordinator and the sweep stalls (see docs/search-benchmark.md)
              "max_loss": 1.0e8},
        params={"lr": ("loguniform", 1e-5, 1.0), "momentum": ("uniform", 0.0, 0.99)},
        metric="train_loss", mode="min", trials=100),
    "mlp": dict(
        title="AdamW (lr, weight decay, β2) on the MLP, Fashion-MNIST, 1 epoch of 4,000 examples",
        base={"model": "mlp", "data": "fashion-mnist", "epochs": 1, "limit": 4000,
              "test_limit": 1000, "optimizer": "adamw"},
        params={"lr": ("loguniform", 1e-5, 1e-1), "weight_decay": ("loguniform", 1e-6, 1e-1),
                "beta2": ("uniform", 0.9, 0.9999)},
        metric="test_loss", mode="min", trials=40),
}
SAMPLERS = ["ours-random", "ours-tpe", "ours-gp", "optuna-tpe", "optuna-random"]
CHECKPOINTS = [25, 50, 100]


def tool(name):
    return os.path.join(BIN, name) if BIN else name


def sweep_text(problem, algorithm, seed):
    p = PROBLEMS[problem]
    params = {k: {kind: [lo, hi]} for k, (kind, lo, hi) in p["params"].items()}
    doc = {"name": f"bench-{problem}-{algorithm}-{seed}", "seed": seed,
           "objective": {"metric": p["metric"], "mode": p["mode"]},
           "search": {"algorithm": algorithm, "trials": p["trials"], "params": params},
           "base": p["base"]}
    return json.dumps(doc)  # JSON is YAML


def value_of(status, value):
    """A trial that did not finish (diverged, failed) counts as +inf (−inf when maximising)."""
    if status != "done" or value is None or not math.isfinite(value):
        return math.inf
    return float(value)


def run_ours(problem, algorithm, seed, work):
    import h5py
    p = PROBLEMS[problem]
    path = os.path.join(work, "sweep.yaml")
    out = os.path.join(work, "out")
    shutil.rmtree(out, ignore_errors=True)
    with open(path, "w") as f:
        f.write(sweep_text(problem, algorithm, seed))
    subprocess.run([tool("sweep-coordinator"), "start", path, "--local-workers", "1", "--out", out,
                    "--plain"], env=ENV, check=True, stdout=subprocess.DEVNULL)
    with h5py.File(os.path.join(out, "sweep.h5"), "r") as f:
        t = f["trials"][...]
        configs = {}
        for row in t:
            attrs = f["by_id"][row["id"].decode()].attrs
            configs[int(row["index"])] = json.loads(attrs["config"])
    t = np.sort(t, order="index")
    assert list(t["index"]) == list(range(p["trials"])), "trials missing"
    sign = 1 if p["mode"] == "min" else -1
    values = [sign * value_of(r["status"].decode(), float(r[p["metric"]])) for r in t]
    return values, [configs[i] for i in range(len(values))]


def worker_objective(problem, work):
    """f(keys) -> the objective's final value, as `sweep-worker run` computes it."""
    import h5py
    p = PROBLEMS[problem]
    sign = 1 if p["mode"] == "min" else -1

    def f(keys):
        trial = os.path.join(work, "trial.json")
        out = os.path.join(work, "trial.h5")
        if os.path.exists(out):
            os.remove(out)
        with open(trial, "w") as fh:
            json.dump({**p["base"], **keys}, fh)
        subprocess.run([tool("sweep-worker"), "run", trial, "--out", out], env=ENV, check=True,
                       stdout=subprocess.DEVNULL)
        with h5py.File(out, "r") as h:
            status = h.attrs["status"]
            status = status.decode() if isinstance(status, bytes) else status
            hist = h["history"][...]
            v = float(hist[p["metric"]][-1]) if len(hist) else math.nan
        return sign * value_of(status, v)
    return f


def run_optuna(problem, kind, seed, work):
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    p = PROBLEMS[problem]
    f = worker_objective(problem, work)
    sampler = {"tpe": lambda: optuna.samplers.TPESampler(seed=seed),
               "random": lambda: optuna.samplers.RandomSampler(seed=seed),
               "gp": lambda: optuna.samplers.GPSampler(seed=seed)}[kind]()
    study = optuna.create_study(direction="minimize", sampler=sampler)  # values are signed

    def objective(trial):
        keys = {k: trial.suggest_float(k, lo, hi, log=(d == "loguniform"))
                for k, (d, lo, hi) in p["params"].items()}
        return f(keys)
    study.optimize(objective, n_trials=p["trials"])
    trials = sorted(study.trials, key=lambda t: t.number)
    return [t.value if t.value is not None else math.inf for t in trials]


def load(problem):
    path = os.path.join(RESULTS, f"{problem}.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    p = PROBLEMS[problem]
    return {"problem": problem, "title": p["title"], "base": p["base"],
            "params": {k: list(v) for k, v in p["params"].items()}, "metric": p["metric"],
            "mode": p["mode"], "trials": p["trials"], "values": {}}


def save(problem, data):
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{problem}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, separators=(",", ":"))
    os.replace(path + ".tmp", path)


def cmd_run(args):
    samplers = args.samplers.split(",")
    for problem in args.problems.split(","):
        data = load(problem)
        if args.trials:
            data["trials"] = PROBLEMS[problem]["trials"] = args.trials
        for sampler in samplers:
            runs = data["values"].setdefault(sampler, {})
            for seed in range(args.seeds):
                if str(seed) in runs:
                    continue
                t0 = time.time()
                with tempfile.TemporaryDirectory() as work:
                    side, algo = sampler.split("-", 1)
                    if side == "ours":
                        values, configs = run_ours(problem, algo, seed, work)
                        if seed == 0 and "check" not in data.get("checked", {}).get(algo, ""):
                            # The two sides optimise the same function: the worker run on one of
                            # our trials' keys gives the value our sweep recorded, bit for bit.
                            keys = {k: configs[-1][k] for k in PROBLEMS[problem]["params"]}
                            again = worker_objective(problem, work)(keys)
                            assert again == values[-1], (problem, algo, again, values[-1])
                            data.setdefault("checked", {})[algo] = "checked: equal"
                    else:
                        values = run_optuna(problem, algo, seed, work)
                runs[str(seed)] = [float(f"{v:.10g}") if math.isfinite(v) else None
                                   for v in values]
                save(problem, data)
                print(f"{problem} {sampler} seed {seed}: best {min(values):.6g} "
                      f"({time.time() - t0:.1f} s)", flush=True)


# ---- report ----

def best_curve(values):
    v = np.array([math.inf if x is None else x for x in values], dtype=float)
    return np.minimum.accumulate(v)


def quartiles(xs):
    xs = np.sort(np.asarray(xs, dtype=float))
    # inf (not reached) sorts last; np.percentile with inf gives nan, so interpolate by hand
    def q(p):
        pos = (len(xs) - 1) * p
        lo, hi = int(math.floor(pos)), int(math.ceil(pos))
        if lo == hi or xs[lo] == xs[hi]:
            return xs[lo]
        if not (math.isfinite(xs[lo]) and math.isfinite(xs[hi])):
            return math.inf
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)
    return q(0.25), q(0.5), q(0.75)


def fmt_value(x, sign):
    return "—" if not math.isfinite(x) else f"{sign * x:.3g}"


def fmt_trials(x):
    return "not reached" if not math.isfinite(x) else f"{x:g}"


def analyse(data):
    sign = 1 if data["mode"] == "min" else -1
    n = data["trials"]
    cps = [c for c in CHECKPOINTS if c < n] + [n]
    curves = {s: {seed: best_curve(v) for seed, v in runs.items()}
              for s, runs in data["values"].items()}
    rnd = curves["ours-random"]
    target = quartiles([c[n - 1] for c in rnd.values()])[1]
    stats = {}
    for s, cs in curves.items():
        best = {c: quartiles([cv[c - 1] for cv in cs.values()]) for c in cps}
        reach = [next((i + 1 for i, x in enumerate(cv) if x <= target), math.inf)
                 for cv in cs.values()]
        stats[s] = dict(best=best, reach=quartiles(reach), seeds=len(cs),
                        final=[cv[n - 1] for cv in cs.values()])
    return sign, n, cps, target, stats


def p_better(a, b):
    """P(a seed of a ends better than a seed of b), ties count half (the Mann–Whitney U / n²)."""
    a, b = np.asarray(a)[:, None], np.asarray(b)[None, :]
    return float(np.mean((a < b) + 0.5 * (a == b)))


def report(problems):
    lines = []
    verdicts = []
    for problem in problems:
        path = os.path.join(RESULTS, f"{problem}.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            data = json.load(f)
        sign, n, cps, target, stats = analyse(data)
        seeds = sorted({st["seeds"] for st in stats.values()})
        params = ", ".join(f"{k} {d} [{lo:g}, {hi:g}]" for k, (d, lo, hi) in data["params"].items())
        lines += [f"### {data['title']}", "",
                  f"Objective: final `{data['metric']}` ({data['mode']}); N = {n} trials; "
                  f"{'/'.join(map(str, seeds))} seeds; searched: {params}; fixed: "
                  f"`{json.dumps(data['base'], separators=(', ', ': '))}`. "
                  f"Target = our random search's median {n}-trial best = "
                  f"{fmt_value(target, sign)}. Cells: median [q1, q3] over seeds.", ""]
        head = ["sampler"] + [f"best after {c}" for c in cps] + ["trials to target"]
        lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for s in SAMPLERS:
            if s not in stats:
                continue
            st = stats[s]
            cells = [s] + [f"{fmt_value(st['best'][c][1], sign)} [{fmt_value(st['best'][c][0], sign)}, "
                           f"{fmt_value(st['best'][c][2], sign)}]" for c in cps]
            r = st["reach"]
            cells.append(f"{fmt_trials(r[1])} [{fmt_trials(r[0])}, {fmt_trials(r[2])}]")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        # the criteria
        if "ours-tpe" in stats and "optuna-tpe" in stats:
            a, b = stats["ours-tpe"]["best"][n][1], stats["optuna-tpe"]["best"][n][1]
            ok = a <= b
            pb = p_better(stats["ours-tpe"]["final"], stats["optuna-tpe"]["final"])
            cmp = (f"= {fmt_value(a, sign)} {'≤' if sign > 0 else '≥'} Optuna TPE's {fmt_value(b, sign)}"
                   if ok else f"= {fmt_value(a, sign)}, worse than Optuna TPE's {fmt_value(b, sign)}")
            verdicts.append((ok, f"{problem}: our TPE's median best after {n} {cmp} (a seed of "
                                 f"ours ends better than a seed of Optuna's with probability "
                                 f"{pb:.2f})"))
        for s in ("ours-tpe", "ours-gp"):
            if s in stats:
                r = stats[s]["reach"][1]
                ok = r <= n / 2
                how = (f"in a median of {r:g} trials ({'≤' if ok else '>'} {n // 2})"
                       if math.isfinite(r) else f"in under half the seeds within {n} trials")
                verdicts.append((ok, f"{problem}: {s} reaches random search's median {n}-trial best "
                                     f"{how}"))
    lines += ["### Criteria", ""]
    for ok, text in verdicts:
        lines.append(f"- **{'PASS' if ok else 'FAIL'}** {text}")
    tpe = [ok for ok, t in verdicts if "Optuna TPE" in t]
    half = [ok for ok, t in verdicts if "reaches" in t]
    lines += ["", f"Our TPE equals or beats Optuna's TPE on every problem: "
                  f"**{'PASS' if tpe and all(tpe) else 'FAIL'}**. "
                  f"TPE and GP reach random search's best in ≤ half the trials on every problem: "
                  f"**{'PASS' if half and all(half) else 'FAIL'}**.", ""]
    return "\n".join(lines)


def cmd_report(args):
    text = report(args.problems.split(","))
    print(text)
    if args.doc:
        with open(args.doc) as f:
            doc = f.read()
        begin, end = "<!-- results: begin -->", "<!-- results: end -->"
        i, j = doc.index(begin) + len(begin), doc.index(end)
        with open(args.doc, "w") as f:
            f.write(doc[:i] + "\n" + text + "\n" + doc[j:])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--problems", default=",".join(PROBLEMS))
    r.add_argument("--samplers", default=",".join(SAMPLERS))
    r.add_argument("--seeds", type=int, default=20)
    r.add_argument("--trials", type=int, default=0, help="override the problem's N")
    r.set_defaults(fn=cmd_run)
    p = sub.add_parser("report")
    p.add_argument("--problems", default=",".join(PROBLEMS))
    p.add_argument("--doc", help="replace the results between the markers in this Markdown file")
    p.set_defaults(fn=cmd_report)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
