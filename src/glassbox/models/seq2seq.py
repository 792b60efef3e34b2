"""The encoder-decoder of "Attention Is All You Need" (Vaswani et al. 2017).

source -> embedding -> bidirectional Stack -> memory (B, S, C)
target -> embedding -> causal Stack whose blocks also cross-attend to the memory -> logits

Both stacks are built from the same Block as the GPT and the encoder. Source and target
share one token table by default (and the output layer reuses it, as in the paper), which
suits tasks whose two sides use one alphabet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glassbox.config import ModelConfig
from glassbox.nn.hooks import HookedModel, HookPoint
from glassbox.nn.kv_cache import KVCache
from glassbox.nn.stack import Stack, init_weights


class EncoderDecoder(HookedModel, nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)  # target + output
        self.src_emb = (
            None if config.shared_embeddings else nn.Embedding(config.vocab_size, config.n_embd)
        )
        self.encoder = Stack(config, causal=False)
        self.decoder = Stack(config, causal=True, cross=True)
        self.hook_logits = HookPoint()  # (B, T, V)
        init_weights(self, config.n_layer)
        self._name_hook_points()

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """Memory (B, S, C) for source ids src (B, S); src_mask (B, S) False on padding."""
        table = self.tok_emb if self.src_emb is None else self.src_emb
        return self.encoder.forward_residual(table(src), key_mask=src_mask)

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor,
        src_mask: Tensor | None = None,
        cache: KVCache | None = None,
    ) -> Tensor:
        """Next-token logits (B, T, V) for target ids tgt (B, T), reading the memory.
        With a cache, tgt holds the tokens after those already decoded."""
        x = self.decoder.forward_residual(
            self.tok_emb(tgt), cache=cache, memory=memory, memory_mask=src_mask
        )
        return self.hook_logits(F.linear(x, self.tok_emb.weight))  # (B, T, V)

    def forward(self, src: Tensor, tgt: Tensor, *, src_mask: Tensor | None = None) -> Tensor:
        """Teacher-forced logits (B, T, V): target position t predicts token t + 1 of the
        target, seeing the whole source and target tokens 0..t."""
        return self.decode(tgt, self.encode(src, src_mask), src_mask)

    def new_cache(
        self, batch_size: int, max_len: int | None = None, dtype: torch.dtype | None = None
    ) -> KVCache:
        weight = self.tok_emb.weight
        return self.decoder.new_cache(
            batch_size, max_len, device=weight.device, dtype=dtype or weight.dtype
        )

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
