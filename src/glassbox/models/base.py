"""What the three model classes share, written once.

- `LanguageModel`: hook points (HookedModel), the output layer (`unembed`: tied to the
  token embedding, or an untied `lm_head`, with optional logit soft-capping), the
  auxiliary losses the latest forward pass recorded (`aux_losses`, `aux_loss`) and the
  parameter count. GPT, Encoder and EncoderDecoder all are one.
- `StackModel`: a LanguageModel that is one Stack with a token embedding in front, GPT
  and Encoder: token ids to final residual (`resid_final`) and a KV cache.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glassbox.config import ModelConfig
from glassbox.nn.aux_losses import aux_sources
from glassbox.nn.hooks import HookedModel, HookPoint
from glassbox.nn.kv_cache import KVCache
from glassbox.nn.positional import PositionScheme
from glassbox.nn.stack import Stack, init_weights


def softcap(logits: Tensor, cap: float) -> Tensor:
    """cap · tanh(logits / cap): about the identity for logits much smaller than cap, and
    never beyond ±cap, so no logit can grow without bound (Gemma 2, modded-nanogpt).
    cap 0 leaves the logits as they are.

    >>> softcap(torch.tensor([0.1, 100.0]), 15.0)
    tensor([ 0.1000, 15.0000])
    """
    return cap * torch.tanh(logits / cap) if cap else logits


class LanguageModel(HookedModel):
    """Mixed into every model class, which builds `tok_emb` and `lm_head` (`_make_head`)
    and calls `_finish_init()` at the end of its __init__."""

    config: ModelConfig
    tok_emb: nn.Embedding
    lm_head: nn.Linear | None

    def _make_head(self) -> None:
        """`lm_head`: None when the output layer is tied to the token embedding (the
        default), else a Linear (C -> V) of its own, which config.zero_init starts at 0
        (init_weights reads the `zero_init` mark): every logit 0, a uniform prediction."""
        c = self.config
        if c.tie_embeddings:
            self.lm_head = None
            return
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.lm_head.zero_init = c.zero_init

    def _finish_init(self) -> None:
        """Name the hook points and find the sublayers that record auxiliary losses or
        route tokens."""
        self._name_hook_points()
        self._aux_sources = aux_sources(self)
        # sublayers that route tokens and count them (glassbox.nn.moe): routing_stats
        self._routers = [(name, m) for name, m in self.named_modules() if hasattr(m, "last_load")]

    @property
    def W_U(self) -> Tensor:
        """(C, V), the unembedding matrix (TransformerLens's name): the token embedding
        transposed when tied, lm_head's weight transposed when not. Soft-capping, if
        any, comes after it (unembed)."""
        weight = self.tok_emb.weight if self.lm_head is None else self.lm_head.weight
        return weight.T

    def head_logits(self, x: Tensor) -> Tensor:
        """Logits (..., V) before any soft-capping, from a final residual (..., C): x @ W_U.
        glassbox.generate.cpu may swap in a packed copy."""
        if self.lm_head is not None:
            return self.lm_head(x)
        return F.linear(x, self.tok_emb.weight)  # weight tying, as in GPT-2 and the 2017 paper

    def unembed(self, x: Tensor) -> Tensor:
        """Logits (..., V) from a final residual (..., C): head_logits, soft-capped to
        ±config.logit_softcap when that is set."""
        return softcap(self.head_logits(x), self.config.logit_softcap)

    def aux_losses(self) -> dict[str, Tensor]:
        """The auxiliary losses sublayers recorded in the latest forward pass, by
        "{module path}.{name}" (e.g. "blocks.0.mlp.balance"); empty for a model without
        such sublayers. Each forward pass through a stack replaces its sublayers' entries."""
        return {
            f"{path}.{name}": value
            for path, source in self._aux_sources
            for name, value in source.aux_losses.items()
        }

    def aux_loss(self) -> Tensor:
        """The sum of aux_losses(), a scalar tensor to add to the training loss (0 when
        there are none), attached to the graph of the forward pass that recorded it.

        >>> loss = lm_loss(model(x), y) + model.aux_loss()  # doctest: +SKIP
        """
        values = [v for _, source in self._aux_sources for v in source.aux_losses.values()]
        if not values:
            return self.tok_emb.weight.new_zeros(())
        return torch.stack([v.float() for v in values]).sum()

    def routing_stats(self) -> dict[str, Any]:
        """How evenly the mixture-of-experts layers spread the latest forward pass's
        tokens, for the metrics log and the progress bar, as means over layers:
        `expert_imbalance`, the most tokens an expert served over the mean per expert
        (1.0 when even); `expert_max_min`, the most over the fewest (an expert that
        served none counts as 1); `dropped`, the fraction of assignments past an
        expert's capacity; and `expert_load`, the assignments each expert served, per
        layer. Empty for a model without experts."""
        routers = self._routers
        if not routers:
            return {}
        loads = [m.last_load.float() for _, m in routers]  # (E,) each
        dropped = [float(m.last_dropped) for _, m in routers]
        n = len(loads)
        return {
            "expert_imbalance": sum(float(x.max() / x.mean().clamp_min(1e-9)) for x in loads) / n,
            "expert_max_min": sum(float(x.max() / x.min().clamp_min(1.0)) for x in loads) / n,
            "dropped": sum(dropped) / n,
            "expert_load": {name: m.last_load.tolist() for name, m in routers},
        }

    def num_params(self, include_positions: bool = True) -> int:
        """Parameters of the model; a tied embedding/unembedding matrix counts once (an
        untied lm_head is a matrix of its own, and counts).
        Without positions: less the position tables (learned positions' pos_emb)."""
        total = sum(p.numel() for p in self.parameters())  # parameters() yields each once
        if not include_positions:
            for module in self.modules():
                if isinstance(module, PositionScheme):
                    total -= sum(p.numel() for p in module.parameters())
        return total


class StackModel(LanguageModel, Stack):
    """One Stack with a token embedding in front and the unembedding after it: what
    GPT (causal) and Encoder (bidirectional) share; they add only their forward pass."""

    def __init__(self, config: ModelConfig, *, causal: bool) -> None:
        super().__init__(config, causal=causal)
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self._make_head()
        self.hook_logits = HookPoint()  # (B, T, V)
        init_weights(self, config.n_layer, zero_proj=config.zero_init)
        self._finish_init()

    def resid_final(
        self, idx: Tensor, *, key_mask: Tensor | None = None, cache: KVCache | None = None
    ) -> Tensor:
        """The final residual stream (B, T, C), after the final norm, for token ids idx
        (B, T): what the unembedding reads, and what an encoder pools into a sentence
        vector. key_mask and cache as in Stack.residual."""
        return self.residual(self.tok_emb(idx), key_mask=key_mask, cache=cache)

    def new_cache(
        self, batch_size: int, max_len: int | None = None, dtype: torch.dtype | None = None
    ) -> KVCache:
        """An empty KV cache for this model (max_len defaults to block_size), on the
        model's device and in its dtype unless dtype says otherwise."""
        weight = self.tok_emb.weight
        return super().new_cache(
            batch_size, max_len, device=weight.device, dtype=dtype or weight.dtype
        )
