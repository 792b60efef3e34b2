"""Measuring loss: a quick random-batch estimate during training, a full pass for eval."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from glassbox.device import autocast
from glassbox.models.gpt import lm_loss


@torch.no_grad()
def estimate_loss(
    model: Callable[..., Tensor],
    objective,
    *,
    eval_iters: int,
    seed: int,
    device: str,
    dtype: str = "auto",
) -> dict[str, float]:
    """Mean loss of `objective` (glassbox.train.objectives) over `eval_iters` random
    batches of each split.

    The batches come from a generator seeded afresh on every call, so successive
    evaluations of a run score the same examples and differ only by the model.
    """
    result = {}
    for split in ("train", "val"):
        generator = torch.Generator().manual_seed(seed)
        total = 0.0
        for _ in range(eval_iters):
            batch = tuple(t.to(device) for t in objective.batch(split, generator))
            with autocast(device, dtype):
                total += objective.loss(model, batch, train=False).item()
        result[split] = total / eval_iters
    return result


@torch.no_grad()
def mean_loss(
    forward: Callable[[Tensor], Tensor],
    batches: Iterable[tuple[Tensor, Tensor]],
    device: str,
    dtype: str = "auto",
) -> dict[str, float]:
    """Token-weighted mean loss and perplexity over every batch (a full pass over a split)."""
    total, count = 0.0, 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        with autocast(device, dtype):
            loss = lm_loss(forward(x), y)
        total += loss.item() * y.numel()
        count += y.numel()
    loss = total / count
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": count}
