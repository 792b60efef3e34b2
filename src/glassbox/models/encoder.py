"""A BERT-like encoder: every position attends to every real position, both directions.

tokens -> token embedding -> a bidirectional Stack -> logits through the transposed token
embedding. Trained with the masked-language-model objective (glassbox.train.objectives):
some input tokens are hidden and the model predicts them from both sides, which a causal
decoder cannot do. The same final residual, pooled over a sequence, is a sentence vector.
"""

from __future__ import annotations

import torch
from torch import Tensor

from glassbox.config import ModelConfig
from glassbox.errors import GlassboxError
from glassbox.models.base import StackModel

POOLINGS = ("mean", "cls", "max")
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


class Encoder(StackModel):
    """A BERT-like encoder: every real position reads every other, in both directions.

    Why it exists beside GPT: a causal decoder cannot use the right-hand context, which
    masked-LM training and sentence vectors need. It is the same Stack with the triangle
    off (and padding masked), so it shares every part and every hook name with GPT, loads
    BERT checkpoints (glassbox.models.convert.load_bert), and `pool` turns its final
    residual into one vector per sequence.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config, causal=False)

    def forward(self, idx: Tensor, *, key_mask: Tensor | None = None) -> Tensor:
        """Logits (B, T, V) over the vocabulary at every position of idx (B, T) (the
        masked-LM head); key_mask (B, T) is False on padding, which no position reads."""
        x = self.resid_final(idx, key_mask=key_mask)  # (B, T, C)
        return self.hook_logits(self.unembed(x))  # (B, T, V)

    def pool(self, resid: Tensor, key_mask: Tensor | None = None, how: str = "mean") -> Tensor:
        """One vector (B, C) per sequence from the final residual (B, T, C): the mean over
        real tokens, the first position's vector (which a [CLS] token there learns to
        fill), or each feature's maximum over real tokens.

        >>> vectors = encoder.pool(encoder.resid_final(ids, key_mask=mask), mask)  # doctest: +SKIP
        """
        if how == "cls":
            return resid[:, 0]
        if how == "max" and key_mask is not None:
            return resid.masked_fill(~key_mask.unsqueeze(-1), -torch.inf).amax(dim=1)
        if how == "max":
            return resid.amax(dim=1)
        if how != "mean":
            raise GlassboxError(f"pooling must be one of {', '.join(POOLINGS)}; got {how!r}")
        if key_mask is None:
            return resid.mean(dim=1)
        weights = key_mask.to(resid.dtype).unsqueeze(-1)  # (B, T, 1)
        return (resid * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
