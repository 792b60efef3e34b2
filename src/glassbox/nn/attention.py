"""Multi-head causal self-attention, with every head computed at once.

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


@lru_cache(maxsize=16)
def causal_bias(T: int, S: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(T, S) additive mask: 0 where query t may see key s (s <= t + S - T), else -inf.

    Cached, so the mask is built once per shape rather than on every forward pass.
    """
    allowed = torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)
    return torch.zeros(T, S, dtype=dtype, device=device).masked_fill(~allowed, float("-inf"))


AUTO_MANUAL_MAX_T = 96  # `auto` uses the manual path on non-CUDA devices up to this length


def manual_attention(
    q: Tensor, k: Tensor, v: Tensor, *, causal: bool = True, dropout_p: float = 0.0
) -> Tensor:
    """softmax(q kᵀ / √D + mask) v, written out.

    q: (B, H, T, D) queries; k, v: (B, H, S, D) keys and values, S >= T. With `causal`,
    query t may attend to key s only if s <= t + (S - T), i.e. queries are the last T
    positions of the S keys (S == T in training). Returns (B, H, T, D).
    """
    T, S = q.size(-2), k.size(-2)
    scores = q @ k.transpose(-2, -1) * (1.0 / math.sqrt(q.size(-1)))  # (B, H, T, S)
    if causal:
        scores = scores + causal_bias(T, S, q.device, scores.dtype)  # -inf on future keys
    pattern = scores.softmax(dim=-1)  # (B, H, T, S): each row sums to 1
    if dropout_p > 0.0:
        pattern = F.dropout(pattern, p=dropout_p)
    return pattern @ v  # (B, H, T, D)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.d_head = config.d_head
        self.impl = config.attention
        self.dropout = config.dropout
        C = config.n_embd
        self.qkv = nn.Linear(C, 3 * C, bias=config.bias)  # q, k, v of all heads in one matmul
        self.proj = nn.Linear(C, C, bias=config.bias)  # writes the heads back to the residual
        self.resid_dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        H, D = self.n_head, self.d_head
        q, k, v = self.qkv(x).split(C, dim=2)  # each (B, T, C)
        q = q.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        v = v.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        dropout_p = self.dropout if self.training else 0.0
        if self.impl == "sdpa" or (self.impl == "auto" and (x.is_cuda or T > AUTO_MANUAL_MAX_T)):
            z = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        else:
            z = manual_attention(q, k, v, causal=True, dropout_p=dropout_p)
        z = z.transpose(1, 2).reshape(B, T, C)  # (B, T, H*D): heads side by side again
        return self.resid_dropout(self.proj(z))  # (B, T, C)
