"""Ablation and activation patching: change one activation, see what the output does.

- Ablation removes heads: their output z is replaced by zeros, or by its mean over some
  reference text (which keeps the average the next layers are used to, and removes only
  what depends on the input).
- Activation patching (causal tracing) runs a corrupted prompt, puts back one activation
  from the clean prompt, and measures how much of the clean behaviour returns: a place
  where one patch restores it is where the information that matters travels.

Every patched run is the corrupted prompt with exactly one patch. To be quick, up to
`runs_per_pass` such runs are stacked along the batch dimension and computed in one
forward pass; run i owns rows i·B to (i+1)·B, and each hook writes only its run's rows.
Hooks are attached with `model.hooks`, so they are removed even when something raises,
and the model runs in eval mode (dropout off), restored afterwards.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from glassbox.analysis.lens import as_batch, check_head, check_single_stack
from glassbox.errors import GlassboxError
from glassbox.models import evaluating
from glassbox.nn.hooks import HookFn, HookPoint

Metric = Callable[[Tensor], float | Tensor]  # logits (B, T, V) -> a number
Patch = tuple[str, tuple]  # (hook name, index into one run's activation, batch first)
ABLATIONS = ("zero", "mean")


def ablate_heads(
    model: nn.Module,
    tokens: Tensor,
    heads: Sequence[tuple[int, int]],
    *,
    how: str = "zero",
    reference: Tensor | None = None,
) -> Tensor:
    """Logits (B, T, V) with the listed (layer, head) pairs knocked out.

    how="zero" sets each head's z (its attention-weighted values, hook_z, (B, T, H, D))
    to zero, so the head writes nothing but the projection's bias; how="mean" sets it to
    the head's mean z over the batch and positions of `reference` (default: tokens itself).

    >>> ablate_heads(model, ids, [(0, 1), (1, 3)], how="mean")
    """
    check_single_stack(model, "ablate_heads")
    if how not in ABLATIONS:
        raise GlassboxError(f"how must be one of {', '.join(ABLATIONS)}; got {how!r}")
    if reference is not None and how != "mean":
        raise GlassboxError("reference is only used with how='mean'")
    for layer, head in heads:
        check_head(model, layer, head)
    tokens = as_batch(tokens, model)
    by_layer: dict[int, list[int]] = defaultdict(list)
    for layer, head in heads:
        by_layer[layer].append(head)
    names = {layer: f"blocks.{layer}.attn.hook_z" for layer in by_layer}

    with evaluating(model), torch.no_grad():
        if how == "mean":
            ref = tokens if reference is None else as_batch(reference, model)
            _, cache = model.run_with_cache(ref, names_filter=list(names.values()))
            means = {l: cache[n].mean(dim=(0, 1)) for l, n in names.items()}  # (H, D) each

        def ablate(layer: int) -> HookFn:
            def fn(z: Tensor, hook: HookPoint) -> Tensor:  # z (B, T, H, D)
                z = z.clone()
                for h in by_layer[layer]:
                    z[:, :, h] = 0.0 if how == "zero" else means[layer][h]  # (D,) to every t
                return z

            return fn

        fwd_hooks = [(name, ablate(layer)) for layer, name in names.items()]
        return model.run_with_hooks(tokens, fwd_hooks=fwd_hooks)


def _as_number(value: float | Tensor) -> float:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise GlassboxError(
                f"metric must return a number or a one-element tensor; got shape "
                f"{tuple(value.shape)}"
            )
        return float(value.detach())
    return float(value)


def _patch_hook(clean: Tensor, runs: list[tuple[int, tuple]], B: int) -> HookFn:
    """A hook that, for each (run i, index), copies clean[index] into run i's rows."""

    def fn(act: Tensor, hook: HookPoint) -> Tensor:  # (n·B, ...)
        act = act.clone()
        for i, index in runs:
            act[i * B : (i + 1) * B][index] = clean[index]  # a view: writes into act
        return act

    return fn


