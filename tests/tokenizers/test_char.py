import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from glassbox.tokenizers import CharTokenizer, TokenizerError, load_tokenizer


def test_vocabulary_is_the_sorted_characters_of_the_text():
    tok = CharTokenizer.train("hello world")
    assert tok.chars == " dehlorw"
    assert tok.vocab_size == 8
    assert tok.encode("low") == [4, 5, 7]


@given(st.text(min_size=1))
def test_round_trip(text):
    tok = CharTokenizer.train(text)
    assert tok.decode(tok.encode(text)) == text


def test_training_on_chunks_equals_training_on_the_whole_text():
    assert CharTokenizer.train(["ab", "ca", ""]).chars == CharTokenizer.train("abca").chars


def test_unknown_characters_are_named_in_one_line():
    tok = CharTokenizer.train("abc")
    with pytest.raises(TokenizerError, match=r"vocabulary: '!', 'z'") as info:
        tok.encode("abz!")
    assert "\n" not in str(info.value)


def test_ids_outside_the_vocabulary_are_an_error():
    tok = CharTokenizer.train("abc")
    with pytest.raises(TokenizerError, match=r"\[-1, 3\]"):
        tok.decode([0, 3, -1])


@pytest.mark.parametrize("bad", [1.7, True, "1"])
def test_ids_that_are_not_integers_are_an_error(bad):
    tok = CharTokenizer.train("abc")
    with pytest.raises(TokenizerError, match=f"must be integers; got {bad!r}"):
        tok.decode([0, bad])
    assert tok.decode(np.array([2, 1])) == tok.decode(torch.tensor([2, 1])) == "cb"


def test_empty_text_has_no_vocabulary():
    with pytest.raises(TokenizerError):
        CharTokenizer.train("")


def test_json_round_trip():
    tok = CharTokenizer.train("naïve ☃ text\n")
    again = load_tokenizer(json.loads(tok.to_json()))
    assert again.chars == tok.chars
    with pytest.raises(TokenizerError):
        load_tokenizer({"type": "wordpiece"})
