#!/usr/bin/env python3
"""The gpt trial in PyTorch, for comparing validation losses (docs/networks-measured.md).

Same model (`torch_networks.GPT`: the gpt preset's architecture and GPT-2 initialisation),
same data windows as the trial's `text:FILE` data (bytes as tokens, the first 90% trains, both
parts cut into non-overlapping windows of block_size tokens), AdamW with a constant learning
rate, the training windows reshuffled every epoch; after each epoch the mean cross-entropy per
token over all validation windows (nats, as the trial's test_loss). Initialisation and order
come from torch's generator, so they differ from the Swift run: compare final losses only.

Usage: gpt_reference.py FILE [--epochs 2] [--batch-size 32] [--block-size 64] [--lr 1e-3]
       [--weight-decay 0] [--layers 4] [--heads 4] [--width 128] [--threads 1] [--seed 0]
Prints one JSON line per epoch: {"epoch", "train_loss", "test_loss", "seconds"}.
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F

from torch_networks import GPT, text_windows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("text")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x, y, vx, vy = text_windows(args.text, args.block_size)
    model = GPT(256, args.block_size, args.layers, args.heads, args.width)
    # Weight decay on every tensor but biases, as the trial's (bias_weight_decay: false).
    decay = [p for n, p in model.named_parameters() if not n.endswith("bias")]
    rest = [p for n, p in model.named_parameters() if n.endswith("bias")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay}, {"params": rest, "weight_decay": 0.0}], lr=args.lr)
    for epoch in range(1, args.epochs + 1):
        model.train()
        start, total = time.perf_counter(), 0.0
        perm = torch.randperm(len(x))
        for i in range(0, len(x), args.batch_size):
            idx = perm[i:i + args.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[idx]), y[idx].reshape(-1))
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        seconds = time.perf_counter() - start
        model.eval()
        with torch.no_grad():
            test = sum(F.cross_entropy(model(vx[i:i + 256]), vy[i:i + 256].reshape(-1), reduction="sum").item()
                       for i in range(0, len(vx), 256)) / vy.numel()
        print(json.dumps({"epoch": epoch, "train_loss": total / len(x), "test_loss": test, "seconds": seconds}), flush=True)


if __name__ == "__main__":
    main()
