"""The position-wise feed-forward network: widen, apply a nonlinearity, project back."""

from __future__ import annotations

from functools import partial

import torch.nn.functional as F
from torch import Tensor, nn

from glassbox.config import ModelConfig

ACTIVATIONS = {
    "gelu": F.gelu,  # exact, x·Φ(x); what nanoGPT and BERT use
    # GPT-2's tanh approximation: needed to reproduce GPT-2 weights exactly, and on CPUs
    # about 4x slower than the erf form in PyTorch's kernels (measured; docs/benchmarks.md)
    "gelu_tanh": partial(F.gelu, approximate="tanh"),
    "relu": F.relu,
}


class MLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        hidden = config.mlp_ratio * config.n_embd
        self.fc = nn.Linear(config.n_embd, hidden, bias=config.bias)
        self.act = ACTIVATIONS[config.activation]
        self.proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.fc(x))  # (B, T, 4C)
        return self.dropout(self.proj(h))  # (B, T, C)
