#!/usr/bin/env python3
"""Reference trajectories for Sophia, 8-bit AdamW and Schedule-Free AdamW (`NewZooTests.swift`).

Two files, both float64 references on a vector and a matrix parameter, 12 steps of fixed
gradients with an all-zero step (step 4) and sign flips (steps 7 and 8), parameters after every
step:

new_zoo.json (vector [7], matrix [5, 3]; the format of zoo.json plus the fields below)
  sophia                 the authors' SophiaG (github.com/Liuhong99/Sophia, `sophia.py` at commit
                         a7e157229b71d58cf995d32854f1be15c265b350), imported from a local copy of
                         that file (--sophia PATH), driven as the authors' train_sophiag.py drives it:
                         after the step of iteration `iter_num` (0-based), when
                         iter_num % hess_interval == hess_interval - 1, the gradients are replaced by
                         "sampled-label" gradients (`hessian_gradients`, fixed random values here)
                         and `update_hessian()` is called; every step passes `bs`, which is the
                         trial's `bs` when given, else the batch size of the latest estimate
                         (`hessian_batch_sizes`). `hessian_steps` lists the 1-based steps followed by
                         an estimate.
  schedule-free-adamw    schedulefree.AdamWScheduleFree (PyPI `schedulefree`), train() before the
                         first step; after steps 6 and 12 eval() (parameters become x, recorded in
                         `evaluation`), then train() again (back to y, which the trajectory holds).
                         Also checked against the package's single-tensor path (foreach=False).

adamw8bit.json (vector [300], matrix [24, 40]: blocks of 256 with a partial last block)
  adamw8bit              bitsandbytes' AdamW8bit. bitsandbytes 0.50.2 runs its 8-bit blockwise
                         optimizer on the CPU, but only in float32, and its CPU quantiser looks the
                         code up in a 65,536-bin table over [-1, 1] (csrc/cpu_ops.cpp,
                         `build_quantize_lut`) instead of searching the code book: normalised values
                         closer than ~3e-5 to zero or to a midpoint between codes land on another code
                         than the nearest one, and 0 itself becomes the code 2.1e-5 (signed) or
                         1.6e-5 (unsigned). The float64 reference here is therefore written from
                         bitsandbytes' own source: its `create_dynamic_map` (imported, the code books
                         are bitsandbytes' own and written to the fixture), blocks of 256 with the
                         absolute maximum per block, `x · (1/absmax)` looked up as the nearest code
                         (bitsandbytes' exact search `lookup_code_index` in csrc/cpu_ops.cpp, ties to
                         the lower code; the CUDA kernels' `quantize_2D` is a binary search to the
                         nearest code too), dequantisation `code[c] · absmax`, and the update of
                         `_optimizer_update_8bit_blockwise_cpu` (decay p·(1 − lr·wd) first, then
                         p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε), then requantisation), and for
                         tensors below `min_8bit_size` the 32-bit update of
                         `_optimizer_update_32bit_cpu` (p − lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ) · m / (√v + ε·√(1 − β₂ᵗ))).
                         Both are then checked against the real bitsandbytes: (1) the same reference
                         run in float32 with bitsandbytes' table quantiser reproduces
                         bnb.optim.AdamW8bit's codes and parameters; (2) the float64 reference with
                         the exact quantiser is compared with bnb.optim.AdamW8bit (code agreement and
                         parameter differences are printed and written to the fixture as `bnb`, so
                         the Swift tests can measure themselves against the real package as well).

Run (PyTorch, bitsandbytes and schedulefree in a virtual environment outside the repository; the
authors' sophia.py is not a package: clone github.com/Liuhong99/Sophia and point at it):
    /opt/torchenv/bin/pip install bitsandbytes schedulefree
    /opt/torchenv/bin/python Tests/LearningTests/Fixtures/generate_new_zoo.py --sophia PATH/TO/Sophia/sophia.py
"""
import argparse
import hashlib
import importlib.util
import json
import os

import bitsandbytes
import bitsandbytes.functional as bnbF
import numpy as np
import schedulefree
import torch

torch.set_default_dtype(torch.float64)
STEPS = 12
NAMES = ["vector", "matrix"]
HERE = os.path.dirname(os.path.abspath(__file__))


def gradient_sequence(shape, generator, scale=1.0):
    grads = []
    for t in range(STEPS):
        g = torch.randn(shape, generator=generator) * scale
        if t == 3:
            g = torch.zeros(shape)  # a zero gradient
        if t in (6, 7):
            g = -grads[t - 1] * 2.0  # sign flips
        grads.append(g)
    return grads


