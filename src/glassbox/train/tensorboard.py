"""`--tensorboard`: the metrics a run logs, also written for TensorBoard.

metrics.jsonl stays the record of a run; this is a second view of the same rows, written
by torch's SummaryWriter into RUN/tensorboard. The `tensorboard` package is an optional
extra, so a run that asks for it without it ends before anything is written.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from glassbox.errors import GlassboxError

FOLDER = "tensorboard"
# metrics.jsonl's fields, and the names TensorBoard groups them under
TRAIN_SCALARS = {
    "loss": "loss/train_step",
    "lr": "optim/lr",
    "grad_norm": "optim/grad_norm",
    "tokens_per_s": "speed/tokens_per_s",
    "ms": "speed/ms_per_step",
    "expert_imbalance": "experts/imbalance",
    "expert_max_min": "experts/max_over_min",
    "dropped": "experts/dropped",
}
EVAL_SCALARS = {"train_loss": "loss/train", "val_loss": "loss/val"}


def check_installed() -> None:
    if importlib.util.find_spec("tensorboard") is None:
        raise GlassboxError(
            "--tensorboard needs the tensorboard package: pip install 'glassbox[tensorboard]' "
            "(or pip install tensorboard)"
        )


class Board:
    """A SummaryWriter on RUN/tensorboard.

    A run resumed at step `start` purges what the killed run wrote from `start` on, as
    metrics.jsonl drops those rows, and writes again the evaluation at `start`
    (`last_eval`: train and val loss), which the resumed run does not repeat.
    """

    def __init__(self, run_dir: Path, start: int, last_eval: tuple[float, float]) -> None:
        check_installed()
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(run_dir) / FOLDER
        self.writer = SummaryWriter(str(self.log_dir), purge_step=start or None)
        if start:
            train_loss, val_loss = last_eval
            self.write({"kind": "eval", "iter": start, "train_loss": train_loss,
                        "val_loss": val_loss})  # fmt: skip

    def write(self, row: dict[str, Any]) -> None:
        """One row of metrics.jsonl; each expert's share of a MoE layer's load too."""
        step = row["iter"]
        names = TRAIN_SCALARS if row["kind"] == "train" else EVAL_SCALARS
        for key, tag in names.items():
            if key in row:
                self.writer.add_scalar(tag, row[key], step)
        for layer, load in row.get("expert_load", {}).items():
            total = sum(load) or 1
            for i, n in enumerate(load):
                self.writer.add_scalar(f"experts/load/{layer}/expert{i}", n / total, step)

    def close(self) -> None:
        self.writer.close()
