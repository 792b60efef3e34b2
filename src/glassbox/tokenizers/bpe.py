"""Byte-level BPE: the tokenizer of GPT-2 and GPT-4, written out.

Text becomes UTF-8 bytes, so any string can be encoded and nothing is ever "unknown".
A vocabulary maps byte strings to ids; an id doubles as a merge priority (its *rank*):
lower ids were learned earlier, from more frequent pairs. Encoding one chunk of text
starts from its single bytes and, while any two neighbours together spell a token,
merges the pair whose token has the lowest rank (the leftmost such pair on a tie). This is
the rule tiktoken applies, so with cl100k_base loaded `encode` returns tiktoken's ids.

Text is first cut into chunks by a regex (patterns.py), and merges stay within a chunk.
Special tokens (`<|endoftext|>`) are not text: they are matched before the regex runs,
and only where the caller allows them, as in tiktoken.

>>> tok = BPETokenizer.train("aaabdaaabac", vocab_size=259)
>>> [tok.token_bytes(i) for i in range(256, 259)]
[b'aa', b'ab', b'aaab']
>>> tok.encode("aaabdaaabac")
[258, 100, 258, 97, 99]
>>> tok.decode([258, 100])
'aaabd'
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import regex

from glassbox.tokenizers.base import TokenizerError, as_id, as_ids
from glassbox.tokenizers.patterns import compile_pattern, resolve

FORMAT = "glassbox-bpe-tokenizer"
VERSION = 1
LONG_CHUNK = 128  # chunks of more bytes than this merge with a heap (see merge_long)
CACHE_LIMIT = 1 << 18  # distinct chunks remembered before the cache starts afresh
_NONE = 1 << 62  # the rank of a pair that is not a token: larger than any real rank


def merge_ranked(piece: bytes, ranks: Mapping[bytes, int]) -> list[bytes]:
    """Split `piece` into tokens: start from its bytes and keep merging the neighbouring
    pair whose concatenation has the lowest rank (leftmost first) until none is a token.

    The list of pair ranks is kept beside the parts; a merge changes only the ranks of its
    two neighbours, and min() and index() scan the list at C speed.

    >>> merge_ranked(b"abcd", {b"a": 0, b"b": 1, b"c": 2, b"d": 3, b"bc": 4, b"abc": 5})
    [b'abc', b'd']
    """
    parts = [piece[i : i + 1] for i in range(len(piece))]
    pair_ranks = [ranks.get(x + y, _NONE) for x, y in pairwise(parts)]
    while pair_ranks:
        best = min(pair_ranks)
        if best == _NONE:
            break
        i = pair_ranks.index(best)
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
        del pair_ranks[i]
        if i > 0:
            pair_ranks[i - 1] = ranks.get(parts[i - 1] + parts[i], _NONE)
        if i < len(pair_ranks):
            pair_ranks[i] = ranks.get(parts[i] + parts[i + 1], _NONE)
    return parts


def merge_long(piece: bytes, ranks: Mapping[bytes, int]) -> list[bytes]:
    """`merge_ranked` in O(n log n) for long chunks (a page of spaces, a long base64 run),
    where rescanning all pair ranks after each merge would be quadratic.

    Parts are linked by their start offsets and candidate pairs wait in a heap ordered by
    (rank, start), which is the same lowest-rank, leftmost-first order. A heap entry is
    stale when the pair starting there no longer has that rank: ranks are unique per byte
    string, so an unchanged rank means an unchanged pair.
    """
    n = len(piece)
    nxt = list(range(1, n + 1))  # nxt[s]: start of the part after the part starting at s
    prv = list(range(-1, n - 1))
    rank_at = [_NONE] * n  # rank of the pair (part at s, part after it)
    heap = []
    for s in range(n - 1):
        rank = ranks.get(piece[s : s + 2])
        if rank is not None:
            rank_at[s] = rank
            heap.append((rank, s))
    heapq.heapify(heap)
    while heap:
        rank, s = heapq.heappop(heap)
        if rank_at[s] != rank:
            continue
        gone = nxt[s]  # the right half of the pair joins the part at s
        after = nxt[s] = nxt[gone]
        rank_at[gone] = _NONE
        if after < n:
            prv[after] = s
        for left in (prv[s], s):  # the two pairs that now contain the merged part
            if left < 0:
                continue
            right = nxt[left]
            rank = ranks.get(piece[left : nxt[right]], _NONE) if right < n else _NONE
            rank_at[left] = rank
            if rank != _NONE:
                heapq.heappush(heap, (rank, left))
    parts = []
    s = 0
    while s < n:
        parts.append(piece[s : nxt[s]])
        s = nxt[s]
    return parts


def _fix_surrogates(text: str) -> str:
    """Text with lone surrogates (not encodable as UTF-8) replaced by U+FFFD, as tiktoken
    does; a valid surrogate pair becomes the character it stands for."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class BPETokenizer:
    """A byte-level BPE vocabulary, its split pattern and its special tokens.

    `ranks` maps each token's bytes to its id (every single byte must be a token);
    `pattern` is a regex or a name from patterns.py; `special_tokens` maps strings such as
    "<|endoftext|>" to ids of their own.

    >>> tok = BPETokenizer.train("low lower lowest", 262, pattern="gpt2")
    >>> [tok.token_bytes(i) for i in range(256, 262)]
    [b'lo', b'low', b' low', b' lowe', b'st', b' lower']
    >>> ids = tok.encode("slower")
    >>> [tok.token_bytes(i) for i in ids], tok.decode(ids)
    ([b's', b'low', b'e', b'r'], 'slower')
    """

    def __init__(
        self,
        ranks: Mapping[bytes, int],
        pattern: str = "cl100k",
        special_tokens: Mapping[str, int] | None = None,
        name: str | None = None,
    ) -> None:
        self.ranks = dict(zip(ranks, as_ids(ranks.values()), strict=True))
        self.pattern = resolve(pattern)
        specials = dict(special_tokens or {})
        self.special_tokens = dict(zip(specials, as_ids(specials.values()), strict=True))
        self.name = name
        self._decoder = {rank: token for token, rank in self.ranks.items()}
        if len(self._decoder) != len(self.ranks):
            raise TokenizerError("two tokens of this BPE vocabulary share an id")
        missing = [b for b in range(256) if bytes([b]) not in self.ranks]
        if missing:
            raise TokenizerError(
                f"a byte-level vocabulary needs all 256 single bytes; {len(missing)} are "
                f"missing (first: {missing[0]})"
            )
        for text, token_id in self.special_tokens.items():
            if token_id in self._decoder:
                raise TokenizerError(f"special token {text!r} reuses id {token_id}")
            self._decoder[token_id] = text.encode("utf-8")
        try:
            self._regex = compile_pattern(self.pattern)
        except regex.error as err:
            raise TokenizerError(f"bad split pattern: {err}") from None
        self._vocab_size = max(self._decoder) + 1
        self._cache: dict[str, list[int]] = {}
        self._special_regexes: dict[frozenset[str], regex.Pattern] = {}

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        pattern: str = "cl100k",
        special_tokens: Iterable[str] = (),
    ) -> BPETokenizer:
        """Learn a vocabulary of `vocab_size` ids (256 bytes, the merges, then the special
        tokens) from `text`. Special tokens in the text separate chunks and are not learned
        from. If the text runs out of pairs first, the vocabulary is smaller.

        >>> BPETokenizer.train("hello hello", 258, special_tokens=["<|endoftext|>"]).vocab_size
        258
        """
        from glassbox.tokenizers.bpe_train import learn_bpe

        specials = list(dict.fromkeys(special_tokens))
        if vocab_size < 256 + len(specials):
            raise TokenizerError(
                f"vocab_size must be at least {256 + len(specials)} (256 bytes and "
                f"{len(specials)} special tokens); got {vocab_size}"
            )
        text = _fix_surrogates(text)
        chunks: Counter[str] = Counter()
        for piece in _special_splitter(specials).split(text) if specials else [text]:
            chunks.update(compile_pattern(pattern).findall(piece))
        counts = {chunk.encode("utf-8"): count for chunk, count in chunks.items()}
        tokens, _ = learn_bpe(counts, vocab_size - len(specials))
        ranks = {token: i for i, token in enumerate(tokens)}
        return cls(ranks, pattern, {s: len(tokens) + i for i, s in enumerate(specials)})

    @property
    def vocab_size(self) -> int:
        """One more than the largest id (cl100k_base: 100,277, though 15 ids are unused)."""
        return self._vocab_size

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes that one id stands for (a special token: its text in UTF-8)."""
        try:
            return self._decoder[as_id(token_id)]
        except KeyError:
            raise TokenizerError(f"id {token_id} is not in this vocabulary") from None

    # ---- encoding ----------------------------------------------------------------------

    def clear_cache(self) -> None:
        """Forget the ids remembered for each chunk seen (benchmarks time a cold start)."""
        self._cache.clear()

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids for `text`, reading special-token strings as plain text.

        >>> tok = BPETokenizer.train("ab ab ab", 258, special_tokens=["<|eot|>"])
        >>> len(tok.encode_ordinary("<|eot|>")) > 1
        True
        """
        try:
            return self._encode_ordinary(text)
        except UnicodeEncodeError:
            return self._encode_ordinary(_fix_surrogates(text))

    def _encode_ordinary(self, text: str) -> list[int]:
        cache = self._cache
        ids: list[int] = []
        for chunk in self._regex.findall(text):
            chunk_ids = cache.get(chunk)
            if chunk_ids is None:
                chunk_ids = self._encode_chunk(chunk)
            ids += chunk_ids
        return ids

    def _encode_chunk(self, chunk: str) -> list[int]:
        ranks = self.ranks
        piece = chunk.encode("utf-8")
        rank = ranks.get(piece)
        if rank is not None:  # most chunks of ordinary text are one token
            ids = [rank]
        else:
            merge = merge_long if len(piece) > LONG_CHUNK else merge_ranked
            ids = [ranks[part] for part in merge(piece, ranks)]
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[chunk] = ids
        return ids

    def encode(
        self,
        text: str,
        *,
        allowed_special: Collection[str] | Literal["all"] = (),
        disallowed_special: Collection[str] | Literal["all"] = "all",
    ) -> list[int]:
        """Ids for `text`. Special tokens follow tiktoken's rules: those in
        `allowed_special` become their ids; finding one in `disallowed_special` (by default
        every special token not allowed) is an error, because a document that merely
        mentions `<|endoftext|>` must not end a sequence by accident; pass
        `disallowed_special=()` to encode such text as ordinary text.

        >>> tok = BPETokenizer.train("ab ab", 257, special_tokens=["<|eot|>"])
        >>> tok.encode("ab<|eot|>", allowed_special="all")[-1]
        256
        >>> tok.encode("ab<|eot|>")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        glassbox.tokenizers.base.TokenizerError: text contains the special token '<|eot|>'...
        """
        specials = set(self.special_tokens)
        allowed = specials if allowed_special == "all" else set(allowed_special)
        unknown = allowed - specials
        if unknown:
            raise TokenizerError(
                f"not special tokens of this tokenizer: {', '.join(map(repr, sorted(unknown)))}"
            )
        disallowed = specials - allowed if disallowed_special == "all" else disallowed_special
        if disallowed:
            found = self._specials_regex(disallowed).search(text)
            if found:
                raise TokenizerError(
                    f"text contains the special token {found.group()!r}; pass "
                    f"allowed_special={{{found.group()!r}}} to encode it as that token, or "
                    "disallowed_special=() to encode it as plain text"
                )
        if not allowed:
            return self.encode_ordinary(text)
        ids: list[int] = []
        start = 0
        for match in self._specials_regex(allowed).finditer(text):
            ids += self.encode_ordinary(text[start : match.start()])
            ids.append(self.special_tokens[match.group()])
            start = match.end()
        ids += self.encode_ordinary(text[start:])
        return ids

    def _specials_regex(self, names: Collection[str]) -> regex.Pattern:
        key = frozenset(names)
        if key not in self._special_regexes:
            self._special_regexes[key] = _special_splitter(key)
        return self._special_regexes[key]

    # ---- decoding ----------------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of the tokens `ids`, joined. A run of tokens may end inside a UTF-8
        character, so streaming decoders accumulate these bytes (see generate/text.py).

        >>> tok = BPETokenizer.train("", 256)
        >>> tok.decode_bytes([0xE2, 0x82])
        b'\\xe2\\x82'
        """
        decoder = self._decoder
        ids = as_ids(ids)  # 1.7 or True would otherwise be read as id 1
        try:
            return b"".join([decoder[i] for i in ids])
        except KeyError:
            bad = sorted({i for i in ids if i not in decoder})
            raise TokenizerError(
                f"ids outside this vocabulary of {self.vocab_size}: {bad[:10]}"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`. Bytes that do not form whole UTF-8 characters (a token list
        cut inside a character) become U+FFFD, as in tiktoken, rather than an exception.

        >>> tok = BPETokenizer.train("", 256)
        >>> tok.decode(list("é!".encode())), tok.decode(list("é!".encode())[1:])
        ('é!', '\\ufffd!')
        """
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # ---- files -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The tokenizer as JSON-ready data: each token's bytes in base64, in id order
        (null for an unused id), the split regex and the special tokens."""
        tokens: list[str | None] = [None] * (max(self.ranks.values()) + 1)
        for token, rank in self.ranks.items():
            tokens[rank] = base64.b64encode(token).decode("ascii")
        return {
            "format": FORMAT,
            "version": VERSION,
            "type": "bpe",
            "name": self.name,
            "pattern": self.pattern,
            "special_tokens": self.special_tokens,
            "tokens": tokens,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    def save(self, path: Path | str) -> None:
        """Write the tokenizer as JSON (read it back with `BPETokenizer.load`)."""
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path | str) -> BPETokenizer:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise TokenizerError(f"cannot read a tokenizer from {path}: {err}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BPETokenizer:
        if data.get("format") != FORMAT or data.get("type") != "bpe":
            raise TokenizerError("not a glassbox BPE tokenizer file")
        if data.get("version") != VERSION:
            raise TokenizerError(f"unsupported BPE tokenizer version {data.get('version')}")
        try:
            ranks = {
                base64.b64decode(token, validate=True): rank
                for rank, token in enumerate(data["tokens"])
                if token is not None
            }
            return cls(ranks, data["pattern"], data["special_tokens"], data.get("name"))
        except (KeyError, TypeError, binascii.Error) as err:
            raise TokenizerError(f"malformed BPE tokenizer data ({err!r})") from None


def _special_splitter(names: Iterable[str]) -> regex.Pattern:
    """A regex matching any of `names`, longest first so that one special token that is a
    prefix of another never wins."""
    return regex.compile("|".join(regex.escape(s) for s in sorted(names, key=len, reverse=True)))
