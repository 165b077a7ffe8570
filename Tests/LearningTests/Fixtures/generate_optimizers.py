#!/usr/bin/env python3
"""Reference optimizer trajectories from PyTorch, for the Swift tests.

Each case applies a fixed sequence of gradients (random, with an all-zero step and sign flips)
to a vector parameter and a matrix parameter with a torch.optim optimizer in float64, and records
the parameters after every step. The Swift optimizer must reproduce them to 1e-9 relative.

Run (PyTorch in a virtual environment outside the repository):
    /opt/torchenv/bin/python Tests/LearningTests/Fixtures/generate_optimizers.py
"""
import json
import os

import torch

torch.set_default_dtype(torch.float64)
STEPS = 12

# (fixture name, optimizer key as trials name it, trial hyperparameters, torch factory)
CASES = [
    ("sgd", "sgd", {"lr": 0.1}, lambda p, h: torch.optim.SGD(p, lr=h["lr"])),
    ("sgd_momentum_wd", "sgd", {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-2},
     lambda p, h: torch.optim.SGD(p, lr=h["lr"], momentum=h["momentum"], weight_decay=h["weight_decay"])),
    ("sgd_dampening", "sgd", {"lr": 0.05, "momentum": 0.8, "dampening": 0.3},
     lambda p, h: torch.optim.SGD(p, lr=h["lr"], momentum=h["momentum"], dampening=h["dampening"])),
    ("sgd_nesterov", "sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
     lambda p, h: torch.optim.SGD(p, lr=h["lr"], momentum=h["momentum"], nesterov=True, weight_decay=h["weight_decay"])),
    ("adam", "adam", {"lr": 1e-2}, lambda p, h: torch.optim.Adam(p, lr=h["lr"])),
    ("adam_l2_amsgrad", "adam", {"lr": 1e-2, "weight_decay": 0.1, "amsgrad": True, "betas": [0.8, 0.99]},
     lambda p, h: torch.optim.Adam(p, lr=h["lr"], weight_decay=h["weight_decay"], amsgrad=True, betas=tuple(h["betas"]))),
    ("adamw", "adamw", {"lr": 1e-2, "weight_decay": 0.1}, lambda p, h: torch.optim.AdamW(p, lr=h["lr"], weight_decay=h["weight_decay"])),
    ("adamw_beta1_large_eps", "adamw", {"lr": 3e-3, "beta1": 0.3, "beta2": 0.9, "eps": 1e-3},
     lambda p, h: torch.optim.AdamW(p, lr=h["lr"], betas=(h["beta1"], h["beta2"]), eps=h["eps"])),
]


def gradient_sequence(shape, generator):
    grads = []
    for t in range(STEPS):
        g = torch.randn(shape, generator=generator)
        if t == 3:
            g = torch.zeros(shape)  # a zero gradient
        if t in (6, 7):
            g = -grads[t - 1] * 2.0  # sign flips
        grads.append(g)
    return grads


def main():
    generator = torch.Generator().manual_seed(1234)
    shapes = {"vector": [7], "matrix": [5, 3]}
    starts = {k: torch.randn(s, generator=generator) for k, s in shapes.items()}
    grads = {k: gradient_sequence(s, generator) for k, s in shapes.items()}
    cases = []
    for name, optimizer, hyper, factory in CASES:
        params = {k: torch.nn.Parameter(v.clone()) for k, v in starts.items()}
        opt = factory(list(params.values()), hyper)
        trajectory = {k: [] for k in params}
        for t in range(STEPS):
            for k, p in params.items():
                p.grad = grads[k][t].clone()
            opt.step()
            for k, p in params.items():
                trajectory[k].append(p.detach().flatten().tolist())
        cases.append({"name": name, "optimizer": optimizer, "hyperparameters": hyper, "trajectory": trajectory})
    fixture = {
        "generator": "generate_optimizers.py",
        "torch": torch.__version__,
        "steps": STEPS,
        "shapes": shapes,
        "start": {k: v.flatten().tolist() for k, v in starts.items()},
        "gradients": {k: [g.flatten().tolist() for g in gs] for k, gs in grads.items()},
        "cases": cases,
    }
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optimizers.json")
    with open(out, "w") as f:
        json.dump(fixture, f, indent=1)
    print(f"wrote {out}: {len(cases)} cases")


if __name__ == "__main__":
    main()
