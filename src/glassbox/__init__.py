"""glassbox: a transformer you can see through.

>>> from glassbox import GPT, ModelConfig
>>> GPT(ModelConfig(vocab_size=65)).num_params()
804096
"""

from glassbox.config import ModelConfig, TrainConfig, from_preset
from glassbox.models import GPT

__version__ = "0.1.0"
__all__ = ["GPT", "ModelConfig", "TrainConfig", "from_preset"]
