"""Where a token is: learned or sinusoidal vectors added to the embeddings, or rotary.

All of them take position indices explicitly, so that a decoder with a cache can ask for
positions t..t+n and left-padded rows can count positions from their first real token.
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


class RotaryPositions(nn.Module):
    """Rotary position embedding (RoPE, Su et al. 2021): nothing is added to the residual
    stream; instead each attention layer rotates every pair of query and key channels by
    an angle proportional to the position, one frequency per pair, so the score q_m·k_n
    depends on the positions only through m - n.

    This module returns the (cos, sin) tables for the given positions; `apply_rotary`
    rotates q or k with them. Pairs are (i, i + D/2), the "rotate half" layout.
    """

    def __init__(self, block_size: int, d_head: int, base: float = 10000.0) -> None:
        super().__init__()
        inv_freq = base ** (-torch.arange(0, d_head, 2, dtype=torch.float32) / d_head)  # (D/2,)
        angles = torch.arange(block_size, dtype=torch.float32)[:, None] * inv_freq  # (T, D/2)
        angles = torch.cat([angles, angles], dim=-1)  # (T, D): pair i and i + D/2 share one
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        return self.cos[positions], self.sin[positions]  # (T, D) or (B, T, D) each


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x (B, H, T, D) by the angles whose cos and sin are (T, D) or (B, T, D)."""
    if cos.dim() == 3:  # per-row positions: broadcast over heads
        cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, D)
    half = x.size(-1) // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)  # (x1, x2) -> (-x2, x1)
    return x * cos + rotated * sin


def make_positions(config: ModelConfig) -> nn.Module | None:
    """The module that turns positions into vectors added to the embeddings (None when
    positions enter through attention, as with rope, or not at all)."""
    if config.pos_encoding == "learned":
        return LearnedPositions(config.block_size, config.n_embd)
    if config.pos_encoding == "sinusoidal":
        return SinusoidalPositions(config.block_size, config.n_embd)
    return None
