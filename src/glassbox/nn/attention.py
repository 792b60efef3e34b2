"""Multi-head attention, with every head computed at once: self-attention (causal for a
decoder, bidirectional for an encoder) and cross-attention (a decoder's queries reading
the encoder's output). Both share the attention maths and the output projection; they
differ only in where keys and values come from.

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
from glassbox.nn.hooks import HookPoint
from glassbox.nn.kv_cache import KVCache
from glassbox.nn.positional import RelativePositions, apply_rotary


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
    relative: tuple[Tensor, Tensor] | None = None,
    hook_scores: HookPoint | None = None,
    hook_pattern: HookPoint | None = None,
) -> Tensor:
    """softmax(q kᵀ / √D + mask) v, written out.

    q: (B, H, T, D) queries; k, v: (B, H_kv, S, D) keys and values, S >= T, where H_kv
    divides H and each key/value head serves H // H_kv query heads (grouped-query
    attention; H_kv = H is plain multi-head). With `causal`, query t sees key s only if
    s <= t + (S - T): queries are the last T of the S positions. `bias` is an additive
    mask broadcastable to (B, H, T, S) (-inf hides a key). `relative` (a_K, a_V), each
    (T, S, D), are Shaw et al.'s relative vectors added to every key and value as seen
    from each query. hook_scores and hook_pattern see (and may replace) the masked
    scores and the pattern. Returns (B, H, T, D).
    """
    B, H, T, D = q.shape
    H_kv, S = k.size(1), k.size(2)
    scale = 1.0 / math.sqrt(D)
    q_grouped = q.view(B, H_kv, H // H_kv, T, D)  # (B, H_kv, G, T, D): query heads by group
    k, v = k.unsqueeze(2), v.unsqueeze(2)  # (B, H_kv, 1, S, D): shared within a group
    scores = (q_grouped @ k.transpose(-2, -1)).view(B, H, T, S) * scale  # (B, H, T, S)
    if relative is not None:
        scores = scores + torch.einsum("bhtd,tsd->bhts", q, relative[0]) * scale
    if causal:
        scores = scores + causal_bias(T, S, q.device, scores.dtype)  # -inf on future keys
    if bias is not None:
        scores = scores + bias
    if hook_scores is not None:
        scores = hook_scores(scores)
    pattern = scores.softmax(dim=-1)  # (B, H, T, S): each row sums to 1
    if hook_pattern is not None:
        pattern = hook_pattern(pattern)
    if dropout_p > 0.0:
        pattern = F.dropout(pattern, p=dropout_p)
    z = (pattern.view(B, H_kv, H // H_kv, T, S) @ v).view(B, H, T, D)  # (B, H, T, D)
    if relative is not None:
        z = z + torch.einsum("bhts,tsd->bhtd", pattern, relative[1])
    return z


class Attention(nn.Module):
    """What self- and cross-attention share: heads in, attention, heads out.

    Subclasses make q (B, H, T, D) and k, v (B, H_kv, S, D); `attend` mixes the values and
    `proj` writes the heads back into the residual stream. Hook points: q, k, v (k and v
    for the new positions only, after any rotation), attn_scores and pattern (B, H, T, S),
    z (B, H, T, D) and result (B, T, H, C): each head's own term of the output, whose
    sum over heads plus proj's bias is the attention output.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_kv_head = config.kv_heads
        self.d_head = config.d_head
        self.impl = config.attention
        self.dropout = config.dropout
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_attn_scores, self.hook_pattern = HookPoint(), HookPoint()
        self.hook_z, self.hook_result = HookPoint(), HookPoint()

    def heads(self, t: Tensor, n: int) -> Tensor:
        """(B, T, n*D) -> (B, n, T, D): heads become a batch dimension."""
        B, T, _ = t.shape
        return t.view(B, T, n, self.d_head).transpose(1, 2)

    def attend(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        *,
        causal: bool,
        bias: Tensor | None,
        relative: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """Attention output (B, T, C) from q, k, v, before the output projection."""
        B, H, T, D = q.shape
        S = k.size(2)
        dropout_p = self.dropout if self.training else 0.0
        watched = bool(self.hook_attn_scores.fns or self.hook_pattern.fns)
        use_sdpa = (
            relative is None
            and not watched
            and (
                self.impl == "sdpa"
                or (self.impl == "auto" and (q.is_cuda or S > AUTO_MANUAL_MAX_T))
            )
        )
        if use_sdpa:
            # SDPA's is_causal aligns the triangle top-left and is not documented to
            # combine with attn_mask, so any other mask carries the triangle itself.
            if causal and (S != T or bias is not None):
                mask = causal_bias(T, S, q.device, q.dtype)
                bias, causal = (mask if bias is None else bias + mask), False
            z = F.scaled_dot_product_attention(
                q, k, v, attn_mask=bias, dropout_p=dropout_p, is_causal=causal,
                enable_gqa=k.size(1) != H,
            )  # fmt: skip
        else:
            z = manual_attention(
                q, k, v, causal=causal, bias=bias, dropout_p=dropout_p, relative=relative,
                hook_scores=self.hook_attn_scores, hook_pattern=self.hook_pattern,
            )  # fmt: skip
        return self.hook_z(z)  # (B, H, T, D)

    def out(self, z: Tensor) -> Tensor:
        """Project the heads z (B, H, T, D) into the residual stream: (B, T, C)."""
        B, H, T, D = z.shape
        if self.hook_result.fns:  # per-head terms, only when someone looks at them
            w_o = self.proj.weight.view(-1, H, D)  # (C, H, D): each head's slice of W_O
            result = self.hook_result(torch.einsum("bhtd,chd->bthc", z, w_o))  # (B, T, H, C)
            y = result.sum(dim=2)
            y = y + self.proj.bias if self.proj.bias is not None else y
        else:
            y = self.proj(z.transpose(1, 2).reshape(B, T, H * D))  # heads side by side again
        return self.resid_dropout(y)  # (B, T, C)


class SelfAttention(Attention):
    """Queries, keys and values all from x. Causal in a decoder, bidirectional (with a
    padding mask) in an encoder."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        C, kv_width = config.n_embd, config.kv_heads * config.d_head
        # q for all heads, then k and v for the key/value heads, in one matmul
        self.qkv = nn.Linear(C, C + 2 * kv_width, bias=config.bias)
        self.relative = (
            RelativePositions(config.max_relative_distance, config.d_head)
            if config.pos_encoding == "relative"
            else None
        )

    def forward(
        self,
        x: Tensor,
        *,
        bias: Tensor | None = None,
        causal: bool = True,
        cache: KVCache | None = None,
        layer: int = 0,
        rotary: tuple[Tensor, Tensor] | None = None,
        offsets: Tensor | None = None,
    ) -> Tensor:
        """x (B, T, C) -> (B, T, C). `causal` applies the usual triangle (aligned to the
        last T keys); `bias` adds any other mask, such as padding or ALiBi. With a cache,
        the new keys and values are stored in slot `layer` and attention sees all of them.
        `rotary` (cos, sin) rotates q and k by their positions (RoPE) before k is cached;
        `offsets` (T, S), key slot minus query slot, index the relative vectors."""
        C, H_kv, D = x.size(-1), self.n_kv_head, self.d_head
        q, k, v = self.qkv(x).split([C, H_kv * D, H_kv * D], dim=2)
        q, k, v = self.heads(q, self.n_head), self.heads(k, H_kv), self.heads(v, H_kv)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        if cache is not None:
            k, v = cache.store(layer, k, v)  # (B, H_kv, S, D): every position so far
        relative = self.relative(offsets) if self.relative is not None else None
        z = self.attend(q, k, v, causal=causal, bias=bias, relative=relative)
        return self.out(z)


class CrossAttention(Attention):
    """Queries from the decoder's stream x, keys and values from the encoder's output
    (`memory`). Never causal: every target position may read every real source position;
    `bias` hides the source's padding. During decoding the memory is fixed, so its keys
    and values are computed once per layer and kept in the cache."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        C, kv_width = config.n_embd, config.kv_heads * config.d_head
        self.q = nn.Linear(C, C, bias=config.bias)
        self.kv = nn.Linear(C, 2 * kv_width, bias=config.bias)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        *,
        bias: Tensor | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> Tensor:
        """x (B, T, C) and memory (B, S, C) -> (B, T, C)."""
        q = self.hook_q(self.heads(self.q(x), self.n_head))  # (B, H, T, D)
        if cache is not None and layer in cache.cross:
            k, v = cache.cross[layer]
        else:
            k, v = self.kv(memory).chunk(2, dim=-1)
            k, v = self.heads(k, self.n_kv_head), self.heads(v, self.n_kv_head)  # (B, H_kv, S, D)
            k, v = self.hook_k(k), self.hook_v(v)
            if cache is not None:
                cache.cross[layer] = (k, v)
        return self.out(self.attend(q, k, v, causal=False, bias=bias))
