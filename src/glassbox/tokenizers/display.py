"""Showing how a text splits into tokens: the pieces, coloured for a terminal.

A token's bytes need not be whole UTF-8 characters (an emoji is often two or three
tokens), so a piece that is not valid UTF-8 is shown with escapes, `\\xf0\\x9f`, rather
than as replacement characters: the split is the thing to see.

>>> from glassbox.tokenizers import BPETokenizer
>>> tok = BPETokenizer.train("hello hello", 260, pattern="gpt2")
>>> pieces(tok, tok.encode("hello 🙂"))
['hello', ' ', '\\\\xf0', '\\\\x9f', '\\\\x99', '\\\\x82']
"""

from __future__ import annotations

import json

from glassbox.tokenizers.base import Tokenizer
from glassbox.tokenizers.bpe import BPETokenizer

# Background colours (ANSI 256-colour codes), pale enough for black text.
PALETTE = (153, 222, 194, 217, 189, 229)


def encode_for_display(tokenizer: Tokenizer, text: str) -> list[int]:
    """Ids for `text`, with special tokens recognised: a viewer should show them."""
    if isinstance(tokenizer, BPETokenizer):
        return tokenizer.encode(text, allowed_special="all")
    return tokenizer.encode(text)


def pieces(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    """The text of each token on its own; bytes that are not UTF-8 appear as escapes."""
    return [tokenizer.decode_bytes([i]).decode("utf-8", "backslashreplace") for i in ids]


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
