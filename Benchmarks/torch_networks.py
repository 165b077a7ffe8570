"""PyTorch versions of the network presets and of the text data pipeline, for the benchmarks
(`torch_reference.py`, `gpt_reference.py`). The architectures are those of `NetworkPresets`
(Sources/Learning/Models/Network/Presets.swift); the text windows those of
`DataSource.loadText`: bytes as tokens, the first 1 − validation_fraction of the text trains,
each part cut into non-overlapping windows of block_size tokens labelled one position later.
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# LeNet-5 and the ResNet are the models the gradient fixtures check our presets against, so the
# models timed here are the ones checked (constructed in the default float32 here).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "LearningTests", "Fixtures"))
from generate_networks import LeNet5, ResNet  # noqa: E402


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
