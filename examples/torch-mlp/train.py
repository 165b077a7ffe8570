"""Fashion-MNIST MLP (784-256-128-10, ReLU) in PyTorch, as a sweep's training program.

The same model, data and optimizer as the built-in `model: mlp` trials (examples/mlp-adamw.yaml):
pixels / 255, cross-entropy, AdamW, a fresh shuffle each epoch. Run by a sweep (sweep.yaml next to
this file) or by hand: `PYTHONPATH=../../python python3 train.py` (defaults below).

Needs torch (CPU is enough) in the python3 the worker starts; reads the IDX files of
/usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist), or `data` in the configuration.
"""

import gzip
import pathlib
import time

import torch
import torch.nn.functional as F

import sweep_report as sweep

cfg = {"epochs": 2, "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 128, "hidden": [256, 128], "threads": 1, "seed": sweep.seed()}
cfg.update(sweep.config())
torch.set_num_threads(int(cfg["threads"]))
torch.manual_seed(int(cfg["seed"]))
data = pathlib.Path(cfg.get("data", "/usr/share/datasets/fashion-mnist"))


def idx(name):
    raw = gzip.open(data / name).read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return torch.frombuffer(bytearray(raw[4 + 4 * dims :]), dtype=torch.uint8).reshape(shape)


x_train = idx("train-images-idx3-ubyte.gz").reshape(-1, 784).float() / 255
y_train = idx("train-labels-idx1-ubyte.gz").long()
x_test = idx("t10k-images-idx3-ubyte.gz").reshape(-1, 784).float() / 255
y_test = idx("t10k-labels-idx1-ubyte.gz").long()

sizes = [784] + list(cfg["hidden"]) + [10]
layers = []
for a, b in zip(sizes, sizes[1:]):
    layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
model = torch.nn.Sequential(*layers[:-1])
optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
generator = torch.Generator().manual_seed(int(cfg["seed"]))

start = 1
resume = sweep.resume_dir()
if resume:
    state = torch.load(resume / "checkpoint.pt")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    start = state["epoch"] + 1

for epoch in range(start, int(cfg["epochs"]) + 1):
    t0 = time.perf_counter()
    model.train()
    total, order = 0.0, torch.randperm(len(x_train), generator=generator)
    for i in range(0, len(order), int(cfg["batch_size"])):
        batch = order[i : i + int(cfg["batch_size"])]
        loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch)
    t1 = time.perf_counter()
    model.eval()
    with torch.no_grad():
        logits = model(x_test)
        test_loss = F.cross_entropy(logits, y_test).item()
        accuracy = (logits.argmax(1) == y_test).float().mean().item()
    sweep.report(
        epoch=epoch, train_loss=total / len(x_train), test_loss=test_loss, test_accuracy=accuracy, lr=cfg["lr"],
        seconds=t1 - t0, eval_seconds=time.perf_counter() - t1)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "generator": generator.get_state(), "epoch": epoch}
    torch.save(state, sweep.checkpoint_dir() / "checkpoint.pt")
    sweep.checkpoint("checkpoint.pt")
