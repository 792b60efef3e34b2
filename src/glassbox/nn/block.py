"""One pre-norm transformer block: the residual stream is read, transformed and added to.

Pre-norm (GPT-2) normalizes the input of each sublayer and leaves the residual path an
identity, which is what lets deep stacks train without warmup tricks; the paper's
post-norm normalizes after the addition instead.
"""

from __future__ import annotations

from torch import Tensor, nn

from glassbox.config import ModelConfig
from glassbox.nn.attention import CausalSelfAttention
from glassbox.nn.mlp import MLP
from glassbox.nn.norms import make_norm


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, **attention_args) -> Tensor:
        """x (B, T, C) -> (B, T, C); attention_args (mask, cache) go to the attention."""
        x = x + self.attn(self.ln_1(x), **attention_args)  # (B, T, C) resid_mid
        x = x + self.mlp(self.ln_2(x))  # (B, T, C) resid_post
        return x
