"""The toy model of superposition (Elhage et al. 2022, "Toy Models of Superposition").

Why a toy: a transformer's neurons and residual directions often respond to many
unrelated things at once. The toy shows one reason, in a model small enough to read by
eye. It has to squeeze n features into m < n dimensions and unpack them again:

    h  = W x                 W (m, n): feature i is written along column W_i
    x' = ReLU(Wᵀ h + b)      (the linear variant drops the ReLU)
    loss = Σ_i I_i (x_i − x'_i)²

Each feature is 0 with probability S (the sparsity) and uniform on [0, 1] otherwise, and
I_i is its importance. A linear model can only keep m features: it learns the top m and
drops the rest, like PCA. With the ReLU and sparse features, a model can store more
features than dimensions, in nearly opposite or evenly spread directions (5 features in
2 dimensions form a pentagon), because two rarely-active features seldom interfere and
the ReLU cuts off the small negative interference that is left. Superposition is that
trade: a little interference for many more features.

Many models ("instances", dimension I) train at once as one batched model, each with its
own sparsity and importance, so a sweep over sparsities is one short run on a CPU.
Readouts take W (I, m, n): feature norms ||W_i||, WᵀW, the superposition of each feature
Σ_{j≠i} (Ŵ_i · W_j)² (0 for a feature with a direction of its own), the number of
represented features (norm > 0.5), and for 2 features in 1 dimension a phase diagram.

Where this departs from the paper: all instances of a step see the same random draws
(each thresholded at its own sparsity), so instances that differ only in their start are
compared on equal data; and Adam runs at 3e-2 (the paper: 1e-3), decaying to zero with a
cosine, so that a few thousand steps settle the weights on a CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from glassbox.errors import GlassboxError
from glassbox.plot import save_figure

REPRESENTED = 0.5  # a feature with ||W_i|| above this counts as represented
PHASES = ("not represented", "dedicated dimension", "superposition")


class ToyModel(nn.Module):
    """I independent toy models, batched: W (I, m, n) and b (I, n).

    >>> model = ToyModel(n_instances=3, n_features=5, n_hidden=2)
    >>> model(torch.rand(3, 7, 5)).shape
    torch.Size([3, 7, 5])
    """

    def __init__(
        self,
        n_instances: int,
        n_features: int,
        n_hidden: int,
        *,
        relu: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        # Xavier-normal per instance: std √(2 / (fan_in + fan_out)), as in the paper
        std = math.sqrt(2 / (n_features + n_hidden))
        self.W = nn.Parameter(
            torch.randn(n_instances, n_hidden, n_features, generator=generator) * std
        )  # (I, m, n)
        self.b = nn.Parameter(torch.zeros(n_instances, n_features))  # (I, n)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        """x (I, B, n) -> x' (I, B, n)."""
        h = x @ self.W.mT  # (I, B, n) @ (I, n, m) -> (I, B, m)
        out = h @ self.W + self.b[:, None]  # (I, B, m) @ (I, m, n) -> (I, B, n)
        return torch.relu(out) if self.relu else out


def sample_features(
    sparsity: Tensor, batch_size: int, n_features: int, generator: torch.Generator
) -> Tensor:
    """(I, B, n) features: each 0 with probability sparsity[i], else uniform on [0, 1].

    One draw of (B, n) values and (B, n) coins is shared by all instances, each keeping
    the values whose coin clears its own sparsity."""
    values = torch.rand(batch_size, n_features, generator=generator)  # (B, n)
    coins = torch.rand(batch_size, n_features, generator=generator)  # (B, n)
    keep = coins[None] >= sparsity[:, None, None]  # (I, B, n)
    return values[None] * keep


def importance_weights(importance: float | Tensor, n_instances: int, n_features: int) -> Tensor:
    """(I, n) importances: a number r gives r**i for feature i, the same for every
    instance; a tensor (n,) is shared by all instances; a tensor (I, n) is used as is."""
    if isinstance(importance, (int, float)):
        if importance <= 0:
            raise GlassboxError(f"importance must be positive; got {importance}")
        weights = torch.tensor(float(importance)) ** torch.arange(n_features)  # (n,)
    else:
        weights = torch.as_tensor(importance, dtype=torch.float32)
    if weights.shape not in ((n_features,), (n_instances, n_features)):
        raise GlassboxError(
            f"importance must be a number, ({n_features},) or ({n_instances}, {n_features}); "
            f"got shape {tuple(weights.shape)}"
        )
    if bool((weights <= 0).any()):
        raise GlassboxError("every importance must be positive")
    return weights.expand(n_instances, n_features).clone()


