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

For analysis the heads are also visible as weights: `W_Q`, `W_K`, `W_V` (H, C, D) and
`W_O` (H, D, C), per-head views of the fused matrices (TransformerLens's names and shapes).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glassbox.config import ModelConfig
from glassbox.errors import GlassboxError
from glassbox.nn.hooks import HookPoint
from glassbox.nn.kv_cache import KVCache
from glassbox.nn.positional import NO_POSITIONS, POSITION_SCHEMES, PositionContext


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

    Subclasses make q (B, T, H, D) and k, v (B, S, H_kv, D); `attend` mixes the values
    and `out` writes the heads back into the residual stream.

    Hook points, in TransformerLens's layouts so that a hook written for one indexes the
    same axes in the other: q, k, v (B, T, H, D) and (B, T, H_kv, D), for the new
    positions only, after any normalization (qk_norm) and rotation; attn_scores and
    pattern (B, H, T, S); z (B, T, H, D); result (B, T, H, C), each head's own term of
    the output, whose sum over heads plus proj's bias is the attention output. The hooks
    see q, k, v and z before the transposes to (B, H, T, D) that batch the heads, which
    are views: the layout costs nothing.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.kv_heads = config.kv_heads  # resolved: n_head when config.n_kv_head is 0
        self.d_head = config.d_head
        self.impl = config.attention
        self.dropout = config.dropout
        self.qk_norm = config.qk_norm
        self.norm_eps = config.norm_eps
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_attn_scores, self.hook_pattern = HookPoint(), HookPoint()
        self.hook_z, self.hook_result = HookPoint(), HookPoint()

    # ---- per-head weights, for analysis (views of the fused matrices, no copies) -------

    def in_weights(self) -> tuple[Tensor, Tensor, Tensor]:
        """The q, k and v projections' weights, (H·D, C), (H_kv·D, C), (H_kv·D, C), in
        nn.Linear's (out, in) layout. Subclasses say where they live."""
        raise NotImplementedError

    def in_biases(self) -> tuple[Tensor, Tensor, Tensor] | None:
        """The q, k and v biases (H·D,), (H_kv·D,), (H_kv·D,), or None without biases."""
        raise NotImplementedError

    def _per_head(self, w: Tensor, n: int) -> Tensor:
        """(n·D, C) -> (n, C, D): head h's reading matrix, in the row-vector convention."""
        return w.view(n, self.d_head, -1).mT

    def _per_query_head(self, t: Tensor) -> Tensor:
        """Key/value heads (H_kv, ...) repeated so that index h is query head h's: (H, ...).
        A copy under grouped-query attention, the tensor itself otherwise."""
        group = self.n_head // self.kv_heads
        return t if group == 1 else t.repeat_interleave(group, dim=0)

    @property
    def W_Q(self) -> Tensor:
        """(H, C, D): q_h = x @ W_Q[h] (+ b_Q[h])."""
        return self._per_head(self.in_weights()[0], self.n_head)

    @property
    def W_K(self) -> Tensor:
        """(H, C, D), one per query head: with grouped-query attention, head h's is the key
        head it reads, h // (H / H_kv) (repeated, as TransformerLens does)."""
        return self._per_query_head(self._per_head(self.in_weights()[1], self.kv_heads))

    @property
    def W_V(self) -> Tensor:
        """(H, C, D), one per query head, like W_K."""
        return self._per_query_head(self._per_head(self.in_weights()[2], self.kv_heads))

    @property
    def W_O(self) -> Tensor:
        """(H, D, C): head h adds z_h @ W_O[h] to the residual stream (then proj's bias)."""
        H, D = self.n_head, self.d_head
        return self.proj.weight.view(-1, H, D).permute(1, 2, 0)  # (C, H·D) -> (H, D, C)

    def _bias(self, i: int, n: int) -> Tensor | None:
        biases = self.in_biases()
        return None if biases is None else biases[i].view(n, self.d_head)  # (n, D)

    @property
    def b_Q(self) -> Tensor | None:
        """(H, D), or None without biases."""
        return self._bias(0, self.n_head)

    @property
    def b_K(self) -> Tensor | None:
        """(H, D) per query head, like W_K; None without biases."""
        b = self._bias(1, self.kv_heads)
        return None if b is None else self._per_query_head(b)

    @property
    def b_V(self) -> Tensor | None:
        """(H, D) per query head, like W_V; None without biases."""
        b = self._bias(2, self.kv_heads)
        return None if b is None else self._per_query_head(b)

    @property
    def b_O(self) -> Tensor | None:
        """(C,), or None without biases."""
        return self.proj.bias

    # ---- the forward pass -----------------------------------------------------------------

    def heads(self, t: Tensor, n: int) -> Tensor:
        """(B, T, n*D) -> (B, T, n, D): the hook layout; a view."""
        B, T, _ = t.shape
        return t.view(B, T, n, self.d_head)

    def norm_qk(self, t: Tensor) -> Tensor:
        """With qk_norm, queries or keys (..., D) divided by their root mean square over
        D (no learned gain, as in modded-nanogpt): every row then has length √D, so a
        score q·k/√D lies in [-√D, √D] and no logit of attention can grow without bound.
        Without qk_norm, t itself."""
        if not self.qk_norm:
            return t
        # in t's dtype: autocast computes rms_norm in float32, and v stays bfloat16
        return F.rms_norm(t, (t.size(-1),), eps=self.norm_eps).to(t.dtype)

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
        """Heads z (B, T, H, D) from q (B, H, T, D) and k, v (B, H_kv, S, D), before the
        output projection."""
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
        return self.hook_z(z.transpose(1, 2))  # (B, T, H, D)

    def out(self, z: Tensor) -> Tensor:
        """Project the heads z (B, T, H, D) into the residual stream: (B, T, C)."""
        B, T, H, D = z.shape
        if self.hook_result.fns:  # per-head terms, only when someone looks at them
            result = self.hook_result(torch.einsum("bthd,hdc->bthc", z, self.W_O))  # (B, T, H, C)
            y = result.sum(dim=2)
            y = y + self.proj.bias if self.proj.bias is not None else y
        else:
            y = self.proj(z.reshape(B, T, H * D))  # heads side by side again
        return self.resid_dropout(y)  # (B, T, C)


class SelfAttention(Attention):
    """Queries, keys and values all from x. Causal in a decoder, bidirectional (with a
    padding mask) in an encoder. Registered as attention_kind "mha" (glassbox.nn.block):
    multi-head, multi-query or grouped-query by config.n_kv_head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        C, kv_width = config.n_embd, config.kv_heads * config.d_head
        # q for all heads, then k and v for the key/value heads, in one matmul
        self.qkv = nn.Linear(C, C + 2 * kv_width, bias=config.bias)
        # Per-layer vectors of a relative position scheme (Shaw et al.), else None.
        self.relative = POSITION_SCHEMES[config.pos_encoding].relative_vectors(config)

    def in_weights(self) -> tuple[Tensor, Tensor, Tensor]:
        C = self.n_head * self.d_head
        kv_width = self.kv_heads * self.d_head
        return self.qkv.weight.split([C, kv_width, kv_width])  # rows: q, then k, then v

    def in_biases(self) -> tuple[Tensor, Tensor, Tensor] | None:
        if self.qkv.bias is None:
            return None
        C, kv_width = self.n_head * self.d_head, self.kv_heads * self.d_head
        return self.qkv.bias.split([C, kv_width, kv_width])

    def forward(
        self,
        x: Tensor,
        *,
        bias: Tensor | None = None,
        causal: bool = True,
        cache: KVCache | None = None,
        layer: int = 0,
        positions: PositionContext = NO_POSITIONS,
    ) -> Tensor:
        """x (B, T, C) -> (B, T, C). `causal` applies the usual triangle (aligned to the
        last T keys); `bias` adds any other mask, such as padding or ALiBi. With a cache,
        the new keys and values are stored in slot `layer` and attention sees all of them.
        `positions` (made once per forward pass by the Stack's position scheme) rotates
        q and k (RoPE) before k is cached, and holds the offsets relative vectors read."""
        C, H_kv, D = x.size(-1), self.kv_heads, self.d_head
        q, k, v = self.qkv(x).split([C, H_kv * D, H_kv * D], dim=2)
        q, k, v = self.heads(q, self.n_head), self.heads(k, H_kv), self.heads(v, H_kv)
        q, k = self.norm_qk(q), self.norm_qk(k)  # before the rotation, which keeps norms
        if positions.rotary is not None:
            q, k = positions.rotate(q, k)
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)  # (B, T, H or H_kv, D)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, D)
        if cache is not None:
            k, v = cache.store(layer, k, v)  # (B, H_kv, S, D): every position so far
        relative = None
        if self.relative is not None:
            if positions.offsets is None:
                raise GlassboxError("relative positions need the offsets a Stack passes")
            relative = self.relative(positions.offsets)  # (T, S, D) each
        z = self.attend(q, k, v, causal=causal, bias=bias, relative=relative)
        return self.out(self.weigh_heads(z, x))

    def weigh_heads(self, z: Tensor, x: Tensor) -> Tensor:
        """The heads z (B, T, H, D) as the output projection will sum them, given the
        sublayer's input x (B, T, C). Multi-head attention sums every head equally, so z
        is returned as it is; a mixture of heads (glassbox.nn.moh) weighs them per token."""
        return z


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

    def in_weights(self) -> tuple[Tensor, Tensor, Tensor]:
        return (self.q.weight, *self.kv.weight.chunk(2))

    def in_biases(self) -> tuple[Tensor, Tensor, Tensor] | None:
        if self.q.bias is None:
            return None
        return (self.q.bias, *self.kv.bias.chunk(2))

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
        q = self.norm_qk(self.heads(self.q(x), self.n_head))
        q = self.hook_q(q).transpose(1, 2)  # (B, H, T, D)
        if cache is not None and layer in cache.cross:
            k, v = cache.cross[layer]
        else:
            k, v = self.kv(memory).chunk(2, dim=-1)
            k, v = self.heads(k, self.kv_heads), self.heads(v, self.kv_heads)  # (B, S, H_kv, D)
            k = self.norm_qk(k)
            k, v = self.hook_k(k).transpose(1, 2), self.hook_v(v).transpose(1, 2)
            if cache is not None:
                cache.cross[layer] = (k, v)  # (B, H_kv, S, D)
        return self.out(self.attend(q, k, v, causal=False, bias=bias))
