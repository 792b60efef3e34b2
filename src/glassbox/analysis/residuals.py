"""Why residual connections: the same GPT trained with and without them, at several depths.

A pre-norm block computes x + attn(norm(x)), then + mlp(norm(·)). Without the two
additions it computes mlp(norm(attn(norm(x)))): every layer's output is only what its
sublayers make of the layer before, so the gradient reaching layer l is a product of
every later layer's Jacobian, and the embeddings' information has to survive every
layer. With them, each block only adds to a stream that runs from the embeddings to the
logits unchanged, and the gradient of the loss reaches every layer along that identity
path. `residual_experiment` measures both: the gradient norm of each block's parameters
at initialisation, and the training loss curve, for each depth, with and without.

The model cannot leave out its residual additions by a config flag, so `no_residuals`
does it with hooks, without changing the model: each block's hook_resid_mid returns
what the attention wrote (hook_attn_out) instead of the sum, and hook_resid_post what
the MLP wrote (hook_mlp_out). The sum is still computed and then dropped, so the output
and its gradient are exactly those of the network without residuals (a test checks it
against the blocks' sublayers run by hand). Pre-norm decoders only: a post-norm block's
hook_resid_mid holds norm(x + h), from which h cannot be taken back.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glassbox.config import ModelConfig
from glassbox.errors import GlassboxError
from glassbox.nn.hooks import HookFn, HookPoint
from glassbox.plot import save_figure


def _keep(store: dict[str, Tensor], key: str) -> HookFn:
    def fn(x: Tensor, hook: HookPoint) -> None:
        store[key] = x

    return fn


def _use(store: dict[str, Tensor], key: str) -> HookFn:
    def fn(x: Tensor, hook: HookPoint) -> Tensor:
        return store.pop(key)  # the sublayer's output alone, in place of x + it

    return fn


@contextmanager
def no_residuals(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the `with` block, every block of a pre-norm decoder computes
    mlp(norm(attn(norm(x)))) instead of adding each sublayer to x; hooks do it, and are
    removed on the way out, also on error.

    >>> with no_residuals(model):
    ...     loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())  # doctest: +SKIP
    """
    if model.config.arch != "decoder" or model.config.norm_placement != "pre":
        raise GlassboxError("no_residuals works on pre-norm decoders (GPT)")
    fwd_hooks = []
    for layer, block in enumerate(model.blocks):
        store: dict[str, Tensor] = {}
        name = f"blocks.{layer}"
        fwd_hooks += [
            (f"{name}.hook_attn_out", _keep(store, "attn")),
            (f"{name}.hook_resid_mid", _use(store, "attn")),
        ]
        if block.mlp is not None:
            fwd_hooks += [
                (f"{name}.hook_mlp_out", _keep(store, "mlp")),
                (f"{name}.hook_resid_post", _use(store, "mlp")),
            ]
    with model.hooks(fwd_hooks):
        yield model


def _model(config: ModelConfig, seed: int) -> nn.Module:
    from glassbox.models import GPT

    torch.manual_seed(seed)  # the same initial weights with and without residuals
    return GPT(config)