@dataclass
class ToyResult:
    """Trained instances: W (I, m, n), b (I, n), sparsity (I,), importance (I, n), and
    each instance's final loss (I,), measured on one fixed batch shared by all."""

    W: Tensor
    b: Tensor
    sparsity: Tensor
    importance: Tensor
    loss: Tensor
    relu: bool


def train_toy(
    sparsity: Sequence[float],
    importance: float | Tensor = 1.0,
    *,
    n_features: int = 5,
    n_hidden: int = 2,
    relu: bool = True,
    steps: int = 2000,
    batch_size: int = 1024,
    lr: float = 3e-2,
    restarts: int = 1,
    seed: int = 0,
    init: Tensor | None = None,
) -> ToyResult:
    """Train one toy model per entry of `sparsity`, all at once, with Adam.

    importance: a number r (feature i gets r**i), a tensor (n,) or one row per sparsity
    (I, n). The learning rate decays from lr to 0 with a cosine over `steps`. With
    restarts > 1, each sparsity trains that many models from different starting points
    and keeps the one with the lowest final loss: at middling sparsities a single run
    can settle in a local minimum (one that drops an important feature, say). init, if
    given, is the starting W (I·restarts, m, n), restarts of one sparsity side by side.
    Same arguments, same weights: the initialization and the data come from generators
    seeded by `seed`.

    >>> result = train_toy([0.0, 0.9], importance=0.9)
    >>> n_represented(result.W)  # dense: the 2 most important of 5; sparse: more
    tensor([2, 4])
    """
    if n_features < 2:
        raise GlassboxError(f"the toy needs at least 2 features; got {n_features}")
    if not 1 <= n_hidden < n_features:
        raise GlassboxError(
            f"the hidden layer needs 1 to {n_features - 1} dimensions, fewer than the "
            f"{n_features} features; got {n_hidden}"
        )
    if not sparsity:
        raise GlassboxError("give at least one sparsity")
    if any(not 0 <= s < 1 for s in sparsity):
        raise GlassboxError(f"each sparsity must be in [0, 1); got {list(sparsity)}")
    if steps <= 0 or batch_size <= 0 or restarts <= 0:
        raise GlassboxError(
            f"steps, batch size and restarts must be positive; got {steps}, {batch_size}, "
            f"{restarts}"
        )
    if lr <= 0:
        raise GlassboxError(f"the learning rate must be positive; got {lr}")
    I, K = len(sparsity), restarts
    sparsities = torch.tensor(sparsity, dtype=torch.float32)  # (I,)
    weights = importance_weights(importance, I, n_features)  # (I, n)
    generator = torch.Generator().manual_seed(seed)
    data = torch.Generator().manual_seed(seed + 1)
    model = ToyModel(I * K, n_features, n_hidden, relu=relu, generator=generator)
    if init is not None:
        if init.shape != model.W.shape:
            raise GlassboxError(
                f"init must have shape {tuple(model.W.shape)} (I·restarts, m, n); got "
                f"{tuple(init.shape)}"
            )
        with torch.no_grad():
            model.W.copy_(init)
    every_sparsity = sparsities.repeat_interleave(K)  # (I·K,)
    every_weight = weights.repeat_interleave(K, dim=0)  # (I·K, n)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    for _ in range(steps):
        x = sample_features(every_sparsity, batch_size, n_features, data)  # (I·K, B, n)
        loss = toy_loss(model(x), x, every_weight).sum()  # instances are independent: sum
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        x = sample_features(every_sparsity, 16 * batch_size, n_features, data)  # (I·K, 16B, n)
        final = toy_loss(model(x), x, every_weight).view(I, K)  # one shared batch for all
    best = final.argmin(dim=1) + K * torch.arange(I)  # (I,): the kept instance of each
    return ToyResult(
        model.W.detach()[best], model.b.detach()[best], sparsities, weights,
        final.min(dim=1).values, relu,
    )  # fmt: skip


