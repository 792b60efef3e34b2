"""The position-wise feed-forward network: widen, apply a nonlinearity, project back."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glassbox.config import ModelConfig
from glassbox.nn.hooks import HookPoint


class _ReLUSquared(torch.autograd.Function):
    """relu(h)² with its gradient written out, 2·relu(h): autograd's own backward of
    square() recomputes a power, and took 2.5x the time of this on a CPU (char-speedrun's
    MLP, measured; docs/benchmarks.md)."""

    @staticmethod
    def forward(ctx, h: Tensor) -> Tensor:
        r = F.relu(h)
        ctx.save_for_backward(r)
        return r * r

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (r,) = ctx.saved_tensors
        return grad * (r + r)


def relu2(h: Tensor) -> Tensor:
    """relu(h)²: found by So et al. 2021 (Primer) in a search over activations, and what
    modded-nanogpt uses; as sparse as relu, but with a slope of 0 at 0 instead of a kink.

    >>> relu2(torch.tensor([-1.0, 0.5, 2.0]))
    tensor([0.0000, 0.2500, 4.0000])
    """
    return _ReLUSquared.apply(h)


ACTIVATIONS = {
    "gelu": F.gelu,  # exact, x·Φ(x); what nanoGPT and BERT use
    # GPT-2's tanh approximation: needed to reproduce GPT-2 weights exactly, and on CPUs
    # about 4x slower than the erf form in PyTorch's kernels (measured; docs/benchmarks.md)
    "gelu_tanh": partial(F.gelu, approximate="tanh"),
    "relu": F.relu,
    "relu2": relu2,
}


def swiglu(h: Tensor) -> Tensor:
    gate, value = h.chunk(2, dim=-1)  # (..., hidden) each
    return F.silu(gate) * value


class MLP(nn.Module):
    """fc -> activation -> proj. With swiglu, fc makes two halves, a gate and a value, and
    the activation is silu(gate) * value (Shazeer 2020); the hidden width is 2/3 of the
    usual so that the three matrices hold as many weights as the usual two."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        hidden = config.mlp_ratio * config.n_embd
        gated = config.activation == "swiglu"
        if gated:
            hidden = 2 * hidden // 3
        self.fc = nn.Linear(config.n_embd, 2 * hidden if gated else hidden, bias=config.bias)
        self.act = swiglu if gated else ACTIVATIONS[config.activation]
        self.proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.hook_pre = HookPoint()  # (B, T, hidden), or (B, T, 2 * hidden) gate and value
        self.hook_post = HookPoint()  # (B, T, hidden): what proj reads

    def forward(self, x: Tensor) -> Tensor:
        h = self.hook_post(self.act(self.hook_pre(self.fc(x))))  # (B, T, hidden)
        return self.dropout(self.proj(h))  # (B, T, C)
