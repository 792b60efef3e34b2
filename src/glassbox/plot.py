"""The loss curves of a run, drawn from its metrics.jsonl; and how every figure is saved."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def save_figure(fig: Any, path: str | Path, *, tight: bool = True, dpi: int = 110) -> Path:
    """Write a matplotlib figure to `path` and close it (pyplot keeps every open figure
    alive until closed). `tight` applies tight_layout first; a figure made with another
    layout engine passes False."""
    import matplotlib.pyplot as plt

    if tight:
        fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_losses(metrics_path: Path, out_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in Path(metrics_path).read_text().splitlines()]
    steps = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if steps:
        ax.plot(
            [r["iter"] for r in steps],
            [r["loss"] for r in steps],
            lw=0.6,
            alpha=0.5,
            label="train (per step)",
        )
    if evals:
        for key, style in (("train_loss", "o-"), ("val_loss", "s-")):
            ax.plot(
                [r["iter"] for r in evals],
                [r[key] for r in evals],
                style,
                ms=3,
                label=key.replace("_", " ") + " (eval)",
            )
    ax.set_xlabel("iteration")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
