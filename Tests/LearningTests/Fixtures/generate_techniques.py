#!/usr/bin/env python3
"""Reference trajectories for SAM/ASAM, Lookahead and gradient clipping (`TechniqueTests.swift`).

The problem has a gradient that depends on the point, so that SAM's second evaluation matters:
two tensors ("vector" of 5, "matrix" 3×4) and, at step t, the loss
    L_t(p) = Σ ½·c ⊙ p² + d_t ⊙ p,     ∇L_t(p) = c ⊙ p + d_t,
with fixed positive curvatures c and a drift sequence d_t that has a zero step and sign flips.
Everything runs in float64. References:

  sam, asam     written here after the authors' PyTorch SAM (github.com/davda54/sam: first_step
                perturbs by ρ·T²g/‖Tg‖ with T = |p| for ASAM, second_step restores p and steps
                the base optimizer), around torch.optim.SGD / torch.optim.AdamW
  lookahead     optax.lookahead around optax.sgd (momentum) and optax.adam (the slow weights
                synchronise every k fast steps; the fast parameters are what we compare)
  clipping      torch.nn.utils.clip_grad_norm_ / clip_grad_value_ before torch.optim.SGD

Run (PyTorch, optax and jax in a virtual environment outside the repository):
    /opt/torchenv/bin/python Tests/LearningTests/Fixtures/generate_techniques.py
"""
import json
import os

import jax
import numpy as np
import torch

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

torch.set_default_dtype(torch.float64)
STEPS = 12
SHAPES = {"vector": [5], "matrix": [3, 4]}


def problem():
    g = torch.Generator().manual_seed(4321)
    start = {k: torch.randn(s, generator=g) for k, s in SHAPES.items()}
    curvature = {k: torch.rand(s, generator=g) * 2 + 0.1 for k, s in SHAPES.items()}
    drift = {}
    for k, s in SHAPES.items():
        seq = []
        for t in range(STEPS):
            d = torch.randn(s, generator=g)
            if t == 3:
                d = torch.zeros(s)
            if t in (6, 7):
                d = -seq[t - 1] * 2.0
            seq.append(d)
        drift[k] = seq
    return start, curvature, drift


def gradient(p, c, d):
    return c * p + d


class SAMReference:
    """SAM / ASAM after davda54/sam, around a torch optimizer."""

    def __init__(self, params, base, rho, adaptive):
        self.params, self.base, self.rho, self.adaptive = params, base, rho, adaptive

    @torch.no_grad()
    def first_step(self):
        norm = torch.norm(torch.stack([((p.abs() if self.adaptive else 1.0) * p.grad).norm(2) for p in self.params]), 2)
        scale = self.rho / (norm + 1e-12)
        self.e = []
        for p in self.params:
            e = (p.pow(2) if self.adaptive else 1.0) * p.grad * scale
            p.add_(e)
            self.e.append(e)

    @torch.no_grad()
    def second_step(self):
        for p, e in zip(self.params, self.e):
            p.sub_(e)
        self.base.step()


def run_torch(case, start, c, d):
    names = list(SHAPES)
    params = [torch.nn.Parameter(start[k].clone()) for k in names]
    kind = case["kind"]
    if case["base"] == "sgd":
        base = torch.optim.SGD(params, lr=case["lr"], momentum=case.get("momentum", 0.0))
    else:
        base = torch.optim.AdamW(params, lr=case["lr"], weight_decay=case.get("weight_decay", 0.01))
    sam = SAMReference(params, base, case["rho"], kind == "asam") if kind in ("sam", "asam") else None
    trajectory = {k: [] for k in names}
    for t in range(STEPS):
        for k, p in zip(names, params):
            p.grad = gradient(p.detach(), c[k], d[k][t])
        if kind == "clip_norm":
            torch.nn.utils.clip_grad_norm_(params, case["max_norm"])
        if kind == "clip_value":
            torch.nn.utils.clip_grad_value_(params, case["max_value"])
        if sam:
            sam.first_step()
            for k, p in zip(names, params):
                p.grad = gradient(p.detach(), c[k], d[k][t])
            sam.second_step()
        else:
            base.step()
        for k, p in zip(names, params):
            trajectory[k].append(p.detach().flatten().tolist())
    return trajectory


