"""Causal tracing (Meng et al. 2022, "Locating and Editing Factual Associations in GPT",
the ROME paper): where in the network a fact is recalled.

Three runs of one prompt, say "Orrin Holloway has a home in", whose answer is "Paris":

1. clean: the model as it is; p(Paris) is high.
2. corrupted: Gaussian noise added to the embeddings of the subject's tokens (std 3x
   that of the token embeddings, as in the paper), so the model no longer knows whose
   home is asked for; p(Paris) drops.
3. restored: the corrupted run with one hidden state at one (layer, position) put back
   to its clean value. If p(Paris) comes back, that state carried what the model needed
   to recall the fact.

Each hidden state is one of three kinds: the residual stream after block l (`resid`,
hook_resid_post), what block l's MLP added to it (`mlp`, hook_mlp_out), or what its
attention added (`attn`, hook_attn_out). The paper found MLP outputs at the last subject
token in the middle layers, and attention at the last token in later layers, carry the
recall; `trace` gives the three (layers x positions) maps for one prompt and
`average_trace` averages them over many facts by the paper's position categories.

Where this departs from the paper: the noise std is 3x the std of every entry of the
token embedding matrix (the paper takes the std over a set of subjects' embeddings),
and the MLP and attention maps restore one layer by default (the paper restores a
window of 10 adjacent layers of its 48; `window` does the same here).

Every restored run uses the same `samples` draws of noise, so maps compare like with
like; the probability of each run is the mean over those draws. Runs are stacked along
the batch (as in glassbox.analysis.patching): run i owns rows i·S to (i+1)·S.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from glassbox.analysis.lens import as_batch, check_single_stack
from glassbox.errors import GlassboxError
from glassbox.models import evaluating
from glassbox.nn.hooks import HookFn, HookPoint
from glassbox.plot import save_figure

KINDS = ("resid", "mlp", "attn")
HOOKS = {"resid": "hook_resid_post", "mlp": "hook_mlp_out", "attn": "hook_attn_out"}
NOISE_FACTOR = 3.0  # the paper's: noise std is 3x the embeddings' std
# average_trace's rows: where a position sits relative to the subject (the paper's Fig. 1)
CATEGORIES = (
    "first subject token",
    "middle subject tokens",
    "last subject token",
    "first subsequent token",
    "further tokens",
    "last token",
)

Restoration = list[tuple[str, int]]  # (hook name, position) pairs put back in one run


def noise_std(model: nn.Module, factor: float = NOISE_FACTOR) -> float:
    """factor x the std of the token embeddings as they enter the residual stream (every
    entry of the token embedding matrix, times the model's embedding scale)."""
    weight = model.tok_emb.weight.detach().float()
    return factor * float(weight.std()) * float(getattr(model, "emb_scale", 1.0))


@dataclass
class Trace:
    """The result of `trace` for one prompt: p(answer) of the clean and corrupted runs,
    and for each kind a (L, T) map of p(answer) with that one state restored."""

    clean: float
    corrupted: float
    maps: dict[str, Tensor]  # kind -> (L, T)
    subject: tuple[int, int]  # token positions [start, end)
    answer: int

    def peak(self, kind: str) -> tuple[int, int, float]:
        """(layer, position, p) of the strongest restoration of one kind."""
        grid = self.maps[kind]
        layer, position = divmod(int(grid.argmax()), grid.size(1))
        return layer, position, float(grid[layer, position])


def _check(
    model: nn.Module, tokens: Tensor, subject: Sequence[int], answer: int
) -> tuple[Tensor, list[int]]:
    """tokens as a (1, T) batch on the model's device and the subject's positions as a
    sorted list, or a one-line error."""
    check_single_stack(model, "causal tracing")
    if model.config.arch != "decoder":
        raise GlassboxError("causal tracing reads a next-token prediction: it needs a decoder")
    tokens = as_batch(tokens, model)
    if tokens.size(0) != 1:
        raise GlassboxError(f"trace one prompt at a time; got a batch of {tokens.size(0)}")
    T = tokens.size(1)
    positions = sorted(set(subject))
    if not positions or not all(0 <= t < T for t in positions):
        raise GlassboxError(f"the subject's positions must be within the prompt's {T} tokens")
    if positions != list(range(positions[0], positions[-1] + 1)):
        raise GlassboxError(f"the subject must be consecutive positions; got {positions}")
    if not 0 <= answer < model.config.vocab_size:
        raise GlassboxError(f"answer id {answer} is outside the vocabulary")
    return tokens, positions


def _layers(layer: int, window: int, n_layer: int) -> range:
    """The `window` layers centred on `layer`, clipped to the model (as the paper does)."""
    return range(max(0, layer - window // 2), min(n_layer, layer + (window + 1) // 2))


@torch.no_grad()
def _probabilities(
    model: nn.Module,
    tokens: Tensor,
    subject: list[int],
    answer: int,
    runs: list[Restoration],
    noise: Tensor,
    runs_per_pass: int,
) -> tuple[float, Tensor]:
    """p(answer) of the clean run, and of the corrupted run with each restoration (n,)."""
    S = noise.size(0)
    names = sorted({name for run in runs for name, _ in run})
    logits, cache = model.run_with_cache(tokens, names_filter=names)
    clean = float(logits[0, -1].float().softmax(-1)[answer])

    def corrupt(x: Tensor, hook: HookPoint) -> Tensor:  # x (n·S, T, C)
        x = x.clone()
        x[:, subject] += noise.repeat(x.size(0) // S, 1, 1)  # (n·S, len(subject), C)
        return x

    def restore(name: str, group: list[Restoration]) -> HookFn:
        clean_act = cache[name][0]  # (T, C)
        places = [(i, t) for i, run in enumerate(group) for n, t in run if n == name]

        def fn(act: Tensor, hook: HookPoint) -> Tensor:  # (n·S, T, C)
            act = act.clone()
            for i, t in places:
                act[i * S : (i + 1) * S, t] = clean_act[t]
            return act

        return fn

    out = []
    for start in range(0, len(runs), runs_per_pass):
        group = runs[start : start + runs_per_pass]
        used = sorted({name for run in group for name, _ in run})
        hooks = [("hook_embed", corrupt)] + [(n, restore(n, group)) for n in used]
        batch = tokens.repeat(len(group) * S, 1)  # (n·S, T)
        logits = model.run_with_hooks(batch, fwd_hooks=hooks)[:, -1].float()  # (n·S, V)
        p = logits.softmax(-1)[:, answer].view(len(group), S)  # (n, S)
        out.append(p.mean(dim=1).cpu())
    return clean, torch.cat(out)


def _noise(model: nn.Module, n_subject: int, samples: int, std: float | None, seed: int) -> Tensor:
    """The noise added to the subject's embeddings, (samples, n_subject, C), seeded."""
    if samples < 1:
        raise GlassboxError(f"samples must be at least 1; got {samples}")
    std = noise_std(model) if std is None else std
    generator = torch.Generator().manual_seed(seed)
    weight = model.tok_emb.weight
    noise = torch.randn(samples, n_subject, weight.size(1), generator=generator) * std
    return noise.to(device=weight.device, dtype=weight.dtype)  # (S, n_subject, C)


def restored_probability(
    model: nn.Module,
    tokens: Tensor,
    subject: Sequence[int],
    answer: int,
    restore: Iterable[tuple[str, int]] = (),
    *,
    noise: float | None = None,
    samples: int = 10,
    seed: int = 0,
) -> float:
    """p(answer) after the last token of the corrupted run with the listed (hook name,
    position) states restored from the clean run; nothing listed: the corrupted run.

    >>> mlp_1 = [("blocks.1.hook_mlp_out", 1)]  # layer 1's MLP output at position 1
    >>> restored_probability(model, ids, range(0, 2), paris, mlp_1)  # doctest: +SKIP
    """
    tokens, subject = _check(model, tokens, subject, answer)
    run = list(restore)
    for name, t in run:
        model.hook_point(name)  # a clear error for a name this model does not have
        if not 0 <= t < tokens.size(1):
            raise GlassboxError(f"position {t} is outside the prompt's {tokens.size(1)} tokens")
    with evaluating(model):
        eps = _noise(model, len(subject), samples, noise, seed)
        _, p = _probabilities(model, tokens, subject, answer, [run], eps, 1)
    return float(p[0])


def trace(
    model: nn.Module,
    tokens: Tensor,
    subject: Sequence[int],
    answer: int,
    *,
    kinds: Sequence[str] = KINDS,
    window: int = 1,
    noise: float | None = None,
    samples: int = 10,
    seed: int = 0,
    runs_per_pass: int = 32,
) -> Trace:
    """Causal tracing of one prompt tokens (T,) or (1, T): for each kind, p(answer) with
    the state at each (layer, position) restored, as (L, T) maps. `subject` lists the
    positions that get noise; `window` restores that many adjacent layers of the MLP
    and attention maps (the residual map always restores one). An attention-only model
    has no MLP map.

    >>> result = trace(model, ids, range(0, 2), paris)  # doctest: +SKIP
    >>> result.peak("mlp")  # doctest: +SKIP
    """
    tokens, subject = _check(model, tokens, subject, answer)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise GlassboxError(f"kinds must be among {', '.join(KINDS)}; got {list(kinds)}")
    if window < 1:
        raise GlassboxError(f"window must be at least 1 layer; got {window}")
    if runs_per_pass < 1:
        raise GlassboxError(f"runs_per_pass must be >= 1; got {runs_per_pass}")
    if model.config.attn_only:
        kinds = [k for k in kinds if k != "mlp"]
    L, T = model.config.n_layer, tokens.size(1)
    runs: list[Restoration] = [[]]  # run 0 restores nothing: the corrupted run
    for kind in kinds:
        span = 1 if kind == "resid" else window
        for layer in range(L):
            for t in range(T):
                layers = _layers(layer, span, L)
                runs.append([(f"blocks.{l}.{HOOKS[kind]}", t) for l in layers])
    with evaluating(model):
        eps = _noise(model, len(subject), samples, noise, seed)
        clean, p = _probabilities(model, tokens, subject, answer, runs, eps, runs_per_pass)
    maps = dict(zip(kinds, p[1:].view(len(kinds), L, T), strict=True))  # kind -> (L, T)
    return Trace(clean, float(p[0]), maps, (subject[0], subject[-1] + 1), answer)


def categories(T: int, subject: tuple[int, int]) -> dict[str, list[int]]:
    """The positions of a T-token prompt in each of CATEGORIES (empty ones dropped), as
    the paper counts them: a one-token subject is its own first and last token, and a
    subject that ends the prompt holds the last token. Positions before the subject are
    left out: the noise cannot reach them.

    >>> categories(6, (3, 5))
    {'first subject token': [3], 'last subject token': [4], 'last token': [5]}
    """
    start, end = subject
    groups = {
        "first subject token": [start],
        "middle subject tokens": list(range(start + 1, end - 1)),
        "last subject token": [end - 1],
        "first subsequent token": [end] if end < T - 1 else [],
        "further tokens": list(range(end + 1, T - 1)),
        "last token": [T - 1],
    }
    return {name: positions for name, positions in groups.items() if positions}


def average_trace(
    model: nn.Module,
    facts: Iterable[tuple[Tensor, Sequence[int], int]],
    **options: Any,
) -> dict[str, Any]:
    """`trace` of many (tokens, subject positions, answer) facts, averaged by position
    category (CATEGORIES), as in the paper's averages over known facts. Returns the mean
    clean and corrupted p(answer), the categories present, for each kind a
    (L, n_categories) map of mean p(answer) ("maps"), and how many facts fed each
    category.

    >>> avg = average_trace(model, [(ids, range(0, 2), paris), ...], samples=5)  # doctest: +SKIP
    >>> avg["maps"]["mlp"].shape  # doctest: +SKIP
    """
    sums: dict[str, dict[str, Tensor]] = {}
    counts = dict.fromkeys(CATEGORIES, 0)
    clean = corrupted = 0.0
    n = 0
    for tokens, subject, answer in facts:
        result = trace(model, tokens, subject, answer, **options)
        n += 1
        clean, corrupted = clean + result.clean, corrupted + result.corrupted
        groups = categories(result.maps[next(iter(result.maps))].size(1), result.subject)
        for name, positions in groups.items():
            counts[name] += 1
            for kind, grid in result.maps.items():
                column = grid[:, positions].mean(dim=1)  # (L,)
                by_kind = sums.setdefault(kind, {})
                by_kind[name] = by_kind.get(name, 0) + column
    if n == 0:
        raise GlassboxError("average_trace needs at least one fact")
    present = [c for c in CATEGORIES if counts[c]]
    maps = {
        kind: torch.stack([by_name[c] / counts[c] for c in present], dim=1)  # (L, n_cat)
        for kind, by_name in sums.items()
    }
    return {
        "facts": n,
        "clean": clean / n,
        "corrupted": corrupted / n,
        "categories": present,
        "counts": [counts[c] for c in present],
        "maps": maps,
    }


_TITLES = {"resid": "residual stream", "mlp": "MLP output", "attn": "attention output"}
_COLOURS = {"resid": "Purples", "mlp": "Greens", "attn": "Reds"}


def plot_trace(
    maps: dict[str, Tensor],
    labels: list[str],
    path: Path | str,
    *,
    clean: float,
    corrupted: float,
    title: str = "",
    subject: tuple[int, int] | None = None,
) -> Path:
    """One PNG with a heatmap per kind: rows (labels: tokens or position categories)
    down, layers across, colour p(answer) with that state restored. Rows in `subject`
    [start, end) get a '*', as in the paper."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(labels)
    if subject is not None:
        rows = [f"{r}*" if subject[0] <= i < subject[1] else r for i, r in enumerate(rows)]
    fig, axes = plt.subplots(1, len(maps), figsize=(3.6 * len(maps), 0.9 + 0.32 * len(rows)))
    axes = [axes] if len(maps) == 1 else list(axes)
    for ax, (kind, grid) in zip(axes, maps.items(), strict=True):
        L = grid.size(0)
        image = ax.imshow(grid.T.numpy(), cmap=_COLOURS[kind], vmin=min(corrupted, clean),
                          vmax=max(grid.max().item(), clean), aspect="auto")  # fmt: skip
        ax.set_title(f"restoring the {_TITLES[kind]}", fontsize=9)
        ax.set_xticks(range(L), [str(layer) for layer in range(L)], fontsize=7)
        ax.set_xlabel("layer", fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        fig.colorbar(image, ax=ax, fraction=0.05).ax.tick_params(labelsize=6)
    fig.suptitle(f"{title}\np(answer): clean {clean:.3f}, corrupted {corrupted:.3f}", fontsize=9)
    return save_figure(fig, path)


__all__ = [
    "CATEGORIES",
    "KINDS",
    "Trace",
    "average_trace",
    "categories",
    "noise_std",
    "plot_trace",
    "restored_probability",
    "trace",
]