def toy_loss(out: Tensor, x: Tensor, importance: Tensor) -> Tensor:
    """(I,) importance-weighted squared error, averaged over the batch and the features:
    out, x (I, B, n), importance (I, n)."""
    return (importance[:, None] * (x - out) ** 2).mean(dim=(1, 2))


# ---- readouts --------------------------------------------------------------------------


def feature_norms(W: Tensor) -> Tensor:
    """(I, n): ||W_i||, the length of each feature's column; about 1 for a feature the
    model reconstructs, about 0 for one it ignores."""
    return W.norm(dim=-2)


def gram(W: Tensor) -> Tensor:
    """(I, n, n): WᵀW. The diagonal holds the squared norms; an off-diagonal entry is
    how much feature j leaks into feature i's output."""
    return W.mT @ W


def superposition(W: Tensor) -> Tensor:
    """(I, n): Σ_{j≠i} (Ŵ_i · W_j)², how much the other features overlap feature i's
    direction: 0 when feature i has a dimension of its own, 1 for each half of an
    antipodal pair of unit columns, about 1.8 in a pentagon of norms 1.1. Only read it
    for represented features: the direction of a near-zero column is noise."""
    unit = W / W.norm(dim=-2, keepdim=True).clamp(min=1e-6)  # (I, m, n)
    overlap = (unit.mT @ W) ** 2  # (I, n, n): (Ŵ_i · W_j)²
    return overlap.sum(dim=-1) - overlap.diagonal(dim1=-2, dim2=-1)


def n_represented(W: Tensor, threshold: float = REPRESENTED) -> Tensor:
    """(I,): how many features have ||W_i|| > threshold."""
    return (feature_norms(W) > threshold).sum(dim=-1)


# ---- two features in one dimension ------------------------------------------------------


@dataclass
class PhaseDiagram:
    """What happens to feature 2 when 2 features share 1 dimension, per (sparsity,
    relative importance r of feature 2; feature 1 has importance 1). phase (S, R) indexes
    PHASES; norms (S, R, 2) are ||W_1|| and ||W_2||; cosine (S, R) is the cosine between
    W_1 and W_2 where both are represented (−1: stored antipodally) and 0 elsewhere."""

    sparsity: list[float]
    relative_importance: list[float]
    phase: Tensor
    norms: Tensor
    cosine: Tensor


def phase_diagram(
    sparsity: Sequence[float],
    relative_importance: Sequence[float],
    *,
    relu: bool = True,
    restarts: int = 4,
    steps: int = 2000,
    batch_size: int = 256,
    seed: int = 0,
) -> PhaseDiagram:
    """Train 2-features-in-1-dimension models on a grid and name each cell's phase:
    feature 2 is "not represented" (feature 1 keeps the dimension), gets a "dedicated
    dimension" (feature 1 is dropped instead), or both share it in "superposition".

    Each cell trains `restarts` models and keeps the one with the lowest loss. In one
    dimension W_1 and W_2 are numbers, and training rarely flips the sign of one against
    the other; starting both with one sign tends to end in a worse minimum where W_2 is a
    small copy of W_1. So half the restarts start with opposite signs and half with the
    same sign, and the loss chooses.

    >>> diagram = phase_diagram([0.0, 0.95], [0.5, 2.0])
    >>> [[PHASES[p] for p in row] for row in diagram.phase.tolist()]
    [['not represented', 'dedicated dimension'], ['superposition', 'superposition']]
    """
    if not relative_importance or any(r <= 0 for r in relative_importance):
        raise GlassboxError("give one or more relative importances, each positive")
    if restarts < 1:
        raise GlassboxError(f"restarts must be at least 1; got {restarts}")
    S, R = len(sparsity), len(relative_importance)
    cells = [(s, r) for s in sparsity for r in relative_importance]  # S·R of them
    importance = torch.tensor([[1.0, r] for _, r in cells])  # (S·R, 2)
    generator = torch.Generator().manual_seed(seed)
    init = torch.randn(S * R * restarts, 1, 2, generator=generator).abs()  # (S·R·K, 1, 2)
    init[0::2, :, 1] *= -1  # even restarts: W_1 and W_2 of opposite signs
    result = train_toy(
        [s for s, _ in cells], importance, n_features=2, n_hidden=1, relu=relu, steps=steps,
        batch_size=batch_size, restarts=restarts, seed=seed, init=init,
    )  # fmt: skip
    W = result.W.view(S, R, 2)  # m = 1: W_1 and W_2 are numbers
    on = W.abs() > REPRESENTED  # (S, R, 2)
    phase = torch.where(on.all(dim=-1), 2, torch.where(on[..., 1], 1, 0))  # (S, R)
    cosine = torch.where(on.all(dim=-1), torch.sign(W[..., 0] * W[..., 1]), 0.0)  # (S, R)
    return PhaseDiagram(list(sparsity), list(relative_importance), phase, W.abs(), cosine)