def _prompts(model: nn.Module, clean: Tensor, corrupted: Tensor) -> tuple[Tensor, Tensor]:
    """clean and corrupted as (B, T) batches of one shape, or a one-line error."""
    check_single_stack(model, "activation patching")
    clean, corrupted = as_batch(clean, model), as_batch(corrupted, model)
    if clean.shape != corrupted.shape:
        raise GlassboxError(
            f"clean and corrupted tokens must have the same shape; got "
            f"{tuple(clean.shape)} and {tuple(corrupted.shape)}"
        )
    return clean, corrupted


def _patched_metrics(
    model: nn.Module,
    clean: Tensor,
    corrupted: Tensor,
    patches: list[Patch],
    metric: Metric,
    runs_per_pass: int,
) -> Tensor:
    """metric of the corrupted run with each patch applied on its own: (len(patches),)."""
    if runs_per_pass < 1:
        raise GlassboxError(f"runs_per_pass must be >= 1; got {runs_per_pass}")
    B = corrupted.size(0)
    values: list[float] = []
    with evaluating(model), torch.no_grad():
        names = sorted({name for name, _ in patches})
        _, cache = model.run_with_cache(clean, names_filter=names)
        for start in range(0, len(patches), runs_per_pass):
            group = patches[start : start + runs_per_pass]
            runs: dict[str, list[tuple[int, tuple]]] = defaultdict(list)
            for i, (name, index) in enumerate(group):
                runs[name].append((i, index))
            fwd_hooks = [(name, _patch_hook(cache[name], r, B)) for name, r in runs.items()]
            logits = model.run_with_hooks(corrupted.repeat(len(group), 1), fwd_hooks=fwd_hooks)
            values += [_as_number(metric(run)) for run in logits.split(B)]  # (B, T, V) each
    return torch.tensor(values)


def patch_residual(
    model: nn.Module,
    clean: Tensor,
    corrupted: Tensor,
    metric: Metric,
    *,
    runs_per_pass: int = 16,
) -> Tensor:
    """(L, T): metric of the corrupted run with the residual stream entering block l
    (blocks.{l}.hook_resid_pre) at position t replaced by the clean run's.

    Row 0 patches the embeddings: at a position where the prompts differ it is the clean
    run exactly. In a causal model, positions before the first difference are the same in
    both runs, so patching them changes nothing.

    >>> m = lambda logits: logit_diff(logits, correct=5, wrong=7)
    >>> patch_residual(model, clean_ids, corrupted_ids, m)  # where the answer travels
    """
    clean, corrupted = _prompts(model, clean, corrupted)
    L, T = len(model.blocks), corrupted.size(1)
    patches = [(f"blocks.{l}.hook_resid_pre", (slice(None), t)) for l in range(L) for t in range(T)]
    values = _patched_metrics(model, clean, corrupted, patches, metric, runs_per_pass)
    return values.view(L, T)


def patch_heads(
    model: nn.Module,
    clean: Tensor,
    corrupted: Tensor,
    metric: Metric,
    *,
    runs_per_pass: int = 16,
) -> Tensor:
    """(L, H): metric of the corrupted run with one head's z (hook_z), at every position,
    replaced by the clean run's.

    >>> patch_heads(model, clean_ids, corrupted_ids, m).argmax()  # the head that matters most
    """
    clean, corrupted = _prompts(model, clean, corrupted)
    L, H = len(model.blocks), model.config.n_head
    every = slice(None)
    patches = [(f"blocks.{l}.attn.hook_z", (every, every, h)) for l in range(L) for h in range(H)]
    values = _patched_metrics(model, clean, corrupted, patches, metric, runs_per_pass)
    return values.view(L, H)


def patch_heads_by_position(
    model: nn.Module,
    clean: Tensor,
    corrupted: Tensor,
    metric: Metric,
    *,
    runs_per_pass: int = 16,
) -> Tensor:
    """(L, H, T): as patch_heads, with one head's z patched at one position at a time."""
    clean, corrupted = _prompts(model, clean, corrupted)
    L, H, T = len(model.blocks), model.config.n_head, corrupted.size(1)
    patches = [
        (f"blocks.{l}.attn.hook_z", (slice(None), t, h))  # z is (B, T, H, D)
        for l in range(L)
        for h in range(H)
        for t in range(T)
    ]
    values = _patched_metrics(model, clean, corrupted, patches, metric, runs_per_pass)
    return values.view(L, H, T)
