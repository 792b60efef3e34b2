"""AdamW with weight decay on matrices only, and a warmup-then-cosine learning rate."""

from __future__ import annotations

import inspect
import math

import torch
from torch import nn

from glassbox.config import TrainConfig
from glassbox.errors import GlassboxError


def configure_optimizer(model: nn.Module, config: TrainConfig, device: str) -> torch.optim.AdamW:
    """AdamW with two groups: weight decay on every matrix (Linear and embedding weights,
    LoRA's A and B), none on vectors (biases and norm gains), which only shrink the
    model's scale. Frozen parameters (requires_grad False) are left out."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise GlassboxError("every parameter of the model is frozen: there is nothing to train")
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # The fused kernel does the whole update in one pass over each tensor; it exists for
    # CUDA, and for CPU in recent PyTorch releases.
    fused = "fused" in inspect.signature(torch.optim.AdamW).parameters and device != "mps"
    return torch.optim.AdamW(
        groups, lr=config.lr, betas=(config.beta1, config.beta2), fused=fused or None
    )


def lr_at(it: int, config: TrainConfig) -> float:
    """Linear warmup to config.lr over warmup_iters, cosine decay to min_lr at
    lr_decay_iters, then min_lr.

    >>> from glassbox.config import TrainConfig
    >>> c = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_iters=100, lr_decay_iters=2000)
    >>> lr_at(0, c), lr_at(100, c), lr_at(2000, c)
    (1e-05, 0.001, 0.0001)
    """
    if it < config.warmup_iters:
        return config.lr * (it + 1) / config.warmup_iters
    if it >= config.lr_decay_iters:
        return config.min_lr
    progress = (it - config.warmup_iters) / max(1, config.lr_decay_iters - config.warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0
    return config.min_lr + coeff * (config.lr - config.min_lr)
