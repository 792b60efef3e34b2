"""Pre-tokenization: the regular expressions that cut text into chunks before BPE.

Byte-level BPE never merges across a chunk boundary, so the split pattern decides what a
token can be: with GPT-2's pattern a token never holds a letter and a digit together, and
" world" (with its leading space) is one chunk while "world!" is two. The patterns are
written for the `regex` package, which knows Unicode properties (`\\p{L}` letters,
`\\p{N}` numbers) and possessive quantifiers (`++`, `?+`: match greedily and never give
back, which is what makes these patterns fast).

>>> split("Hello world, it's 2024!", "cl100k")
['Hello', ' world', ',', ' it', "'s", ' ', '202', '4', '!']
>>> split("Hello world, it's 2024!", "gpt2")
['Hello', ' world', ',', ' it', "'s", ' 2024', '!']
"""

from __future__ import annotations

from functools import lru_cache

import regex

# GPT-2 (2019), exactly as published in openai/gpt-2's encoder.py. Kept as the readable
# reference: GPT2 below is the same language written with possessive quantifiers, and a
# test checks that the two split every string alike.
GPT2_ORIGINAL = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# The pattern tiktoken uses for r50k_base and gpt2: contractions; a word with at most one
# leading space; a number with at most one leading space; a run of punctuation with at
# most one leading space; whitespace up to the end of the text; whitespace that is not
# followed by a non-space (so "   x" gives "  " and " x"); a lone whitespace character.
GPT2 = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

# cl100k_base (GPT-3.5 and GPT-4), as tiktoken writes it. Changes from GPT-2: contractions
# in any case ('S, 'Ll); a word may be led by one non-letter, non-digit character other
# than a newline ("(word", "_word"); numbers in groups of at most three digits;
# punctuation takes the newlines after it; a run of whitespace ending in a newline is its
# own chunk, so indentation after a line break is kept apart from the line break.
CL100K = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

# o200k_base (GPT-4o): words split at lower-to-upper case changes, contractions attached.
O200K = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"""
        r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"""
        r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

PATTERNS: dict[str, str] = {"gpt2": GPT2, "cl100k": CL100K, "o200k": O200K}


def resolve(pattern: str) -> str:
    """The regex for a pattern name (gpt2, cl100k, o200k); any other string is taken to be
    a regex itself.

    >>> resolve("gpt2") == GPT2
    True
    """
    return PATTERNS.get(pattern, pattern)


@lru_cache(maxsize=16)
def compile_pattern(pattern: str) -> regex.Pattern:
    """The compiled regex for a pattern name or regex string (compiled once, then cached)."""
    return regex.compile(resolve(pattern))


def split(text: str, pattern: str = "cl100k") -> list[str]:
    """Cut `text` into the chunks that BPE merges within (see the module's examples)."""
    return compile_pattern(pattern).findall(text)
