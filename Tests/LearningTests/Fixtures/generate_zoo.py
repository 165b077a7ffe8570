#!/usr/bin/env python3
"""Reference trajectories for the optimizer zoo, for the Swift tests (`ZooTests.swift`).

Same format as generate_optimizers.py (a vector and a matrix parameter, 12 steps of fixed
gradients with an all-zero step and sign flips, parameters after every step, float64), from:

  adagrad, rmsprop, nadam     torch.optim (single-tensor path)
  adafactor                   transformers.optimization.Adafactor
  lion                        written here after Google's reference / lucidrains' lion-pytorch
                              (`update_fn`), and checked against optax.lion
  lion-simple                 the single-beta teaching variant SimpleLion
  adafactor-simple            the compact teaching variant AdafactorSolution
  lamb, lars                  optax (`optax.lamb` / `optax.lars`; with the 1-D exclusion, the
                              same chain with optax's masks)

Run (PyTorch, transformers, optax and jax in a virtual environment outside the repository):
    /opt/torchenv/bin/python Tests/LearningTests/Fixtures/generate_zoo.py
"""
import json
import math
import os

import jax
import numpy as np
import torch

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
import transformers  # noqa: E402
from transformers.optimization import Adafactor  # noqa: E402

torch.set_default_dtype(torch.float64)
STEPS = 12
NAMES = ["vector", "matrix"]


# ---------------------------------------------------------------------------------------------
# Hand-written references (torch, float64)

