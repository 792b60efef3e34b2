"""The parts every glassbox model is assembled from."""

from glassbox.nn.attention import CrossAttention, SelfAttention, manual_attention
from glassbox.nn.block import Block
from glassbox.nn.kv_cache import KVCache
from glassbox.nn.mlp import MLP
from glassbox.nn.positional import LearnedPositions, SinusoidalPositions, make_positions
from glassbox.nn.stack import Stack

__all__ = [
    "MLP",
    "Block",
    "KVCache",
    "CrossAttention",
    "SelfAttention",
    "Stack",
    "LearnedPositions",
    "SinusoidalPositions",
    "make_positions",
    "manual_attention",
]
