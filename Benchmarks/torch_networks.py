"""PyTorch versions of the network presets and of the text data pipeline, for the benchmarks
(`torch_reference.py`, `gpt_reference.py`). The architectures are those of `NetworkPresets`
(Sources/Learning/Models/Network/Presets.swift); the text windows those of
`DataSource.loadText`: bytes as tokens, the first 1 − validation_fraction of the text trains,
each part cut into non-overlapping windows of block_size tokens labelled one position later.
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class LeNet5(nn.Module):
    """Two 5×5 convolutions (6, 16) with activation and 2×2 pooling, then 120-84-classes."""

    def __init__(self, height=28, classes=10, pool="max"):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=max(0, (32 - height) // 2))
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, classes)
        self.pool = F.max_pool2d if pool == "max" else F.avg_pool2d

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)), 2)
        x = self.pool(F.relu(self.conv2(x)), 2)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))))


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
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + self.shortcut(x))


class ResNet(nn.Module):
    """He et al.'s CIFAR ResNet of depth 6n + 2 with 1×1-convolution shortcuts (option B)."""

    def __init__(self, depth=20, width=16, channels=1, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        inputs, stages = width, []
        for stage in range(3):
            outputs = width << stage
            for b in range((depth - 2) // 6):
                stages.append(BasicBlock(inputs, outputs, 2 if stage > 0 and b == 0 else 1))
                inputs = outputs
        self.blocks = nn.Sequential(*stages)
        self.linear = nn.Linear(inputs, classes)

    def forward(self, x):
        x = self.blocks(F.relu(self.bn1(self.conv1(x))))
        return self.linear(x.mean(dim=(2, 3)))


class Block(nn.Module):
    def __init__(self, width, heads, dropout):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 4 * width)
        self.mlp_proj = nn.Linear(4 * width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        n, t, e = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(e, dim=2)
        q, k, v = (z.view(n, t, self.heads, e // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.proj(y.transpose(1, 2).reshape(n, t, e)))
        return x + self.drop(self.mlp_proj(F.gelu(self.fc(self.ln2(x)))))


class GPT(nn.Module):
    """nanoGPT's decoder as the gpt preset: GPT-2 initialisation, pre-norm blocks, exact GELU."""

    def __init__(self, vocabulary, block, layers, heads, width, dropout=0.0, tied=True):
        super().__init__()
        self.wte = nn.Embedding(vocabulary, width)
        self.wpe = nn.Embedding(block, width)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*(Block(width, heads, dropout) for _ in range(layers)))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocabulary, bias=False)
        if tied:
            self.head.weight = self.wte.weight
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() == 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx):
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(idx.shape[1])))
        logits = self.head(self.ln_f(self.blocks(x)))
        return logits.reshape(-1, logits.shape[-1])


def text_windows(path, block_size, validation_fraction=0.1):
    """(train x, train y, validation x, validation y) as int64 tensors [windows, block_size]."""
    tokens = np.fromfile(path, dtype=np.uint8).astype(np.int64)
    split = int(len(tokens) * (1 - validation_fraction))

    def windows(part):
        count = (len(part) - 1) // block_size
        x = part[:count * block_size].reshape(count, block_size)
        y = part[1:count * block_size + 1].reshape(count, block_size)
        return torch.from_numpy(x.copy()), torch.from_numpy(y.copy())

    return (*windows(tokens[:split]), *windows(tokens[split:]))
