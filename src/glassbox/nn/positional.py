"""Where a token is. Three families:

- added to the token embeddings: learned (GPT-2, BERT) or sinusoidal (the 2017 paper);
- applied to q and k: rotary (RoPE), so scores depend on the offset between positions;
- added to the attention scores or keys/values from the offset alone: ALiBi's linear
  penalty and Shaw et al.'s learned relative vectors. These two have no table of absolute
  positions, so they also run on sequences longer than any seen in training.

The absolute schemes take position indices explicitly, so that a decoder with a cache can
ask for positions t..t+n and left-padded rows can count positions from their first real
token; the relative ones take query and key slot indices, whose differences are the same.
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


def alibi_slopes(n_head: int) -> Tensor:
    """One penalty slope per head (Press et al. 2022): the geometric sequence 2^(-8h/n)
    for h = 1..n when n is a power of two. Otherwise the slopes of the largest power of
    two below n, then every other slope of the next power of two, until there are n."""
    n = 2 ** math.floor(math.log2(n_head))
    slopes = [2 ** (-8 * h / n) for h in range(1, n + 1)]
    extra = [2 ** (-8 * h / (2 * n)) for h in range(1, 2 * n + 1, 2)]
    return torch.tensor(slopes + extra[: n_head - n])  # (H,)


class ALiBi(nn.Module):
    """Attention with linear biases: score(t, s) -= slope_h * |t - s|. No parameters and
    nothing added to the embeddings; each head looks back over its own typical distance
    (steep slopes make local heads, shallow ones almost global heads)."""

    def __init__(self, n_head: int) -> None:
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(n_head), persistent=False)  # (H,)

    def forward(self, query_slots: Tensor, key_slots: Tensor) -> Tensor:
        """(1, H, T, S) additive bias for queries at query_slots (T,), keys at key_slots (S,)."""
        distance = (query_slots[:, None] - key_slots[None, :]).abs()  # (T, S)
        return -(self.slopes[:, None, None] * distance)[None]  # (1, H, T, S)


class RelativePositions(nn.Module):
    """Relative position representations (Shaw, Uszkoreit and Vaswani 2018): one learned
    vector per offset s - t in [-K, K] (offsets beyond are clipped to ±K) for the keys and
    another for the values, shared by all heads of a layer. Attention then scores
    q_t·(k_s + a^K_{s-t}) and outputs Σ_s p_ts (v_s + a^V_{s-t})."""

    def __init__(self, max_distance: int, d_head: int) -> None:
        super().__init__()
        self.max_distance = max_distance
        self.keys = nn.Embedding(2 * max_distance + 1, d_head)
        self.values = nn.Embedding(2 * max_distance + 1, d_head)

    def forward(self, offsets: Tensor) -> tuple[Tensor, Tensor]:
        """The key and value vectors, (T, S, D) each, for offsets (T, S) = key - query."""
        index = offsets.clamp(-self.max_distance, self.max_distance) + self.max_distance
        return self.keys(index), self.values(index)


def make_positions(config: ModelConfig) -> nn.Module | None:
    """The module that turns positions into vectors added to the embeddings (None when
    positions enter through attention, as with rope, or not at all)."""
    if config.pos_encoding == "learned":
        return LearnedPositions(config.block_size, config.n_embd)
    if config.pos_encoding == "sinusoidal":
        return SinusoidalPositions(config.block_size, config.n_embd)
    return None
