"""Where a token is. Three families:

- added to the token embeddings: learned (GPT-2, BERT) or sinusoidal (the 2017 paper);
- applied to q and k: rotary (RoPE), so scores depend on the offset between positions;
- added to the attention scores or keys/values from the offset alone: ALiBi's linear
  penalty and Shaw et al.'s learned relative vectors. These two have no table of absolute
  positions, so they also run on sequences longer than any seen in training.

Each scheme is one `PositionScheme` object, built by `make_positions` from the
`POSITION_SCHEMES` registry (keyed by config.pos_encoding), that says what it adds and
where: `embed` (vectors for the residual stream), and `context`, which makes once per
forward pass the `PositionContext` every attention layer reads (a rotation for q and k,
a bias on the scores, offsets for per-layer relative vectors). A Stack and its attention
layers never test which scheme they have; a new scheme is one class and one registry line
(plus its name in config.POS_ENCODINGS, the choices a config accepts).

The absolute schemes take position indices explicitly, so that a decoder with a cache can
ask for positions t..t+n and left-padded rows can count positions from their first real
token; the relative ones take query and key slot indices, whose differences are the same.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from glassbox.config import ModelConfig
from glassbox.errors import GlassboxError


class PositionContext:
    """What one forward pass's attention layers need to know about positions, built once
    per pass by the Stack's scheme (`PositionScheme.context`) and passed to every layer.

    rotary: (cos, sin), each (T, 1, D) or (B, T, 1, D), to rotate q and k in the
      (B, T, H, D) layout (RoPE); score_bias: (1, H, T, S) added to the scores (ALiBi; the
      Stack folds it into the attention mask); offsets: (T, S) key slot minus query slot,
      which index each layer's relative vectors (Shaw et al.). None where unused.
    """

    __slots__ = ("rotary", "score_bias", "offsets")

    def __init__(
        self,
        rotary: tuple[Tensor, Tensor] | None = None,
        score_bias: Tensor | None = None,
        offsets: Tensor | None = None,
    ) -> None:
        self.rotary, self.score_bias, self.offsets = rotary, score_bias, offsets

    def rotate(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        """q (B, T, H, D) and k (B, T, H_kv, D), rotated by their positions if RoPE."""
        if self.rotary is None:
            return q, k
        return apply_rotary(q, *self.rotary), apply_rotary(k, *self.rotary)


NO_POSITIONS = PositionContext()  # nothing to rotate, bias or offset (read-only by convention)


class PositionScheme(nn.Module):
    """Where positions enter the model. This base class adds nothing anywhere, which is
    pos_encoding="none"; each scheme overrides what it uses and sets its flags.

    - `has_table`: positions are rows of a block_size table, so a longer sequence cannot
      be encoded (the Stack refuses it);
    - `adds_embedding`: `embed(positions)` gives vectors added to the token embeddings
      (and the Stack then has a `hook_pos_embed`);
    - `token_scale`: what the token embeddings are multiplied by before positions are
      added (1, except for sinusoids);
    - `context(positions, start, T)`: the per-forward `PositionContext` for attention;
    - `relative_vectors(config)`: the module each attention layer owns for this scheme
      (Shaw et al.'s key and value vectors), or None.
    """

    has_table = False
    adds_embedding = False
    token_scale = 1.0

    @classmethod
    def from_config(cls, config: ModelConfig) -> PositionScheme:
        return cls()

    def embed(self, positions: Tensor) -> Tensor:
        """Vectors (T, C) or (B, T, C) for positions (T,) or (B, T) (adds_embedding only)."""
        raise GlassboxError(f"{type(self).__name__} adds nothing to the embeddings")

    def context(self, positions: Tensor, start: int, T: int) -> PositionContext:
        """For T new tokens after `start` cached ones: positions (T,) or (B, T) count real
        tokens only (left padding does not count); slots are start..start+T-1."""
        return NO_POSITIONS

    @classmethod
    def relative_vectors(cls, config: ModelConfig) -> nn.Module | None:
        return None


class LearnedPositions(PositionScheme):
    """One trained vector per position, as in GPT-2 (`pos_emb.table`, GPT-2's wpe)."""

    has_table = True
    adds_embedding = True

    def __init__(self, block_size: int, n_embd: int) -> None:
        super().__init__()
        self.table = nn.Embedding(block_size, n_embd)

    @classmethod
    def from_config(cls, config: ModelConfig) -> LearnedPositions:
        return cls(config.block_size, config.n_embd)

    def embed(self, positions: Tensor) -> Tensor:
        return self.table(positions)  # (T,) -> (T, C), or (B, T) -> (B, T, C)

    forward = embed


class SinusoidalPositions(PositionScheme):
    """PE[t, 2i] = sin(t / 10000^(2i/C)), PE[t, 2i+1] = cos(same); no parameters.

    Each pair of channels rotates at its own frequency, so PE[t + k] is a fixed linear
    function of PE[t]: the property Vaswani et al. hoped would let attention use offsets.

    The sinusoids have amplitude 1 while token vectors start at std 0.02: unscaled, the
    positions drown the tokens (measured: docs/architectures.md). The paper multiplies the
    embeddings by √C, and so does `token_scale` here, for this scheme only.
    """

    has_table = True
    adds_embedding = True

    def __init__(self, block_size: int, n_embd: int) -> None:
        super().__init__()
        self.token_scale = math.sqrt(n_embd)
        position = torch.arange(block_size, dtype=torch.float32)[:, None]  # (T, 1)
        inv_freq = torch.exp(
            torch.arange(0, n_embd, 2, dtype=torch.float32) * (-math.log(10000.0) / n_embd)
        )  # (ceil(C/2),)
        table = torch.zeros(block_size, n_embd)  # (T, C)
        table[:, 0::2] = torch.sin(position * inv_freq)
        table[:, 1::2] = torch.cos(position * inv_freq[: n_embd // 2])
        # Not saved with the weights: it is a function of the config alone.
        self.register_buffer("table", table, persistent=False)

    @classmethod
    def from_config(cls, config: ModelConfig) -> SinusoidalPositions:
        return cls(config.block_size, config.n_embd)

    def embed(self, positions: Tensor) -> Tensor:
        return self.table[positions]  # (T,) -> (T, C), or (B, T) -> (B, T, C)

    forward = embed


class RotaryPositions(PositionScheme):
    """Rotary position embedding (RoPE, Su et al. 2021): nothing is added to the residual
    stream; instead each attention layer rotates every pair of query and key channels by
    an angle proportional to the position, one frequency per pair, so the score q_m·k_n
    depends on the positions only through m - n.

    Called on positions, this module returns the (cos, sin) tables that `apply_rotary`
    rotates q or k with. Pairs are (i, i + D/2), the "rotate half" layout.
    """

    has_table = True

    def __init__(self, block_size: int, d_head: int, base: float = 10000.0) -> None:
        super().__init__()
        inv_freq = base ** (-torch.arange(0, d_head, 2, dtype=torch.float32) / d_head)  # (D/2,)
        angles = torch.arange(block_size, dtype=torch.float32)[:, None] * inv_freq  # (T, D/2)
        angles = torch.cat([angles, angles], dim=-1)  # (T, D): pair i and i + D/2 share one
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    @classmethod
    def from_config(cls, config: ModelConfig) -> RotaryPositions:
        return cls(config.block_size, config.d_head)

    def forward(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """(cos, sin) for positions (T,) or (B, T): each (T, 1, D) or (B, T, 1, D), the
        1 broadcasting over the heads of q or k in the (B, T, H, D) layout."""
        return self.cos[positions].unsqueeze(-2), self.sin[positions].unsqueeze(-2)

    def context(self, positions: Tensor, start: int, T: int) -> PositionContext:
        return PositionContext(rotary=self(positions))


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x (..., D), e.g. q (B, T, H, D), by angles whose cos and sin broadcast to it
    (RotaryPositions makes them (T, 1, D) or (B, T, 1, D))."""
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


def _slots(positions: Tensor, start: int, T: int) -> Tensor:
    """(start + T,) slot indices: every key so far; the queries are the last T."""
    return torch.arange(start + T, device=positions.device)


class ALiBi(PositionScheme):
    """Attention with linear biases: score(t, s) -= slope_h * |t - s|. No parameters and
    nothing added to the embeddings; each head looks back over its own typical distance
    (steep slopes make local heads, shallow ones almost global heads)."""

    def __init__(self, n_head: int) -> None:
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(n_head), persistent=False)  # (H,)

    @classmethod
    def from_config(cls, config: ModelConfig) -> ALiBi:
        return cls(config.n_head)

    def forward(self, query_slots: Tensor, key_slots: Tensor) -> Tensor:
        """(1, H, T, S) additive bias for queries at query_slots (T,), keys at key_slots (S,)."""
        distance = (query_slots[:, None] - key_slots[None, :]).abs()  # (T, S)
        return -(self.slopes[:, None, None] * distance)[None]  # (1, H, T, S)

    def context(self, positions: Tensor, start: int, T: int) -> PositionContext:
        # Slot offsets equal position offsets between real tokens (padding is contiguous
        # at one end), and padding keys are masked anyway.
        slots = _slots(positions, start, T)
        return PositionContext(score_bias=self(slots[start:], slots))


class RelativeVectors(nn.Module):
    """One layer's relative position vectors (Shaw, Uszkoreit and Vaswani 2018): one
    learned vector per offset s - t in [-K, K] (offsets beyond are clipped to ±K) for the
    keys and another for the values, shared by all heads of the layer. Attention then
    scores q_t·(k_s + a^K_{s-t}) and outputs Σ_s p_ts (v_s + a^V_{s-t})."""

    def __init__(self, max_distance: int, d_head: int) -> None:
        super().__init__()
        self.max_distance = max_distance
        self.keys = nn.Embedding(2 * max_distance + 1, d_head)
        self.values = nn.Embedding(2 * max_distance + 1, d_head)

    def forward(self, offsets: Tensor) -> tuple[Tensor, Tensor]:
        """The key and value vectors, (T, S, D) each, for offsets (T, S) = key - query."""
        index = offsets.clamp(-self.max_distance, self.max_distance) + self.max_distance
        return self.keys(index), self.values(index)


class RelativePositions(PositionScheme):
    """Shaw et al.'s scheme: each attention layer owns its `RelativeVectors` (saved as
    `attn.relative.*`); this stack-level part only computes the offsets they read."""

    @classmethod
    def relative_vectors(cls, config: ModelConfig) -> RelativeVectors:
        return RelativeVectors(config.max_relative_distance, config.d_head)

    def context(self, positions: Tensor, start: int, T: int) -> PositionContext:
        slots = _slots(positions, start, T)
        return PositionContext(offsets=slots[None, :] - slots[start:, None])  # (T, S)


# The registry: config.pos_encoding -> scheme. Its keys are config.POS_ENCODINGS (a test
# holds them equal).
POSITION_SCHEMES: dict[str, type[PositionScheme]] = {
    "learned": LearnedPositions,
    "sinusoidal": SinusoidalPositions,
    "rope": RotaryPositions,
    "alibi": ALiBi,
    "relative": RelativePositions,
    "none": PositionScheme,
}


def make_positions(config: ModelConfig) -> PositionScheme:
    """The position scheme config.pos_encoding names."""
    return POSITION_SCHEMES[config.pos_encoding].from_config(config)
