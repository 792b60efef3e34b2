"""A decoder-only GPT, readable top to bottom.

tokens -> token embedding -> a causal Stack (positions, n_layer blocks, final norm) ->
logits through the transposed token embedding (weight tying, as in GPT-2), or through an
lm_head of their own with tie_embeddings False.
"""

from __future__ import annotations

from torch import Tensor

from glassbox.config import ModelConfig
from glassbox.models.base import StackModel
from glassbox.nn.kv_cache import KVCache


class GPT(StackModel):
    """A decoder-only language model: predicts each next token from the ones before it.

    Why this shape: one causal stack and a tied output layer is the whole of GPT-2, so
    the same class loads GPT-2's weights (glassbox.models.convert), trains on a corpus,
    decodes with a KV cache, and is inspected through its hook points, with no second
    "hooked" copy. Variants (positions, norms, MLP and attention kinds) come from config.

    >>> model = GPT(ModelConfig(vocab_size=11, n_layer=2))
    >>> model(torch.zeros(1, 5, dtype=torch.long)).shape  # doctest: +SKIP
    torch.Size([1, 5, 11])
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config, causal=True)

    def forward(
        self, idx: Tensor, *, cache: KVCache | None = None, key_mask: Tensor | None = None
    ) -> Tensor:
        """Logits (B, T, V) for the next token at every position of idx (B, T).

        cache: keys and values of earlier positions; idx then holds the T tokens after
        them, and their keys and values are added to the cache. key_mask (B, T): False
        marks left padding, which no query attends to and which does not count as a
        position (a padded prompt computes what the same prompt alone would).
        """
        x = self.resid_final(idx, key_mask=key_mask, cache=cache)  # (B, T, C)
        return self.hook_logits(self.unembed(x))  # (B, T, V)
