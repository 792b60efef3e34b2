"""Head detectors: how much of each head's attention follows a known pattern.

Each score is the attention mass a head puts on the positions a pattern names, averaged
over the query positions where the pattern names any (so 1.0 means the head does exactly
that, always). The patterns, for a query at position t holding token x_t:

- previous token: position t - 1;
- duplicate token: earlier positions s < t with x_s = x_t;
- induction: positions s + 1 <= t - 1 right after an earlier occurrence (x_s = x_t), i.e.
  the token that followed the current one last time (Olsson et al. 2022).

On a random block repeated twice, the duplicate of a second-half token is its copy in the
first half and the induction target the token after that copy, so an induction head
scores close to 1 there and a random-attention head close to 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from glassbox.errors import GlassboxError

DETECTORS = ("previous_token", "duplicate_token", "induction")


def detector_targets(tokens: Tensor, kind: str) -> Tensor:
    """(B, T, T) boolean: query t -> key s is one of the pattern's targets."""
    B, T = tokens.shape
    query = torch.arange(T)[:, None]  # (T, 1)
    key = torch.arange(T)[None, :]  # (1, T)
    if kind == "previous_token":
        return (key == query - 1).expand(B, T, T)
    same = tokens[:, :, None] == tokens[:, None, :]  # (B, T, T): x_t == x_s
    earlier = (key < query)[None]  # (1, T, T)
    if kind == "duplicate_token":
        return same & earlier
    if kind == "induction":
        # key s+1 is a target when x_s == x_t and s + 1 < t: shift `same` right by one key
        shifted = torch.zeros_like(same)
        shifted[:, :, 1:] = same[:, :, :-1]
        return shifted & earlier & (key < query)[None]
    raise GlassboxError(f"detector must be one of {', '.join(DETECTORS)}; got {kind!r}")


def pattern_score(patterns: Tensor, targets: Tensor) -> Tensor:
    """Mean attention mass on the targets: patterns (B, H, T, T), targets (B, T, T) ->
    (H,), averaged over queries that have at least one target."""
    mass = (patterns * targets[:, None].to(patterns.dtype)).sum(dim=-1)  # (B, H, T)
    has_target = targets.any(dim=-1)  # (B, T)
    if not bool(has_target.any()):
        return torch.full((patterns.size(1),), float("nan"))
    return mass.permute(1, 0, 2)[:, has_target].mean(dim=-1)  # (H,)


@torch.no_grad()
def head_scores(model, tokens: Tensor) -> dict[str, Tensor]:
    """Each detector's score for every head of a decoder: {name: (n_layer, n_head)}."""
    if model.config.arch != "decoder":
        raise GlassboxError("head detectors read causal self-attention: they need a decoder")
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.config.n_layer)]
    _, cache = model.run_with_cache(tokens, names_filter=names)
    tokens = tokens.cpu()
    scores = {}
    for kind in DETECTORS:
        targets = detector_targets(tokens, kind)
        scores[kind] = torch.stack([pattern_score(cache[n].cpu(), targets) for n in names])
    return scores


def repeated_random_tokens(
    vocab_size: int, length: int, batch_size: int = 16, seed: int = 0, first_id: int = 0
) -> Tensor:
    """(B, 2 * length) ids: a random block of distinct ids from [first_id, vocab_size),
    then the same block again. The standard probe for induction heads."""
    n = vocab_size - first_id
    if n < 2 or length < 2:
        raise GlassboxError("a repeated-token probe needs a vocabulary and a length of 2 or more")
    generator = torch.Generator().manual_seed(seed)
    if n >= length:
        block = torch.rand(batch_size, n, generator=generator).argsort(dim=1)[:, :length]
    else:
        block = torch.randint(n, (batch_size, length), generator=generator)
    block = block + first_id
    return torch.cat([block, block], dim=1)
