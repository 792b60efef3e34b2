"""Measuring loss: a quick random-batch estimate during training, a full pass for eval."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

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


@torch.no_grad()
def exact_match(
    model,
    task,
    pairs: list[tuple[str, str]],
    *,
    beam_size: int = 1,
    alpha: float = 0.6,
    batch_size: int = 250,
) -> dict[str, Any]:
    """The fraction of `pairs` (source, target) whose decoded output equals the target
    exactly, with a few of the misses to look at."""
    from glassbox.data.tasks import BOS, EOS, PAD
    from glassbox.generate.seq2seq import translate

    outputs: list[str] = []
    for i in range(0, len(pairs), batch_size):
        sources = [source for source, _ in pairs[i : i + batch_size]]
        outputs += translate(
            model, task.tokenizer, sources, bos=BOS, eos=EOS, pad=PAD,
            max_len=task.max_target_len, beam_size=beam_size, alpha=alpha,
        )  # fmt: skip
    misses = [
        {"source": s, "target": t, "output": o}
        for (s, t), o in zip(pairs, outputs, strict=True)
        if o != t
    ]
    return {
        "exact_match": 1 - len(misses) / len(pairs),
        "examples": len(pairs),
        "beam_size": beam_size,
        "misses": misses[:5],
    }
