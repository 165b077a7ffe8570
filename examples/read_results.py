#!/usr/bin/env python3
"""Reads a sweep's results with h5py and pandas (no PyTables needed).

    examples/read_results.py RESULTS_DIR      (or RESULTS_DIR/sweep.h5)

Shows the three things most analyses start from: the trials table as a DataFrame with decoded
strings and one column per hyperparameter, one trial's per-epoch history through its /by_id
external link, and that trial's resolved configuration. Works while the sweep runs (the index
is swapped in atomically; queued and running trials have no /by_id link yet).
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

        # One trial through /by_id: h5py follows the external link into its batch file.
        best = ranked.id.iloc[0]
        group = f["by_id"][best]
        history = pd.DataFrame(group["history"][:])
        print(f"trial {best} ({group.attrs['status']}), history:")
        print(history[["epoch", "train_loss", "test_loss", "test_accuracy", "seconds"]].tail(5).to_string(index=False), "\n")
        config = json.loads(group.attrs["config"])
        print("config:", json.dumps(config, sort_keys=True))
        if "trajectory" in group:
            print("trajectory:", group["trajectory"].shape, "last point", group["trajectory"][-1])

        # The table's final metric is the history's last row.
        last = history[metric].iloc[-1]
        if not abs(last - ranked[metric].iloc[0]) <= 1e-12 * abs(last):
            sys.exit(f"history's last {metric} {last} differs from the table's {ranked[metric].iloc[0]}")
        if config.get("optimizer", "sgd") != ranked.optimizer.iloc[0]:
            sys.exit("the config's optimizer differs from the table's")


if __name__ == "__main__":
    main()
