"""A decoder-only GPT, readable top to bottom.

tokens -> token embedding -> a causal Stack (positions, n_layer blocks, final norm) ->
logits through the transposed token embedding (weight tying, as in GPT-2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glassbox.config import ModelConfig
from glassbox.nn.hooks import HookedModel, HookPoint
from glassbox.nn.kv_cache import KVCache
from glassbox.nn.stack import Stack, init_weights


class GPT(HookedModel, Stack):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config, causal=True)
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.hook_logits = HookPoint()  # (B, T, V)
        self.reset_parameters()
        self._name_hook_points()

    def reset_parameters(self) -> None:
        init_weights(self, self.config.n_layer)

    def forward(
        self, idx: Tensor, *, cache: KVCache | None = None, key_mask: Tensor | None = None
    ) -> Tensor:
        """Logits (B, T, V) for the next token at every position of idx (B, T).

        cache: keys and values of earlier positions; idx then holds the T tokens after
        them, and their keys and values are added to the cache. key_mask (B, T): False
        marks left padding, which no query attends to and which does not count as a
        position (a padded prompt computes what the same prompt alone would).
        """
        x = self.tok_emb(idx)  # (B, T, C)
        x = self.forward_residual(x, key_mask=key_mask, cache=cache)  # (B, T, C)
        return self.hook_logits(self.unembed(x))  # (B, T, V)

    def unembed(self, x: Tensor) -> Tensor:
        """Logits (..., V) from the final residual (..., C), through the token embedding
        transposed (weight tying). glassbox.generate.cpu may swap in a packed copy."""
        return F.linear(x, self.tok_emb.weight)

    def new_cache(
        self, batch_size: int, max_len: int | None = None, dtype: torch.dtype | None = None
    ) -> KVCache:
        """An empty KV cache for this model (max_len defaults to block_size)."""
        weight = self.tok_emb.weight
        return super().new_cache(
            batch_size, max_len, device=weight.device, dtype=dtype or weight.dtype
        )

    def num_params(self, include_positions: bool = True) -> int:
        """Parameters of the model; the tied embedding/unembedding matrix counts once."""
        total = sum(p.numel() for p in self.parameters())  # parameters() yields each once
        if not include_positions and self.pos_emb is not None:
            total -= sum(p.numel() for p in self.pos_emb.parameters())
        return total

