"""Models assembled from glassbox.nn parts: one class per architecture."""

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from glassbox.config import ModelConfig
from glassbox.models.encoder import Encoder
from glassbox.models.gpt import GPT
from glassbox.models.seq2seq import EncoderDecoder

__all__ = ["GPT", "Encoder", "EncoderDecoder", "build_model", "evaluating"]


def build_model(config: ModelConfig) -> nn.Module:
    """The model class that config.arch names, freshly initialized."""
    classes = {"decoder": GPT, "encoder": Encoder, "encoder-decoder": EncoderDecoder}
    return classes[config.arch](config)


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Run the body with the model in eval mode (dropout off, BatchNorm on running
    statistics), then restore each module's own training flag, also on error: decoding
    or an analysis should not change the mode of the model it reads."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes.items():
            module.training = training
