"""What every glassbox tokenizer offers, and the error they raise.

A run stores its tokenizer as JSON (`to_dict`), and everything downstream (training,
sampling, evaluation) needs only the methods of `Tokenizer` below, so the character
tokenizer and byte-level BPE are interchangeable.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from glassbox.errors import GlassboxError


class TokenizerError(GlassboxError, ValueError):
    """Text or ids that a tokenizer cannot handle; the message names the culprits."""


@runtime_checkable
class Tokenizer(Protocol):
    """The shared interface.

    `decode_bytes` exists because one BPE token can hold part of a UTF-8 character: a
    streaming decoder joins the bytes of successive tokens and emits only whole characters.
    """

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def decode_bytes(self, ids: Iterable[int]) -> bytes: ...

    def to_dict(self) -> dict[str, Any]: ...
