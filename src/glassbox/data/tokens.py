"""Token ids on disk as a flat numpy memmap, and random batches drawn from it.

Tokens go to one binary file (uint16 when the vocabulary fits, else uint32), so a corpus
larger than RAM is only ever paged in. The first 90% of tokens are the training split and
the rest validation; both are views of the same file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from glassbox.data.corpus import DataError

TRAIN_FRACTION = 0.9
CHUNK = 1 << 24  # ids checked at a time when a token file is opened


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def write_tokens(
    chunks: Iterable[str], encode: Callable[[str], list[int]], vocab_size: int, path: Path
) -> int:
    """Encode each text chunk and append its ids to `path`; returns the token count."""
    dtype = token_dtype(vocab_size)
    count = 0
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                ids = np.asarray(encode(chunk), dtype=dtype)
                ids.tofile(f)
                count += ids.size
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed encode leaves no partial file behind
    return count


class TokenDataset:
    """Train and validation splits of a token file, and random (x, y) batches from them.

    >>> ds = TokenDataset(path, vocab_size=65)                      # doctest: +SKIP
    >>> x, y = ds.batch("train", batch_size=12, block_size=64, generator=g)  # doctest: +SKIP
    >>> # x, y: (12, 64) int64; y is x shifted one token to the left
    """

    def __init__(self, path: Path | str, vocab_size: int) -> None:
        self.path = Path(path)
        dtype = token_dtype(vocab_size)
        if not self.path.is_file():
            raise DataError(f"{self.path} is missing: the run's corpus is gone")
        size = self.path.stat().st_size
        if size == 0 or size % dtype.itemsize:
            raise DataError(
                f"{self.path} holds {size} bytes, not a whole number of {dtype.itemsize}-byte "
                "token ids: the file is truncated or corrupt"
            )
        tokens = np.memmap(self.path, dtype=dtype, mode="r")  # (N,)
        largest = max(int(tokens[i : i + CHUNK].max()) for i in range(0, len(tokens), CHUNK))
        if largest >= vocab_size:
            raise DataError(
                f"{self.path} holds token id {largest}, outside the vocabulary of "
                f"{vocab_size}: the file is corrupt or belongs to another tokenizer"
            )
        n_train = int(len(tokens) * TRAIN_FRACTION)
        self.splits = {"train": tokens[:n_train], "val": tokens[n_train:]}

    def check_fits(self, block_size: int) -> None:
        """Both splits must hold at least one window of block_size + 1 tokens."""
        for name, tokens in self.splits.items():
            if len(tokens) < block_size + 1:
                total = sum(len(t) for t in self.splits.values())
                raise DataError(
                    f"the corpus has {total} tokens, so its {name} split has {len(tokens)}: "
                    f"fewer than block_size + 1 = {block_size + 1}. Use a longer text "
                    f"(about {int((block_size + 1) / (1 - TRAIN_FRACTION)) + 1} tokens or "
                    "more) or a smaller --block-size"
                )

    def batch(
        self, split: str, batch_size: int, block_size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows: inputs x (B, T) and next-token targets y (B, T), as int64."""
        tokens = self.splits[split]
        starts = torch.randint(len(tokens) - block_size, (batch_size,), generator=generator)
        index = starts.numpy()[:, None] + np.arange(block_size + 1)  # (B, T+1)
        window = torch.from_numpy(tokens[index].astype(np.int64))  # (B, T+1)
        return window[:, :-1], window[:, 1:]

    def windows(self, split: str, block_size: int, batch_size: int):
        """Consecutive non-overlapping windows covering the split once, in batches."""
        return windows(self.splits[split], block_size, batch_size)


def windows(tokens: np.ndarray, block_size: int, batch_size: int):
    """(x, y) batches of consecutive non-overlapping windows that cover `tokens` once;
    y is x shifted one token to the left. Each x, y: (b, block_size) int64."""
    n = (len(tokens) - 1) // block_size
    for first in range(0, n, batch_size):
        rows = np.arange(first, min(first + batch_size, n)) * block_size  # (b,)
        index = rows[:, None] + np.arange(block_size + 1)  # (b, T+1)
        window = torch.from_numpy(tokens[index].astype(np.int64))  # (b, T+1)
        yield window[:, :-1], window[:, 1:]
