"""Greedy decoding, beam search and translate() for the encoder-decoder.

The models are random (weights redrawn larger than GPT-2's init, so that different
sources and prefixes get clearly different next-token distributions); what is tested is
the search itself: against greedy decoding, against brute-force enumeration of every
possible output, against teacher-forced log-probabilities, and across padding.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from helpers import scramble

from glassbox.config import ModelConfig
from glassbox.data.tasks import BOS, EOS, PAD, Seq2SeqTask
from glassbox.errors import GlassboxError
from glassbox.generate.seq2seq import beam_search, greedy_decode, length_penalty, translate
from glassbox.models import EncoderDecoder

SMALL = dict(arch="encoder-decoder", block_size=16, n_layer=2, n_head=4, n_embd=32)


def make_model(vocab_size: int, std: float = 0.5, seed: int = 0, **changes) -> EncoderDecoder:
    torch.manual_seed(0)
    config = ModelConfig(**{**SMALL, "vocab_size": vocab_size, **changes})
    return scramble(EncoderDecoder(config), std, seed).eval()


def sources(vocab_size: int, lengths: list[int], width: int) -> torch.Tensor:
    """Right-padded random sources (B, width) of symbols (ids >= 3), PAD after each length."""
    generator = torch.Generator().manual_seed(0)
    src = torch.randint(3, vocab_size, (len(lengths), width), generator=generator)
    return src.masked_fill(torch.arange(width)[None, :] >= torch.tensor(lengths)[:, None], PAD)


@torch.no_grad()
def teacher_forced_log_prob(model, src_row: torch.Tensor, tokens: list[int], eos: bool) -> float:
    """log p(tokens [, EOS] | src) from one forward pass over BOS + tokens, src unpadded."""
    src = src_row[src_row != PAD][None]  # (1, S)
    log_probs = model(src, torch.tensor([[BOS] + tokens])).log_softmax(-1)[0]  # (T, V)
    total = sum(log_probs[i, t].item() for i, t in enumerate(tokens))
    return total + (log_probs[len(tokens), EOS].item() if eos else 0.0)


@pytest.mark.parametrize(
    "pos_encoding, placement, seed",
    [("learned", "pre", 0), ("rope", "pre", 0), ("alibi", "pre", 0), ("relative", "post", 0),
     ("none", "post", 3), ("rope", "post", 3)],
)  # fmt: skip
def test_a_beam_of_one_without_length_penalty_is_greedy_decoding(pos_encoding, placement, seed):
    model = make_model(7, seed=seed, pos_encoding=pos_encoding, norm_placement=placement)
    src = sources(7, [6, 3, 6, 6, 1, 4], width=6)
    options = dict(bos=BOS, eos=EOS, max_len=8, src_mask=src != PAD)
    greedy = greedy_decode(model, src, **options)
    beams = beam_search(model, src, beam_size=1, alpha=0.0, **options)
    assert [len(hyps) for hyps in beams] == [1] * 6
    assert [hyps[0].tokens for hyps in beams] == greedy
    lengths = [len(tokens) for tokens in greedy]
    # the seed gives both kinds of row: stopped by EOS, and run out at max_len
    assert min(lengths) < 8 and max(lengths) == 8


def every_output(symbols: list[int], max_len: int) -> list[tuple[list[int], bool]]:
    """Every output the search can produce: up to max_len - 1 tokens then EOS, or max_len
    tokens without EOS (stopped by the length limit); any non-EOS id may be a token."""
    shorter = [
        (list(t), True) for n in range(max_len) for t in itertools.product(symbols, repeat=n)
    ]
    return shorter + [(list(t), False) for t in itertools.product(symbols, repeat=max_len)]


@pytest.mark.parametrize("pos_encoding", ["learned", "sinusoidal", "relative"])
def test_a_beam_wide_enough_for_every_hypothesis_finds_the_most_probable_output(pos_encoding):
    V, max_len = 5, 3  # PAD, BOS, EOS and two symbols
    model = make_model(V, std=0.3, seed=1, pos_encoding=pos_encoding)
    src = sources(V, [4, 3], width=4)
    outputs = every_output([i for i in range(V) if i != EOS], max_len)
    assert len(outputs) == 1 + 4 + 16 + 64
    beams = beam_search(model, src, bos=BOS, eos=EOS, max_len=max_len, beam_size=len(outputs),
                        alpha=0.0, src_mask=src != PAD)  # fmt: skip
    for b, hyps in enumerate(beams):
        expected = {
            tuple(tokens): teacher_forced_log_prob(model, src[b], tokens, eos)
            for tokens, eos in outputs
        }
        found = {tuple(h.tokens): h.log_prob for h in hyps}
        assert found.keys() == expected.keys()  # nothing pruned, nothing twice
        assert max(abs(found[k] - expected[k]) for k in expected) < 1e-4
        ranked = sorted(expected, key=expected.get, reverse=True)
        assert expected[ranked[0]] - expected[ranked[1]] > 1e-3  # a unique best: no tie
        assert tuple(hyps[0].tokens) == ranked[0]
        assert [tuple(h.tokens) for h in hyps] == ranked
        assert all(h.score == h.log_prob for h in hyps)  # alpha 0: no length penalty
        assert math.isclose(sum(math.exp(v) for v in expected.values()), 1.0, rel_tol=1e-4)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.5])
@pytest.mark.parametrize("beam_size", [2, 4])
def test_hypotheses_are_sorted_scored_by_length_penalty_and_at_most_beam_size(beam_size, alpha):
    max_len = 6
    model = make_model(5, std=0.3, seed=1)
    src = sources(5, [4, 2, 3], width=4)
    beams = beam_search(model, src, bos=BOS, eos=EOS, max_len=max_len, beam_size=beam_size,
                        alpha=alpha, src_mask=src != PAD)  # fmt: skip
    for b, hyps in enumerate(beams):
        assert 1 <= len(hyps) <= beam_size
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == len(hyps)
        for h in hyps:
            ended = len(h.tokens) < max_len  # shorter than max_len means it emitted EOS
            length = len(h.tokens) + ended  # EOS counts in the length, as in the module
            assert math.isclose(h.score, h.log_prob / ((5 + length) / 6) ** alpha, rel_tol=1e-6)
            assert h.score == h.log_prob / length_penalty(length, alpha)
            tf = teacher_forced_log_prob(model, src[b], h.tokens, ended)
            assert abs(h.log_prob - tf) < 1e-4
    lengths = {len(h.tokens) for hyps in beams for h in hyps}
    assert len(lengths) > 1  # hypotheses of several lengths were compared


def test_length_penalty_is_gnmts():
    assert length_penalty(1, 0.0) == 1.0
    assert length_penalty(1, 1.0) == 1.0  # (5 + 1) / 6
    assert math.isclose(length_penalty(7, 0.6), 2.0**0.6)


def test_bad_input_is_a_clear_error():
    model = make_model(7)
    src = sources(7, [3, 2], width=3)
    options = dict(bos=BOS, eos=EOS, max_len=5)
    with pytest.raises(GlassboxError, match="beam size must be >= 1"):
        beam_search(model, src, beam_size=0, **options)
    task = Seq2SeqTask("reverse", alphabet="abcd", min_len=1, max_len=4)
    with pytest.raises(GlassboxError, match="beam size must be >= 1"):
        translate(model, task.tokenizer, ["ab"], pad=PAD, beam_size=0, **options)
    for bad in (7, -1):  # ids outside [0, vocab_size)
        wrong = src.clone()
        wrong[0, 1] = bad
        for search in (greedy_decode, beam_search):
            with pytest.raises(GlassboxError, match=r"source ids must be in \[0, 7\)"):
                search(model, wrong, **options)
    with pytest.raises(GlassboxError, match="max_len"):
        greedy_decode(model, src, bos=BOS, eos=EOS, max_len=0)
    with pytest.raises(GlassboxError, match="at least one token"):
        greedy_decode(model, src[:, :0], **options)


@pytest.mark.parametrize("pos_encoding", ["learned", "sinusoidal", "rope"])
def test_a_source_longer_than_block_size_is_refused_by_position_tables(pos_encoding):
    model = make_model(7, pos_encoding=pos_encoding, block_size=8)
    long = torch.randint(3, 7, (2, 9))
    options = dict(bos=BOS, eos=EOS, max_len=4)
    for search in (greedy_decode, beam_search):
        with pytest.raises(GlassboxError, match="source of 9 tokens is longer than block_size 8"):
            search(model, long, **options)
        assert len(search(model, long[:, :8], **options)) == 2  # block_size itself is fine


def test_alibi_and_relative_decode_sources_longer_than_block_size():
    for pos_encoding in ("alibi", "relative"):
        model = make_model(7, pos_encoding=pos_encoding, block_size=8)
        long = torch.randint(3, 7, (2, 12))
        out = greedy_decode(model, long, bos=BOS, eos=EOS, max_len=10)
        assert len(out) == 2 and all(len(row) <= 10 for row in out)
        assert beam_search(model, long, bos=BOS, eos=EOS, max_len=10, beam_size=2)[0]


@pytest.mark.parametrize("beam_size", [1, 3])
def test_translate_a_padded_batch_gives_what_each_source_gives_alone(beam_size):
    task = Seq2SeqTask("reverse", alphabet="abcd", min_len=1, max_len=6)
    tok = task.tokenizer
    model = make_model(tok.vocab_size)
    texts = ["abc", "d", "abcdab", "ba", "ddca"]
    options = dict(bos=BOS, eos=EOS, pad=PAD, max_len=8, beam_size=beam_size)
    together = translate(model, tok, texts, **options)
    alone = [translate(model, tok, [text], **options)[0] for text in texts]
    assert together == alone
    assert all(isinstance(out, str) and set(out) <= set("abcd") for out in together)
    assert any(together) and len(set(together)) > 1  # outputs that could differ, and do
    # the text round trip: encode, decode with the searches directly, decode the ids
    for text, out in zip(texts, together, strict=True):
        src = torch.tensor([tok.encode(text)])
        if beam_size == 1:
            ids = greedy_decode(model, src, bos=BOS, eos=EOS, max_len=8)[0]
        else:
            ids = beam_search(model, src, bos=BOS, eos=EOS, max_len=8, beam_size=beam_size)
            ids = ids[0][0].tokens
        assert tok.decode(ids) == out
    assert translate(model, tok, [], **options) == []
