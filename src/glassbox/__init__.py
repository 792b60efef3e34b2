"""glassbox: a transformer you can see through.

>>> from glassbox import GPT, ModelConfig
>>> GPT(ModelConfig(vocab_size=65)).num_params()
804096

The configs import without torch; the models (and so torch) load on first use, which
keeps `glassbox --help` and the other command-line start-ups quick.
"""

from typing import Any

from glassbox.config import ModelConfig, TrainConfig, from_preset

__version__ = "0.1.0"
__all__ = ["GPT", "ModelConfig", "TrainConfig", "from_preset", "from_pretrained"]


def __getattr__(name: str) -> Any:
    if name == "GPT":
        from glassbox.models import GPT

        return GPT
    if name == "from_pretrained":  # a Hugging Face GPT-2 folder or cached name
        from glassbox.pretrained import from_pretrained

        return from_pretrained
    raise AttributeError(f"module 'glassbox' has no attribute {name!r}")
