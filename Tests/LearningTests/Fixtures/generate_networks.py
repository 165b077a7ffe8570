#!/usr/bin/env python3
"""Reference losses and gradients of the network presets, for `NetworkFixtureTests.swift`.

Each preset is written here again as plain PyTorch modules (float64) with the module names the
Swift presets use (`NetworkPresets` in Sources/Learning/Models/Network/Presets.swift):

  lenet5         28×28 input padded by 2, ReLU, max pooling, 120-84-10
  resnet8        the CIFAR ResNet of depth 8 and width 4 on 1×12×12 images (option-B shortcuts:
                 1×1 convolution and batch norm)
  cnn            channels [4, 6], hidden 16, on 2×8×8 images, 5 classes
  gpt-tied /     nanoGPT-like pre-norm decoder: vocabulary 11, block 8, n_embd 16, 2 heads,
  gpt-untied     2 layers, no dropout, the head tied to `wte` or its own

No weight is stored: every tensor and the input batch come from a formula of the tensor's name
and the element's index that the Swift test evaluates too (`uniform` below: splitmix64 of the
64-bit FNV-1a hash of the name plus the index, mapped to [-1, 1) with 53 bits, so both sides
get the same doubles bit for bit). Weights of two or more dimensions are uniform in ±√(6/fan_in)
(He's, so that the logits are far from uniform),
one-dimensional `weight`s (norm scales) in 1 ± 0.25, other vectors (biases) in ±0.2.

Recorded per case: the parameters' and buffers' names and shapes (`named_parameters()` and
`named_buffers()`, without batch norm's `num_batches_tracked`, which only matters for
momentum=None), the training-mode loss of one forward pass (batch statistics), every
parameter's gradient, the running statistics after that pass, then the evaluation-mode loss
and number of correct argmax predictions. Gradients and running statistics are stored as
base64 of little-endian float64 (exact and compact: LeNet-5 alone has 61,706 parameters).

Run (PyTorch and numpy in a virtual environment outside the repository):
    python3 Tests/LearningTests/Fixtures/generate_networks.py
"""
import base64
import json
import math
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MASK = (1 << 64) - 1


# ---------------------------------------------------------------------------------------------
# The deterministic values (mirrored in NetworkFixtureTests.swift)

