"""Character-level tokenizer: one id per distinct character of the training text.

The simplest tokenizer that can work, and the one Karpathy's "Let's build GPT" starts
from: the vocabulary is the sorted set of characters seen in training, so ids are stable
for a given text and a run can always be decoded exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from glassbox.errors import GlassboxError

FORMAT = "glassbox-char-tokenizer"
VERSION = 1


class TokenizerError(GlassboxError, ValueError):
    """Text or ids that a tokenizer cannot handle; the message names the culprits."""


class CharTokenizer:
    """Maps each character of a fixed alphabet to its index in that (sorted) alphabet.

    >>> tok = CharTokenizer.train("hello")
    >>> tok.chars, tok.encode("hole")
    ('ehlo', [3, 0, 2, 1])
    >>> tok.decode([3, 0, 2, 1])
    'hole'
    """

    def __init__(self, chars: Iterable[str]) -> None:
        self.chars = "".join(chars)
        if not self.chars:
            raise TokenizerError("a character tokenizer needs at least one character")
        if len(set(self.chars)) != len(self.chars):
            raise TokenizerError("the alphabet of a character tokenizer has repeated characters")
        self._ids = {ch: i for i, ch in enumerate(self.chars)}

    @classmethod
    def train(cls, text: str | Iterable[str]) -> CharTokenizer:
        """The tokenizer whose vocabulary is every distinct character of `text`
        (a string, or an iterable of string pieces for texts read in chunks)."""
        chars: set[str] = set()
        for piece in [text] if isinstance(text, str) else text:
            chars.update(piece)
        if not chars:
            raise TokenizerError("cannot build a vocabulary from empty text")
        return cls(sorted(chars))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self._ids[ch] for ch in text]
        except KeyError:
            unknown = sorted({ch for ch in text if ch not in self._ids})
            shown = ", ".join(repr(ch) for ch in unknown[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise TokenizerError(
                f"text has characters outside this tokenizer's vocabulary: {shown}{more}"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        bad = sorted({i for i in ids if not 0 <= i < len(self.chars)})
        if bad:
            raise TokenizerError(
                f"ids outside the vocabulary of {len(self.chars)} characters: {bad[:10]}"
            )
        return "".join(self.chars[i] for i in ids)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "type": "char", "chars": list(self.chars)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CharTokenizer:
        if data.get("format") != FORMAT or data.get("type") != "char":
            raise TokenizerError("not a glassbox character tokenizer file")
        if data.get("version") != VERSION:
            raise TokenizerError(f"unsupported char tokenizer version {data.get('version')}")
        return cls(data["chars"])


def load_tokenizer(data: dict[str, Any]) -> CharTokenizer:
    """Rebuild a tokenizer from the dict its `to_dict` wrote (the type field picks the class)."""
    kind = data.get("type")
    if kind == "char":
        return CharTokenizer.from_dict(data)
    raise TokenizerError(f"unknown tokenizer type {kind!r}")