def run_lookahead(case, start, c, d):
    names = list(SHAPES)
    if case["base"] == "sgd":
        fast = optax.sgd(case["lr"], momentum=case["momentum"])
    else:
        fast = optax.adam(case["lr"], eps=1e-8)
    opt = optax.lookahead(fast, sync_period=case["k"], slow_step_size=case["alpha"])
    params = optax.LookaheadParams.init_synced({k: jnp.asarray(start[k].numpy()) for k in names})
    state = opt.init(params)
    trajectory = {k: [] for k in names}
    for t in range(STEPS):
        grads = {k: jnp.asarray(gradient(torch.from_numpy(np.array(params.fast[k])), c[k], d[k][t]).numpy()) for k in names}
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        for k in names:
            trajectory[k].append(np.asarray(params.fast[k]).flatten().tolist())
    return trajectory


CASES = [
    # name, trial keys (as the Swift side builds the optimizer), reference settings
    ("sam_sgd", {"optimizer": "sam", "base_optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "rho": 0.05},
     {"kind": "sam", "base": "sgd", "lr": 0.1, "momentum": 0.9, "rho": 0.05}),
    ("asam_sgd", {"optimizer": "asam", "base_optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "rho": 0.5},
     {"kind": "asam", "base": "sgd", "lr": 0.1, "momentum": 0.9, "rho": 0.5}),
    ("sam_adamw", {"optimizer": "sam", "base_optimizer": "adamw", "lr": 0.05, "weight_decay": 0.01, "rho": 0.1},
     {"kind": "sam", "base": "adamw", "lr": 0.05, "weight_decay": 0.01, "rho": 0.1}),
    ("sam_adaptive_flag", {"optimizer": "sam", "base_optimizer": "sgd", "lr": 0.05, "adaptive": True, "rho": 0.3},
     {"kind": "asam", "base": "sgd", "lr": 0.05, "rho": 0.3}),
    ("lookahead_sgd", {"optimizer": "lookahead", "base_optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "lookahead_k": 3, "lookahead_alpha": 0.5},
     {"kind": "lookahead", "base": "sgd", "lr": 0.1, "momentum": 0.9, "k": 3, "alpha": 0.5}),
    ("lookahead_adam", {"optimizer": "lookahead", "base_optimizer": "adam", "lr": 0.05, "lookahead_k": 5, "lookahead_alpha": 0.8},
     {"kind": "lookahead", "base": "adam", "lr": 0.05, "k": 5, "alpha": 0.8}),
    ("clip_norm_sgd", {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "clip_grad_norm": 0.5},
     {"kind": "clip_norm", "base": "sgd", "lr": 0.1, "momentum": 0.9, "max_norm": 0.5}),
    ("clip_value_sgd", {"optimizer": "sgd", "lr": 0.1, "clip_grad_value": 0.3},
     {"kind": "clip_value", "base": "sgd", "lr": 0.1, "max_value": 0.3}),
]


def main():
    start, c, d = problem()
    cases = []
    for name, config, ref in CASES:
        trajectory = run_lookahead(ref, start, c, d) if ref["kind"] == "lookahead" else run_torch(ref, start, c, d)
        cases.append({"name": name, "config": config, "trajectory": trajectory})
    fixture = {
        "generator": "generate_techniques.py",
        "versions": {"torch": torch.__version__, "optax": optax.__version__, "jax": jax.__version__},
        "steps": STEPS,
        "shapes": SHAPES,
        "start": {k: v.flatten().tolist() for k, v in start.items()},
        "curvature": {k: v.flatten().tolist() for k, v in c.items()},
        "drift": {k: [x.flatten().tolist() for x in v] for k, v in d.items()},
        "cases": cases,
    }
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "techniques.json")
    with open(out, "w") as f:
        json.dump(fixture, f, indent=1)
    print(f"wrote {out}: {len(cases)} cases")


if __name__ == "__main__":
    main()
