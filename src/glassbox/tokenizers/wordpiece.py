"""BERT's WordPiece tokenizer, written out: the tokenizer of BERT and its descendants.

Two stages, as in Google's BERT and Hugging Face's `BertTokenizerFast`, whose ids a test
checks on varied text:

1. The basic tokenizer cuts text into words. It drops NUL, U+FFFD and control, format and
   private-use characters; reads any whitespace as a space; optionally strips accents
   (NFD, then drop nonspacing marks) and lowercases; puts each CJK ideograph in a word of
   its own; and makes each punctuation character a word (ASCII symbols count as
   punctuation, so "$" and "^" do too). Special tokens such as "[CLS]" written in the
   text are matched first, case-sensitively, and stay whole.
2. WordPiece splits each word greedily, longest match first, into vocabulary entries;
   "##" marks a piece that continues a word. A word with no such split, or longer than
   `max_input_chars_per_word`, becomes "[UNK]" as a whole.

>>> tok = WordPiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able",
...                  "!", "hello", "h", "##i"])
>>> tok.tokenize("Unaffable! Hello, héllo hi")
['un', '##aff', '##able', '!', 'hello', '[UNK]', 'hello', 'h', '##i']
>>> tok("hi!").input_ids
[2, 10, 11, 8, 3]

Where this departs from Google's Python code, it follows Hugging Face's fast tokenizer:
unassigned code points are kept, accents are stripped before lowercasing, lowercasing
goes character by character (no final-sigma rule), and the ideographs U+2B820..U+2B91F
are not split apart (its range for CJK Extension E starts at U+2B920). Character classes
come from Python's `unicodedata`, whose Unicode version can be newer or older than the
tables compiled into `tokenizers`; the few code points where they disagree (characters
added to Unicode since 2016, and three that changed category) are listed in the tests.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from glassbox.tokenizers.base import TokenizerError, as_ids

FORMAT = "glassbox-wordpiece-tokenizer"
VERSION = 1
CACHE_LIMIT = 1 << 18  # distinct runs of text remembered before the cache starts afresh
SPECIAL_ROLES = ("pad", "unk", "cls", "sep", "mask")
DEFAULT_SPECIAL_TOKENS = {
    "pad": "[PAD]",
    "unk": "[UNK]",
    "cls": "[CLS]",
    "sep": "[SEP]",
    "mask": "[MASK]",
}

# Character sets, written as the inside of a regex [...].
# Unicode's White_Space characters, less the controls among them (which are dropped).
WHITESPACE = "\t\n\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
ASCII_PUNCTUATION = r"!-/:-@\[-`{-~"  # code points 33-47, 58-64, 91-96, 123-126
# BERT's CJK blocks. Hugging Face's Rust code starts Extension E at U+2B920 where BERT's
# Python code has U+2B820; ids follow the fast tokenizer, so this does too.
CJK = (
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df\U0002a700-\U0002b73f"
    "\U0002b740-\U0002b81f\U0002b920-\U0002ceaf\U0002f800-\U0002fa1f"
)
# A run: one ASCII punctuation character, one ideograph, or the characters between them
# and whitespace. Normalization keeps an ASCII character ASCII and an ideograph one
# ideograph, so no word spans two runs, and encoding caches the ids of each run.
_RUN = re.compile(f"[{ASCII_PUNCTUATION}]|[{CJK}]|[^{WHITESPACE}{ASCII_PUNCTUATION}{CJK}]+")
_RUN_KEEPING_CJK = re.compile(f"[{ASCII_PUNCTUATION}]|[^{WHITESPACE}{ASCII_PUNCTUATION}]+")
_ASCII_PUNCTUATION_SET = frozenset(chr(c) for c in range(33, 127) if not chr(c).isalnum())


def is_dropped(ch: str) -> bool:
    """Whether cleaning removes `ch`: NUL, U+FFFD, and control (Cc), format (Cf) and
    private-use (Co) characters; tab, newline and carriage return are whitespace instead.

    >>> is_dropped("\\x00"), is_dropped("\\u200b"), is_dropped("\\t"), is_dropped("a")
    (True, True, False, False)
    """
    return ch == "\ufffd" or (unicodedata.category(ch) in ("Cc", "Cf", "Co") and ch not in "\t\n\r")


def is_punctuation(ch: str) -> bool:
    """BERT's punctuation: every ASCII character that is not a letter, digit, space or
    control, and every character of a Unicode punctuation category (P*).

    >>> is_punctuation("$"), is_punctuation("¿"), is_punctuation("€")
    (True, True, False)
    """
    return ch in _ASCII_PUNCTUATION_SET or unicodedata.category(ch).startswith("P")


def strip_accents(chars: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Canonical decomposition (NFD) of tagged characters, less the nonspacing marks.

    Each character carries a tag: where it came from in the original text. NFD is each
    character's decomposition, then every run of combining marks sorted stably by
    combining class. Tags are then handed out in order, as Hugging Face aligns them: the
    first character of each decomposition takes the next tag of the input, and any other
    character takes the tag before it, wherever the sort has put it. So tags never
    decrease, and a mark moved past another character's mark takes that character's tag.

    >>> strip_accents([("é", 0), ("n", 1), ("\\u0303", 2)])
    [('e', 0), ('n', 1)]
    """
    out: list[tuple[str, bool]] = []  # (character, whether it starts an input's NFD)
    for ch, _ in chars:
        decomposed = unicodedata.normalize("NFD", ch)
        out += [(d, k == 0) for k, d in enumerate(decomposed)]
    classes = [unicodedata.combining(d) for d, _ in out]
    start = 0
    while start < len(out):
        if not classes[start]:
            start += 1
            continue
        end = start
        while end < len(out) and classes[end]:
            end += 1
        out[start:end] = sorted(out[start:end], key=lambda d: unicodedata.combining(d[0]))
        start = end
    tags = (i for _, i in chars)
    tag = chars[0][1] if chars else 0
    stripped: list[tuple[str, int]] = []
    for d, starts in out:
        if starts:
            tag = next(tags)
        if unicodedata.category(d) != "Mn":
            stripped.append((d, tag))
    return stripped


