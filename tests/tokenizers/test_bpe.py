import json
import random
import re
from collections import Counter
from itertools import pairwise

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from glassbox.tokenizers import BPETokenizer, TokenizerError, load_tokenizer
from glassbox.tokenizers.bpe import merge_long, merge_ranked
from glassbox.tokenizers.bpe_train import learn_bpe, learn_bpe_naive

SAMPLE = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n"
    "All:\nResolved. resolved.\n\nFirst Citizen:\nFirst, you know Caius Marcius is chief enemy "
    "to the people.\n\nAll:\nWe know't, we know't.\n"
) * 3


@pytest.fixture(scope="module")
def trained():
    return BPETokenizer.train(SAMPLE, 300, special_tokens=["<|endoftext|>"])


def test_hand_worked_example():
    # "aaabdaaabac": "aa" is the most frequent pair (4 times) and becomes 256. Then "ab"
    # and "aa"+"a" both occur twice; the tie goes to the smaller pair of ids, (97, 98), so
    # "ab" is 257. Then "aa"+"ab" occurs twice and becomes 258 = "aaab".
    tok = BPETokenizer.train("aaabdaaabac", vocab_size=259)
    assert [tok.token_bytes(i) for i in (256, 257, 258)] == [b"aa", b"ab", b"aaab"]
    assert tok.encode("aaabdaaabac") == [258, ord("d"), 258, ord("a"), ord("c")]
    assert tok.vocab_size == 259


def test_merges_stay_inside_chunks():
    # " a" recurs, but "a " never forms: the space starts the next chunk.
    tok = BPETokenizer.train("a a a a a a", vocab_size=257, pattern="gpt2")
    assert tok.token_bytes(256) == b" a"


def test_first_merges_are_the_most_frequent_pairs(trained):
    chunks = Counter(c.encode() for c in trained._regex.findall(SAMPLE))
    pairs = Counter()
    for chunk, n in chunks.items():
        for pair in pairwise(chunk):
            pairs[pair] += n
    (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]))
    assert trained.token_bytes(256) == bytes([a, b])


def test_training_is_deterministic():
    a = BPETokenizer.train(SAMPLE, 350).to_dict()
    b = BPETokenizer.train(SAMPLE, 350).to_dict()
    assert a == b


words = st.dictionaries(
    st.binary(min_size=1, max_size=12).map(lambda b: bytes(x % 4 + 97 for x in b)),
    st.integers(1, 5),
    max_size=8,
)


@given(words, st.integers(256, 300))
def test_incremental_training_equals_recounting(chunk_counts, vocab_size):
    assert learn_bpe(chunk_counts, vocab_size) == learn_bpe_naive(chunk_counts, vocab_size)


def test_training_stops_when_no_pairs_are_left():
    tok = BPETokenizer.train("ab ab", 1000, special_tokens=["<|endoftext|>"])
    # "ab" and " ab" are the only chunks: two merges, then the special token.
    assert tok.vocab_size == 256 + 2 + 1
    assert tok.special_tokens == {"<|endoftext|>": 258}


def test_vocab_size_too_small_is_an_error():
    with pytest.raises(TokenizerError, match="at least 257"):
        BPETokenizer.train("abc", 256, special_tokens=["<|endoftext|>"])


@settings(max_examples=200)
@given(st.text())
def test_round_trip_on_any_text(trained, text):
    assert trained.decode(trained.encode_ordinary(text)) == text


@pytest.mark.parametrize(
    "text",
    ["", " ", "\n\n\n", "   leading", "trailing   ", "tab\tand\r\nCRLF", "ﬁ ligature", "é" * 50],
)
def test_round_trip_on_edge_cases(trained, text):
    assert trained.decode(trained.encode(text)) == text


def test_special_tokens_allowed_disallowed_and_ordinary(trained):
    eot = trained.special_tokens["<|endoftext|>"]
    text = "hear me<|endoftext|>speak"
    with pytest.raises(TokenizerError, match="special token '<|endoftext|>'") as info:
        trained.encode(text)
    assert "\n" not in str(info.value)
    ids = trained.encode(text, allowed_special="all")
    assert ids.count(eot) == 1
    assert trained.decode(ids) == text
    assert trained.encode(text, allowed_special={"<|endoftext|>"}) == ids
    plain = trained.encode(text, disallowed_special=())
    assert eot not in plain and trained.decode(plain) == text
    assert plain == trained.encode_ordinary(text)
    with pytest.raises(TokenizerError, match="not special tokens"):
        trained.encode(text, allowed_special={"<|im_start|>"})