def fnv1a(name):
    h = 0xCBF29CE484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def splitmix(keys):
    """splitmix64's output function on an array of uint64 keys (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = keys + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def bits(name, count):
    with np.errstate(over="ignore"):
        return splitmix(np.uint64(fnv1a(name)) + np.arange(count, dtype=np.uint64))


def uniform(name, count):
    """[-1, 1): 2u − 1 for u the top 53 bits of each element's hash (exact in float64)."""
    u = (bits(name, count) >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return 2.0 * u - 1.0


def start(name, shape):
    n = int(np.prod(shape))
    r = uniform(name, n)
    if len(shape) >= 2:
        values = r * math.sqrt(6.0 / int(np.prod(shape[1:])))
    elif name.endswith("weight"):
        values = 1.0 + 0.25 * r
    else:
        values = 0.2 * r
    return torch.from_numpy(values.reshape(shape).copy())


def labels(count, classes):
    return torch.from_numpy((bits("labels", count) % np.uint64(classes)).astype(np.int64))


# ---------------------------------------------------------------------------------------------
# The presets, written independently of the Swift code

class LeNet5(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class BasicBlock(nn.Module):
    def __init__(self, inputs, outputs, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.shortcut = nn.Sequential()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False), nn.BatchNorm2d(outputs))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, depth, width, channels, classes):
        super().__init__()
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        inputs = width
        for stage in range(3):
            outputs = width << stage
            layers = []
            for b in range(blocks):
                layers.append(BasicBlock(inputs, outputs, 2 if stage > 0 and b == 0 else 1))
                inputs = outputs
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layers))
        self.linear = nn.Linear(inputs, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(x.mean(dim=(2, 3)))


class CNN(nn.Module):
    def __init__(self, channels, hidden, image, classes):
        super().__init__()
        c, h, w = image
        for i, out in enumerate(channels):
            setattr(self, f"conv{i + 1}", nn.Conv2d(c, out, 3, padding=1))
            c, h, w = out, h // 2, w // 2
        self.count = len(channels)
        self.fc1 = nn.Linear(c * h * w, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        for i in range(self.count):
            x = F.max_pool2d(F.relu(getattr(self, f"conv{i + 1}")(x)), 2)
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


class Attention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x):
        n, t, e = x.shape
        q, k, v = self.qkv(x).split(e, dim=2)
        q, k, v = (z.view(n, t, self.heads, e // self.heads).transpose(1, 2) for z in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(e // self.heads)
        causal = torch.ones(t, t, dtype=torch.bool).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        out = F.softmax(scores, dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(n, t, e))


class MLP(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(width, 4 * width)
        self.proj = nn.Linear(4 * width, width)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = MLP(width)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocabulary, block, layers, heads, width, tied):
        super().__init__()
        self.wte = nn.Embedding(vocabulary, width)
        self.wpe = nn.Embedding(block, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.head = None if tied else nn.Linear(width, vocabulary, bias=False)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        logits = x @ self.wte.weight.T if self.head is None else self.head(x)
        return logits.reshape(-1, logits.shape[-1])


# ---------------------------------------------------------------------------------------------

def encode(t):
    return base64.b64encode(t.detach().contiguous().numpy().astype("<f8").tobytes()).decode()


def case(name, model, trial, layout, x, y):
    """One forward and backward pass in training mode, then one in evaluation mode."""
    with torch.no_grad():
        for pname, p in model.named_parameters():
            p.copy_(start(pname, tuple(p.shape)))
    buffers = [(n, b) for n, b in model.named_buffers() if not n.endswith("num_batches_tracked")]
    model.train()
    model.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    params = list(model.named_parameters())
    model.eval()
    with torch.no_grad():
        logits = model(x)
        eval_loss = F.cross_entropy(logits, y).item()
        correct = int((logits.argmax(dim=1) == y).sum())
    return {
        "name": name,
        "trial": trial,
        "layout": layout,
        "batch": int(x.shape[0]),
        "parameters": [{"name": n, "shape": list(p.shape)} for n, p in params],
        "buffers": [{"name": n, "shape": list(b.shape)} for n, b in buffers],
        "loss": loss.item(),
        "gradients": {n: encode(p.grad) for n, p in params},
        "running": {n: encode(b) for n, b in buffers},
        "eval_loss": eval_loss,
        "eval_correct": correct,
    }


def image_case(name, model, trial, channels, size, classes, batch):
    x = torch.from_numpy(uniform("input", batch * channels * size * size).reshape(batch, channels, size, size).copy())
    layout = {"image": [channels, size, size], "classes": classes}
    return case(name, model, trial, layout, x, labels(batch, classes))


def gpt_case(name, tied):
    vocabulary, block, batch = 11, 8, 3
    model = GPT(vocabulary, block, layers=2, heads=2, width=16, tied=tied)
    trial = {"model": "gpt", "n_layer": 2, "n_head": 2, "n_embd": 16, "dropout": 0.0, "tied": tied}
    x = torch.from_numpy((bits("input", batch * block) % np.uint64(vocabulary)).astype(np.int64).reshape(batch, block))
    layout = {"tokens": block, "classes": vocabulary}
    return case(name, model, trial, layout, x, labels(batch * block, vocabulary))


def main():
    # Double precision for the fixtures only: Benchmarks/torch_networks.py imports the models.
    torch.set_default_dtype(torch.float64)
    cases = [
        image_case("lenet5", LeNet5(10), {"model": "lenet5", "activation": "relu", "pool": "max"}, 1, 28, 10, batch=8),
        image_case("resnet8", ResNet(8, 4, 1, 10), {"model": "resnet", "depth": 8, "width": 4}, 1, 12, 10, batch=6),
        image_case("cnn", CNN([4, 6], 16, (2, 8, 8), 5), {"model": "cnn", "channels": [4, 6], "hidden": 16}, 2, 8, 5, batch=5),
        gpt_case("gpt-tied", True),
        gpt_case("gpt-untied", False),
    ]
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "networks.json")
    with open(out, "w") as f:
        json.dump({"torch": torch.__version__, "cases": cases}, f, indent=1)
    for c in cases:
        print(f"{c['name']}: loss {c['loss']:.6f}, eval {c['eval_loss']:.6f}, {sum(np.prod(p['shape']) for p in c['parameters'])} parameters")
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