def flat(t):
    return t.detach().flatten().tolist()


# ---------------------------------------------------------------------------------------------
# Sophia: the authors' SophiaG, driven as their training loop drives it.

SOPHIA_CASES = [
    # name, trial hyperparameters
    ("sophia_interval_2", {"lr": 0.05, "hessian_interval": 2}),
    ("sophia_every_step_maximize", {"lr": 0.02, "hessian_interval": 1, "betas": [0.9, 0.95], "rho": 0.1,
                                    "weight_decay": 0.0, "maximize": True}),
    ("sophia_interval_3_rho_wd", {"lr": 0.03, "hessian_interval": 3, "rho": 0.5, "weight_decay": 0.2}),
    ("sophia_default_interval_fixed_bs", {"lr": 0.01, "rho": 0.002, "bs": 5120}),
    ("sophia_defaults", {}),
]


def load_sophia(path):
    spec = importlib.util.spec_from_file_location("authors_sophia", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SophiaG


def run_sophia(SophiaG, hyper, starts, grads, hessian_grads, hessian_batch_sizes):
    params = {k: torch.nn.Parameter(starts[k].clone()) for k in NAMES}
    betas = tuple(hyper.get("betas", [0.965, 0.99]))
    opt = SophiaG(list(params.values()), lr=hyper.get("lr", 1e-4), betas=betas, rho=hyper.get("rho", 0.04),
                  weight_decay=hyper.get("weight_decay", 1e-1), maximize=hyper.get("maximize", False))
    interval = hyper.get("hessian_interval", 10)
    bs = hyper.get("bs", 0)  # before the first estimate the Hessian is 0 and bs multiplies nothing
    trajectory = {k: [] for k in NAMES}
    hessian_steps = []
    clipped = unclipped = 0
    for iter_num in range(STEPS):
        for k, p in params.items():
            p.grad = grads[k][iter_num].clone()
        opt.step(bs=bs)
        for k, p in params.items():
            trajectory[k].append(flat(p))
            state = opt.state[p]
            ratio = state["exp_avg"].abs() / (opt.param_groups[0]["rho"] * bs * state["hessian"] + 1e-15)
            if state["hessian"].abs().sum() > 0:
                clipped += int((ratio >= 1).sum())
                unclipped += int((ratio < 1).sum())
        if iter_num % interval == interval - 1:  # train_sophiag.py's condition
            for k, p in params.items():
                p.grad = hessian_grads[k][iter_num].clone()
            opt.update_hessian()
            hessian_steps.append(iter_num + 1)
            if "bs" not in hyper:
                bs = hessian_batch_sizes[iter_num]
    return trajectory, hessian_steps, (clipped, unclipped)


# ---------------------------------------------------------------------------------------------
# Schedule-Free AdamW: the package itself.

SCHEDULE_FREE_CASES = [
    ("schedule_free_adamw_defaults", {}),
    ("schedule_free_adamw", {"lr": 0.05}),
    ("schedule_free_adamw_warmup_wd_r", {"lr": 0.05, "sf_warmup_steps": 4, "weight_decay": 0.1, "r": 1.0,
                                         "weight_lr_power": 1.0, "betas": [0.8, 0.99], "eps": 1e-6}),
]
EVALUATION_STEPS = [6, 12]


def run_schedule_free(hyper, starts, grads, foreach):
    params = {k: torch.nn.Parameter(starts[k].clone()) for k in NAMES}
    opt = schedulefree.AdamWScheduleFree(
        list(params.values()), lr=hyper.get("lr", 0.0025), betas=tuple(hyper.get("betas", [0.9, 0.999])),
        eps=hyper.get("eps", 1e-8), weight_decay=hyper.get("weight_decay", 0.0),
        warmup_steps=hyper.get("sf_warmup_steps", 0), r=hyper.get("r", 0.0),
        weight_lr_power=hyper.get("weight_lr_power", 2.0), foreach=foreach)
    opt.train()
    trajectory = {k: [] for k in NAMES}
    evaluation = {k: [] for k in NAMES}
    for t in range(STEPS):
        for k, p in params.items():
            p.grad = grads[k][t].clone()  # the package divides the gradient in place
        opt.step()
        if t + 1 in EVALUATION_STEPS:
            opt.eval()
            for k, p in params.items():
                evaluation[k].append(flat(p))
            opt.train()
        for k, p in params.items():
            trajectory[k].append(flat(p))
    return trajectory, evaluation


# ---------------------------------------------------------------------------------------------
# 8-bit AdamW

BLOCK = 256
ADAMW8BIT_CASES = [
    ("adamw8bit_both_8bit", {"lr": 0.01, "min_8bit_size": 256}),
    ("adamw8bit_matrix_8bit_betas_wd_eps", {"lr": 0.02, "min_8bit_size": 512, "betas": [0.8, 0.99], "eps": 1e-6,
                                            "weight_decay": 0.1}),
    ("adamw8bit_defaults_32bit", {}),
]


def nearest_code(x, code):
    """bitsandbytes' lookup_code_index: clamp to [-1, 1], lower_bound, the nearer neighbour, ties
    to the lower code. NaN gives code 0."""
    x = np.clip(x, -1.0, 1.0)
    right = np.searchsorted(code, x, side="left")
    right_c = np.clip(right, 1, 255)
    left_c = right_c - 1
    d_left = np.abs(x - code[left_c])
    d_right = np.abs(code[right_c] - x)
    idx = np.where(d_right < d_left, right_c, left_c)
    idx = np.where(right == 0, 0, idx)
    idx = np.where(right >= 256, 255, idx)
    return idx.astype(np.uint8)


def table_code(x, code):
    """bitsandbytes 0.50.2's CPU quantiser (build_quantize_lut / norm_to_lut_index), in float32."""
    f = np.float32
    mid = (f(0.5) * (code[:-1] + code[1:])).astype(np.float32)
    i = np.arange(65536, dtype=np.float32)
    val = (f(-1.0) + (f(2.0) * i) / f(65535)).astype(np.float32)
    lut = np.searchsorted(mid, val, side="left").astype(np.uint8)  # first midpoint ≥ val
    x = np.clip(x.astype(np.float32), f(-1), f(1))
    index = ((x + f(1)) * f(0.5) * f(65535) + f(0.5)).astype(np.float32).astype(np.uint16)
    return lut[index]


def quantize(values, code, dtype, quantiser):
    """Blockwise: absmax per 256 values, codes of x·(1/absmax); an all-zero block keeps absmax 0
    and codes 0, as bitsandbytes does."""
    n = values.size
    blocks = -(-n // BLOCK)
    codes = np.zeros(n, dtype=np.uint8)
    absmax = np.zeros(blocks, dtype=dtype)
    for b in range(blocks):
        block = values[b * BLOCK:(b + 1) * BLOCK]
        a = np.max(np.abs(block))
        absmax[b] = a
        if a == 0:
            continue
        codes[b * BLOCK:(b + 1) * BLOCK] = quantiser(block * (dtype(1) / a), code)
    return codes, absmax


def dequantize(codes, absmax, code, dtype):
    return code.astype(dtype)[codes] * np.repeat(absmax, BLOCK)[:codes.size]


def run_adamw8bit_reference(hyper, starts, grads, dtype=np.float64, quantiser=nearest_code):
    lr = hyper.get("lr", 1e-3)
    b1, b2 = hyper.get("betas", [0.9, 0.999])
    eps, wd = hyper.get("eps", 1e-8), hyper.get("weight_decay", 1e-2)
    min_size = hyper.get("min_8bit_size", 4096)
    signed = bnbF.create_dynamic_map(signed=True).numpy()
    unsigned = bnbF.create_dynamic_map(signed=False).numpy()
    c = dtype
    params = {k: starts[k].numpy().flatten().astype(dtype) for k in NAMES}
    state = {}
    for k in NAMES:
        n = params[k].size
        if n < min_size:
            state[k] = {"state1": np.zeros(n, dtype), "state2": np.zeros(n, dtype)}  # bitsandbytes' names
        else:
            blocks = -(-n // BLOCK)
            state[k] = {"state1": np.zeros(n, np.uint8), "absmax1": np.zeros(blocks, dtype),
                        "state2": np.zeros(n, np.uint8), "absmax2": np.zeros(blocks, dtype)}
    trajectory = {k: [] for k in NAMES}
    for t in range(STEPS):
        step = t + 1
        correction1 = 1.0 - b1 ** step
        correction2 = np.sqrt(1.0 - b2 ** step)
        for k in NAMES:
            g = grads[k][t].numpy().flatten().astype(dtype)
            p = params[k]
            s = state[k]
            if "absmax1" not in s:  # _optimizer_update_32bit_cpu
                m = s["state1"] * c(b1) + c(1 - b1) * g
                v = s["state2"] * c(b2) + c(1 - b2) * g * g
                step_size = -lr * correction2 / correction1
                if wd > 0:
                    p = p * c(1 - lr * wd)
                p = p + c(step_size) * (m / (np.sqrt(v) + c(eps * correction2)))
                s["state1"], s["state2"] = m, v
            else:  # _optimizer_update_8bit_blockwise_cpu
                m = dequantize(s["state1"], s["absmax1"], signed, dtype)
                v = dequantize(s["state2"], s["absmax2"], unsigned, dtype)
                m = m * c(b1) + c(1 - b1) * g
                v = v * c(b2) + c(1 - b2) * g * g
                denom = np.sqrt(v) / c(correction2) + c(eps)
                if wd > 0:
                    p = p * c(1 - lr * wd)
                p = p + c(-lr / correction1) * (m / denom)
                s["state1"], s["absmax1"] = quantize(m, signed, dtype, quantiser)
                s["state2"], s["absmax2"] = quantize(v, unsigned, dtype, quantiser)
            params[k] = p
            trajectory[k].append(p.tolist())
    return trajectory, state


def run_adamw8bit_bnb(hyper, starts, grads):
    params = {k: torch.nn.Parameter(starts[k].clone().float()) for k in NAMES}
    opt = bitsandbytes.optim.AdamW8bit(
        list(params.values()), lr=hyper.get("lr", 1e-3), betas=tuple(hyper.get("betas", [0.9, 0.999])),
        eps=hyper.get("eps", 1e-8), weight_decay=hyper.get("weight_decay", 1e-2),
        min_8bit_size=hyper.get("min_8bit_size", 4096))
    trajectory = {k: [] for k in NAMES}
    for t in range(STEPS):
        for k, p in params.items():
            p.grad = grads[k][t].clone().float()
        opt.step()
        for k, p in params.items():
            trajectory[k].append(flat(p.double()))
    state = {}
    for k, p in params.items():
        s = opt.state[p]
        if s["state1"].dtype == torch.uint8:
            state[k] = {n: s[n].flatten().numpy().copy() for n in ["state1", "absmax1", "state2", "absmax2"]}
        else:
            state[k] = {"state1": s["state1"].flatten().numpy().copy(), "state2": s["state2"].flatten().numpy().copy()}
    return trajectory, state


def json_state(state):
    out = {}
    for k, s in state.items():
        out[k] = {n: (a.astype(int).tolist() if a.dtype == np.uint8 else a.astype(np.float64).tolist()) for n, a in s.items()}
    return out


def compare_states(a, b):
    """Fraction of equal codes over all 8-bit states, and the largest parameter difference."""
    equal = total = 0
    for k in NAMES:
        for n in ["state1", "state2"]:
            if a[k][n].dtype == np.uint8:
                equal += int(np.sum(a[k][n] == b[k][n]))
                total += a[k][n].size
    return equal, total


def max_abs_difference(a, b, step=-1):
    return max(abs(x - y) for k in NAMES for x, y in zip(a[k][step], b[k][step]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sophia", required=True, help="path of the authors' sophia.py (github.com/Liuhong99/Sophia)")
    args = parser.parse_args()
    with open(args.sophia, "rb") as f:
        sophia_sha256 = hashlib.sha256(f.read()).hexdigest()
    SophiaG = load_sophia(args.sophia)

    # ---- new_zoo.json: Sophia and Schedule-Free AdamW
    generator = torch.Generator().manual_seed(2025)
    shapes = {"vector": [7], "matrix": [5, 3]}
    starts = {k: torch.randn(s, generator=generator) for k, s in shapes.items()}
    grads = {k: gradient_sequence(s, generator) for k, s in shapes.items()}
    hessian_grads = {k: [torch.randn(s, generator=generator) for _ in range(STEPS)] for k, s in shapes.items()}
    hessian_batch_sizes = [16 + 8 * t for t in range(STEPS)]
    cases = []
    for name, hyper in SOPHIA_CASES:
        trajectory, hessian_steps, (clipped, unclipped) = run_sophia(SophiaG, hyper, starts, grads, hessian_grads,
                                                                     hessian_batch_sizes)
        print(f"{name}: estimates after steps {hessian_steps}; ratios clipped at 1 / below 1 once a Hessian exists: "
              f"{clipped} / {unclipped}")
        cases.append({"name": name, "optimizer": "sophia", "hyperparameters": hyper, "trajectory": trajectory,
                      "hessian_steps": hessian_steps})
    for name, hyper in SCHEDULE_FREE_CASES:
        trajectory, evaluation = run_schedule_free(hyper, starts, grads, foreach=True)
        single, single_eval = run_schedule_free(hyper, starts, grads, foreach=False)
        difference = max(max_abs_difference(trajectory, single, s) for s in range(STEPS))
        assert difference < 1e-14, (name, difference)
        print(f"{name}: foreach and single-tensor paths agree to {difference:.1e}")
        cases.append({"name": name, "optimizer": "schedule-free-adamw", "hyperparameters": hyper,
                      "trajectory": trajectory, "evaluation_steps": EVALUATION_STEPS, "evaluation": evaluation})
    fixture = {
        "generator": "generate_new_zoo.py",
        "torch": torch.__version__,
        "schedulefree": getattr(schedulefree, "__version__", "1.4.1"),
        "sophia": "github.com/Liuhong99/Sophia sophia.py, sha256 " + sophia_sha256,
        "steps": STEPS,
        "shapes": shapes,
        "start": {k: flat(v) for k, v in starts.items()},
        "gradients": {k: [flat(g) for g in gs] for k, gs in grads.items()},
        "hessian_gradients": {k: [flat(g) for g in gs] for k, gs in hessian_grads.items()},
        "hessian_batch_sizes": hessian_batch_sizes,
        "cases": cases,
    }
    out = os.path.join(HERE, "new_zoo.json")
    with open(out, "w") as f:
        json.dump(fixture, f, indent=1)
    print(f"wrote {out}: {len(cases)} cases")

    # ---- adamw8bit.json
    generator = torch.Generator().manual_seed(8)
    shapes = {"vector": [300], "matrix": [24, 40]}
    starts = {k: torch.randn(s, generator=generator) for k, s in shapes.items()}
    grads = {k: gradient_sequence(s, generator, scale=0.1) for k, s in shapes.items()}
    signed = bnbF.create_dynamic_map(signed=True).numpy()
    unsigned = bnbF.create_dynamic_map(signed=False).numpy()
    cases = []
    for name, hyper in ADAMW8BIT_CASES:
        trajectory, state = run_adamw8bit_reference(hyper, starts, grads)
        bnb_trajectory, bnb_state = run_adamw8bit_bnb(hyper, starts, grads)
        # (1) The reference in float32 with bitsandbytes' table quantiser is bitsandbytes.
        table_trajectory, table_state = run_adamw8bit_reference(hyper, starts, grads, np.float32, table_code)
        equal, total = compare_states(table_state, bnb_state)
        table_difference = max(max_abs_difference(table_trajectory, bnb_trajectory, s) for s in range(STEPS))
        print(f"{name}: float32 reference with bnb's table quantiser vs bnb.optim.AdamW8bit: codes {equal}/{total} "
              f"equal, parameters within {table_difference:.1e} at every step")
        assert table_difference < 1e-5 and equal >= total - 2, (name, table_difference, equal, total)
        # (2) The float64 reference with the exact quantiser vs bitsandbytes.
        equal, total = compare_states(state, bnb_state)
        difference = max_abs_difference(trajectory, bnb_trajectory)
        print(f"{name}: float64 reference (exact nearest code) vs bnb.optim.AdamW8bit: codes {equal}/{total} equal, "
              f"parameters within {difference:.1e} after {STEPS} steps")
        cases.append({"name": name, "optimizer": "adamw8bit", "hyperparameters": hyper, "trajectory": trajectory,
                      "state": json_state(state),
                      "bnb": {"parameters": {k: bnb_trajectory[k][-1] for k in NAMES}, "state": json_state(bnb_state)}})
    fixture = {
        "generator": "generate_new_zoo.py",
        "torch": torch.__version__,
        "bitsandbytes": bitsandbytes.__version__,
        "steps": STEPS,
        "shapes": shapes,
        "start": {k: flat(v) for k, v in starts.items()},
        "gradients": {k: [flat(g) for g in gs] for k, gs in grads.items()},
        "signed_map": signed.astype(np.float64).tolist(),
        "unsigned_map": unsigned.astype(np.float64).tolist(),
        "cases": cases,
    }
    out = os.path.join(HERE, "adamw8bit.json")
    with open(out, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
    print(f"wrote {out}: {len(cases)} cases")


if __name__ == "__main__":
    main()
