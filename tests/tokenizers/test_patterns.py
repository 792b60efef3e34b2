from hypothesis import given, settings
from hypothesis import strategies as st

from glassbox.tokenizers.patterns import CL100K, GPT2, GPT2_ORIGINAL, resolve, split

PIECES = st.sampled_from(
    [" ", "  ", "\n", "\t", "'s", "'ll", "'X", "'", "ab", "é", "1", "22", ".", "!?", "😀", "中"]
)


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
