"""The optimizer (AdamW, or Muon for the blocks' matrices with AdamW for the rest) and
the learning-rate schedule (warmup, then cosine or warmup-stable-decay)."""

from __future__ import annotations

import inspect
import math

import torch
from torch import nn

from glassbox.config import TrainConfig
from glassbox.errors import GlassboxError
from glassbox.nn.block import Block
from glassbox.train.muon import Muon


def configure_optimizer(
    model: nn.Module, config: TrainConfig, device: str
) -> torch.optim.Optimizer:
    """AdamW with two groups: weight decay on every matrix (Linear and embedding weights,
    LoRA's A and B), none on vectors (biases and norm gains), which only shrink the
    model's scale. Frozen parameters (requires_grad False) are left out.

    With config.optimizer "muon", one Muon optimizer (glassbox.train.muon) whose first
    group, at muon_lr, holds the weights of the Linear layers inside the blocks (the
    hidden matrices), and whose AdamW groups, at lr, hold the rest as above: token and
    position embeddings, an untied lm_head, LoRA's adapters, biases and norm gains."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise GlassboxError("every parameter of the model is frozen: there is nothing to train")
    if config.optimizer == "muon":
        return _muon(model, params, config)
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


def _muon(model: nn.Module, params: list[nn.Parameter], config: TrainConfig) -> Muon:
    hidden = {
        id(linear.weight)
        for block in model.modules() if isinstance(block, Block)
        for linear in block.modules() if isinstance(linear, nn.Linear)
    }  # fmt: skip
    groups = [
        {"params": [p for p in params if id(p) in hidden], "muon": True, "lr": config.muon_lr,
         "weight_decay": config.weight_decay},
        {"params": [p for p in params if id(p) not in hidden and p.dim() >= 2],
         "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]  # fmt: skip
    return Muon(
        [g for g in groups if g["params"]], lr=config.lr, momentum=config.muon_momentum,
        betas=(config.beta1, config.beta2),
    )  # fmt: skip


def set_lr(optimizer: torch.optim.Optimizer, lr: float, config: TrainConfig) -> None:
    """Give every parameter group this step's learning rate: `lr` (lr_at's) to AdamW's
    groups, and to Muon's the same point of the schedule at muon_lr's scale."""
    for group in optimizer.param_groups:
        group["lr"] = lr * config.muon_lr / config.lr if group.get("muon") else lr


def lr_at(it: int, config: TrainConfig) -> float:
    """Linear warmup to config.lr over warmup_iters, then down to min_lr at
    lr_decay_iters, and min_lr after that. lr_schedule "cosine" goes down along half a
    cosine, from the end of the warmup; "wsd" (warmup-stable-decay) stays at lr, then
    falls linearly over the last decay_fraction of lr_decay_iters (never before the
    warmup ends).

    >>> from glassbox.config import TrainConfig
    >>> c = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_iters=100, lr_decay_iters=2000)
    >>> lr_at(0, c), lr_at(100, c), lr_at(2000, c)
    (1e-05, 0.001, 0.0001)
    """
    if it < config.warmup_iters:
        return config.lr * (it + 1) / config.warmup_iters
    if it >= config.lr_decay_iters:
        return config.min_lr
    if config.lr_schedule == "wsd":
        length = round(config.decay_fraction * config.lr_decay_iters)
        start = max(config.warmup_iters, config.lr_decay_iters - length)
        if it < start:
            return config.lr
        progress = (it - start) / (config.lr_decay_iters - start)  # 0 -> 1, never reaching 1
        return config.lr + progress * (config.min_lr - config.lr)
    progress = (it - config.warmup_iters) / max(1, config.lr_decay_iters - config.warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0
    return config.min_lr + coeff * (config.lr - config.min_lr)
