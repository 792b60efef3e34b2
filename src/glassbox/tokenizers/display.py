"""Showing how a text splits into tokens: the pieces, coloured for a terminal.

A token's bytes need not be whole UTF-8 characters (an emoji is often two or three
tokens), so a piece that is not valid UTF-8 is shown with escapes, `\\xf0\\x9f`, rather
than as replacement characters: the split is the thing to see.

Input need not be UTF-8 either: `read_text` keeps each byte that is not part of a valid
character as a surrogate escape (Python's way to carry undecodable bytes in a str), and
`encode_for_display` gives such a byte its single-byte token, so a byte-level tokenizer
shows the bytes it was given.

>>> from glassbox.tokenizers import BPETokenizer
>>> tok = BPETokenizer.train("hello hello", 260, pattern="gpt2")
>>> pieces(tok, tok.encode("hello 🙂"))
['hello', ' ', '\\\\xf0', '\\\\x9f', '\\\\x99', '\\\\x82']
>>> import io
>>> text = read_text(io.BytesIO(b"ab\\xff"))
>>> pieces(tok, encode_for_display(tok, text)), summary(text, [97, 98, 255])
(['a', 'b', '\\\\xff'], '3 tokens for 3 characters (3 bytes)')
"""

from __future__ import annotations

import json
import re
from typing import BinaryIO

from glassbox.tokenizers.base import Tokenizer
from glassbox.tokenizers.bpe import BPETokenizer, _fix_surrogates

# Background colours (ANSI 256-colour codes), pale enough for black text.
PALETTE = (153, 222, 194, 217, 189, 229)


# Surrogate escapes: U+DC80..U+DCFF stand for the undecodable bytes 0x80..0xFF.
_ESCAPES = re.compile("([\udc80-\udcff]+)")


def read_text(stream: BinaryIO) -> str:
    """All of a byte stream (`sys.stdin.buffer`) as text, decoded as UTF-8 with each
    undecodable byte kept as a surrogate escape rather than an error, so that nothing
    typed or piped in is lost or changed before a tokenizer sees it."""
    return stream.read().decode("utf-8", "surrogateescape")


def as_bytes(text: str) -> bytes:
    """The bytes `text` stands for: UTF-8, with surrogate escapes turned back into their
    bytes and any other lone surrogate as U+FFFD, which is what BPE encodes for it."""
    return b"".join(
        part.encode("utf-8", "surrogateescape") if k % 2 else _fix_surrogates(part).encode()
        for k, part in enumerate(_ESCAPES.split(text))
    )


def encode_for_display(tokenizer: Tokenizer, text: str) -> list[int]:
    """Ids for `text`, with special tokens recognised: a viewer should show them. With
    byte-level BPE, each surrogate escape (a byte that was not UTF-8) becomes the token
    of that byte; a character tokenizer has no token for it, which is an error."""
    if not isinstance(tokenizer, BPETokenizer):
        return tokenizer.encode(text)
    ids: list[int] = []
    for k, part in enumerate(_ESCAPES.split(text)):
        if k % 2:
            ids += [tokenizer.ranks[bytes([b])] for b in part.encode("utf-8", "surrogateescape")]
        elif part:
            ids += tokenizer.encode(part, allowed_special="all")
    return ids


def pieces(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    """The text of each token on its own; bytes that are not UTF-8 appear as escapes."""
    return [tokenizer.decode_bytes([i]).decode("utf-8", "backslashreplace") for i in ids]


def summary(text: str, ids: list[int]) -> str:
    """The line under the pieces: how many tokens, characters and bytes.

    >>> summary("héllo", [1, 2])
    '2 tokens for 5 characters (6 bytes)'
    """
    return f"{len(ids):,} tokens for {len(text):,} characters ({len(as_bytes(text)):,} bytes)"


def render(parts: list[str], color: bool) -> str:
    """Pieces in alternating background colours (ends of lines marked ↵), or, without
    colour, as a JSON list in which every boundary and whitespace character is visible."""
    if not color:
        return json.dumps(parts, ensure_ascii=False)
    out = []
    for k, part in enumerate(parts):
        shown = part.replace("\n", "↵\n")
        lines = shown.split("\n")  # colour each line separately so no colour bleeds
        start = f"\x1b[30;48;5;{PALETTE[k % len(PALETTE)]}m"
        out.append("\n".join(f"{start}{line}\x1b[0m" if line else "" for line in lines))
    return "".join(out)
