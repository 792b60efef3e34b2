"""Multi-head causal self-attention, with every head computed at once.

Grouped-query attention is the same module with fewer key/value heads than query heads.

Heads are a batch dimension: one Linear produces q, k and v for all heads, a reshape
splits the channels into H heads of D dimensions, and a single batched matmul scores all
of them. Two interchangeable paths compute the attention itself: `manual_attention`
spells out the maths (and is what interpretability hooks will read), and PyTorch's
`F.scaled_dot_product_attention` dispatches to a fused kernel. Tests hold them equal.

`auto` picks by measurement (docs/benchmarks.md): on the CPU, for short contexts, the
manual path is faster (forward + backward at B=12, H=4, T=64, D=32: 0.74 ms against
1.29 ms for the fused kernel), while from T of about 100 up, and on GPUs, the fused one
wins and also never stores the (T, T) pattern.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glassbox.config import ModelConfig
from glassbox.nn.kv_cache import KVCache
from glassbox.nn.positional import apply_rotary


@lru_cache(maxsize=16)
def causal_bias(T: int, S: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(T, S) additive mask: 0 where query t may see key s (s <= t + S - T), else -inf.

    Cached, so the mask is built once per shape rather than on every forward pass.
    """
    allowed = torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)
    return torch.zeros(T, S, dtype=dtype, device=device).masked_fill(~allowed, float("-inf"))


AUTO_MANUAL_MAX_T = 96  # `auto` uses the manual path on non-CUDA devices up to this length


def manual_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = True,
    bias: Tensor | None = None,
    dropout_p: float = 0.0,
) -> Tensor:
    """softmax(q kᵀ / √D + mask) v, written out.

    q: (B, H, T, D) queries; k, v: (B, H_kv, S, D) keys and values, S >= T, where H_kv
    divides H and each key/value head serves H // H_kv query heads (grouped-query
    attention; H_kv = H is plain multi-head). With `causal`, query t sees key s only if
    s <= t + (S - T): queries are the last T of the S positions. `bias` is an additive
    mask broadcastable to (B, H, T, S) (-inf hides a key). Returns (B, H, T, D).
    """
    B, H, T, D = q.shape
    H_kv, S = k.size(1), k.size(2)
    q = q.view(B, H_kv, H // H_kv, T, D)  # (B, H_kv, G, T, D): query heads by group
    k, v = k.unsqueeze(2), v.unsqueeze(2)  # (B, H_kv, 1, S, D): shared within a group
    scores = q @ k.transpose(-2, -1) * (1.0 / math.sqrt(D))  # (B, H_kv, G, T, S)
    scores = scores.view(B, H, T, S)  # (B, H, T, S)
    if causal:
        scores = scores + causal_bias(T, S, q.device, scores.dtype)  # -inf on future keys
    if bias is not None:
        scores = scores + bias
    pattern = scores.softmax(dim=-1)  # (B, H, T, S): each row sums to 1
    if dropout_p > 0.0:
        pattern = F.dropout(pattern, p=dropout_p)
    z = pattern.view(B, H_kv, H // H_kv, T, S) @ v  # (B, H_kv, G, T, D)
    return z.view(B, H, T, D)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_kv_head = config.kv_heads
        self.d_head = config.d_head
        self.impl = config.attention
        self.dropout = config.dropout
        C, kv_width = config.n_embd, config.kv_heads * config.d_head
        # q for all heads, then k and v for the key/value heads, in one matmul
        self.qkv = nn.Linear(C, C + 2 * kv_width, bias=config.bias)
        self.proj = nn.Linear(C, C, bias=config.bias)  # writes the heads back to the residual
        self.resid_dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()

    def forward(
        self,
        x: Tensor,
        *,
        bias: Tensor | None = None,
        causal: bool = True,
        cache: KVCache | None = None,
        layer: int = 0,
        rotary: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """x (B, T, C) -> (B, T, C). `causal` applies the usual triangle (aligned to the
        last T keys); `bias` adds any other mask, such as left padding. With a cache, the
        new keys and values are stored in slot `layer` and attention sees all of them.
        `rotary` (cos, sin) rotates q and k by their positions (RoPE) before k is cached."""
        B, T, C = x.shape
        H, H_kv, D = self.n_head, self.n_kv_head, self.d_head
        q, k, v = self.qkv(x).split([C, H_kv * D, H_kv * D], dim=2)
        q = q.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, H_kv, D).transpose(1, 2)  # (B, H_kv, T, D)
        v = v.view(B, T, H_kv, D).transpose(1, 2)  # (B, H_kv, T, D)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        if cache is not None:
            k, v = cache.store(layer, k, v)  # (B, H_kv, S, D): every position so far
        dropout_p = self.dropout if self.training else 0.0
        S = k.size(2)
        use_sdpa = self.impl == "sdpa" or (
            self.impl == "auto" and (x.is_cuda or S > AUTO_MANUAL_MAX_T)
        )
        if use_sdpa:
            # SDPA's is_causal aligns the triangle top-left and is not documented to
            # combine with attn_mask, so any other mask carries the triangle itself.
            if causal and (S != T or bias is not None):
                mask = causal_bias(T, S, x.device, q.dtype)
                bias, causal = (mask if bias is None else bias + mask), False
            z = F.scaled_dot_product_attention(
                q, k, v, attn_mask=bias, dropout_p=dropout_p, is_causal=causal,
                enable_gqa=H_kv != H,
            )  # fmt: skip
        else:
            z = manual_attention(q, k, v, causal=causal, bias=bias, dropout_p=dropout_p)
        z = z.transpose(1, 2).reshape(B, T, C)  # (B, T, H*D): heads side by side again
        return self.resid_dropout(self.proj(z))  # (B, T, C)
