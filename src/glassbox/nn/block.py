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
from glassbox.nn.moe import MoE
from glassbox.nn.moh import MixtureOfHeads
from glassbox.nn.norms import make_norm
from glassbox.nn.positional import NO_POSITIONS, PositionContext

# The sublayers a Block can be built with, by config value. A new kind (a mixture-of-
# experts MLP, a mixture-of-heads attention) is its own module plus one line here, and its
# name in config.MLP_KINDS or config.ATTENTION_KINDS (a test holds the two in step).
#
# An MLP maps x (B, T, C) -> (B, T, C). An attention takes x (B, T, C) and the keywords
# bias, causal, cache, layer and positions (see SelfAttention.forward) and returns
# (B, T, C); analyses also read its n_head, W_Q, W_K, W_V and W_O. Either may record
# auxiliary losses (glassbox.nn.aux_losses). A Linear named `proj` writes into the
# residual stream and gets the scaled initialization (init_weights in glassbox.nn.stack).
MLPS: dict[str, type[nn.Module]] = {"dense": MLP, "moe": MoE}
ATTENTIONS: dict[str, type[nn.Module]] = {"mha": SelfAttention, "moh": MixtureOfHeads}


class Block(nn.Module):
    """One layer: self-attention then an MLP (a decoder block of an encoder-decoder has
    cross-attention between them), each reading the residual stream and adding to it.

    Why one class for every architecture: GPT, BERT and the 2017 encoder-decoder differ
    in masks and in where the norms sit, not in what a layer is, so one Block with
    `norm_placement` and `cross` keeps a single implementation of each idea. Its attention
    and MLP come from the ATTENTIONS and MLPS registries, so variants plug in without a
    new block. Parts a configuration leaves out (`cross_attn` and `ln_cross` without
    cross-attention, `mlp` and `ln_2` with attn_only) are None.
    """

    def __init__(self, config: ModelConfig, *, cross: bool = False) -> None:
        super().__init__()
        self.post_norm = config.norm_placement == "post"
        # Modules and hook points in the order the forward pass reaches them (the order
        # of hook_names()). resid_* hook the residual stream, *_out what a sublayer adds.
        self.hook_resid_pre = HookPoint()  # (B, T, C)
        self.ln_1 = make_norm(config)
        self.attn = ATTENTIONS[config.attention_kind](config)
        self.hook_attn_out = HookPoint()  # (B, T, C)
        self.hook_resid_mid = HookPoint()  # (B, T, C)
        self.ln_cross = make_norm(config) if cross else None
        self.cross_attn = CrossAttention(config) if cross else None
        self.hook_cross_out = HookPoint() if cross else None  # (B, T, C)
        self.hook_resid_mid_cross = HookPoint() if cross else None  # (B, T, C)
        mlp = not config.attn_only
        self.ln_2 = make_norm(config) if mlp else None
        self.mlp = MLPS[config.mlp](config) if mlp else None
        self.hook_mlp_out = HookPoint() if mlp else None  # (B, T, C)
        self.hook_resid_post = HookPoint()  # (B, T, C)

    def forward(
        self,
        x: Tensor,
        *,
        positions: PositionContext = NO_POSITIONS,
        bias: Tensor | None = None,
        causal: bool = True,
        cache: KVCache | None = None,
        layer: int = 0,
        memory: Tensor | None = None,
        memory_bias: Tensor | None = None,
    ) -> Tensor:
        """x (B, T, C) -> (B, T, C). positions, bias (the additive mask) and causal go to
        the self-attention; memory (B, S, C) and its padding bias to the cross-attention."""
        post = self.post_norm
        x = self.hook_resid_pre(x)
        h = self.attn(
            x if post else self.ln_1(x), bias=bias, causal=causal, cache=cache, layer=layer,
            positions=positions,
        )  # fmt: skip
        x = x + self.hook_attn_out(h)
        x = self.hook_resid_mid(self.ln_1(x) if post else x)
        if self.cross_attn is not None:
            h = x if post else self.ln_cross(x)
            h = self.cross_attn(h, memory, bias=memory_bias, cache=cache, layer=layer)
            x = x + self.hook_cross_out(h)
            x = self.hook_resid_mid_cross(self.ln_cross(x) if post else x)
        if self.mlp is not None:
            x = x + self.hook_mlp_out(self.mlp(x if post else self.ln_2(x)))
            x = self.ln_2(x) if post else x
        return self.hook_resid_post(x)  # (B, T, C)
