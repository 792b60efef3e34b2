"""The encoder-decoder of "Attention Is All You Need" (Vaswani et al. 2017).

source -> embedding -> bidirectional Stack -> memory (B, S, C)
target -> embedding -> causal Stack whose blocks also cross-attend to the memory -> logits

Both stacks are built from the same Block as the GPT and the encoder. Source and target
share one token table by default (and the output layer reuses it, as in the paper), which
suits tasks whose two sides use one alphabet.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from glassbox.config import ModelConfig
from glassbox.models.base import LanguageModel
from glassbox.nn.hooks import HookPoint
from glassbox.nn.kv_cache import KVCache
from glassbox.nn.stack import Stack, init_weights


class EncoderDecoder(LanguageModel, nn.Module):
    """The 2017 Transformer: an encoder Stack reads the source, a causal decoder Stack
    writes the target and cross-attends to the encoder's output in every block.

    Why two stacks instead of one long sequence: the source is read once, in both
    directions, and each decoding step then costs only the target's new token (the
    memory's keys and values are cached per layer). Both stacks are the Stack of GPT and
    Encoder, so hook names are theirs under `encoder.` and `decoder.`.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)  # target + output
        self.src_emb = (
            None if config.shared_embeddings else nn.Embedding(config.vocab_size, config.n_embd)
        )
        self.encoder = Stack(config, causal=False)
        self.decoder = Stack(config, causal=True, cross=True)
        self._make_head()  # None: the output layer is tok_emb, transposed
        self.hook_logits = HookPoint()  # (B, T, V)
        init_weights(self, config.n_layer, zero_proj=config.zero_init)
        self._finish_init()

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """Memory (B, S, C), the encoder's final residual, for source ids src (B, S);
        src_mask (B, S) False on padding."""
        table = self.tok_emb if self.src_emb is None else self.src_emb
        return self.encoder.residual(table(src), key_mask=src_mask)

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor,
        src_mask: Tensor | None = None,
        cache: KVCache | None = None,
    ) -> Tensor:
        """Next-token logits (B, T, V) for target ids tgt (B, T), reading the memory.
        With a cache, tgt holds the tokens after those already decoded."""
        x = self.decoder.residual(
            self.tok_emb(tgt), cache=cache, memory=memory, memory_mask=src_mask
        )  # (B, T, C)
        return self.hook_logits(self.unembed(x))  # (B, T, V)

    def forward(self, src: Tensor, tgt: Tensor, *, src_mask: Tensor | None = None) -> Tensor:
        """Teacher-forced logits (B, T, V): target position t predicts token t + 1 of the
        target, seeing the whole source and target tokens 0..t."""
        return self.decode(tgt, self.encode(src, src_mask), src_mask)

    def new_cache(
        self, batch_size: int, max_len: int | None = None, dtype: torch.dtype | None = None
    ) -> KVCache:
        """An empty KV cache for the decoder (max_len defaults to block_size)."""
        weight = self.tok_emb.weight
        return self.decoder.new_cache(
            batch_size, max_len, device=weight.device, dtype=dtype or weight.dtype
        )
