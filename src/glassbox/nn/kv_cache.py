"""The key/value cache that makes decoding one token cost one token of work.

A decoder's keys and values for past positions never change, so generation computes them
once and keeps them. The cache is allocated up front for `max_len` positions of every
layer, and each forward pass writes its new keys and values into the next free slots:
no tensor grows (no `torch.cat` per step), and only the key/value heads that grouped-query
attention actually has (`kv_heads`, H_kv) are stored.
"""

from __future__ import annotations

import torch
from torch import Tensor

from glassbox.errors import GlassboxError


class KVCache:
    """Keys and values of every layer for up to max_len positions.

    k, v: (L, B, H_kv, max_len, D). `length` positions are filled. `key_mask` (B, max_len)
    marks real tokens (False for left padding), so batched prompts of different lengths
    share one cache. `cross` holds an encoder-decoder's cross-attention keys and values,
    (B, H_kv, S_src, D) per layer, computed from the encoder output on first use.

    >>> cache = KVCache(n_layer=2, batch_size=1, kv_heads=4, max_len=64, d_head=32)
    >>> cache.bytes()
    262144
    """

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        kv_heads: int,
        max_len: int,
        d_head: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        shape = (n_layer, batch_size, kv_heads, max_len, d_head)
        # Uninitialized: a slot is only ever read after `store` has written it.
        self.k = torch.empty(shape, device=device, dtype=dtype)  # (L, B, H_kv, max_len, D)
        self.v = torch.empty(shape, device=device, dtype=dtype)  # (L, B, H_kv, max_len, D)
        self.key_mask = torch.ones(batch_size, max_len, dtype=torch.bool, device=device)
        self.max_len = max_len
        self.length = 0
        self.has_padding = False
        self.cross: dict[int, tuple[Tensor, Tensor]] = {}

    def reset(self) -> None:
        self.length = 0
        self.key_mask.fill_(True)
        self.has_padding = False
        self.cross.clear()

    def reorder(self, rows: Tensor) -> None:
        """Keep batch rows `rows` (B,) in that order, e.g. the surviving beams of a beam
        search, each of which continues the hypothesis of the row it came from."""
        end = self.length
        self.k[:, :, :, :end] = self.k[:, rows, :, :end]
        self.v[:, :, :, :end] = self.v[:, rows, :, :end]
        self.key_mask[:] = self.key_mask[rows]
        self.cross = {layer: (k[rows], v[rows]) for layer, (k, v) in self.cross.items()}

    def add_mask(self, key_mask: Tensor) -> None:
        """Record which of the next key_mask.size(1) positions are real tokens."""
        T = key_mask.size(1)
        self._check_room(T)
        self.key_mask[:, self.length : self.length + T] = key_mask
        self.has_padding = self.has_padding or not bool(key_mask.all())

    def store(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write k, v (B, H_kv, T, D) after the filled positions of `layer`; return all of
        that layer's keys and values so far, (B, H_kv, length + T, D) views, no copies."""
        T = k.size(2)
        self._check_room(T)
        end = self.length + T
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, T: int) -> None:
        """Mark T more positions as filled (after every layer has stored them)."""
        self.length += T

    def bytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2

    def _check_room(self, T: int) -> None:
        if self.length + T > self.max_len:
            raise GlassboxError(
                f"the KV cache holds {self.max_len} positions; {self.length} are used and "
                f"{T} more do not fit"
            )
