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
from glassbox.nn.aux_losses import aux_sources
from glassbox.nn.block import Block
from glassbox.nn.hooks import HookPoint
from glassbox.nn.kv_cache import KVCache
from glassbox.nn.norms import make_norm
from glassbox.nn.positional import make_positions


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

    Why a class of its own: what a decoder, an encoder and each half of an
    encoder-decoder do between the embeddings and the output is the same loop over
    blocks; they differ in two flags. `causal`: decoder self-attention (a position sees
    itself and the past) or encoder (every real position). `cross`: blocks also attend to
    an encoder's memory. GPT and Encoder are Stacks; an EncoderDecoder holds two.

    `pos_emb` is the position scheme (glassbox.nn.positional), whatever it adds and where:
    the name is GPT-2's table's, which saved state dicts keep (`pos_emb.table.weight`).
    """

    def __init__(self, config: ModelConfig, *, causal: bool, cross: bool = False) -> None:
        super().__init__()
        self.config = config
        self.causal = causal
        self.hook_embed = HookPoint()  # (B, T, C) token embeddings (scaled, if sinusoidal)
        self.pos_emb = make_positions(config)
        # (T, C) or (B, T, C) position vectors, for schemes that add them to the stream
        self.hook_pos_embed = HookPoint() if self.pos_emb.adds_embedding else None
        self.emb_scale = self.pos_emb.token_scale  # sinusoids: √C (see SinusoidalPositions)
        # (BERT) the summed embeddings, normalized
        self.ln_embed = make_norm(config) if config.embed_norm else None
        self.drop = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.blocks = nn.ModuleList(Block(config, cross=cross) for _ in range(config.n_layer))
        self.ln_f = make_norm(config) if config.norm_placement == "pre" else nn.Identity()
        # Sublayers that record auxiliary losses; cleared as each forward pass starts.
        self.aux_sources = [m for _, m in aux_sources(self.blocks)]

    def residual(
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
        scheme = self.pos_emb
        if scheme.has_table and start + T > self.config.block_size:
            raise GlassboxError(
                f"sequence of {start + T} tokens is longer than block_size "
                f"{self.config.block_size} (the positions this model has)"
            )
        for source in self.aux_sources:
            source.aux_losses.clear()
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
        if self.hook_pos_embed is not None:
            x = x + self.hook_pos_embed(scheme.embed(positions))  # (B, T, C)
        if self.ln_embed is not None:
            x = self.ln_embed(x)
        x = self.drop(x)
        # What attention needs about positions (rotations, score bias, offsets), made once
        # for every layer; a score bias joins the mask here, so layers see one mask.
        context = scheme.context(positions, start, T)
        if context.score_bias is not None:
            bias = context.score_bias if bias is None else bias + context.score_bias
        memory_bias = None
        if memory_mask is not None and not bool(memory_mask.all()):
            memory_bias = padding_bias(memory_mask, x.dtype)  # (B, 1, 1, S_src)
        # A query sees every cached key plus the new keys up to itself; one new token
        # (decoding) sees everything, so it needs no triangle at all.
        causal = self.causal and T > 1
        for layer, block in enumerate(self.blocks):
            x = block(
                x, positions=context, bias=bias, causal=causal, cache=cache, layer=layer,
                memory=memory, memory_bias=memory_bias,
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


def init_weights(model: nn.Module, n_layer: int, *, zero_proj: bool = False) -> None:
    """GPT-2 initialization: N(0, 0.02) everywhere, zero biases, unit norm gains, and the
    projections that write into the residual stream scaled by 1/√(2·n_layer), because
    each block adds two such terms and the stream's variance would otherwise grow with
    depth. Those projections are the Linear layers named `proj` inside a block's
    sublayers (attention, cross-attention, MLP, or each expert of a plugged-in MLP). A
    Linear marked `zero_init` (a mixture-of-heads router, an untied lm_head under
    config.zero_init) starts at zero instead, and so do the projections with
    `zero_proj` (config.zero_init, as modded-nanogpt does): every block then starts as
    the identity. A zero matrix still learns: its gradient is the gradient at its
    output times its input, which is not zero."""
    for module in model.modules():
        if getattr(module, "zero_init", False):
            nn.init.zeros_(module.weight)
        elif isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    resid_std = 0.02 / math.sqrt(2 * n_layer)
    for module in model.modules():
        if isinstance(module, Block):
            for name, linear in module.named_modules():
                if name.rpartition(".")[2] == "proj" and isinstance(linear, nn.Linear):
                    if zero_proj:
                        nn.init.zeros_(linear.weight)
                    else:
                        nn.init.normal_(linear.weight, mean=0.0, std=resid_std)
