"""The parts every glassbox model is assembled from."""

from glassbox.nn.attention import CrossAttention, SelfAttention, manual_attention
from glassbox.nn.aux_losses import AuxLossSource
from glassbox.nn.block import ATTENTIONS, MLPS, Block
from glassbox.nn.kv_cache import KVCache
from glassbox.nn.mlp import MLP
from glassbox.nn.moe import MoE
from glassbox.nn.moh import MixtureOfHeads
from glassbox.nn.positional import (
    POSITION_SCHEMES,
    LearnedPositions,
    PositionContext,
    PositionScheme,
    SinusoidalPositions,
    make_positions,
)
from glassbox.nn.stack import Stack

__all__ = [
    "ATTENTIONS",
    "MLP",
    "MLPS",
    "MoE",
    "POSITION_SCHEMES",
    "AuxLossSource",
    "Block",
    "KVCache",
    "MixtureOfHeads",
    "CrossAttention",
    "SelfAttention",
    "Stack",
    "LearnedPositions",
    "PositionContext",
    "PositionScheme",
    "SinusoidalPositions",
    "make_positions",
    "manual_attention",
]
