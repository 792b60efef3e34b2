"""The loss estimate training prints at every evaluation: a few random batches per split."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from glassbox.device import autocast


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
