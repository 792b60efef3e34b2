"""Training: optimizer groups, the LR schedule, atomic checkpoints and the loop itself."""

from glassbox.train.optim import configure_optimizer, lr_at
from glassbox.train.trainer import TrainingDiverged, train

__all__ = ["TrainingDiverged", "configure_optimizer", "lr_at", "train"]
