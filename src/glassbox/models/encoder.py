"""A BERT-like encoder: every position attends to every real position, both directions.

tokens -> token embedding -> a bidirectional Stack -> logits through the transposed token
embedding. Trained with the masked-language-model objective (glassbox.train.objectives):
some input tokens are hidden and the model predicts them from both sides, which a causal
decoder cannot do. The same final residual, pooled over a sequence, is a sentence vector.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from glassbox.config import ModelConfig
from glassbox.errors import GlassboxError
from glassbox.nn.hooks import HookedModel, HookPoint
from glassbox.nn.stack import Stack, init_weights

POOLINGS = ("mean", "cls")
# An encoder's special tokens take the ids after its tokenizer's own, in this order.
ENCODER_SPECIALS = ("[PAD]", "[MASK]", "[CLS]")


def encoder_special_ids(vocab_size: int) -> dict[str, int]:
    """Ids of [PAD], [MASK] and [CLS] for an encoder whose vocabulary (incl. them) has
    vocab_size ids.

    >>> encoder_special_ids(68)
    {'[PAD]': 65, '[MASK]': 66, '[CLS]': 67}
    """
    first = vocab_size - len(ENCODER_SPECIALS)
    return {name: first + i for i, name in enumerate(ENCODER_SPECIALS)}


class Encoder(HookedModel, Stack):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config, causal=False)
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.hook_logits = HookPoint()  # (B, T, V)
        init_weights(self, config.n_layer)
        self._name_hook_points()

    def hidden(self, idx: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """The final residual stream (B, T, C) for idx (B, T); key_mask (B, T) is False on
        padding, which no position attends to."""
        return self.forward_residual(self.tok_emb(idx), key_mask=key_mask)

    def forward(self, idx: Tensor, *, key_mask: Tensor | None = None) -> Tensor:
        """Logits (B, T, V) over the vocabulary at every position (the masked-LM head)."""
        return self.hook_logits(self.unembed(self.hidden(idx, key_mask)))

    def unembed(self, x: Tensor) -> Tensor:
        """Logits (..., V) from a final residual (..., C), through the tied embedding."""
        return F.linear(x, self.tok_emb.weight)

    def pool(self, hidden: Tensor, key_mask: Tensor | None = None, how: str = "mean") -> Tensor:
        """One vector (B, C) per sequence: the mean over real tokens, or the first
        position's vector (which a [CLS] token there learns to fill)."""
        if how == "cls":
            return hidden[:, 0]
        if how != "mean":
            raise GlassboxError(f"pooling must be one of {', '.join(POOLINGS)}; got {how!r}")
        if key_mask is None:
            return hidden.mean(dim=1)
        weights = key_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