# ---- reports and figures ----------------------------------------------------------------


def toy_report(result: ToyResult) -> dict:
    """One JSON-ready dict: per instance its sparsity, loss, norms, superposition, the
    number of represented features and W."""
    norms, overlap = feature_norms(result.W), superposition(result.W)
    return {
        "relu": result.relu,
        "n_features": result.W.size(-1),
        "n_hidden": result.W.size(-2),
        "instances": [
            {
                "sparsity": round(result.sparsity[i].item(), 6),
                "importance": result.importance[i].tolist(),
                "loss": result.loss[i].item(),
                "represented": int(n_represented(result.W[i : i + 1]).item()),
                "norms": norms[i].tolist(),
                "superposition": overlap[i].tolist(),
                "W": result.W[i].tolist(),
            }
            for i in range(result.W.size(0))
        ],
    }


def phase_report(diagram: PhaseDiagram) -> dict:
    """The phase diagram as a JSON-ready dict, phases by name."""
    return {
        "sparsity": diagram.sparsity,
        "relative_importance": diagram.relative_importance,
        "phase": [[PHASES[p] for p in row] for row in diagram.phase.tolist()],
        "norms": diagram.norms.tolist(),
        "cosine": diagram.cosine.tolist(),
    }


def describe_toy(report: dict) -> str:
    """The table `glassbox superposition` prints: one row per instance."""
    n, rows = report["n_features"], report["instances"]
    kind = "ReLU" if report["relu"] else "linear"
    same = all(row["importance"] == rows[0]["importance"] for row in rows)
    importance = (
        " ".join(f"{w:.3g}" for w in rows[0]["importance"]) if same else "per instance (JSON)"
    )
    lines = [
        f"{kind} toy model: {n} features in {report['n_hidden']} dimensions, "
        f"importance {importance}",
        f"{'sparsity':>8}  {'loss':>9}  {'represented':>11}  norms ||W_i|| (feature 0 first)",
    ]
    for row in rows:
        norms = " ".join(f"{v:4.2f}" for v in row["norms"])
        lines.append(
            f"{row['sparsity']:8.3f}  {row['loss']:9.2e}  {row['represented']:>7}/{n:<3}  {norms}"
        )
    return "\n".join(lines)


def describe_phase(report: dict) -> str:
    """The phase diagram as text: a row per sparsity, a letter per relative importance
    (. not represented, D dedicated dimension, S superposition)."""
    letters = ".DS"
    head = " ".join(f"{r:>5.3g}" for r in report["relative_importance"])
    lines = [
        "2 features in 1 dimension: what happens to feature 2 "
        "(. not represented, D dedicated dimension, S superposition)",
        f"{'sparsity':>8}  relative importance: {head}",
    ]
    for s, row in zip(report["sparsity"], report["phase"], strict=True):
        cells = " ".join(f"{letters[PHASES.index(p)]:>5}" for p in row)
        lines.append(f"{s:8.3f}  {'':>20} {cells}")
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _titles(result: ToyResult) -> list[str]:
    counts = n_represented(result.W).tolist()
    n = result.W.size(-1)
    return [f"S = {s:.3g}: {k}/{n}" for s, k in zip(result.sparsity.tolist(), counts, strict=True)]


