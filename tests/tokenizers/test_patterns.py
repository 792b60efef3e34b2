import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from glassbox.tokenizers.patterns import (
    CL100K,
    GPT2,
    GPT2_ORIGINAL,
    compile_pattern,
    pin_unicode,
    resolve,
    split,
)

PIECES = st.sampled_from(
    [" ", "  ", "\n", "\t", "'s", "'ll", "'X", "'", "ab", "é", "1", "22", ".", "!?", "😀", "中"]
)
# letters and digits in Unicode 17.0 only, and U+0295 (Ll in 16.0, Lo in 17.0)
DISPUTED = ["\u0558", "\u0295", "\U00018dc0", "\U00012555", "\U0003d000", "\U000323b0"]


@settings(max_examples=300)
@given(st.lists(PIECES | st.text(max_size=3), max_size=25).map("".join))
def test_possessive_gpt2_pattern_splits_like_the_published_one(text):
    assert split(text, GPT2) == split(text, GPT2_ORIGINAL)


@given(st.text())
def test_chunks_cover_the_text(text):
    for pattern in ("gpt2", "cl100k", "o200k"):
        assert "".join(split(text, pattern)) == text


def test_what_each_pattern_keeps_together():
    text = "I'LL pay 12345 dollars!\n\n   (twice)"
    assert split(text, "gpt2") == [
        "I", "'", "LL", " pay", " 12345", " dollars", "!", "\n\n  ", " (", "twice", ")"
    ]  # fmt: skip
    assert split(text, "cl100k") == [
        "I", "'LL", " pay", " ", "123", "45", " dollars", "!\n\n", "  ", " (", "twice", ")"
    ]  # fmt: skip
    assert split("(word", "cl100k") == ["(word"]  # one leading non-letter joins the word
    assert split("camelCaseWord it's", "o200k") == ["camel", "Case", "Word", " it's"]


def test_names_resolve_and_regexes_pass_through():
    assert resolve("cl100k") == CL100K
    assert resolve(r"\w+|\W") == r"\w+|\W"
    assert split("ab, cd", r"\w+|\W") == ["ab", ",", " ", "cd"]


# Code points that `regex` 2026.11 (Unicode 17.0) classes as letters or digits and that
# tiktoken's tables (Unicode 16.0) leave unassigned: split as tiktoken splits them,
# whichever `regex` is installed.
@pytest.mark.parametrize(
    ("text", "chunks"),
    [
        ("\U00018dc0's", ["\U00018dc0'", "s"]),
        ("\U00012555999", ["\U00012555", "999"]),
        ("\U0003d000:A", ["\U0003d000:", "A"]),
        (" \u0558x", [" \u0558", "x"]),
        ("a\u0295b", ["a\u0295b"]),  # ʕ: a letter in both, Ll in 16.0 and Lo in 17.0
    ],
)
def test_classes_follow_tiktokens_unicode_version(text, chunks):
    assert split(text, "cl100k") == chunks


def test_o200k_case_classes_follow_tiktokens_unicode_version():
    # U+0295 is lower case (Ll) in tiktoken's tables, so it cannot start "Ab"; as Lo
    # (Unicode 17.0) it could
    assert split("\u0295Ab", "o200k") == ["\u0295", "Ab"]


def test_pinning_rewrites_only_the_pinned_classes():
    pinned, names = pin_unicode(r"[^\r\n\p{L}\P{N}]|\pL+|\p{Han}|\\p{L}|[]\p{M}]|\s")
    assert names == {"L", "N", "M"}
    assert r"\p{Han}" in pinned and r"\\p{L}" in pinned and pinned.endswith(r"\s")
    assert regex.compile(pinned).findall("\\p{L}") == ["\\p{L}"]  # "\\p" is a backslash
    assert pin_unicode(r"\w+")[0] == r"\w+"


@pytest.mark.parametrize(
    "pattern", ["cl100k", "o200k", r"(?V1)[\p{L}--\p{Lu}]+", r"(?V1)[^[\pL]\d]+|\P{N}"]
)
def test_the_explicit_tables_hold_what_the_fast_pattern_holds_on_undisputed_text(pattern):
    splitter = compile_pattern(pattern)
    text = "".join(chr(c) for c in range(0x3000) if not splitter.has_suspects(chr(c)))
    assert splitter.exact.findall(text) == splitter.fast.findall(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(PIECES | st.text(max_size=3) | st.sampled_from(DISPUTED), max_size=25).map("".join))
def test_findall_is_the_explicit_pattern(text):
    for pattern in ("gpt2", "cl100k", "o200k"):
        splitter = compile_pattern(pattern)
        assert splitter.findall(text) == splitter.exact.findall(text)
