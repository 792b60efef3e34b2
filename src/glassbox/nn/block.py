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
from glassbox.nn.hooks import HookPoint
from glassbox.nn.kv_cache import KVCache
from glassbox.nn.mlp import MLP
from glassbox.nn.norms import make_norm


class Block(nn.Module):
    def __init__(self, config: ModelConfig, *, cross: bool = False) -> None:
        super().__init__()
        self.post_norm = config.norm_placement == "post"
        # Modules and hook points in the order the forward pass reaches them (the order
        # of hook_names()). resid_* hook the residual stream, *_out what a sublayer adds.
        self.hook_resid_pre = HookPoint()  # (B, T, C)
        self.ln_1 = make_norm(config)
        self.attn = SelfAttention(config)
        self.hook_attn_out = HookPoint()  # (B, T, C)
        self.hook_resid_mid = HookPoint()  # (B, T, C)
        if cross:
            self.ln_cross = make_norm(config)
            self.cross_attn = CrossAttention(config)
            self.hook_cross_out = HookPoint()  # (B, T, C)
            self.hook_resid_mid_cross = HookPoint()  # (B, T, C)
        if not config.attn_only:
            self.ln_2 = make_norm(config)
            self.mlp = MLP(config)
            self.hook_mlp_out = HookPoint()  # (B, T, C)
        self.hook_resid_post = HookPoint()  # (B, T, C)

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
        post = self.post_norm
        x = self.hook_resid_pre(x)
        h = self.attn(x if post else self.ln_1(x), cache=cache, layer=layer, **attention_args)
        x = x + self.hook_attn_out(h)
        x = self.hook_resid_mid(self.ln_1(x) if post else x)
        if cross:
            h = x if post else self.ln_cross(x)
            h = self.cross_attn(h, memory, bias=memory_bias, cache=cache, layer=layer)
            x = x + self.hook_cross_out(h)
            x = self.hook_resid_mid_cross(self.ln_cross(x) if post else x)
        if hasattr(self, "mlp"):
            x = x + self.hook_mlp_out(self.mlp(x if post else self.ln_2(x)))
            x = self.ln_2(x) if post else x
        return self.hook_resid_post(x)  # (B, T, C)
