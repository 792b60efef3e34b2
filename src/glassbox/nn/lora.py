"""LoRA: low-rank adapters beside frozen Linear layers (Hu et al. 2021).

A fine-tuning run that trains every weight of a model keeps a second copy of it in
AdamW's moments, twice over. LoRA freezes the weight W (out, in) and learns a low-rank
change to it instead, two small matrices A (r, in) and B (out, r):

    y = x Wᵀ + b + (alpha / r) · x Aᵀ Bᵀ        the same as x (W + (alpha / r) · B A)ᵀ + b

B starts at zero, so an adapted model computes exactly what the model it wraps computes,
and training moves it away from there through r · (in + out) parameters per Linear
instead of in · out. After training, `merge_lora` folds each (alpha / r) · B A into its W:
a plain model again, as fast as the original and with the same logits (up to rounding).

`add_lora` wraps the Linears of every Block's attention (the fused `qkv` and `proj`) and
MLP (`fc` and `proj`), found by name inside each Block, so any model built from Blocks
(GPT, Encoder, EncoderDecoder) can be adapted.

>>> model = GPT(ModelConfig(vocab_size=11, n_layer=2, n_embd=32))  # doctest: +SKIP
>>> add_lora(model, rank=4)  # doctest: +SKIP
[...'blocks.0.attn.qkv', 'blocks.0.attn.proj', 'blocks.0.mlp.fc', 'blocks.0.mlp.proj', ...]
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glassbox.errors import GlassboxError
from glassbox.nn.block import Block

# Linears inside a Block that can carry adapters (cross-attention's only in a decoder
# block of an encoder-decoder), and the ones add_lora adapts unless told otherwise: the
# attention and MLP projections, as in the LoRA paper's fullest setting.
LORA_TARGETS = (
    "attn.qkv",
    "attn.proj",
    "mlp.fc",
    "mlp.proj",
    "cross_attn.q",
    "cross_attn.kv",
    "cross_attn.proj",
)
DEFAULT_TARGETS = ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")


class LoRAError(GlassboxError, ValueError):
    """A rank, scale or target that adapters cannot be built with."""


class LoRALinear(nn.Module):
    """A frozen nn.Linear (`base`) plus a trainable low-rank update `lora_B @ lora_A`.

    State-dict names: `base.weight`, `base.bias` (the wrapped layer's), `lora_A` (r, in)
    and `lora_B` (out, r), in the layout of peft's `lora_A.weight` and `lora_B.weight`.

    `weight` and `bias` read like an nn.Linear's, so per-head views (W_Q, W_O, ...) and
    analyses see what the layer computes: `weight` is the effective W + (alpha / r) · B A,
    a tensor computed on each access rather than a view of a stored one.
    """

    def __init__(
        self,
        base: nn.Linear,
        rank: int,
        alpha: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check_rank(rank, alpha)
        self.base = base.requires_grad_(False)
        self.rank = rank
        self.alpha = float(alpha or rank)  # 0: alpha = rank, a scale of 1
        self.scale = self.alpha / rank
        like = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, **like))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, **like))  # (out, r)
        # A as nn.Linear initializes its weight (and as peft does); B = 0 makes the update
        # zero, so the adapted layer starts exactly equal to the base.
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5), generator=generator)

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @property
    def weight(self) -> Tensor:
        """(out, in): W + (alpha / r) · B A, the weight this layer applies."""
        return self.base.weight + self.scale * (self.lora_B @ self.lora_A)

    @property
    def bias(self) -> Tensor | None:
        return self.base.bias

    def delta(self) -> Tensor:
        """(out, in): what merging adds to the base weight, (alpha / r) · B A."""
        return self.scale * (self.lora_B @ self.lora_A)

    def forward(self, x: Tensor) -> Tensor:
        """x (..., in) -> (..., out): base(x) + (alpha / r) · x Aᵀ Bᵀ, through the rank-r
        bottleneck (never forming the full (out, in) update)."""
        update = F.linear(F.linear(x, self.lora_A), self.lora_B)  # (..., r) -> (..., out)
        return self.base(x) + self.scale * update

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}"


def check_rank(rank: int, alpha: float) -> None:
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise LoRAError(f"LoRA rank must be a positive integer; got {rank!r}")
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
        raise LoRAError(f"LoRA alpha must be a finite number >= 0 (0 means rank); got {alpha!r}")


def add_lora(
    model: nn.Module,
    rank: int,
    alpha: float = 0.0,
    targets: tuple[str, ...] = DEFAULT_TARGETS,
    generator: torch.Generator | None = None,
) -> list[str]:
    """Wrap the `targets` Linears of every Block of `model` in LoRALinear, in place, and
    freeze every other parameter of the model (as peft's get_peft_model does), so that
    only the adapters train. Returns the names of the adapted Linears.

    alpha 0 means alpha = rank (a scale of 1). A target a block lacks (an MLP in an
    attention-only model) is skipped; a name outside LORA_TARGETS is an error, as is a
    model with nothing to adapt. `generator` draws A (default: torch's global RNG).
    """
    check_rank(rank, alpha)
    unknown = [t for t in targets if t not in LORA_TARGETS]
    if unknown:
        raise LoRAError(
            f"unknown LoRA target {unknown[0]!r}; choose from {', '.join(LORA_TARGETS)}"
        )
    found = []  # (owner module, attribute, full name), all found before anything changes
    blocks = [(name, m) for name, m in model.named_modules() if isinstance(m, Block)]
    for block_name, block in blocks:
        for target in targets:
            owner_name, _, attr = target.rpartition(".")
            owner = getattr(block, owner_name, None)
            linear = getattr(owner, attr, None) if owner is not None else None
            if isinstance(linear, LoRALinear):
                raise LoRAError(f"{block_name}.{target} already has LoRA adapters")
            if isinstance(linear, nn.Linear):
                found.append((owner, attr, f"{block_name}.{target}"))
    if not found:
        raise LoRAError(f"the model has no Linear layer named {', '.join(targets)} in a Block")
    model.requires_grad_(False)
    for owner, attr, _ in found:
        setattr(owner, attr, LoRALinear(getattr(owner, attr), rank, alpha, generator))
    return [name for _, _, name in found]


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """The model's LoRALinear layers by name (empty for a model without adapters)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight, W += (alpha / r) · B A, and put the base
    nn.Linear back in the LoRALinear's place, in place; returns `model`, now a plain model
    (its state dict has the names of one never adapted). requires_grad flags are left as
    they were (the merged weights stay frozen). A model without adapters is returned as is.

    >>> add_lora(model, rank=4); train(model); merge_lora(model)  # doctest: +SKIP
    """
    for name, layer in lora_layers(model).items():
        layer.base.weight += layer.delta().to(layer.base.weight.dtype)
        parent_name, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, attr, layer.base)
    return model
