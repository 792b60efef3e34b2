"""Absolute positional encodings: a learned table, or the fixed sinusoids of the paper.

Both map position indices to vectors added to the token embeddings, and both take the
indices explicitly so that a decoder with a cache can ask for positions t..t+n.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from glassbox.config import ModelConfig


class LearnedPositions(nn.Module):
    """One trained vector per position, as in GPT-2."""

    def __init__(self, block_size: int, n_embd: int) -> None:
        super().__init__()
        self.table = nn.Embedding(block_size, n_embd)

    def forward(self, positions: Tensor) -> Tensor:
        return self.table(positions)  # (T,) -> (T, C)


class SinusoidalPositions(nn.Module):
    """PE[t, 2i] = sin(t / 10000^(2i/C)), PE[t, 2i+1] = cos(same); no parameters.

    Each pair of channels rotates at its own frequency, so PE[t + k] is a fixed linear
    function of PE[t]: the property Vaswani et al. hoped would let attention use offsets.
    """

    def __init__(self, block_size: int, n_embd: int) -> None:
        super().__init__()
        position = torch.arange(block_size, dtype=torch.float32)[:, None]  # (T, 1)
        inv_freq = torch.exp(
            torch.arange(0, n_embd, 2, dtype=torch.float32) * (-math.log(10000.0) / n_embd)
        )  # (ceil(C/2),)
        table = torch.zeros(block_size, n_embd)  # (T, C)
        table[:, 0::2] = torch.sin(position * inv_freq)
        table[:, 1::2] = torch.cos(position * inv_freq[: n_embd // 2])
        # Not saved with the weights: it is a function of the config alone.
        self.register_buffer("table", table, persistent=False)

    def forward(self, positions: Tensor) -> Tensor:
        return self.table[positions]  # (T,) -> (T, C)


def make_positions(config: ModelConfig) -> nn.Module:
    if config.pos_encoding == "learned":
        return LearnedPositions(config.block_size, config.n_embd)
    return SinusoidalPositions(config.block_size, config.n_embd)