def plot_columns(result: ToyResult, path: Path) -> Path:
    """For m = 2: each feature's column W_i as an arrow in the hidden plane, one panel per
    instance, coloured by feature (darkest: feature 0, the most important by default).
    The dotted circle has radius 1."""
    if result.W.size(-2) != 2:
        raise GlassboxError(f"arrows need a 2-dimensional hidden layer; got {result.W.size(-2)}")
    plt = _pyplot()
    I, _, n = result.W.shape
    fig, axes = plt.subplots(
        1, I, figsize=(2.4 * I + 1.2, 2.6), squeeze=False, layout="constrained"
    )
    colours = plt.get_cmap("viridis")(torch.linspace(0, 0.9, n).tolist())
    circle = torch.linspace(0, 2 * math.pi, 100)  # (100,)
    for ax, W, title in zip(axes[0], result.W, _titles(result), strict=True):
        ax.plot(circle.cos(), circle.sin(), ":", color="0.7", lw=0.8)
        for i in range(n):
            x, y = W[:, i].tolist()
            ax.annotate("", (x, y), (0, 0), arrowprops=dict(arrowstyle="->", color=colours[i]))
            ax.plot([x], [y], "o", ms=3, color=colours[i], label=f"feature {i}")
        ax.set(xlim=(-1.4, 1.4), ylim=(-1.4, 1.4), aspect="equal", xticks=[], yticks=[])
        ax.set_title(title, fontsize=9)
    if n <= 10:
        fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside right", fontsize=8)
    return save_figure(fig, path, tight=False)


def plot_gram(result: ToyResult, path: Path) -> Path:
    """WᵀW of each instance as a heatmap (red positive, blue negative)."""
    plt = _pyplot()
    I = result.W.size(0)
    fig, axes = plt.subplots(
        1, I, figsize=(2.4 * I + 1.2, 2.6), squeeze=False, layout="constrained"
    )
    for ax, G, title in zip(axes[0], gram(result.W), _titles(result), strict=True):
        image = ax.imshow(G.numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set(xticks=[], yticks=[])
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="WᵀW")
    return save_figure(fig, path, tight=False)


def plot_norms(result: ToyResult, path: Path) -> Path:
    """||W_i|| as bars, one panel per instance, each bar coloured by its feature's
    superposition (dark: a direction of its own; bright: shared, 1 or more)."""
    plt = _pyplot()
    I, _, n = result.W.shape
    cmap = plt.get_cmap("plasma")
    fig, axes = plt.subplots(
        1, I, figsize=(2.4 * I + 1.2, 1.2 + 0.25 * n), squeeze=False, sharey=True,
        layout="constrained",
    )  # fmt: skip
    for ax, norms, overlap, title in zip(
        axes[0], feature_norms(result.W), superposition(result.W), _titles(result), strict=True
    ):
        ax.barh(range(n), norms.tolist(), color=cmap(overlap.clamp(max=1).tolist()))
        ax.set(xlim=(0, 1.5), xlabel="||W_i||")
        ax.set_title(title, fontsize=9)
    axes[0, 0].set(ylabel="feature", yticks=range(n) if n <= 20 else [])
    axes[0, 0].invert_yaxis()  # feature 0, the most important by default, on top
    scale = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    fig.colorbar(scale, ax=axes[0].tolist(), shrink=0.8, label="superposition")
    return save_figure(fig, path, tight=False)


def plot_phase(diagram: PhaseDiagram, path: Path) -> Path:
    """The phase of each cell: relative importance of feature 2 across, feature density
    1 − S down (dense at the top)."""
    plt = _pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    colours = ["#d9d9d9", "#4c72b0", "#dd8452"]  # one per PHASES entry
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    ax.imshow(diagram.phase.numpy(), cmap=ListedColormap(colours), vmin=0, vmax=2)
    R, S = diagram.relative_importance, diagram.sparsity
    ax.set_xticks(range(len(R)), [f"{r:.2g}" for r in R])
    ax.set_yticks(range(len(S)), [f"{1 - s:.2g}" for s in S])
    ax.set_xlabel("relative importance of feature 2")
    ax.set_ylabel("feature density 1 − S")
    ax.set_title("2 features in 1 dimension: feature 2 is ...", fontsize=10)
    handles = [Patch(color=c, label=p) for c, p in zip(colours, PHASES, strict=True)]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    return save_figure(fig, path, tight=False)
