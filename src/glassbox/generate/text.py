"""Generation in text: stream one prompt's continuation, or run a batch of prompts."""

from __future__ import annotations

import codecs
from collections.abc import Iterator

import torch

from glassbox.errors import GlassboxError
from glassbox.generate.decode import generate
from glassbox.models.gpt import GPT
from glassbox.tokenizers import Tokenizer


def _utf8_stream() -> codecs.IncrementalDecoder:
    """A decoder fed the bytes of one token at a time: a BPE token can end inside a UTF-8
    character, so it returns only whole characters and keeps the rest for the next call."""
    return codecs.getincrementaldecoder("utf-8")(errors="replace")


def generate_text(
    model: GPT,
    tokenizer: Tokenizer,
    prompt: str,
    max_new_tokens: int,
    **options,
) -> Iterator[str]:
    """Stream the continuation of `prompt` as text, one token's worth at a time.

    options go to `generate` (temperature, top_k, top_p, seed, use_cache, ...).

    >>> "".join(generate_text(model, tok, "ROMEO:", 50, temperature=0))  # doctest: +SKIP
    """
    device = next(model.parameters()).device
    idx = torch.tensor([tokenizer.encode(prompt)], dtype=torch.long, device=device)  # (1, T)
    utf8 = _utf8_stream()
    for next_id in generate(model, idx, max_new_tokens, **options):
        piece = utf8.decode(tokenizer.decode_bytes([int(next_id[0])]))
        if piece:
            yield piece
    tail = utf8.decode(b"", final=True)  # bytes of an unfinished character: U+FFFD
    if tail:
        yield tail


def generate_batch(
    model: GPT,
    tokenizer: Tokenizer,
    prompts: list[str],
    max_new_tokens: int,
    *,
    stop: list[str] | tuple[str, ...] = (),
    **options,
) -> list[str]:
    """Continue several prompts at once (left-padded into one batch); each continuation
    ends before the first of the `stop` strings it produces.

    >>> generate_batch(model, tok, ["To be", "Or"], 20, stop=["\\n"])  # doctest: +SKIP
    [' or not to be, that', ' not to be']
    """
    if not prompts:
        raise GlassboxError("generate_batch needs at least one prompt")
    if any(s == "" for s in stop):
        raise GlassboxError("a stop text must not be empty (every sample would end at once)")
    device = next(model.parameters()).device
    encoded = [tokenizer.encode(p) for p in prompts]
    width = max(len(ids) for ids in encoded)
    idx = torch.zeros(len(prompts), width, dtype=torch.long, device=device)  # (B, T)
    key_mask = torch.zeros(len(prompts), width, dtype=torch.bool, device=device)  # (B, T)
    for row, ids in enumerate(encoded):
        idx[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        key_mask[row, width - len(ids) :] = True
    texts = [""] * len(prompts)
    done = [False] * len(prompts)
    streams = [_utf8_stream() for _ in prompts]
    for next_ids in generate(model, idx, max_new_tokens, key_mask=key_mask, **options):
        for row, token in enumerate(next_ids.tolist()):
            if done[row]:
                continue
            texts[row] += streams[row].decode(tokenizer.decode_bytes([token]))
            hit = [texts[row].index(s) for s in stop if s in texts[row]]
            if hit:
                texts[row], done[row] = texts[row][: min(hit)], True
        if all(done):
            break
    for row, stream in enumerate(streams):
        if not done[row]:
            texts[row] += stream.decode(b"", final=True)
    return texts
