#!/usr/bin/env python3
"""Reads a sweep's results with h5py and pandas (no PyTables needed).

    examples/read_results.py RESULTS_DIR      (or RESULTS_DIR/sweep.h5)

Shows the three things most analyses start from: the trials table as a DataFrame with decoded
strings and one column per hyperparameter, one trial's per-epoch history (through its /by_id
external link, or, for a trial stored as rows of its batch file's shared tables, from those),
and that trial's resolved configuration. Works while the sweep runs (the index is swapped in
atomically; queued and running trials have no /by_id link yet).
Needs: apt-get install python3-h5py python3-pandas (or pip install h5py pandas).
"""
import json
import os
import sys

import h5py
import pandas as pd


def trials_frame(f):
    """The /trials table with strings decoded and /hparams/<key> added as columns."""
    trials = pd.DataFrame(f["trials"][:])
    for column in trials.select_dtypes(object):  # fixed-length strings come back as bytes
        trials[column] = trials[column].str.decode("utf-8")
    for key, dataset in f["hparams"].items():
        values = dataset[:]
        if values.dtype.kind == "S":  # strings, "" where a trial does not set the key
            values = [v.decode("utf-8") or None for v in values]
        # NaN (numbers) or None (strings) where unset; keys that clash with a column (epochs:
        # epochs run vs. configured) get a prefix, as in sweep-analyze --csv.
        name = key if key not in trials.columns else f"config_{key}"
        if name in ("config_model", "config_optimizer"):
            continue  # the same as the table's own columns
        trials[name] = values
    return trials


def trial(f, row):
    """One committed trial as (attributes, history DataFrame, trajectory or None), whether it is a
    group (/by_id/<id> links it) or rows of its batch file's /trials, /history and /trajectory
    tables (trials with at most one history row, docs/results-format.md)."""
    if row.id in f["by_id"]:
        group = f["by_id"][row.id]  # h5py follows the external link into the batch file
        trajectory = group["trajectory"][:] if "trajectory" in group else None
        return dict(group.attrs), pd.DataFrame(group["history"][:]), trajectory
    with h5py.File(os.path.join(os.path.dirname(f.filename), row.file), "r") as batch:
        rows = batch["trials"][:]
        k = list(rows["id"]).index(row.id.encode())
        r = rows[k]
        attrs = {name: (r[name].decode() if isinstance(r[name], bytes) else r[name]) for name in rows.dtype.names}
        start, count = r["history_start"], r["history_rows"]
        history = pd.DataFrame(batch["history"][start:start + count]).drop(columns="id")
        trajectory = None
        if r["trajectory_rows"] > 0:
            start, count = r["trajectory_start"], r["trajectory_rows"]
            trajectory = batch["trajectory"][start:start + count]
        return attrs, history, trajectory


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "results/quickstart"
    index = path if path.endswith(".h5") else os.path.join(path, "sweep.h5")
    with h5py.File(index, "r") as f:
        metric, mode = f.attrs["objective_metric"], f.attrs["objective_mode"]
        trials = trials_frame(f)
        print(f"sweep {f.attrs['name']}: {len(trials)} trials; objective {metric} ({mode})")
        print(trials.status.value_counts().to_string(), "\n")
        if len(trials) != f.attrs["trial_count"]:
            sys.exit(f"the trials table has {len(trials)} rows, the index says {f.attrs['trial_count']}")

        # A leaderboard: finished trials with a finite metric, best first.
        ranked = trials[trials.status.isin(["done", "stopped"]) & trials[metric].notna()]
        ranked = ranked.sort_values(metric, ascending=(mode != "max"))
        hparams = [c for c in trials.columns if c in f["hparams"] and c not in ("model", "optimizer") and trials[c].nunique() > 1]
        print(ranked[["id", "optimizer", *hparams, metric]].head(10).to_string(index=False), "\n")
        if ranked.empty:
            print("no finished trial yet")
            return

        # One trial: its group through /by_id, or its rows of the batch file's tables.
        best = ranked.id.iloc[0]
        attrs, history, trajectory = trial(f, ranked.iloc[0])
        print(f"trial {best} ({attrs['status']}), history:")
        print(history[["epoch", "train_loss", "test_loss", "test_accuracy", "seconds"]].tail(5).to_string(index=False), "\n")
        config = json.loads(attrs["config"])
        print("config:", json.dumps(config, sort_keys=True))
        if trajectory is not None:
            print("trajectory:", trajectory.shape, "last point", trajectory[-1])

        # The table's final metric is the history's last row.
        last = history[metric].iloc[-1]
        if not abs(last - ranked[metric].iloc[0]) <= 1e-12 * abs(last):
            sys.exit(f"history's last {metric} {last} differs from the table's {ranked[metric].iloc[0]}")
        if config.get("optimizer", "sgd") != ranked.optimizer.iloc[0]:
            sys.exit("the config's optimizer differs from the table's")


if __name__ == "__main__":
    main()
