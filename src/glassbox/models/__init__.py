"""Models assembled from glassbox.nn parts: one class per architecture."""

from torch import nn

from glassbox.config import ModelConfig
from glassbox.models.encoder import Encoder
from glassbox.models.gpt import GPT
from glassbox.models.seq2seq import EncoderDecoder

__all__ = ["GPT", "Encoder", "EncoderDecoder", "build_model"]


def build_model(config: ModelConfig) -> nn.Module:
    """The model class that config.arch names, freshly initialized."""
    classes = {"decoder": GPT, "encoder": Encoder, "encoder-decoder": EncoderDecoder}
    return classes[config.arch](config)
