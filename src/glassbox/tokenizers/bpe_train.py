"""Learning byte-level BPE merges from counted chunks, fast and by the book.

Training starts from the 256 single bytes and repeatedly merges the most frequent
adjacent pair of tokens into a new token. Merges never cross a chunk boundary, so the
text is cut into chunks once (see patterns.py) and only the distinct chunks and their
counts matter: tiny Shakespeare's 263,198 chunks (cl100k's pattern) are 15,258 distinct.

Two implementations of the same rule:

- `learn_bpe_naive` recounts every pair of every chunk before each merge. It is the
  definition, short and plainly right, and costs O(chunks x merges).
- `learn_bpe` counts pairs once, then after each merge updates only the chunks that held
  the merged pair (an index maps each pair to those chunks) and keeps the counts in a heap
  with lazy deletion. Tests check that both learn the same merges.

Ties between equally frequent pairs go to the smallest pair of ids (left id first), so
training is deterministic. Should a merge spell a byte string that is already a token,
the existing token is reused rather than duplicated: encoding looks tokens up by their
bytes, so the bytes must be unique. (We have not found a text where this happens; the
check costs one dict lookup per merge.)

>>> tokens, merges = learn_bpe({b"aaabdaaabac": 1}, vocab_size=259)
>>> tokens[256:], merges
([b'aa', b'ab', b'aaab'], [(97, 97, 256), (97, 98, 257), (256, 257, 258)])
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Mapping
from itertools import pairwise

Merge = tuple[int, int, int]  # (left id, right id, id of the token they make)


def byte_tokens() -> list[bytes]:
    """The 256 single-byte tokens; id i is the byte i."""
    return [bytes([i]) for i in range(256)]


def _replace_pair(word: list[int], a: int, b: int, new: int) -> list[int]:
    """`word` with every occurrence of the pair (a, b), scanned left to right, made `new`."""
    out = []
    i, n = 0, len(word)
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def learn_bpe_naive(
    chunk_counts: Mapping[bytes, int], vocab_size: int
) -> tuple[list[bytes], list[Merge]]:
    """The reference: before every merge, count all pairs in all chunks from scratch.

    Returns the tokens in id order (256 bytes first) and the merges in the order learned.
    """
    tokens = byte_tokens()
    index = {t: i for i, t in enumerate(tokens)}
    words = [(list(chunk), count) for chunk, count in chunk_counts.items()]
    merges: list[Merge] = []
    while len(tokens) < vocab_size:
        counts: dict[tuple[int, int], int] = defaultdict(int)
        for word, count in words:
            for pair in pairwise(word):
                counts[pair] += count
        if not counts:
            break  # every chunk is a single token: nothing left to merge
        a, b = max(counts, key=lambda p: (counts[p], -p[0], -p[1]))
        new = _token_id(tokens, index, tokens[a] + tokens[b])
        merges.append((a, b, new))
        words = [(_replace_pair(word, a, b, new), count) for word, count in words]
    return tokens, merges


def _token_id(tokens: list[bytes], index: dict[bytes, int], data: bytes) -> int:
    """The id of the token spelling `data`, made (with the next free id) if it is new."""
    if data not in index:
        index[data] = len(tokens)
        tokens.append(data)
    return index[data]


def learn_bpe(
    chunk_counts: Mapping[bytes, int], vocab_size: int
) -> tuple[list[bytes], list[Merge]]:
    """The same merges as `learn_bpe_naive`, with pair counts kept up to date incrementally.

    State: each distinct chunk as a list of token ids with its count; `counts[pair]`, the
    pair's frequency over the whole corpus; `where[pair]`, the chunks that may hold it; and
    a max-heap of (-count, left, right). A merge rewrites only the chunks in `where[pair]`,
    subtracting each rewritten chunk's old pairs and adding its new ones. Counts only rise
    for pairs that contain the new token, and only those are pushed; an entry whose count
    has since fallen is pushed again with the true count when it surfaces (lazy deletion).
    """
    tokens = byte_tokens()
    index = {t: i for i, t in enumerate(tokens)}
    words = [list(chunk) for chunk in chunk_counts]
    freqs = list(chunk_counts.values())
    counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for w, (word, freq) in enumerate(zip(words, freqs, strict=True)):
        for pair in pairwise(word):
            counts[pair] += freq
            where[pair].add(w)
    heap = [(-count, a, b) for (a, b), count in counts.items()]
    heapq.heapify(heap)
    merges: list[Merge] = []
    while len(tokens) < vocab_size and heap:
        neg, a, b = heapq.heappop(heap)
        count = counts.get((a, b), 0)
        if count != -neg:  # stale: the pair became rarer since this entry was pushed
            if count > 0:
                heapq.heappush(heap, (-count, a, b))
            continue
        new = _token_id(tokens, index, tokens[a] + tokens[b])
        merges.append((a, b, new))
        risen = set()
        for w in where.pop((a, b)):
            word = words[w]
            merged = _replace_pair(word, a, b, new)
            if len(merged) == len(word):
                continue  # an earlier merge already took the pair out of this chunk
            freq = freqs[w]
            for pair in pairwise(word):
                counts[pair] -= freq
            for pair in pairwise(merged):
                counts[pair] += freq
                if new in pair:  # the only pairs this merge can create
                    where[pair].add(w)
                    risen.add(pair)
            words[w] = merged
        del counts[(a, b)]  # now zero
        for pair in risen:
            heapq.heappush(heap, (-counts[pair], *pair))
    return tokens, merges
