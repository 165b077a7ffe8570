#!/usr/bin/env python3
"""PyTorch side of the engine benchmark: one epoch of the same models on the same data.

Prints one JSON line per workload: {"workload", "samples", "seconds", "samples_per_s"}.
Usage: torch_reference.py [--threads 1] [--batch-size 128] [--workloads mlp,vae] [--limit N]
"""
import argparse
import gzip
import json
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

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


def epoch(workload, x, y, batch_size):
    torch.manual_seed(0)
    model = VAE() if workload == "vae" else mlp()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    perm = torch.randperm(len(x))
    start = time.perf_counter()
    for i in range(0, len(x), batch_size):
        idx = perm[i:i + batch_size]
        xb = x[idx]
        opt.zero_grad(set_to_none=True)
        loss = model(xb) if workload == "vae" else F.cross_entropy(model(xb), y[idx])
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workloads", default="mlp,vae")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x, y = load(args.limit)
    for workload in args.workloads.split(","):
        seconds = min(epoch(workload, x, y, args.batch_size) for _ in range(args.repeats))
        print(json.dumps({"workload": workload, "samples": len(x), "seconds": seconds,
                          "samples_per_s": len(x) / seconds, "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
