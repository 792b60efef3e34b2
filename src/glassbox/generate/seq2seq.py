"""Decoding an encoder-decoder: greedy and beam search, both over a KV cache.

The source is encoded once; its keys and values for every cross-attention layer are
computed on the first decoder step and kept in the cache, and the decoder's own keys and
values grow one position per step, exactly as in GPT decoding.

Beam search keeps the `beam_size` most probable partial targets of each source. A
hypothesis that emits EOS is finished and scored by its log-probability divided by the
GNMT length penalty ((5 + length) / 6) ** alpha (Wu et al. 2016): alpha = 0 compares raw
log-probabilities, which favours short outputs; larger alpha favours longer ones. A source
is done when it holds beam_size finished hypotheses, or at max_len.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from glassbox.errors import GlassboxError
from glassbox.models import evaluating
from glassbox.models.seq2seq import EncoderDecoder


@dataclass
class Hypothesis:
    tokens: list[int]  # the target ids, without BOS and EOS
    log_prob: float  # sum of the chosen tokens' log-probabilities, EOS included
    score: float  # log_prob / length penalty: what beams are ranked by


def length_penalty(length: int, alpha: float) -> float:
    return ((5 + length) / 6) ** alpha


def _start(model: EncoderDecoder, src: Tensor, src_mask: Tensor | None, max_len: int) -> int:
    """Check the inputs; returns the longest target the model can decode."""
    if src.dim() != 2 or src.size(1) == 0:
        raise GlassboxError("the source must be a (batch, length) tensor of at least one token")
    config = model.config
    if config.position_table and src.size(1) > config.block_size:
        raise GlassboxError(
            f"source of {src.size(1)} tokens is longer than block_size {config.block_size}"
        )
    if max_len < 1:
        raise GlassboxError(f"max_len must be >= 1; got {max_len}")
    V = config.vocab_size
    if int(src.min()) < 0 or int(src.max()) >= V:
        raise GlassboxError(f"source ids must be in [0, {V}); got up to {int(src.max())}")
    # the decoder's input holds BOS and all but the last token: max_len positions
    return min(max_len, config.block_size) if config.position_table else max_len


@torch.no_grad()
def greedy_decode(
    model: EncoderDecoder,
    src: Tensor,
    *,
    bos: int,
    eos: int,
    max_len: int,
    src_mask: Tensor | None = None,
) -> list[list[int]]:
    """The most probable next token at every step, for each source row of src (B, S);
    returns each row's target ids without BOS and EOS: up to max_len tokens (a row that
    never emits EOS is cut at max_len)."""
    max_len = _start(model, src, src_mask, max_len)
    with evaluating(model):
        return _greedy(model, src, src_mask, bos, eos, max_len)


def _greedy(model, src, src_mask, bos: int, eos: int, max_len: int) -> list[list[int]]:
    B = src.size(0)
    memory = model.encode(src, src_mask)  # (B, S, C)
    cache = model.new_cache(B, max_len)
    token = torch.full((B, 1), bos, dtype=torch.long, device=src.device)  # (B, 1)
    out = torch.full((B, max_len), eos, dtype=torch.long, device=src.device)  # (B, max_len)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    for step in range(max_len):
        logits = model.decode(token, memory, src_mask, cache)[:, -1]  # (B, V)
        token = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
        out[:, step] = token[:, 0].masked_fill(done, eos)
        done |= token[:, 0] == eos
        if bool(done.all()):
            break
    return [_until(row.tolist(), eos) for row in out]


def _until(ids: list[int], eos: int) -> list[int]:
    return ids[: ids.index(eos)] if eos in ids else ids


@torch.no_grad()
def beam_search(
    model: EncoderDecoder,
    src: Tensor,
    *,
    bos: int,
    eos: int,
    max_len: int,
    beam_size: int = 4,
    alpha: float = 0.6,
    src_mask: Tensor | None = None,
) -> list[list[Hypothesis]]:
    """For each source row of src (B, S), up to beam_size finished hypotheses, best
    first. A hypothesis still running at max_len steps is finished there, without EOS."""
    if beam_size < 1:
        raise GlassboxError(f"beam size must be >= 1; got {beam_size}")
    max_len = _start(model, src, src_mask, max_len)
    with evaluating(model):
        return _beam(model, src, src_mask, bos, eos, max_len, beam_size, alpha)


def _beam(model, src, src_mask, bos, eos, max_len, beam_size, alpha) -> list[list[Hypothesis]]:
    B, K = src.size(0), beam_size
    memory = model.encode(src, src_mask).repeat_interleave(K, dim=0)  # (B*K, S, C)
    mask = src_mask.repeat_interleave(K, dim=0) if src_mask is not None else None
    cache = model.new_cache(B * K, max_len)
    # Every beam starts as BOS; only beam 0 may expand at first, or K copies of the same
    # hypothesis would fill the beam.
    scores = torch.full((B, K), float("-inf"), device=src.device)  # (B, K) log-probs
    scores[:, 0] = 0.0
    tokens = torch.full((B * K, 1), bos, dtype=torch.long, device=src.device)  # (B*K, t)
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    done = [False] * B
    for step in range(max_len):
        logits = model.decode(tokens[:, -1:], memory, mask, cache)[:, -1]  # (B*K, V)
        log_probs = logits.float().log_softmax(dim=-1)  # (B*K, V)
        V = log_probs.size(-1)
        candidates = (scores.view(B * K, 1) + log_probs).view(B, K * V)  # (B, K*V)
        top_scores, top_index = candidates.topk(2 * K, dim=1)  # (B, 2K): enough to refill
        rows, next_tokens = [], []
        new_scores = torch.full((B, K), float("-inf"), device=src.device)
        for b in range(B):
            kept = 0
            for rank, (score, index) in enumerate(
                zip(top_scores[b].tolist(), top_index[b].tolist(), strict=True)
            ):
                if done[b] or score == float("-inf") or kept == K:
                    break
                beam, token = divmod(index, V)
                prefix = tokens[b * K + beam, 1:].tolist()
                if token == eos or step == max_len - 1:
                    if rank < K:  # only an ending that would have been kept in the beam
                        body = prefix if token == eos else prefix + [token]
                        length = len(body) + (token == eos)
                        _keep_best(
                            finished[b],
                            Hypothesis(body, score, score / length_penalty(length, alpha)),
                            K,
                        )
                    continue
                rows.append(b * K + beam)
                next_tokens.append(token)
                new_scores[b, kept] = score
                kept += 1
            for _ in range(kept, K):  # a dead slot keeps the batch's shape and never wins
                rows.append(b * K)
                next_tokens.append(eos)
            # Done when K hypotheses are finished and the best running one, scored at its
            # present length, is worse than all of them (the usual stopping heuristic).
            best_alive = new_scores[b, 0].item() / length_penalty(step + 1, alpha)
            if kept == 0 or (len(finished[b]) == K and finished[b][-1].score >= best_alive):
                done[b] = True
        if all(done) or step == max_len - 1:
            break
        index = torch.tensor(rows, device=src.device)  # (B*K,) the row each beam continues
        cache.reorder(index)
        tokens = torch.cat(
            [tokens[index], torch.tensor(next_tokens, device=src.device)[:, None]], 1
        )
        scores = new_scores
    return finished


def _keep_best(hyps: list[Hypothesis], new: Hypothesis, k: int) -> None:
    """Insert `new` into hyps (sorted best first), keeping at most k."""
    hyps.append(new)
    hyps.sort(key=lambda h: h.score, reverse=True)
    del hyps[k:]


def translate(
    model: EncoderDecoder,
    tokenizer,
    sources: list[str],
    *,
    bos: int,
    eos: int,
    pad: int,
    max_len: int,
    beam_size: int = 1,
    alpha: float = 0.6,
) -> list[str]:
    """Decode each source text: greedy for beam_size 1, else the best beam (beam_search
    refuses a size below 1)."""
    if not sources:
        return []
    rows = [tokenizer.encode(text) for text in sources]
    if min(len(r) for r in rows) == 0:
        raise GlassboxError("a source must hold at least one token")
    device = model.tok_emb.weight.device
    src = torch.full((len(rows), max(len(r) for r in rows)), pad, dtype=torch.long)  # (B, S)
    for i, r in enumerate(rows):
        src[i, : len(r)] = torch.tensor(r)
    src = src.to(device)
    options = dict(bos=bos, eos=eos, max_len=max_len, src_mask=src != pad)
    if beam_size == 1:
        outputs = greedy_decode(model, src, **options)
    else:
        outputs = [
            hyps[0].tokens
            for hyps in beam_search(model, src, beam_size=beam_size, alpha=alpha, **options)
        ]
    return [tokenizer.decode(ids) for ids in outputs]


def solve(
    model: EncoderDecoder, task, source: str, *, beam_size: int = 1, alpha: float = 0.6
) -> str:
    """An encoder-decoder task run's answer for one source text (glassbox.data.tasks):
    the task's tokenizer and special ids, and its longest target as the length limit."""
    from glassbox.data.tasks import BOS, EOS, PAD

    source = source.strip()
    if len(task.tokenizer.encode(source)) > task.max_source_len and model.config.position_table:
        raise GlassboxError(
            f"source of {len(source)} symbols is longer than the {task.max_source_len} "
            f"this {task.name} model was trained on"
        )
    [output] = translate(
        model, task.tokenizer, [source], bos=BOS, eos=EOS, pad=PAD,
        max_len=task.max_target_len, beam_size=beam_size, alpha=alpha,
    )  # fmt: skip
    return output
