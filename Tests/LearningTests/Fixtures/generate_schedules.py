#!/usr/bin/env python3
"""Learning-rate (and one-cycle momentum) sequences from torch.optim.lr_scheduler.

For each case: the trial keys that select the schedule, and the learning rate used at each of
N scheduler steps (the value in the optimizer's param group before that step). Plateau cases
feed a fixed metric sequence. The warm-up+cosine case follows the optimizer notes (001, 5.5),
written here as a LambdaLR exactly as the notes do.
Run: /opt/torchenv/bin/python generate_schedules.py
"""
import json
import math
import os

import torch
from torch.optim import lr_scheduler as S

N = 40
LR = 0.1


def warmup_cosine(warmup, total, min_ratio):
    def f(step):
        if step < warmup:
            return float(step) / float(max(1, warmup))
        progress = float(step - warmup) / float(max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return f


CASES = [
    ("step", {"schedule": "step", "step_size": 7, "gamma": 0.5}, lambda o: S.StepLR(o, 7, 0.5)),
    ("multistep", {"schedule": "multistep", "milestones": [5, 12, 30], "gamma": 0.3}, lambda o: S.MultiStepLR(o, [5, 12, 30], 0.3)),
    ("exponential", {"schedule": "exponential", "gamma": 0.93}, lambda o: S.ExponentialLR(o, 0.93)),
    ("cosine", {"schedule": "cosine", "t_max": 15, "eta_min": 0.001}, lambda o: S.CosineAnnealingLR(o, 15, 0.001)),
    ("cosine_restarts", {"schedule": "cosine-restarts", "t_0": 4, "t_mult": 2, "eta_min": 0.01},
     lambda o: S.CosineAnnealingWarmRestarts(o, 4, 2, 0.01)),
    ("cosine_restarts_fixed", {"schedule": "cosine-restarts", "t_0": 6}, lambda o: S.CosineAnnealingWarmRestarts(o, 6)),
    ("one_cycle", {"schedule": "one-cycle", "max_lr": 0.5, "total_steps": N, "schedule_interval": "epoch"},
     lambda o: S.OneCycleLR(o, max_lr=0.5, total_steps=N)),
    ("one_cycle_linear_three_phase", {"schedule": "one-cycle", "max_lr": 0.3, "total_steps": N, "anneal_strategy": "linear",
                                      "three_phase": True, "pct_start": 0.25, "div_factor": 10, "final_div_factor": 100,
                                      "schedule_interval": "epoch"},
     lambda o: S.OneCycleLR(o, max_lr=0.3, total_steps=N, anneal_strategy="linear", three_phase=True, pct_start=0.25,
                            div_factor=10, final_div_factor=100)),
    ("linear", {"schedule": "linear", "start_factor": 0.2, "end_factor": 0.9, "total_iters": 10},
     lambda o: S.LinearLR(o, 0.2, 0.9, 10)),
    ("polynomial", {"schedule": "polynomial", "total_iters": 25, "power": 2.0}, lambda o: S.PolynomialLR(o, 25, 2.0)),
    ("warmup_then_cosine", {"schedule": "cosine", "t_max": 20, "warmup_steps": 5, "warmup_start_factor": 0.1},
     lambda o: S.SequentialLR(o, [S.LinearLR(o, 0.1, 1.0, 5), S.CosineAnnealingLR(o, 20)], milestones=[5])),
    ("warmup_cosine_notes", {"schedule": "warmup-cosine", "warmup_steps": 6, "total_steps": 30, "min_lr_ratio": 0.1,
                             "schedule_interval": "epoch"},
     lambda o: S.LambdaLR(o, warmup_cosine(6, 30, 0.1))),
]

PLATEAU_METRIC = [1.0, 0.9, 0.85, 0.86, 0.87, 0.85, 0.849, 0.86, 0.84, 0.845, 0.846, 0.847, 0.848, 0.7, 0.71, 0.72,
                  0.73, 0.74, 0.75, 0.76] * 2
PLATEAU_CASES = [
    ("plateau", {"schedule": "plateau", "patience": 2, "factor": 0.5}, lambda o: S.ReduceLROnPlateau(o, patience=2, factor=0.5)),
    ("plateau_abs_cooldown_min", {"schedule": "plateau", "patience": 1, "factor": 0.3, "threshold": 0.01, "threshold_mode": "abs",
                                  "cooldown": 2, "min_lr": 0.005},
     lambda o: S.ReduceLROnPlateau(o, patience=1, factor=0.3, threshold=0.01, threshold_mode="abs", cooldown=2, min_lr=0.005)),
    ("plateau_max", {"schedule": "plateau", "plateau_mode": "max", "patience": 3}, lambda o: S.ReduceLROnPlateau(o, mode="max", patience=3)),
]


def main():
    out = []
    for name, keys, make in CASES + PLATEAU_CASES:
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=LR, momentum=0.9)
        sched = make(opt)
        lrs, momenta = [], []
        plateau = isinstance(sched, S.ReduceLROnPlateau)
        for t in range(N):
            lrs.append(opt.param_groups[0]["lr"])
            momenta.append(opt.param_groups[0]["momentum"])
            opt.step()
            sched.step(PLATEAU_METRIC[t]) if plateau else sched.step()
        out.append({"name": name, "keys": keys, "lr": lrs, "momentum": momenta})
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schedules.json")
    with open(path, "w") as f:
        json.dump({"generator": "generate_schedules.py", "torch": torch.__version__, "base_lr": LR, "steps": N,
                   "plateau_metric": PLATEAU_METRIC, "cases": out}, f, indent=1)
    print(f"wrote {path}: {len(out)} cases")


if __name__ == "__main__":
    main()
