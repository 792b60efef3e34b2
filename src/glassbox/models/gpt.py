"""A decoder-only GPT, readable top to bottom.

tokens -> token embedding + positions -> n_layer pre-norm blocks -> final norm ->
logits through the transposed token embedding (weight tying, as in GPT-2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glassbox.config import ModelConfig
from glassbox.errors import GlassboxError
from glassbox.nn import Block, KVCache, make_positions
from glassbox.nn.norms import RMSNorm, make_norm
from glassbox.nn.positional import RotaryPositions


class GPT(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = make_positions(config)
        self.drop = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.rotary = (
            RotaryPositions(config.block_size, config.d_head)
            if config.pos_encoding == "rope"
            else None
        )
        self.ln_f = make_norm(config)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 initialization: N(0, 0.02) everywhere, zero biases, unit norm gains, and
        the two projections that write into the residual stream scaled by 1/√(2·n_layer),
        because each block adds two such terms and the stream's variance would otherwise
        grow with depth."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, (nn.LayerNorm, RMSNorm)):
                nn.init.ones_(module.weight)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        resid_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=resid_std)
            nn.init.normal_(block.mlp.proj.weight, mean=0.0, std=resid_std)

    def forward(
        self, idx: Tensor, *, cache: KVCache | None = None, key_mask: Tensor | None = None
    ) -> Tensor:
        """Logits (B, T, V) for the next token at every position of idx (B, T).

        cache: keys and values of earlier positions; idx then holds the T tokens after
        them, and their keys and values are added to the cache. key_mask (B, T): False
        marks left padding, which no query attends to and which does not count as a
        position (a padded prompt computes what the same prompt alone would).
        """
        B, T = idx.shape
        start = cache.length if cache is not None else 0
        if start + T > self.config.block_size:
            raise GlassboxError(
                f"sequence of {start + T} tokens is longer than block_size {self.config.block_size}"
            )
        if cache is not None and key_mask is not None:
            cache.add_mask(key_mask)
        padded = key_mask is not None and not bool(key_mask.all())
        if cache is not None and cache.has_padding:
            padded, key_mask = True, cache.key_mask[:, : start + T]  # (B, S) incl. the past
        if padded:
            positions = (key_mask.cumsum(dim=1) - 1).clamp(min=0)[:, -T:]  # (B, T)
            # A large finite penalty rather than -inf: a padding query whose only visible
            # keys are padding then gets a finite (ignored) row instead of NaNs, while a
            # real query's weight on padding is still exactly 0 after the softmax.
            dtype = self.tok_emb.weight.dtype
            hide = torch.zeros(key_mask.shape, dtype=dtype, device=idx.device)
            hide = hide.masked_fill(~key_mask, torch.finfo(dtype).min / 2)[:, None, None, :]
        else:
            positions, hide = torch.arange(start, start + T, device=idx.device), None  # (T,)
        x = self.tok_emb(idx)  # (B, T, C)
        if self.pos_emb is not None:
            x = x + self.pos_emb(positions)  # (B, T, C) resid_pre of block 0
        x = self.drop(x)
        rotary = self.rotary(positions) if self.rotary is not None else None
        # A query sees every cached key plus the new keys up to itself; one new token
        # (decoding) sees everything, so it needs no triangle at all.
        causal = T > 1
        for layer, block in enumerate(self.blocks):
            x = block(x, bias=hide, causal=causal, cache=cache, layer=layer, rotary=rotary)
        if cache is not None:
            cache.advance(T)
        x = self.ln_f(x)  # (B, T, C)
        return self.unembed(x)  # (B, T, V)

    def unembed(self, x: Tensor) -> Tensor:
        """Logits (..., V) from the final residual (..., C), through the token embedding
        transposed (weight tying). glassbox.generate.cpu may swap in a packed copy."""
        return F.linear(x, self.tok_emb.weight)

    def new_cache(
        self, batch_size: int, max_len: int | None = None, dtype: torch.dtype | None = None
    ) -> KVCache:
        """An empty KV cache for this model (max_len defaults to block_size)."""
        c, weight = self.config, self.tok_emb.weight
        return KVCache(
            c.n_layer, batch_size, c.kv_heads, max_len or c.block_size, c.d_head,
            device=weight.device, dtype=dtype or weight.dtype,
        )  # fmt: skip

    def num_params(self, include_positions: bool = True) -> int:
        """Parameters of the model; the tied embedding/unembedding matrix counts once."""
        total = sum(p.numel() for p in self.parameters())  # parameters() yields each once
        if not include_positions and self.pos_emb is not None:
            total -= sum(p.numel() for p in self.pos_emb.parameters())
        return total


def lm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of next-token logits (B, T, V) against targets (B, T)."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
