"""A stack of blocks between the token embeddings and the output: the part every
architecture shares.

A decoder-only GPT is one causal stack; a BERT-like encoder is one bidirectional stack;
an encoder-decoder is a bidirectional stack whose output (the "memory") every block of a
causal stack with cross-attention reads. The stack adds positions, builds the masks
(causal triangle, padding, ALiBi) once per forward pass, runs the blocks and applies the
final norm (pre-norm only: post-norm blocks already end in one).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from glassbox.config import ModelConfig
from glassbox.errors import GlassboxError
from glassbox.nn.block import Block
from glassbox.nn.hooks import HookPoint
from glassbox.nn.kv_cache import KVCache
from glassbox.nn.norms import make_norm
from glassbox.nn.positional import ALiBi, RotaryPositions, make_positions


def padding_bias(key_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """(B, 1, 1, S) additive mask hiding keys where key_mask (B, S) is False.

    A large finite penalty rather than -inf: a padding query whose only visible keys are
    padding then gets a finite (ignored) row instead of NaNs, while a real query's weight
    on padding is still exactly 0 after the softmax.
    """
    hide = torch.zeros(key_mask.shape, dtype=dtype, device=key_mask.device)
    return hide.masked_fill(~key_mask, torch.finfo(dtype).min / 2)[:, None, None, :]


class Stack(nn.Module):
    """Positions, n_layer blocks and the final norm; token embeddings in, residual out.

    `causal`: decoder self-attention (a position sees itself and the past) or encoder
    (every real position). `cross`: blocks also attend to an encoder's memory.
    """

    def __init__(self, config: ModelConfig, *, causal: bool, cross: bool = False) -> None:
        super().__init__()
        self.config = config
        self.causal = causal
        self.hook_embed = HookPoint()  # (B, T, C) token embeddings (scaled, if sinusoidal)
        self.pos_emb = make_positions(config)
        if self.pos_emb is not None:
            self.hook_pos_embed = HookPoint()  # (T, C) or (B, T, C) position vectors
        self.rotary = (
            RotaryPositions(config.block_size, config.d_head)
            if config.pos_encoding == "rope"
            else None
        )
        self.alibi = ALiBi(config.n_head) if config.pos_encoding == "alibi" else None
        # The sinusoids have amplitude 1 while token vectors start at std 0.02: unscaled,
        # the positions drown the tokens (measured: docs/architectures.md). The paper
        # multiplies the embeddings by sqrt(n_embd), and so do we, for sinusoidal only.
        sinusoidal = config.pos_encoding == "sinusoidal"
        self.emb_scale = math.sqrt(config.n_embd) if sinusoidal else 1.0
        if config.embed_norm:
            self.ln_embed = make_norm(config)  # (BERT) the summed embeddings, normalized
        self.drop = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.blocks = nn.ModuleList(Block(config, cross=cross) for _ in range(config.n_layer))
        self.ln_f = make_norm(config) if config.norm_placement == "pre" else nn.Identity()

    def forward_residual(
        self,
        x: Tensor,
        *,
        key_mask: Tensor | None = None,
        cache: KVCache | None = None,
        memory: Tensor | None = None,
        memory_mask: Tensor | None = None,
    ) -> Tensor:
        """The final residual stream (B, T, C), after the final norm, for token
        embeddings x (B, T, C).

        key_mask (B, T): False marks padding, which no query attends to and which does
        not count as a position (left padding in a decoder: a padded prompt computes what
        the same prompt alone would; right padding in an encoder). cache: keys and values
        of earlier positions; x then holds the T positions after them. memory (B, S, C):
        the encoder output cross-attention reads, memory_mask (B, S) its real tokens.
        """
        B, T, _ = x.shape
        start = cache.length if cache is not None else 0
        if self.config.position_table and start + T > self.config.block_size:
            raise GlassboxError(
                f"sequence of {start + T} tokens is longer than block_size "
                f"{self.config.block_size} (the positions this model has)"
            )
        if cache is not None and key_mask is not None:
            cache.add_mask(key_mask)
        padded = key_mask is not None and not bool(key_mask.all())
        if cache is not None and cache.has_padding:
            padded, key_mask = True, cache.key_mask[:, : start + T]  # (B, S) incl. the past
        if padded:
            positions = (key_mask.cumsum(dim=1) - 1).clamp(min=0)[:, -T:]  # (B, T)
            bias = padding_bias(key_mask, x.dtype)  # (B, 1, 1, S)
        else:
            positions, bias = torch.arange(start, start + T, device=x.device), None  # (T,)
        if self.emb_scale != 1.0:
            x = x * self.emb_scale
        x = self.hook_embed(x)  # (B, T, C)
        if self.pos_emb is not None:
            x = x + self.hook_pos_embed(self.pos_emb(positions))  # (B, T, C)
        if hasattr(self, "ln_embed"):
            x = self.ln_embed(x)
        x = self.drop(x)
        # ALiBi and relative positions use slot offsets, which equal position offsets
        # between real tokens (padding is contiguous at one end).
        offsets = None
        if self.alibi is not None or self.config.pos_encoding == "relative":
            slots = torch.arange(start + T, device=x.device)  # (S,) keys; queries: last T
            if self.alibi is not None:
                alibi = self.alibi(slots[start:], slots)  # (1, H, T, S)
                bias = alibi if bias is None else bias + alibi
            else:
                offsets = slots[None, :] - slots[start:, None]  # (T, S): key - query slot
        memory_bias = None
        if memory_mask is not None and not bool(memory_mask.all()):
            memory_bias = padding_bias(memory_mask, x.dtype)  # (B, 1, 1, S_src)
        rotary = self.rotary(positions) if self.rotary is not None else None
        # A query sees every cached key plus the new keys up to itself; one new token
        # (decoding) sees everything, so it needs no triangle at all.
        causal = self.causal and T > 1
        for layer, block in enumerate(self.blocks):
            x = block(
                x, cache=cache, layer=layer, memory=memory, memory_bias=memory_bias,
                bias=bias, causal=causal, rotary=rotary, offsets=offsets,
            )  # fmt: skip
        if cache is not None:
            cache.advance(T)
        return self.ln_f(x)  # (B, T, C)

    def new_cache(
        self,
        batch_size: int,
        max_len: int | None = None,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> KVCache:
        """An empty KV cache for this stack (max_len defaults to block_size)."""
        c = self.config
        return KVCache(
            c.n_layer, batch_size, c.kv_heads, max_len or c.block_size, c.d_head,
            device=device, dtype=dtype,
        )  # fmt: skip


def init_weights(model: nn.Module, n_layer: int) -> None:
    """GPT-2 initialization: N(0, 0.02) everywhere, zero biases, unit norm gains, and the
    projections that write into the residual stream scaled by 1/√(2·n_layer), because
    each block adds two such terms and the stream's variance would otherwise grow with
    depth."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    for module in model.modules():
        if isinstance(module, Block):
            resid_std = 0.02 / math.sqrt(2 * n_layer)
            for name in ("attn", "cross_attn", "mlp"):
                if hasattr(module, name):
                    nn.init.normal_(getattr(module, name).proj.weight, mean=0.0, std=resid_std)