class LionReference(torch.optim.Optimizer):
    """Lion as in Google's reference and lucidrains/lion-pytorch:
    p ← p·(1 − lr·wd);  p ← p − lr·sign(β1·m + (1 − β1)·g);  m ← β2·m + (1 − β2)·g."""

    def __init__(self, params, lr, betas=(0.9, 0.99), weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                state = self.state[p]
                if len(state) == 0:
                    state["exp_avg"] = torch.zeros_like(p)
                m = state["exp_avg"]
                p.mul_(1 - lr * wd)
                direction = (m * beta1 + p.grad * (1 - beta1)).sign()
                p.add_(direction, alpha=-lr)
                m.mul_(beta2).add_(p.grad, alpha=1 - beta2)


class SimpleLionReference(torch.optim.Optimizer):
    """SimpleLion (lion-simple): m ← lerp(m, g, 1 − b1); p ← p − lr·sign(m)."""

    def __init__(self, params, lr, b1):
        super().__init__(params, dict(lr=lr, b1=b1))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                if len(state) == 0:
                    state["momentum"] = torch.zeros_like(p)
                m = state["momentum"]
                m.lerp_(p.grad, 1 - group["b1"])
                p.add_(m.sign(), alpha=-group["lr"])


class SimpleAdafactorReference(torch.optim.Optimizer):
    """AdafactorSolution (adafactor-simple), step for step."""

    def __init__(self, params, lr=None, beta2_decay=-0.8, epsilon1=1e-30, epsilon2=1e-3, clip_threshold=1.0,
                 weight_decay=0.0, scale_parameter=True):
        if lr is None and not scale_parameter:
            raise ValueError("lr must be specified if scale_parameter is False")
        super().__init__(params, dict(lr=lr, beta2_decay=beta2_decay, epsilon1=epsilon1, epsilon2=epsilon2,
                                      clip_threshold=clip_threshold, weight_decay=weight_decay,
                                      scale_parameter=scale_parameter))

    @staticmethod
    def _rms(t):
        return t.norm() / (t.numel() ** 0.5)

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                grad = p.grad
                state = self.state[p]
                factored = grad.dim() >= 2
                if len(state) == 0:
                    state["step"] = 0
                    if factored:
                        state["exp_avg_sq_row"] = torch.zeros(grad.shape[:-1])
                        state["exp_avg_sq_col"] = torch.zeros(grad.shape[:-2] + grad.shape[-1:])
                    else:
                        state["exp_avg_sq"] = torch.zeros_like(grad)
                state["step"] += 1
                step = state["step"]
                if group["weight_decay"] != 0:
                    p.mul_(1 - group["lr"] * group["weight_decay"] if group["lr"] else 1 - group["weight_decay"])
                rho = min(1.0 - math.pow(step, group["beta2_decay"]), 0.999)
                if factored:
                    grad_sqr = grad.pow(2)
                    state["exp_avg_sq_row"].mul_(rho).add_(grad_sqr.mean(dim=-1), alpha=1 - rho)
                    state["exp_avg_sq_col"].mul_(rho).add_(grad_sqr.mean(dim=-2), alpha=1 - rho)
                    row, col = state["exp_avg_sq_row"], state["exp_avg_sq_col"]
                    variance = (row / row.mean(dim=-1, keepdim=True)).unsqueeze(-1) * col.unsqueeze(-2)
                    variance = variance.clamp(min=group["epsilon1"])
                else:
                    state["exp_avg_sq"].mul_(rho).addcmul_(grad, grad, value=1 - rho)
                    variance = state["exp_avg_sq"].clamp(min=group["epsilon1"])
                update = grad / variance.sqrt()
                update_rms = self._rms(update)
                if update_rms > group["clip_threshold"]:
                    update.mul_(group["clip_threshold"] / update_rms)
                if group["lr"] is not None:
                    lr = group["lr"]
                else:
                    lr = max(group["epsilon2"], self._rms(p))
                if group["scale_parameter"] and group["lr"] is None:
                    lr = lr * max(1e-3, 1.0 / math.sqrt(step))
                p.add_(update, alpha=-lr)


# ---------------------------------------------------------------------------------------------
# Cases: (fixture name, optimizer key as trials name it, trial hyperparameters, factory)
#
# torch factories take (params, hyper) and return a torch optimizer; optax factories are marked
# ("optax", f) and return a GradientTransformation.

def nf(h, k, d):
    return h.get(k, d)


def adafactor_hf(p, h):
    relative = h.get("relative_step", "lr" not in h)
    return Adafactor(p, lr=h.get("lr"), eps=(nf(h, "eps", 1e-30), nf(h, "eps2", 1e-3)),
                     clip_threshold=nf(h, "clip_threshold", 1.0), decay_rate=nf(h, "decay_rate", -0.8),
                     beta1=h.get("beta1"), weight_decay=nf(h, "weight_decay", 0.0),
                     scale_parameter=nf(h, "scale_parameter", True), relative_step=relative,
                     warmup_init=nf(h, "warmup_init", False))


def adafactor_simple(p, h):
    return SimpleAdafactorReference(p, lr=h.get("lr"), beta2_decay=nf(h, "decay_rate", -0.8),
                                    epsilon1=nf(h, "eps", 1e-30), epsilon2=nf(h, "eps2", 1e-3),
                                    clip_threshold=nf(h, "clip_threshold", 1.0),
                                    weight_decay=nf(h, "weight_decay", 0.0))


ONE_D_MASK = {"vector": False, "matrix": True}  # exclude_1d: only the matrix is adapted and decayed


def lamb_optax(h):
    b1, b2 = h.get("betas", [0.9, 0.999])
    eps, wd, lr = nf(h, "eps", 1e-6), nf(h, "weight_decay", 0.0), h["lr"]
    if not nf(h, "exclude_1d", True):
        return optax.lamb(lr, b1=b1, b2=b2, eps=eps, weight_decay=wd)
    # optax.lamb's chain, with its weight-decay mask and the trust ratio masked the same way.
    return optax.chain(
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
        optax.add_decayed_weights(wd, mask=ONE_D_MASK),
        optax.masked(optax.scale_by_trust_ratio(), ONE_D_MASK),
        optax.scale_by_learning_rate(lr),
    )


def lars_optax(h):
    mask = ONE_D_MASK if nf(h, "exclude_1d", True) else True
    return optax.lars(h["lr"], weight_decay=nf(h, "weight_decay", 0.0), weight_decay_mask=mask,
                      trust_coefficient=nf(h, "trust_coefficient", 1e-3), eps=nf(h, "eps", 0.0),
                      trust_ratio_mask=mask, momentum=nf(h, "momentum", 0.9), nesterov=nf(h, "nesterov", False))


CASES = [
    # torch.optim.Adagrad
    ("adagrad", "adagrad", {"lr": 0.1}, lambda p, h: torch.optim.Adagrad(p, lr=h["lr"], foreach=False)),
    ("adagrad_decay_init_wd", "adagrad",
     {"lr": 0.1, "lr_decay": 0.05, "initial_accumulator_value": 0.1, "weight_decay": 0.01, "eps": 1e-6},
     lambda p, h: torch.optim.Adagrad(p, lr=h["lr"], lr_decay=h["lr_decay"], weight_decay=h["weight_decay"],
                                      initial_accumulator_value=h["initial_accumulator_value"], eps=h["eps"],
                                      foreach=False)),
    # torch.optim.RMSprop
    ("rmsprop", "rmsprop", {"lr": 0.01}, lambda p, h: torch.optim.RMSprop(p, lr=h["lr"], foreach=False)),
    ("rmsprop_centered", "rmsprop", {"lr": 0.01, "alpha": 0.9, "centered": True},
     lambda p, h: torch.optim.RMSprop(p, lr=h["lr"], alpha=h["alpha"], centered=True, foreach=False)),
    ("rmsprop_momentum_wd", "rmsprop", {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.01, "eps": 1e-6},
     lambda p, h: torch.optim.RMSprop(p, lr=h["lr"], momentum=h["momentum"], weight_decay=h["weight_decay"],
                                      eps=h["eps"], foreach=False)),
    ("rmsprop_centered_momentum", "rmsprop", {"lr": 0.005, "alpha": 0.95, "centered": True, "momentum": 0.5},
     lambda p, h: torch.optim.RMSprop(p, lr=h["lr"], alpha=h["alpha"], centered=True, momentum=h["momentum"],
                                      foreach=False)),
    # torch.optim.NAdam
    ("nadam", "nadam", {"lr": 0.01}, lambda p, h: torch.optim.NAdam(p, lr=h["lr"], foreach=False)),
    ("nadam_wd_betas", "nadam",
     {"lr": 0.01, "betas": [0.8, 0.99], "weight_decay": 0.1, "momentum_decay": 0.01, "eps": 1e-6},
     lambda p, h: torch.optim.NAdam(p, lr=h["lr"], betas=tuple(h["betas"]), weight_decay=h["weight_decay"],
                                    momentum_decay=h["momentum_decay"], eps=h["eps"], foreach=False)),
    # Lion (reference semantics) and the single-beta teaching variant
    ("lion", "lion", {"lr": 0.01}, lambda p, h: LionReference(p, lr=h["lr"])),
    ("lion_wd_betas", "lion", {"lr": 0.01, "betas": [0.95, 0.98], "weight_decay": 0.5},
     lambda p, h: LionReference(p, lr=h["lr"], betas=tuple(h["betas"]), weight_decay=h["weight_decay"])),
    ("lion_simple", "lion-simple", {"lr": 0.01}, lambda p, h: SimpleLionReference(p, lr=h["lr"], b1=0.9)),
    ("lion_simple_beta", "lion-simple", {"lr": 0.03, "beta1": 0.5},
     lambda p, h: SimpleLionReference(p, lr=h["lr"], b1=h["beta1"])),
    # optax LAMB and LARS
    ("lamb", "lamb", {"lr": 0.01}, ("optax", lamb_optax)),
    ("lamb_wd_exclude_1d", "lamb", {"lr": 0.01, "weight_decay": 0.1}, ("optax", lamb_optax)),
    ("lamb_wd_all", "lamb", {"lr": 0.01, "weight_decay": 0.1, "exclude_1d": False, "betas": [0.8, 0.99], "eps": 1e-8},
     ("optax", lamb_optax)),
    ("lars", "lars", {"lr": 1.0}, ("optax", lars_optax)),
    ("lars_no_momentum_wd", "lars", {"lr": 1.0, "momentum": 0.0, "weight_decay": 0.1}, ("optax", lars_optax)),
    ("lars_nesterov_all", "lars",
     {"lr": 0.5, "momentum": 0.8, "nesterov": True, "weight_decay": 0.01, "exclude_1d": False,
      "trust_coefficient": 0.01, "eps": 1e-8},
     ("optax", lars_optax)),
    # transformers' Adafactor
    ("adafactor_relative", "adafactor", {}, adafactor_hf),
    ("adafactor_relative_unscaled", "adafactor", {"scale_parameter": False}, adafactor_hf),
    ("adafactor_warmup_beta1", "adafactor", {"warmup_init": True, "beta1": 0.9}, adafactor_hf),
    ("adafactor_lr", "adafactor", {"lr": 0.03, "scale_parameter": False}, adafactor_hf),
    ("adafactor_lr_scaled_beta1_wd_clip", "adafactor",
     {"lr": 0.05, "beta1": 0.8, "weight_decay": 0.1, "clip_threshold": 0.5, "decay_rate": -0.5, "eps": 1e-20,
      "eps2": 1e-2},
     adafactor_hf),
    # the teaching variant of Adafactor (adafactor-simple)
    ("adafactor_simple_relative", "adafactor-simple", {}, adafactor_simple),
    ("adafactor_simple_relative_wd", "adafactor-simple", {"weight_decay": 0.01}, adafactor_simple),
    ("adafactor_simple_lr", "adafactor-simple", {"lr": 0.01}, adafactor_simple),
    ("adafactor_simple_lr_wd_clip", "adafactor-simple",
     {"lr": 0.01, "weight_decay": 0.1, "clip_threshold": 0.5, "decay_rate": -0.6, "eps2": 1e-2},
     adafactor_simple),
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


def run_torch(factory, hyper, starts, grads):
    params = {k: torch.nn.Parameter(starts[k].clone()) for k in NAMES}
    opt = factory(list(params.values()), hyper)
    trajectory = {k: [] for k in NAMES}
    for t in range(STEPS):
        for k, p in params.items():
            p.grad = grads[k][t].clone()
        opt.step()
        for k, p in params.items():
            trajectory[k].append(p.detach().flatten().tolist())
    return trajectory


def run_optax(transform, starts, grads):
    params = {k: jnp.asarray(starts[k].numpy()) for k in NAMES}
    state = transform.init(params)
    trajectory = {k: [] for k in NAMES}
    for t in range(STEPS):
        g = {k: jnp.asarray(grads[k][t].numpy()) for k in NAMES}
        updates, state = transform.update(g, state, params)
        params = optax.apply_updates(params, updates)
        for k in NAMES:
            assert params[k].dtype == jnp.float64
            trajectory[k].append(np.asarray(params[k]).flatten().tolist())
    return trajectory


def max_relative_difference(a, b):
    return max(abs(x - y) / max(abs(y), 1e-3)
               for k in NAMES for sa, sb in zip(a[k], b[k]) for x, y in zip(sa, sb))


def main():
    generator = torch.Generator().manual_seed(2024)
    shapes = {"vector": [7], "matrix": [5, 3]}
    starts = {k: torch.randn(s, generator=generator) for k, s in shapes.items()}
    grads = {k: gradient_sequence(s, generator) for k, s in shapes.items()}
    cases = []
    for name, optimizer, hyper, factory in CASES:
        if isinstance(factory, tuple):
            trajectory = run_optax(factory[1](hyper), starts, grads)
        else:
            trajectory = run_torch(factory, hyper, starts, grads)
        cases.append({"name": name, "optimizer": optimizer, "hyperparameters": hyper, "trajectory": trajectory})

    # The hand-written Lion agrees with optax's (same update in another order of operations).
    for name, _, hyper, _ in CASES:
        if name.startswith("lion") and not name.startswith("lion_simple"):
            b1, b2 = hyper.get("betas", [0.9, 0.99])
            reference = run_optax(optax.lion(hyper["lr"], b1=b1, b2=b2, weight_decay=hyper.get("weight_decay", 0.0)),
                                  starts, grads)
            mine = next(c for c in cases if c["name"] == name)["trajectory"]
            difference = max_relative_difference(mine, reference)
            assert difference < 1e-12, (name, difference)
            print(f"{name}: agrees with optax.lion to {difference:.1e}")

    fixture = {
        "generator": "generate_zoo.py",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "optax": optax.__version__,
        "jax": jax.__version__,
        "steps": STEPS,
        "shapes": shapes,
        "start": {k: v.flatten().tolist() for k, v in starts.items()},
        "gradients": {k: [g.flatten().tolist() for g in gs] for k, gs in grads.items()},
        "cases": cases,
    }
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zoo.json")
    with open(out, "w") as f:
        json.dump(fixture, f, indent=1)
    print(f"wrote {out}: {len(cases)} cases")


if __name__ == "__main__":
    main()
