"""What every glassbox tokenizer offers, and the error they raise.

A run stores its tokenizer as JSON (`to_dict`), and everything downstream (training,
sampling, evaluation) needs only the methods of `Tokenizer` below, so the character
tokenizer and byte-level BPE are interchangeable.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from glassbox.errors import GlassboxError


class TokenizerError(GlassboxError, ValueError):
    """Text or ids that a tokenizer cannot handle; the message names the culprits."""


def as_ids(ids: Iterable[Any]) -> list[int]:
    """`ids` as a list of Python ints. Integers of any kind are ids (numpy's, a torch
    tensor's elements); anything else is an error that names it, because `int()` would
    quietly read 1.7 as 1, and a bool is an integer to Python but never a token id.

    >>> import numpy as np
    >>> as_ids([1, np.int64(2)])
    [1, 2]
    >>> as_ids([1.7])
    Traceback (most recent call last):
    glassbox.tokenizers.base.TokenizerError: token ids must be integers; got 1.7 (float)
    """
    ids = ids if isinstance(ids, list) else list(ids)
    if set(map(type, ids)) <= {int}:  # the common case, at C speed
        return ids
    return [as_id(i) for i in ids]


def as_id(token_id: Any) -> int:
    """One id as a Python int (see `as_ids`)."""
    if type(token_id) is int:
        return token_id
    if not isinstance(token_id, bool) and "bool" not in str(getattr(token_id, "dtype", "")):
        try:
            return operator.index(token_id)  # ints, numpy integers, 0-d integer tensors
        except TypeError:
            pass
    raise TokenizerError(
        f"token ids must be integers; got {token_id!r} ({type(token_id).__name__})"
    )


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
