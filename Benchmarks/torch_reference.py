#!/usr/bin/env python3
"""PyTorch side of the engine benchmark: one epoch of the same models on the same data.

Prints one JSON line per workload: {"workload", "samples", "seconds", "cpu_seconds", "steps",
"samples_per_s"} (and with --sgemm first {"workload": "sgemm", "gflops"}).
Usage: torch_reference.py [--threads 1] [--batch-size 128] [--workloads mlp,vae] [--limit N]
       [--resnet-limit N] [--resnet-depth 20] [--sgemm] [--text FILE --block-size 64 --gpt-batch 32 --gpt-limit N]

The network workloads (lenet5, resnet, gpt) are the presets' architectures (`torch_networks.py`)
with the engine benchmark's settings: LeNet-5 (ReLU, max pooling) and ResNet-20 (width 16) on
the first `--limit` / `--resnet-limit` Fashion-MNIST images, the GPT (4 layers, 4 heads, width
128, tied) on the first `--gpt-limit` windows of the text's training part.
"""
import argparse
import gzip
import json
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_networks import GPT, LeNet5, ResNet, text_windows

DATA = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
LABELS = "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz"


def load(limit):
    with gzip.open(DATA, "rb") as f:
        x = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255.0
    with gzip.open(LABELS, "rb") as f:
        y = np.frombuffer(f.read(), dtype=np.uint8, offset=8).astype(np.int64)
    if limit:
        x, y = x[:limit], y[:limit]
    return torch.from_numpy(x), torch.from_numpy(y)


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc_mu = nn.Linear(400, 20)
        self.fc_logvar = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        recon = torch.sigmoid(self.fc4(F.relu(self.fc3(z))))
        bce = F.binary_cross_entropy(recon, x, reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return bce + kld


def mlp():
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))


def make(workload, x, depth=20):
    if workload == "vae":
        return VAE()
    if workload == "lenet5":
        return LeNet5(10)
    if workload == "resnet":
        return ResNet(depth, 16, 1, 10)
    if workload == "gpt":
        return GPT(vocabulary=256, block=x.shape[1], layers=4, heads=4, width=128)
    return mlp()


def epoch(workload, x, y, batch_size, depth=20):
    """(wall seconds, process CPU seconds) of one epoch."""
    torch.manual_seed(0)
    model = make(workload, x, depth)
    if workload in ("lenet5", "resnet"):
        x = x.view(-1, 1, 28, 28)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    perm = torch.randperm(len(x))
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(x), batch_size):
        idx = perm[i:i + batch_size]
        xb = x[idx]
        opt.zero_grad(set_to_none=True)
        loss = model(xb) if workload == "vae" else F.cross_entropy(model(xb), y[idx].reshape(-1))
        loss.backward()
        opt.step()
    return time.perf_counter() - start, time.process_time() - cpu


def sgemm_rate(n=1024):
    """GFLOP/s of torch.mm on float32 n×n matrices (best of five, CPU time)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        torch.mm(a, b)
        best = min(best, time.process_time() - start)
    return 2 * n**3 / best / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workloads", default="mlp,vae")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--resnet-limit", type=int, default=0)
    ap.add_argument("--resnet-depth", type=int, default=20)
    ap.add_argument("--sgemm", action="store_true", help="also print torch.mm's single-matrix rate")
    ap.add_argument("--text", default="")
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--gpt-batch", type=int, default=32)
    ap.add_argument("--gpt-limit", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x, y = load(args.limit)
    if args.sgemm:
        print(json.dumps({"workload": "sgemm", "gflops": sgemm_rate()}), flush=True)
    for workload in args.workloads.split(","):
        wx, wy, batch = x, y, args.batch_size
        if workload == "resnet" and args.resnet_limit:
            wx, wy = x[:args.resnet_limit], y[:args.resnet_limit]
        elif workload == "gpt":
            if not args.text:
                continue
            wx, wy, _, _ = text_windows(args.text, args.block_size)
            if args.gpt_limit:
                wx, wy = wx[:args.gpt_limit], wy[:args.gpt_limit]
            batch = args.gpt_batch
        runs = [epoch(workload, wx, wy, batch, args.resnet_depth) for _ in range(args.repeats)]
        seconds, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
        print(json.dumps({"workload": workload, "samples": len(wx), "seconds": seconds, "cpu_seconds": cpu, "steps": -(-len(wx) // batch),
                          "samples_per_s": len(wx) / seconds, "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
