"""Normalization layers: LayerNorm (PyTorch's) and RMSNorm (written here).

RMSNorm divides by the root mean square of the features and skips LayerNorm's mean
subtraction and bias: one reduction instead of two, and in practice the same quality.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from glassbox.config import ModelConfig


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x²) + eps) · g, over the last dimension.

    >>> RMSNorm(2)(torch.tensor([[3.0, 4.0]]))  # rms = sqrt((9 + 16) / 2)
    tensor([[0.8485, 1.1314]], grad_fn=<MulBackward0>)
    """

    def __init__(self, n_embd: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_embd))  # (C,) gain

    def forward(self, x: Tensor) -> Tensor:
        inv_rms = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # (..., 1)
        return x * inv_rms * self.weight  # (..., C)


def make_norm(config: ModelConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.n_embd)
    return nn.LayerNorm(config.n_embd, bias=config.bias)
