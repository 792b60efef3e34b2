"""Character-level tokenizer: one id per distinct character of the training text.

The simplest tokenizer that can work, and the one Karpathy's "Let's build GPT" starts
from: the vocabulary is the sorted set of characters seen in training, so ids are stable
for a given text and a run can always be decoded exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from glassbox.tokenizers.base import TokenizerError, as_ids

FORMAT = "glassbox-char-tokenizer"
VERSION = 1


class CharTokenizer:
    """Maps each character of a fixed alphabet to its index in that (sorted) alphabet.

    >>> tok = CharTokenizer.train("hello")
    >>> tok.chars, tok.encode("hole")
    ('ehlo', [1, 3, 2, 0])
    >>> tok.decode([1, 3, 2, 0])
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
        ids = as_ids(ids)  # 1.7 or True would otherwise be read as id 1
        bad = sorted({i for i in ids if not 0 <= i < len(self.chars)})
        if bad:
            raise TokenizerError(
                f"ids outside the vocabulary of {len(self.chars)} characters: {bad[:10]}"
            )
        return "".join(self.chars[i] for i in ids)

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The UTF-8 bytes of `decode(ids)`: every token is a whole character here, but the
        shared interface streams bytes because a BPE token may not be."""
        return self.decode(ids).encode("utf-8")

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
