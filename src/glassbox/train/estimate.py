"""The loss estimate training prints at every evaluation: a few random batches per split,
or (eval_full) the whole val split scored as `glassbox eval` scores it."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from glassbox.device import autocast

FULL_BATCH = 64  # windows per forward pass when scoring a whole split (glassbox eval's)


@torch.no_grad()
def estimate_loss(
    model: Callable[..., Tensor],
    objective,
    *,
    eval_iters: int,
    seed: int,
    device: str,
    dtype: str = "auto",
    full_val: bool = False,
) -> dict[str, float]:
    """Mean loss of `objective` (glassbox.train.objectives) over `eval_iters` random
    batches of each split.

    The batches come from a generator seeded afresh on every call, so successive
    evaluations of a run score the same examples and differ only by the model.
    full_val (a CausalLM on a corpus): val is instead the token-weighted loss over every
    window of the split at eval's precision (fp32 on a CPU), the number `glassbox eval`
    reports for the checkpoint, so a run can be held to a target (benchmarks/speedrun.py).
    """
    result = {}
    if full_val:
        from glassbox.evaluate import mean_loss

        windows = objective.dataset.windows("val", objective.block_size, FULL_BATCH)
        result["val"] = mean_loss(model, windows, device)["loss"]
    for split in ("train",) if full_val else ("train", "val"):
        generator = torch.Generator().manual_seed(seed)
        total = 0.0
        for _ in range(eval_iters):
            batch = tuple(t.to(device) for t in objective.batch(split, generator))
            with autocast(device, dtype):
                total += objective.loss(model, batch, train=False).item()
        result[split] = total / eval_iters
    return result
