"""Autoregressive sampling with temperature, top-k and nucleus (top-p) filtering.

Each step feeds the last block_size tokens to the model, keeps the logits of the final
position, filters them, and draws one token. This loop recomputes the whole context every
step: simple and obviously correct, and the reference any faster decoder is tested against.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from glassbox.errors import GlassboxError
from glassbox.models.gpt import GPT
from glassbox.tokenizers import CharTokenizer


def _check(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None):
    if max_new_tokens < 0:
        raise GlassboxError(f"max_new_tokens must be >= 0; got {max_new_tokens}")
    if temperature < 0:
        raise GlassboxError(f"temperature must be >= 0 (0 is greedy); got {temperature}")
    if top_k is not None and top_k < 1:
        raise GlassboxError(f"top_k must be >= 1; got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise GlassboxError(f"top_p must be in (0, 1]; got {top_p}")


def sample_next(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One token id per row of logits (B, V): argmax at temperature 0, else a draw from
    softmax(logits / temperature) restricted to the top_k most likely tokens and to the
    smallest set whose probability reaches top_p. Returns (B,)."""
    if temperature == 0:
        return logits.argmax(dim=-1)  # (B,)
    logits = logits.float() / temperature  # (B, V)
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the tokens ranked above it already reach top_p; the first
        # token is always kept.
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p  # (B, V)
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)  # (B, V)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)  # (B,)


@torch.no_grad()
def generate(
    model: GPT,
    idx: Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
) -> Iterator[Tensor]:
    """Yield max_new_tokens new tokens, each (B,), continuing the prompts idx (B, T).

    Prompts longer than the context window are cropped to their last block_size tokens.
    """
    _check(max_new_tokens, temperature, top_k, top_p)
    if idx.dim() != 2 or idx.size(1) == 0:
        raise GlassboxError("the prompt must hold at least one token")
    generator = None
    if seed is not None:
        generator = torch.Generator(device=idx.device).manual_seed(seed)
    block_size = model.config.block_size
    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_tokens):
            context = idx[:, -block_size:]  # (B, <=block_size)
            logits = model(context)[:, -1, :]  # (B, V): the next-token logits only
            next_id = sample_next(logits, temperature, top_k, top_p, generator)  # (B,)
            idx = torch.cat([idx, next_id[:, None]], dim=1)  # (B, T+1)
            yield next_id
    finally:
        model.train(was_training)


def generate_text(
    model: GPT,
    tokenizer: CharTokenizer,
    prompt: str,
    max_new_tokens: int,
    **sampling,
) -> Iterator[str]:
    """Stream the continuation of `prompt` as text, one token's worth at a time.

    >>> "".join(generate_text(model, tok, "ROMEO:", 50, temperature=0))  # doctest: +SKIP
    """
    device = next(model.parameters()).device
    idx = torch.tensor([tokenizer.encode(prompt)], dtype=torch.long, device=device)  # (1, T)
    for next_id in generate(model, idx, max_new_tokens, **sampling):
        yield tokenizer.decode([int(next_id[0])])