def test_special_tokens_are_not_learned_from():
    tok = BPETokenizer.train("<|endoftext|>" * 50 + "ab", 300, special_tokens=["<|endoftext|>"])
    learned = [tok.token_bytes(i) for i in range(256, tok.vocab_size - 1)]
    assert all(b"|" not in t for t in learned)


def test_decoding_part_of_a_character_gives_replacement_characters(trained):
    ids = trained.encode("☃")  # three bytes; no merge of this sample covers them
    assert len(ids) == 3
    assert trained.decode(ids[:2]) == "\ufffd"
    assert trained.decode(ids[1:]) == "\ufffd\ufffd"
    assert trained.decode_bytes(ids[:2]) == "☃".encode()[:2]


def test_unknown_ids_are_an_error(trained):
    with pytest.raises(TokenizerError, match=r"outside this vocabulary of 300: \[-1, 300\]"):
        trained.decode([1, 300, -1])
    with pytest.raises(TokenizerError, match="not in this vocabulary"):
        trained.token_bytes(99999)


@pytest.mark.parametrize("bad", [1.7, 1.0, True, "1", None, np.float32(2), torch.tensor(2.0)])
def test_ids_that_are_not_integers_are_an_error(trained, bad):
    with pytest.raises(TokenizerError, match=f"must be integers; got {re.escape(repr(bad))}"):
        trained.decode([104, bad])
    with pytest.raises(TokenizerError, match="must be integers"):
        trained.decode_bytes(iter([bad]))
    with pytest.raises(TokenizerError, match="must be integers"):
        trained.token_bytes(bad)


def test_integer_ids_of_any_kind_decode(trained):
    ids = trained.encode("First Citizen")
    assert trained.decode(np.array(ids)) == "First Citizen"
    assert trained.decode(torch.tensor(ids)) == "First Citizen"
    assert trained.decode(torch.tensor(ids).tolist()) == "First Citizen"
    assert trained.token_bytes(np.int64(ids[0])) == trained.token_bytes(ids[0])


def test_special_token_ids_must_be_integers(trained):
    with pytest.raises(TokenizerError, match=r"got 300\.0 \(float\)"):
        BPETokenizer(trained.ranks, special_tokens={"<|endoftext|>": 300.0})


def test_lone_surrogates_encode_as_replacement_characters(trained):
    assert trained.decode(trained.encode("a\ud800b")) == "a\ufffdb"


def test_save_load_round_trip(trained, tmp_path):
    path = tmp_path / "tok.json"
    trained.save(path)
    data = json.loads(path.read_text())
    assert (data["format"], data["version"], data["type"]) == ("glassbox-bpe-tokenizer", 1, "bpe")
    again = BPETokenizer.load(path)
    assert again.ranks == trained.ranks
    assert again.special_tokens == trained.special_tokens
    assert again.pattern == trained.pattern
    assert again.encode(SAMPLE) == trained.encode(SAMPLE)
    assert load_tokenizer(data).encode("Citizen") == trained.encode("Citizen")


def test_corrupt_files_are_one_line_errors(trained, tmp_path):
    data = trained.to_dict()
    with pytest.raises(TokenizerError, match="version"):
        load_tokenizer({**data, "version": 99})
    with pytest.raises(TokenizerError, match="malformed"):
        load_tokenizer({**data, "tokens": ["not base64!"] + data["tokens"][1:]})
    with pytest.raises(TokenizerError, match="256 single bytes"):
        load_tokenizer({**data, "tokens": data["tokens"][1:]})
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(TokenizerError, match="cannot read"):
        BPETokenizer.load(tmp_path / "bad.json")


@given(st.binary(max_size=300), st.integers(0, 2**32))
def test_heap_merge_equals_the_readable_merge(piece, seed):
    # A random vocabulary over a 3-letter alphabet, so that long runs and repeats occur.
    rng = random.Random(seed)
    piece = bytes(b % 3 + 97 for b in piece)
    ranks = {bytes([i]): i for i in range(256)}
    for _ in range(40):
        a, b = rng.choice(list(ranks)), rng.choice(list(ranks))
        if len(a + b) <= 8:
            ranks.setdefault(a + b, len(ranks))
    assert merge_long(piece, ranks) == merge_ranked(piece, ranks)
