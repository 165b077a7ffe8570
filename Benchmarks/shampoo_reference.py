#!/usr/bin/env python3
"""PyTorch side of `engine-benchmark --shampoo`: seconds per training step of the VAE (784-400-20,
Fashion-MNIST, batch 128) with AdamW, with the teaching variant ShampooSolution (shampoo-simple) refreshing every
step, and with Meta's DistributedShampoo refreshing every step in the configurations the Swift
side runs. Each optimizer trains from the same start for `--steps` steps after `--warmup` steps
(Shampoo's early steps decompose more often than later ones, so the number is per-step over that
window, not an epoch).

Prints one JSON line per optimizer: {"optimizer", "steps", "seconds_per_step", "torch"}.

Needs torch, and Meta's optimizers repository outside this one (its code is not part of this
project): SHAMPOO_REPO=/tmp/optimizers /opt/torchenv/bin/python Benchmarks/shampoo_reference.py
"""
import argparse
import json
import logging
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "LearningTests", "Fixtures"))
sys.path.insert(0, os.environ.get("SHAMPOO_REPO", "/tmp/optimizers"))
from torch_reference import VAE, load  # noqa: E402
from generate_shampoo import ShampooSolution  # noqa: E402  (shampoo-simple's reference)
from distributed_shampoo.distributed_shampoo import DistributedShampoo  # noqa: E402
from distributed_shampoo.preconditioner.matrix_functions_types import EighEigendecompositionConfig  # noqa: E402
from distributed_shampoo.shampoo_types import (  # noqa: E402
    AdamPreconditionerConfig,
    EigendecomposedShampooPreconditionerConfig,
)

logging.disable(logging.WARNING)
torch.set_default_dtype(torch.float32)  # the fixture generator's module sets float64


def meta(params, dim, tolerance):
    return DistributedShampoo(
        params, lr=1e-3, betas=(0.9, 1.0), epsilon=1e-12, max_preconditioner_dim=dim, precondition_frequency=1,
        grafting_config=AdamPreconditionerConfig(beta2=0.999, epsilon=1e-10),
        preconditioner_config=EigendecomposedShampooPreconditionerConfig(
            amortized_computation_config=EighEigendecompositionConfig(tolerance=tolerance)))


OPTIMIZERS = {
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-3),
    # The teaching version: eigendecompositions of the full 784x784 and 400x400 factors every step.
    "shampoo-simple": lambda p: ShampooSolution(p, lr=1e-3, update_freq=1),
    "shampoo-64-tol0.05": lambda p: meta(p, 64, 0.05),
    "shampoo-64-tol0": lambda p: meta(p, 64, 0.0),
}


def time_steps(name, x, batch_size, warmup, steps):
    torch.manual_seed(0)
    model = VAE()
    opt = OPTIMIZERS[name](model.parameters())
    perm = torch.randperm(len(x))
    seconds = 0.0
    for i in range(warmup + steps):
        idx = perm[(i * batch_size) % len(x):][:batch_size]
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(x[idx])
        loss.backward()
        opt.step()
        if i >= warmup:
            seconds += time.perf_counter() - start
    return seconds / steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x, _ = load(0)
    for name in args.optimizers.split(","):
        # The teaching version is slow: fewer steps.
        steps = max(10, args.steps // 10) if name == "shampoo-simple" else args.steps
        per_step = time_steps(name, x, args.batch_size, min(args.warmup, steps), steps)
        print(json.dumps({"optimizer": name, "steps": steps, "seconds_per_step": per_step, "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