def _batch(
    ids: Tensor, batch_size: int, T: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    starts = torch.randint(len(ids) - T - 1, (batch_size,), generator=generator)  # (B,)
    rows = torch.stack([ids[s : s + T + 1] for s in starts.tolist()])  # (B, T + 1)
    return rows[:, :-1], rows[:, 1:]


def _loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(model(x).flatten(0, 1), y.flatten())


def gradient_norms(model: nn.Module, x: Tensor, y: Tensor, *, residual: bool = True) -> Tensor:
    """(L,): the norm of the loss gradient over each block's parameters, for one batch
    x, y (B, T), with or without residual connections; the model's gradients are left
    cleared."""
    model.zero_grad(set_to_none=True)
    if residual:
        _loss(model, x, y).backward()
    else:
        with no_residuals(model):
            _loss(model, x, y).backward()
    norms = []
    for block in model.blocks:
        squares = [p.grad.pow(2).sum() for p in block.parameters() if p.grad is not None]
        norms.append(torch.stack(squares).sum().sqrt() if squares else torch.tensor(0.0))
    model.zero_grad(set_to_none=True)
    return torch.stack(norms).detach()


def train_curve(
    config: ModelConfig,
    ids: Tensor,
    *,
    residual: bool,
    steps: int,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
) -> dict[str, Any]:
    """Train a GPT of `config` on token ids (N,) for `steps` AdamW steps (linear warmup
    over the first tenth, gradient clipping at 1, as `glassbox train` does), with or
    without residuals. Returns the training loss of every step and the gradient norms
    per block at initialisation (mean over 4 batches)."""
    model = _model(config, seed).train()
    generator = torch.Generator().manual_seed(seed)
    T = config.block_size
    probes = [_batch(ids, batch_size, T, generator) for _ in range(4)]
    init = torch.stack([gradient_norms(model, x, y, residual=residual) for x, y in probes])
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 10)
    losses = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup)
        x, y = _batch(ids, batch_size, T, generator)
        if residual:
            loss = _loss(model, x, y)
        else:
            with no_residuals(model):
                loss = _loss(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    return {"losses": losses, "init_grad_norms": init.mean(dim=0).tolist()}


def residual_experiment(
    text: str,
    *,
    depths: Sequence[int] = (2, 4, 8),
    steps: int = 300,
    n_embd: int = 64,
    n_head: int = 4,
    block_size: int = 64,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
) -> dict[str, Any]:
    """train_curve for every depth, with and without residuals, on `text` read one
    character per token. Returns {"runs": [{"depth", "residual", "losses",
    "init_grad_norms", "final_loss"}, ...], and the settings}; final_loss is the mean of
    the last tenth of the steps (the per-step loss is noisy).

    >>> result = residual_experiment(load_text("default"), depths=(2,), steps=20)
    """
    from glassbox.tokenizers import CharTokenizer

    if steps < 10:
        raise GlassboxError(f"steps must be at least 10; got {steps}")
    tokenizer = CharTokenizer.train(text)
    ids = torch.tensor(tokenizer.encode(text))  # (N,)
    if len(ids) <= block_size + 1:
        raise GlassboxError(f"the text has {len(ids)} characters; need more than {block_size + 1}")
    runs = []
    for depth in depths:
        config = ModelConfig(vocab_size=tokenizer.vocab_size, block_size=block_size,
                             n_layer=depth, n_head=n_head, n_embd=n_embd)  # fmt: skip
        for residual in (True, False):
            curve = train_curve(config, ids, residual=residual, steps=steps,
                                batch_size=batch_size, lr=lr, seed=seed)  # fmt: skip
            tail = curve["losses"][-max(1, steps // 10) :]
            runs.append({"depth": depth, "residual": residual, **curve,
                         "final_loss": sum(tail) / len(tail)})  # fmt: skip
    settings = dict(steps=steps, n_embd=n_embd, n_head=n_head, block_size=block_size,
                    batch_size=batch_size, lr=lr, seed=seed, vocab_size=tokenizer.vocab_size,
                    chance=math.log(tokenizer.vocab_size))  # fmt: skip
    return {"settings": settings, "runs": runs}


def plot_residual_experiment(result: dict[str, Any], path: Path | str) -> Path:
    """One PNG: the loss curves (smoothed over 20 steps) and the gradient norm per block
    at initialisation (log scale), solid with residuals, dashed without."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (curves, grads) = plt.subplots(1, 2, figsize=(10, 3.8))
    depths = sorted({run["depth"] for run in result["runs"]})
    cmap = plt.get_cmap("viridis")
    colours = {d: cmap(0.85 * i / max(len(depths) - 1, 1)) for i, d in enumerate(depths)}
    for run in result["runs"]:
        style = "-" if run["residual"] else "--"
        label = f"{run['depth']} layers, {'with' if run['residual'] else 'without'}"
        losses = torch.tensor(run["losses"])
        k = min(20, len(losses))
        smooth = losses.unfold(0, k, 1).mean(dim=1)  # (steps - k + 1,)
        curves.plot(range(k, len(losses) + 1), smooth.numpy(), style,
                    color=colours[run["depth"]], label=label, linewidth=1)  # fmt: skip
        norms = run["init_grad_norms"]
        grads.plot(range(len(norms)), norms, style + "o", color=colours[run["depth"]],
                   label=label, markersize=3, linewidth=1)  # fmt: skip
    curves.axhline(result["settings"]["chance"], color="grey", linewidth=0.6)
    curves.set_xlabel("step")
    curves.set_ylabel("training loss (20-step mean)")
    curves.legend(fontsize=7)
    grads.set_yscale("log")
    grads.set_xlabel("block")
    grads.set_ylabel("gradient norm at initialisation")
    grads.legend(fontsize=7)
    return save_figure(fig, path)


__all__ = [
    "gradient_norms",
    "no_residuals",
    "plot_residual_experiment",
    "residual_experiment",
    "train_curve",
]
