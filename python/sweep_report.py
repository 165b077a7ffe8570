"""The sweep worker's side of a training program, in the standard library only.

A program trial (a sweep file's `program:`) is started by a sweep worker with its configuration,
seed and directories in the environment, and reports on a descriptor of its own (see
docs/programs.md). This module wraps that contract:

    import sweep_report as sweep
    cfg = sweep.config()                      # the trial's resolved configuration (a dict)
    for epoch in range(start, cfg["epochs"] + 1):
        ...train, evaluate...
        sweep.report(epoch=epoch, train_loss=tl, test_loss=vl, test_accuracy=acc)
        torch.save(state, sweep.checkpoint_dir() / "last.pt")
        sweep.checkpoint("last.pt")           # the worker takes it (and may send it on)
    # resuming: sweep.resume_dir() is None, or the directory holding the last checkpoint
    # (a reported file under its name: resume_dir() / "last.pt"; a directory: its contents)

Outside a worker (no SWEEP_REPORT_FD), report() prints the lines to standard error instead, so a
program can be run by hand.
"""

import json
import os
import pathlib
import sys
import time

__all__ = ["config", "report", "checkpoint", "checkpoint_dir", "resume_dir", "trial_id", "seed"]

_stream = None


def _out():
    global _stream
    if _stream is None:
        fd = os.environ.get("SWEEP_REPORT_FD")
        _stream = os.fdopen(int(fd), "w", buffering=1) if fd else sys.stderr
    return _stream


def config():
    """The trial's resolved configuration: every key of the sweep's trial (epochs, seed, the
    hyperparameters) as a dict. Outside a worker: {} (or the JSON file SWEEP_TRIAL_CONFIG names)."""
    path = os.environ.get("SWEEP_TRIAL_CONFIG")
    if not path:
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def trial_id():
    return os.environ.get("SWEEP_TRIAL_ID", "local")


def seed():
    return int(os.environ.get("SWEEP_SEED", "0"))


def checkpoint_dir():
    """The directory checkpoints go to (private to this attempt; created when run by hand)."""
    path = pathlib.Path(os.environ.get("SWEEP_CHECKPOINT_DIR", "checkpoint"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def resume_dir():
    """The directory holding the last checkpoint's files when this attempt resumes, else None."""
    path = os.environ.get("SWEEP_RESUME_FROM")
    return pathlib.Path(path) if path else None


def report(**metrics):
    """Reports one epoch: `epoch` (1, 2, … in order) and any numeric metrics; the sweep's
    objective (e.g. test_loss) must be among them. NaN and infinities are reported as such."""
    if "epoch" not in metrics:
        raise ValueError("report() needs epoch=N")
    line = {k: v if isinstance(v, int) and not isinstance(v, bool) else float(v) for k, v in metrics.items()}
    line["epoch"] = int(metrics["epoch"])
    _out().write(json.dumps(line, allow_nan=True) + "\n")


def checkpoint(path, wait=600.0):
    """Hands the checkpoint of the epoch last reported to the worker: `path` (a file or a
    directory in checkpoint_dir(), relative to it or absolute) must be complete and closed. The
    worker moves it out of the directory; this waits until it has (so the next checkpoint may use
    the same name), for at most `wait` seconds. Run by hand, nothing is moved or waited for."""
    full = checkpoint_dir() / path
    _out().write(json.dumps({"checkpoint": str(path)}) + "\n")
    if "SWEEP_REPORT_FD" not in os.environ:
        return
    deadline = time.monotonic() + wait
    while os.path.lexists(full):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the worker did not take checkpoint {full} within {wait} s")
        time.sleep(0.005)
