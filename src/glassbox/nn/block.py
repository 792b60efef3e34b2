"""One transformer block: the residual stream is read, transformed and added to.

Pre-norm (GPT-2, the default) normalizes the input of each sublayer and leaves the
residual path an identity, x + f(norm(x)): gradients reach early layers unchanged, which
is what lets deep stacks train without warmup tricks, and the stream needs one final norm
at the end. Post-norm (the 2017 paper, BERT) normalizes after each addition,
norm(x + f(x)): every block's output is normalized, and the identity path is not.

A decoder block of an encoder-decoder has a third sublayer between the two, attention
from the decoder's positions to the encoder's output.
"""

from __future__ import annotations

from torch import Tensor, nn

from glassbox.config import ModelConfig
from glassbox.nn.attention import CrossAttention, SelfAttention
from glassbox.nn.kv_cache import KVCache
from glassbox.nn.mlp import MLP
from glassbox.nn.norms import make_norm


class Block(nn.Module):
    def __init__(self, config: ModelConfig, *, cross: bool = False) -> None:
        super().__init__()
        self.post_norm = config.norm_placement == "post"
        self.ln_1 = make_norm(config)
        self.attn = SelfAttention(config)
        if cross:
            self.ln_cross = make_norm(config)
            self.cross_attn = CrossAttention(config)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(
        self,
        x: Tensor,
        *,
        cache: KVCache | None = None,
        layer: int = 0,
        memory: Tensor | None = None,
        memory_bias: Tensor | None = None,
        **attention_args,
    ) -> Tensor:
        """x (B, T, C) -> (B, T, C). attention_args (masks, positions) go to the
        self-attention; memory (B, S, C) and its padding bias to the cross-attention."""
        cross = hasattr(self, "cross_attn")
        if self.post_norm:
            x = self.ln_1(x + self.attn(x, cache=cache, layer=layer, **attention_args))
            if cross:
                x = self.ln_cross(
                    x + self.cross_attn(x, memory, bias=memory_bias, cache=cache, layer=layer)
                )
            return self.ln_2(x + self.mlp(x))
        x = x + self.attn(self.ln_1(x), cache=cache, layer=layer, **attention_args)  # resid_mid
        if cross:
            h = self.ln_cross(x)
            x = x + self.cross_attn(h, memory, bias=memory_bias, cache=cache, layer=layer)
        return x + self.mlp(self.ln_2(x))  # (B, T, C) resid_post