@dataclass
class Encoding:
    """One model input: a text (or a pair) with its special tokens, cut and padded.

    `offsets[k]` is the span of token k in its original text (for a pair, in the text it
    came from); special and padding tokens get (0, 0), as in Hugging Face.
    """

    input_ids: list[int]
    token_type_ids: list[int]
    attention_mask: list[int]
    offsets: list[tuple[int, int]]


class WordPiece:
    """A WordPiece vocabulary (`tokens`, in id order) and the basic tokenizer's options.

    `strip_accents=None` strips accents exactly when lowercasing, as BERT does;
    `special_tokens` maps the roles pad, unk, cls, sep, mask to tokens of the vocabulary
    (defaults: "[UNK]", ...). Special tokens and the `never_split` tokens stay whole when
    they appear in text. A token listed twice keeps its last id, as in Hugging Face.
    """

    def __init__(
        self,
        tokens: Sequence[str],
        *,
        lowercase: bool = True,
        strip_accents: bool | None = None,
        handle_chinese_chars: bool = True,
        max_input_chars_per_word: int = 100,
        model_max_length: int | None = 512,
        special_tokens: Mapping[str, str] | None = None,
        never_split: Iterable[str] = (),
    ) -> None:
        self.tokens = list(tokens)
        if not self.tokens:
            raise TokenizerError("a WordPiece vocabulary needs at least one token")
        self.vocab = {token: i for i, token in enumerate(self.tokens)}
        self.lowercase = lowercase
        self.strip_accents = strip_accents
        self.handle_chinese_chars = handle_chinese_chars
        self.max_input_chars_per_word = max_input_chars_per_word
        self.model_max_length = model_max_length
        unknown_roles = set(special_tokens or {}) - set(SPECIAL_ROLES)
        if unknown_roles:
            raise TokenizerError(
                f"unknown special-token roles {sorted(unknown_roles)}; known: {SPECIAL_ROLES}"
            )
        self.special_tokens = {**DEFAULT_SPECIAL_TOKENS, **(special_tokens or {})}
        self.never_split = list(dict.fromkeys(never_split))
        for role, token in [
            *self.special_tokens.items(),
            *(("never_split", t) for t in self.never_split),
        ]:
            if token not in self.vocab:
                raise TokenizerError(f"the {role} token {token!r} is not in the vocabulary")
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
            self.vocab[self.special_tokens[role]] for role in SPECIAL_ROLES
        )
        whole = sorted({*self.special_tokens.values(), *self.never_split}, key=len, reverse=True)
        self._specials = re.compile("(" + "|".join(map(re.escape, whole)) + ")")
        self._special_ids = frozenset(self.vocab[token] for token in whole)
        self._run = _RUN if handle_chinese_chars else _RUN_KEEPING_CJK
        self._longest = max(map(len, self.vocab))  # no match can be longer
        self._cache: dict[str, tuple[list[int], list[tuple[int, int]]]] = {}

    @classmethod
    def from_folder(cls, path: Path | str) -> WordPiece:
        """Load a Hugging Face BERT tokenizer folder: `vocab.txt` (one token per line, the
        line number is the id), plus the options and special tokens of
        `tokenizer_config.json` and `special_tokens_map.json` where present."""
        folder = Path(path)
        vocab_file = folder / "vocab.txt"
        try:
            tokens = vocab_file.read_text(encoding="utf-8").split("\n")
        except (OSError, UnicodeDecodeError) as err:
            raise TokenizerError(
                f"cannot read the WordPiece vocabulary {vocab_file}: {err}"
            ) from None
        if tokens[-1] == "":  # the newline that ends the last line
            tokens.pop()
        if not tokens:
            raise TokenizerError(f"the WordPiece vocabulary {vocab_file} is empty")
        config = _read_json(folder / "tokenizer_config.json")
        specials = {**config, **_read_json(folder / "special_tokens_map.json")}
        special_tokens = {
            role: _token_text(specials[f"{role}_token"])
            for role in SPECIAL_ROLES
            if specials.get(f"{role}_token") is not None
        }
        try:
            return cls(
                tokens,
                lowercase=config.get("do_lower_case", True),
                strip_accents=config.get("strip_accents"),
                handle_chinese_chars=config.get("tokenize_chinese_chars", True),
                model_max_length=config.get("model_max_length", 512),
                special_tokens=special_tokens,
                never_split=[_token_text(t) for t in specials.get("additional_special_tokens", [])],
            )
        except TokenizerError as err:
            raise TokenizerError(f"{vocab_file}: {err}") from None

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    # ---- the basic tokenizer -----------------------------------------------------------

    def _words(self, run: str) -> list[tuple[str, list[int]]]:
        """The words of one run, each with the index in `run` of each of its characters."""
        if run.isascii() and run.isprintable():  # no control characters, accents or case
            return [(run.lower() if self.lowercase else run, list(range(len(run))))]
        chars = [(ch, i) for i, ch in enumerate(run) if not is_dropped(ch)]
        if self.strip_accents or (self.strip_accents is None and self.lowercase):
            chars = strip_accents(chars)
        if self.lowercase:  # character by character, as Hugging Face does
            chars = [(low, i) for ch, i in chars for low in ch.lower()]
        words: list[tuple[str, list[int]]] = []
        word: list[tuple[str, int]] = []
        for ch, i in chars:
            if is_punctuation(ch):
                if word:
                    words.append(_joined(word))
                words.append((ch, [i]))
                word = []
            else:
                word.append((ch, i))
        if word:
            words.append(_joined(word))
        return words

    def split_words(self, text: str) -> list[str]:
        """The basic tokenizer alone: the words that WordPiece then splits.

        >>> WordPiece(list(DEFAULT_SPECIAL_TOKENS.values())).split_words("Ça va? 北京[MASK]")
        ['ca', 'va', '?', '北', '京', '[MASK]']
        """
        words: list[str] = []
        for k, part in enumerate(self._specials.split(text)):  # odd k: a special token
            if k % 2:
                words.append(part)
            else:
                words += [w for run in self._run.findall(part) for w, _ in self._words(run)]
        return words

    # ---- WordPiece ---------------------------------------------------------------------

    def _wordpiece(self, word: str) -> list[tuple[int, int, int]] | None:
        """(id, start, end) for each piece of `word`, longest match first; None when some
        part of it matches nothing."""
        if len(word) > self.max_input_chars_per_word:
            return None
        vocab = self.vocab
        pieces: list[tuple[int, int, int]] = []
        start = 0
        while start < len(word):
            end = min(len(word), start + self._longest)
            while end > start:
                token_id = vocab.get(word[start:end] if start == 0 else "##" + word[start:end])
                if token_id is not None:
                    break
                end -= 1
            else:
                return None
            pieces.append((token_id, start, end))
            start = end
        return pieces

    def _encode_run(self, run: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids of one run of plain text and their spans in it, remembered for next time."""
        ids: list[int] = []
        spans: list[tuple[int, int]] = []
        for word, origin in self._words(run):
            for token_id, start, end in self._wordpiece(word) or [(self.unk_id, 0, len(word))]:
                ids.append(token_id)
                spans.append((origin[start], origin[end - 1] + 1))
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[run] = ids, spans
        return ids, spans

    def clear_cache(self) -> None:
        """Forget the ids remembered for each run of text (benchmarks time a cold start)."""
        self._cache.clear()

    def encode(self, text: str) -> list[int]:
        """Ids for `text`, without [CLS] and [SEP] (see `__call__` for model inputs).

        >>> WordPiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "##b"]).encode("ab A c")
        [5, 6, 5, 1]
        """
        cache = self._cache
        ids: list[int] = []
        for k, part in enumerate(self._specials.split(text)):  # odd k: a special token
            if k % 2:
                ids.append(self.vocab[part])
                continue
            for run in self._run.findall(part):
                ids += (cache.get(run) or self._encode_run(run))[0]
        return ids

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """`encode(text)` and the (start, end) span in `text` of each token."""
        cache = self._cache
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        start = 0  # of `part` in `text`
        for k, part in enumerate(self._specials.split(text)):  # odd k: a special token
            if k % 2:
                ids.append(self.vocab[part])
                offsets.append((start, start + len(part)))
            else:
                for match in self._run.finditer(part):
                    run_ids, spans = cache.get(match.group()) or self._encode_run(match.group())
                    ids += run_ids
                    base = start + match.start()
                    offsets += [(base + a, base + b) for a, b in spans]
            start += len(part)
        return ids, offsets

    def tokenize(self, text: str) -> list[str]:
        """The tokens of `text` as strings."""
        return [self.tokens[i] for i in self.encode(text)]

    # ---- model inputs ------------------------------------------------------------------

    def __call__(
        self,
        text: str,
        pair: str | None = None,
        *,
        add_special_tokens: bool = True,
        truncation: bool = False,
        max_length: int | None = None,
        padding: bool | Literal["longest", "max_length"] = False,
    ) -> Encoding:
        """The model input for `text` (and `pair`): "[CLS] text [SEP] (pair [SEP])", with
        token type 0 for the first part and 1 for the second. See `encode_batch`.

        >>> tok = WordPiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"])
        >>> enc = tok("a a", "b", padding="max_length", max_length=8)
        >>> enc.input_ids, enc.token_type_ids, enc.attention_mask
        ([2, 5, 5, 3, 6, 3, 0, 0], [0, 0, 0, 0, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 0, 0])
        >>> enc.offsets[:4]
        [(0, 0), (0, 1), (2, 3), (0, 0)]
        """
        pairs = None if pair is None else [pair]
        return self.encode_batch(
            [text],
            pairs,
            add_special_tokens=add_special_tokens,
            truncation=truncation,
            max_length=max_length,
            padding=padding,
        )[0]

    def encode_batch(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        *,
        add_special_tokens: bool = True,
        truncation: bool = False,
        max_length: int | None = None,
        padding: bool | Literal["longest", "max_length"] = False,
    ) -> list[Encoding]:
        """Model inputs for a batch of texts (or of pairs `texts[k]`, `pairs[k]`).

        truncation: cut each input to `max_length` tokens (default: `model_max_length`),
            special tokens included. A pair loses tokens from its longer part first, as
            Hugging Face's "longest_first": when the shorter part fits in half the room it
            stays whole, otherwise each part gets half (the longer part the odd token).
        padding: True or "longest" pads every input to the longest of the batch; and
            "max_length" to `max_length` (default: `model_max_length`). Padding goes on the
            right, with attention mask 0. Unlike Hugging Face, a `max_length` alone does
            not truncate.
        """
        if isinstance(texts, str) or isinstance(pairs, str):
            raise TokenizerError("encode_batch takes lists of texts; call the tokenizer for one")
        if pairs is not None and len(pairs) != len(texts):
            raise TokenizerError(f"{len(texts)} texts but {len(pairs)} pairs")
        if padding not in (False, True, "longest", "max_length"):
            raise TokenizerError(
                f"padding must be False, True, 'longest' or 'max_length'; got {padding!r}"
            )
        limit = max_length if max_length is not None else self.model_max_length
        if (truncation or padding == "max_length") and limit is None:
            raise TokenizerError("no max_length given, and this tokenizer has no model_max_length")
        encodings: list[Encoding] = []
        for k, text in enumerate(texts):
            first = self.encode_with_offsets(text)
            second = None if pairs is None else self.encode_with_offsets(pairs[k])
            encodings.append(
                self._assemble(first, second, add_special_tokens, limit if truncation else None)
            )
        if padding == "max_length":
            width = limit
        elif padding:
            width = max((len(e.input_ids) for e in encodings), default=0)
        else:
            return encodings
        for e in encodings:
            n = width - len(e.input_ids)
            if n > 0:
                e.input_ids += [self.pad_id] * n
                e.token_type_ids += [0] * n
                e.attention_mask += [0] * n
                e.offsets += [(0, 0)] * n
        return encodings

    def _assemble(
        self,
        first: tuple[list[int], list[tuple[int, int]]],
        second: tuple[list[int], list[tuple[int, int]]] | None,
        add_special_tokens: bool,
        limit: int | None,
    ) -> Encoding:
        """One input from the ids and offsets of its one or two texts."""
        (ids_a, offsets_a), (ids_b, offsets_b) = first, second or ([], [])
        if limit is not None:
            room = limit - ((2 if second is None else 3) if add_special_tokens else 0)
            if room < 0:
                raise TokenizerError(f"max_length {limit} leaves no room for the special tokens")
            keep_a, keep_b = _longest_first(len(ids_a), len(ids_b), room)
            ids_a, offsets_a = ids_a[:keep_a], offsets_a[:keep_a]
            ids_b, offsets_b = ids_b[:keep_b], offsets_b[:keep_b]
        sep, none = ([self.sep_id], [(0, 0)]) if add_special_tokens else ([], [])
        ids = [self.cls_id] * add_special_tokens + ids_a + sep
        offsets = none + offsets_a + none
        types = [0] * len(ids)
        if second is not None:
            ids += ids_b + sep
            offsets += offsets_b + none
            types += [1] * (len(ids) - len(types))
        return Encoding(ids, types, [1] * len(ids), offsets)

    # ---- decoding ----------------------------------------------------------------------

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """The tokens of `ids` joined into text: words separated by spaces, "##" pieces
        glued to the word before, and no space before ".", ",", "!" or "?" (which is what
        Hugging Face's WordPiece decoder does). Lowercasing and stripped accents are not
        undone, and "it's" comes back as "it ' s".

        >>> tok = WordPiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##able", "!"])
        >>> tok.decode([2, 5, 6, 7, 5, 3]), tok.decode([2, 5, 3], skip_special_tokens=True)
        ('[CLS] unable! un [SEP]', 'un')
        """
        ids = as_ids(ids)  # 1.7 or True would otherwise be read as id 1
        bad = sorted({i for i in ids if not 0 <= i < len(self.tokens)})
        if bad:
            raise TokenizerError(f"ids outside this vocabulary of {len(self.tokens)}: {bad[:10]}")
        if skip_special_tokens:
            ids = [i for i in ids if i not in self._special_ids]
        parts: list[str] = []
        for k, token in enumerate(self.tokens[i] for i in ids):
            if k and token.startswith("##"):
                parts.append(token[2:])
            elif k and token not in (".", ",", "!", "?"):
                parts.append(" " + token)
            else:
                parts.append(token)
        return "".join(parts)

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The UTF-8 bytes of `decode(ids)` (every token here is whole characters)."""
        return self.decode(ids).encode("utf-8")

    # ---- files -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "type": "wordpiece",
            "tokens": self.tokens,
            "lowercase": self.lowercase,
            "strip_accents": self.strip_accents,
            "handle_chinese_chars": self.handle_chinese_chars,
            "max_input_chars_per_word": self.max_input_chars_per_word,
            "model_max_length": self.model_max_length,
            "special_tokens": self.special_tokens,
            "never_split": self.never_split,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WordPiece:
        if data.get("format") != FORMAT or data.get("type") != "wordpiece":
            raise TokenizerError("not a glassbox WordPiece tokenizer file")
        if data.get("version") != VERSION:
            raise TokenizerError(f"unsupported WordPiece tokenizer version {data.get('version')}")
        options = {k: v for k, v in data.items() if k not in ("format", "version", "type")}
        try:
            return cls(options.pop("tokens"), **options)
        except (KeyError, TypeError) as err:
            raise TokenizerError(f"malformed WordPiece tokenizer data ({err!r})") from None


def to_tensors(encodings: Sequence[Encoding]) -> dict[str, Any]:
    """input_ids, token_type_ids and attention_mask of a padded batch as (B, T) int64
    torch tensors, the keyword arguments a BERT model takes."""
    import torch

    if len({len(e.input_ids) for e in encodings}) > 1:
        raise TokenizerError("inputs of different lengths; encode them with padding=True")
    return {
        name: torch.tensor([getattr(e, name) for e in encodings], dtype=torch.long)
        for name in ("input_ids", "token_type_ids", "attention_mask")
    }


def _longest_first(a: int, b: int, room: int) -> tuple[int, int]:
    """How many tokens of two parts of a and b tokens to keep within `room` tokens:
    Hugging Face's "longest_first" (on a tie, the second part counts as the longer).

    >>> _longest_first(3, 10, 8), _longest_first(6, 10, 8), _longest_first(10, 6, 7)
    ((3, 5), (4, 4), (4, 3))
    """
    if a + b <= room:
        return a, b
    short = min(a, b)
    if 2 * short <= room:
        short_keep, long_keep = short, room - short
    else:
        short_keep, long_keep = room // 2, room - room // 2
    return (long_keep, short_keep) if a > b else (short_keep, long_keep)


def _joined(chars: list[tuple[str, int]]) -> tuple[str, list[int]]:
    return "".join(ch for ch, _ in chars), [i for _, i in chars]


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, or {} when there is no such file."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise TokenizerError(f"cannot read {path}: {err}") from None
    if not isinstance(data, dict):
        raise TokenizerError(f"{path} does not hold a JSON object")
    return data


def _token_text(token: str | dict[str, Any]) -> str:
    """A special token as Hugging Face saves it: a string, or {"content": ..., ...}."""
    return token["content"] if isinstance(token, dict) else token
