"""The decode loop: prefill the prompt once, then one token per step from the KV cache.

With `use_cache=False` every step runs the model over the whole (cropped) context
instead: simple, obviously correct, quadratic in the length, and the reference the cached
loop is tested against (same tokens, logits within 1e-4).

Past the context window. Learned and sinusoidal positions only exist up to block_size, so
a cache cannot simply keep growing. The uncached loop slides its window by one token each
step. The cached loop, when its cache is full, keeps the last 3/4 of the window, clears
the cache and prefills those tokens again at positions 0.. (one prefill every block_size/4
tokens), so within the window both loops agree exactly and past it they differ: the
cached one sees between 3/4 and all of the window, the uncached one always all of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

from glassbox.device import autocast, resolve_dtype
from glassbox.errors import GlassboxError
from glassbox.generate.sampling import check_sampling, sample_next
from glassbox.models import evaluating
from glassbox.models.gpt import GPT


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
    key_mask: Tensor | None = None,
    use_cache: bool = True,
    stop_tokens: Iterable[int] = (),
    dtype: str = "auto",
) -> Iterator[Tensor]:
    """Yield up to max_new_tokens new tokens, each (B,), continuing the prompts idx (B, T).

    key_mask (B, T): False marks left padding, so prompts of different lengths run as one
    batch. Prompts longer than the context window are cropped to their last block_size
    tokens. The loop ends early once every row has produced one of stop_tokens. dtype
    picks the matmul precision as in training (auto: bf16 autocast on CUDA, else fp32);
    under bf16 the cache holds bf16 keys and values too, half the memory.

    >>> prompt = torch.tensor([[0, 5, 3]])
    >>> [int(t) for t in generate(model, prompt, 4, temperature=0)]  # doctest: +SKIP
    [7, 1, 1, 2]
    """
    if max_new_tokens < 0:
        raise GlassboxError(f"max_new_tokens must be >= 0; got {max_new_tokens}")
    check_sampling(temperature, top_k, top_p)
    if idx.dim() != 2 or idx.size(1) == 0:
        raise GlassboxError("the prompt must hold at least one token")
    V = model.config.vocab_size
    if int(idx.min()) < 0 or int(idx.max()) >= V:
        raise GlassboxError(
            f"prompt token ids must be in [0, {V}) for this model's vocabulary; got ids up to "
            f"{int(idx.max())} (were the prompts encoded with another run's tokenizer?)"
        )
    B, T0 = idx.shape
    if key_mask is None:
        key_mask = torch.ones(B, T0, dtype=torch.bool, device=idx.device)
    generator = None if seed is None else torch.Generator(idx.device).manual_seed(seed)
    stop = torch.tensor(sorted(set(stop_tokens)), dtype=idx.dtype, device=idx.device)
    finished = torch.zeros(B, dtype=torch.bool, device=idx.device)
    block = model.config.block_size
    # The tokens so far (prompt, then generated ones) and their real-token flags, in a
    # buffer with room for block_size more: only the last block_size are ever read, so
    # when it fills up they move to the front. Memory stays bounded by the window however
    # many tokens are asked for.
    room = min(max_new_tokens, block)
    tokens = torch.cat([idx, idx.new_zeros(B, room)], dim=1)  # (B, T0 + room)
    mask = torch.cat([key_mask, key_mask.new_ones(B, room)], dim=1)  # (B, T0 + room)
    device = idx.device.type
    bf16 = resolve_dtype(device, dtype) == "bfloat16"
    with evaluating(model):
        cache = model.new_cache(B, dtype=torch.bfloat16 if bf16 else None) if use_cache else None
        end = T0  # tokens[:, :end] are filled
        logits = _prefill(model, tokens[:, :end], mask[:, :end], cache, dtype)  # (B, V)
        for step in range(max_new_tokens):
            next_id = sample_next(logits, temperature, top_k, top_p, generator)  # (B,)
            if end == tokens.size(1):  # buffer full: keep the last block_size tokens
                tokens[:, :block] = tokens[:, end - block : end].clone()
                mask[:, :block] = mask[:, end - block : end].clone()
                end = block
            tokens[:, end] = next_id
            end += 1
            yield next_id
            if len(stop):
                finished |= torch.isin(next_id, stop)
                if bool(finished.all()):
                    return
            if step == max_new_tokens - 1:
                return
            if cache is None:  # recompute everything in the (sliding) window
                logits = _prefill(model, tokens[:, :end], mask[:, :end], None, dtype)
            elif cache.length == cache.max_len:  # window full: keep its last 3/4
                cache.reset()
                keep = block - block // 4
                logits = _prefill(model, tokens[:, end - keep : end], mask[:, end - keep : end],
                                  cache, dtype)  # fmt: skip
            else:
                with autocast(device, dtype):
                    logits = model(tokens[:, end - 1 : end], cache=cache)[:, -1]  # (B, V)


def _prefill(model: GPT, tokens: Tensor, mask: Tensor, cache, dtype: str) -> Tensor:
    """Next-token logits (B, V) after the last block_size tokens (filling the cache)."""
    block = model.config.block_size
    tokens, mask = tokens[:, -block:], mask[:, -block:]
    with autocast(tokens.device.type, dtype):
        return model(tokens, cache=cache, key_mask=mask)[:, -1]  # (B, V)
