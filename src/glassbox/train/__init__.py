"""Training: the objectives, optimizer groups, the LR schedule and the loop itself.

`from glassbox.train import train` loads the loop on first use, so code that needs only
an objective's loss (glassbox.evaluate) does not import the trainer.
"""

from typing import Any

__all__ = ["TrainingDiverged", "configure_optimizer", "lr_at", "resume", "set_lr", "train"]


def __getattr__(name: str) -> Any:
    if name in ("configure_optimizer", "lr_at", "set_lr"):
        from glassbox.train import optim

        return getattr(optim, name)
    if name in ("TrainingDiverged", "resume", "train"):
        from glassbox.train import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'glassbox.train' has no attribute {name!r}")
