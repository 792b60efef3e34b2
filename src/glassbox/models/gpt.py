"""A decoder-only GPT, readable top to bottom.

tokens -> token embedding + positions -> n_layer pre-norm blocks -> final LayerNorm ->
logits through the transposed token embedding (weight tying, as in GPT-2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glassbox.config import ModelConfig
from glassbox.errors import GlassboxError
from glassbox.nn import Block, make_positions


class GPT(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = make_positions(config)
        self.drop = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 initialization: N(0, 0.02) everywhere, zero biases, unit norm gains, and
        the two projections that write into the residual stream scaled by 1/√(2·n_layer),
        because each block adds two such terms and the stream's variance would otherwise
        grow with depth."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        resid_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, mean=0.0, std=resid_std)
            nn.init.normal_(block.mlp.proj.weight, mean=0.0, std=resid_std)

    def forward(self, idx: Tensor) -> Tensor:
        """Logits (B, T, V) for the next token at every position of idx (B, T)."""
        B, T = idx.shape
        if self.config.block_size < T:
            raise GlassboxError(
                f"sequence of {T} tokens is longer than block_size {self.config.block_size}"
            )
        positions = torch.arange(T, device=idx.device)  # (T,)
        x = self.tok_emb(idx) + self.pos_emb(positions)  # (B, T, C) resid_pre of block 0
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)  # (B, T, C)
        x = self.ln_f(x)  # (B, T, C)
        return F.linear(x, self.tok_emb.weight)  # (B, T, V): the embedding, transposed (tied)

    def num_params(self, include_positions: bool = True) -> int:
        """Parameters of the model; the tied embedding/unembedding matrix counts once."""
        total = sum(p.numel() for p in self.parameters())  # parameters() yields each once
        if not include_positions:
            total -= sum(p.numel() for p in self.pos_emb.parameters())
        return total


def lm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of next-token logits (B, T, V) against targets (B, T)."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
