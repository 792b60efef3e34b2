"""Normalization layers: LayerNorm (PyTorch's), RMSNorm and BatchNorm over tokens.

RMSNorm divides by the root mean square of the features and skips LayerNorm's mean
subtraction and bias: one reduction instead of two, and in practice the same quality.

BatchNorm is here to be compared, not recommended. It normalizes each feature with
statistics over every token of the batch, so in training a token's output depends on
the other sequences and on later positions of its own (a causal model can peek at the
future through the batch mean), padding tokens shift the statistics, and at evaluation
it switches to running averages that differ from what it trained with. LayerNorm and
RMSNorm normalize each token on its own and have none of these problems.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from glassbox.config import ModelConfig
from glassbox.nn.hooks import HookPoint


class LayerNorm(nn.LayerNorm):
    """PyTorch's LayerNorm with a hook on its scale 1/sqrt(var + eps), (..., 1): fused
    when nothing watches, written out (same result) when a hook reads or fixes the scale,
    as direct logit attribution does to treat the norm as linear."""

    def __init__(self, n_embd: int, bias: bool = True, eps: float = 1e-5) -> None:
        super().__init__(n_embd, eps=eps, bias=bias)
        self.hook_scale = HookPoint()

    def forward(self, x: Tensor) -> Tensor:
        if not self.hook_scale.fns:
            return super().forward(x)
        centred = x - x.mean(dim=-1, keepdim=True)  # (..., C)
        scale = self.hook_scale(torch.rsqrt(centred.pow(2).mean(dim=-1, keepdim=True) + self.eps))
        y = centred * scale * self.weight
        return y + self.bias if self.bias is not None else y


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x²) + eps) · g, over the last dimension.

    >>> RMSNorm(2)(torch.tensor([[3.0, 4.0]]))  # rms = sqrt((9 + 16) / 2)
    tensor([[0.8485, 1.1314]], grad_fn=<MulBackward0>)
    """

    def __init__(self, n_embd: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_embd))  # (C,) gain
        self.register_parameter("bias", None)  # none, as nn.LayerNorm(bias=False) says it
        self.hook_scale = HookPoint()

    def forward(self, x: Tensor) -> Tensor:
        inv_rms = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # (..., 1)
        return x * self.hook_scale(inv_rms) * self.weight  # (..., C)


class BatchNorm(nn.Module):
    """BatchNorm1d over the feature dimension, with every (batch, time) position a sample."""

    def __init__(self, n_embd: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(n_embd, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.reshape(-1, x.size(-1))).view(x.shape)  # (..., C)


def make_norm(config: ModelConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.n_embd, eps=config.norm_eps)
    if config.norm == "batchnorm":
        return BatchNorm(config.n_embd, eps=config.norm_eps)
    return LayerNorm(config.n_embd, bias=config.bias, eps=config.norm_eps)
