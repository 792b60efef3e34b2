"""Synthetic sequence-to-sequence tasks, generated on the fly, for an encoder-decoder.

"Attention Is All You Need" trains on translation; these toy tasks (copy, reverse, sort,
addition) need no corpus, have one right answer that `solve` computes, and show quickly
whether cross-attention works: copy needs it to look at the same position, reverse the
mirrored one, sort to count, addition to carry. Every random number comes from the
`torch.Generator` passed in, so a run resumed from a saved generator state replays the
same batches.

Layout of a batch, with PAD = 0 as the loss's ignore index:

    src     (B, S)  source ids                 (no BOS or EOS: the encoder sees it whole)
    tgt_in  (B, T)  BOS, target ids            (the decoder's input, shifted right)
    tgt_out (B, T)  target ids, EOS            (what the decoder must predict)
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Set
from typing import TYPE_CHECKING, Any

import torch

from glassbox.config import SEQ2SEQ_TASKS, TrainConfig
from glassbox.errors import GlassboxError
from glassbox.tokenizers.base import as_ids

if TYPE_CHECKING:
    from glassbox.data.arithmetic import AdditionTask
    from glassbox.data.calculator import CalculatorTask
    from glassbox.data.facts import FactsTask

TASKS = SEQ2SEQ_TASKS
PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<bos>", "<eos>")
DIGITS = "0123456789"

FORMAT = "glassbox-task-tokenizer"
VERSION = 1
MAX_DRAWS = 1000  # rounds of redrawing excluded sources before giving up
_ADDITION = re.compile(r"([0-9]+)\+([0-9]+)")


class TaskError(GlassboxError, ValueError):
    """A bad task setting, or a source or ids a task cannot handle; one line."""


def _shown(chars: Iterable[str]) -> str:
    unknown = sorted(set(chars))
    more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
    return ", ".join(repr(ch) for ch in unknown[:10]) + more


class TaskTokenizer:
    """Ids 0..2 are the specials, then one id per symbol of the alphabet, in its order.

    >>> tok = TaskTokenizer("abc")
    >>> tok.vocab_size, tok.encode("cab")
    (6, [5, 3, 4])
    >>> tok.decode([BOS, 5, 3, EOS, 4])   # stops at the first EOS
    'ca'
    """

    def __init__(self, symbols: str) -> None:
        if not isinstance(symbols, str) or not symbols:
            raise TaskError("a task tokenizer needs a non-empty string of symbols")
        repeated = {ch for ch in symbols if symbols.count(ch) > 1}
        if repeated:
            raise TaskError(f"the symbols of a task tokenizer repeat {_shown(repeated)}")
        self.symbols = symbols
        self._ids = {ch: len(SPECIALS) + i for i, ch in enumerate(symbols)}

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + len(self.symbols)

    def encode(self, text: str) -> list[int]:
        """Ids of the symbols of `text`; specials are never produced here (batches add them)."""
        try:
            return [self._ids[ch] for ch in text]
        except KeyError:
            unknown = [ch for ch in text if ch not in self._ids]
            raise TaskError(
                f"text has symbols outside the alphabet {self.symbols!r}: {_shown(unknown)}"
            ) from None

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        """The symbols up to the first EOS, skipping PAD and BOS, so a model's whole output
        row (or a padded target row) decodes to just its answer."""
        ids = as_ids(ids.tolist() if isinstance(ids, torch.Tensor) else ids)  # 1.7 is no id
        bad = sorted({i for i in ids if not 0 <= i < self.vocab_size})
        if bad:
            raise TaskError(f"ids outside the vocabulary of {self.vocab_size} tokens: {bad[:10]}")
        end = ids.index(EOS) if EOS in ids else len(ids)
        offset = len(SPECIALS)
        return "".join(self.symbols[i - offset] for i in ids[:end] if i >= offset)

    def decode_bytes(self, ids: Iterable[int] | torch.Tensor) -> bytes:
        """The UTF-8 bytes of `decode(ids)`, for the shared tokenizer interface."""
        return self.decode(ids).encode("utf-8")

    def token_str(self, i: int) -> str:
        """How token `i` is shown: its special name, or its symbol."""
        if not 0 <= i < self.vocab_size:
            raise TaskError(f"id {i} is outside the vocabulary of {self.vocab_size} tokens")
        return SPECIALS[i] if i < len(SPECIALS) else self.symbols[i - len(SPECIALS)]

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "type": "task", "symbols": list(self.symbols)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskTokenizer:
        if data.get("format") != FORMAT or data.get("type") != "task":
            raise TaskError("not a glassbox task tokenizer file")
        if data.get("version") != VERSION:
            raise TaskError(f"unsupported task tokenizer version {data.get('version')}")
        symbols = data.get("symbols")
        if not isinstance(symbols, list) or not all(
            isinstance(s, str) and len(s) == 1 for s in symbols
        ):
            raise TaskError("the symbols of a task tokenizer file must be single characters")
        return cls("".join(symbols))


class Seq2SeqTask:
    """One synthetic task: random sources, their correct targets, and padded id batches.

    >>> task = Seq2SeqTask("reverse", alphabet="abc", min_len=2, max_len=4)
    >>> task.solve("abcc")
    'ccba'
    >>> src, tgt_in, tgt_out = task.encode_pairs([("ab", "ba"), ("abc", "cba")])
    >>> src.tolist(), tgt_in.tolist(), tgt_out.tolist()
    ([[3, 4, 0], [3, 4, 5]], [[1, 4, 3, 0], [1, 5, 4, 3]], [[4, 3, 2, 0], [5, 4, 3, 2]])
    >>> Seq2SeqTask("addition", min_len=1, max_len=2).solve("57+68")
    '125'
    """

    def __init__(
        self, name: str, alphabet: str = DIGITS, min_len: int = 10, max_len: int = 20
    ) -> None:
        if name not in TASKS:
            close = difflib.get_close_matches(str(name), TASKS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ";"
            raise TaskError(f"unknown task {name!r}{hint} choices: {', '.join(TASKS)}")
        if not isinstance(alphabet, str) or not alphabet:
            raise TaskError(f"task {name} needs a non-empty alphabet")
        repeated = {ch for ch in alphabet if alphabet.count(ch) > 1}
        if repeated:
            raise TaskError(f"the alphabet of task {name} repeats {_shown(repeated)}")
        if name == "addition" and sorted(alphabet) != list(DIGITS):
            raise TaskError(
                f"task addition needs the ten digits {DIGITS} as alphabet, not {alphabet!r}"
            )
        for label, value in (("min_len", min_len), ("max_len", max_len)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TaskError(f"{label} of task {name} must be an integer, not {value!r}")
        if not 1 <= min_len <= max_len:
            raise TaskError(
                f"task {name} needs 1 <= min_len <= max_len, "
                f"got min_len={min_len}, max_len={max_len}"
            )
        self.name, self.alphabet, self.min_len, self.max_len = name, alphabet, min_len, max_len
        self._rank = {ch: i for i, ch in enumerate(alphabet)}
        if name == "addition":
            self.tokenizer = TaskTokenizer(alphabet + "+")
            self.max_source_len = 2 * max_len + 1  # "a+b"
            self.max_target_len = max_len + 2  # a carry adds a digit, then EOS
        else:
            self.tokenizer = TaskTokenizer(alphabet)
            self.max_source_len = max_len
            self.max_target_len = max_len + 1

    def __repr__(self) -> str:
        return (
            f"Seq2SeqTask({self.name!r}, alphabet={self.alphabet!r}, "
            f"min_len={self.min_len}, max_len={self.max_len})"
        )

    @property
    def num_sources(self) -> int:
        """How many distinct sources this task can draw (bounds held-out sets)."""
        lo, hi = self.min_len, self.max_len
        if self.name == "addition":
            numbers = 10**hi - (10 ** (lo - 1) if lo > 1 else 0)  # lo..hi digits, no leading 0
            return numbers * numbers
        a = len(self.alphabet)
        return hi - lo + 1 if a == 1 else a**lo * (a ** (hi - lo + 1) - 1) // (a - 1)

    def solve(self, source: str) -> str:
        """The correct target: copy it, reverse it, sort it by alphabet order, or add."""
        if self.name == "addition":
            match = _ADDITION.fullmatch(source)
            if match is None:
                raise TaskError(f"an addition source looks like '12+345', not {source!r}")
            return str(int(match[1]) + int(match[2]))
        unknown = [ch for ch in source if ch not in self._rank]
        if unknown:
            raise TaskError(
                f"source has symbols outside the alphabet {self.alphabet!r}: {_shown(unknown)}"
            )
        if self.name == "reverse":
            return source[::-1]
        if self.name == "sort":
            return "".join(sorted(source, key=self._rank.__getitem__))
        return source

    def _draw(self, k: int, generator: torch.Generator) -> list[str]:
        """k random sources from a few vectorized draws; strings are built per row."""
        lo, hi = self.min_len, self.max_len
        if self.name == "addition":
            counts = torch.randint(lo, hi + 1, (k, 2), generator=generator).tolist()  # (k, 2)
            # one draw serves both leading-digit rules: 90 is a multiple of 10 and of 9, so
            # u % 10 is uniform on 0..9 (one-digit numbers) and u % 9 + 1 on 1..9 (no lead 0)
            lead = torch.randint(90, (k, 2), generator=generator).tolist()  # (k, 2)
            rest = torch.randint(10, (k, 2, hi - 1), generator=generator).tolist()  # (k, 2, hi-1)
            return [
                "+".join(self._number(n[j], u[j], r[j]) for j in (0, 1))
                for n, u, r in zip(counts, lead, rest, strict=True)
            ]
        lengths = torch.randint(lo, hi + 1, (k,), generator=generator).tolist()  # (k,)
        symbols = torch.randint(
            len(self.alphabet), (k, hi), generator=generator
        ).tolist()  # (k, hi)
        pick = self.alphabet.__getitem__
        return ["".join(map(pick, row[:n])) for n, row in zip(lengths, symbols, strict=True)]

    @staticmethod
    def _number(count: int, lead: int, rest: list[int]) -> str:
        if count == 1:
            return str(lead % 10)
        return str(lead % 9 + 1) + "".join(map(str, rest[: count - 1]))

    def sample(self, generator: torch.Generator) -> tuple[str, str]:
        """One random (source, target) pair."""
        source = self._draw(1, generator)[0]
        return source, self.solve(source)

    def _sources(self, k: int, generator: torch.Generator, exclude: Set[str]) -> list[str]:
        sources = self._draw(k, generator)
        if not exclude:
            return sources
        for _ in range(MAX_DRAWS):
            redo = [i for i, s in enumerate(sources) if s in exclude]
            if not redo:
                return sources
            for i, s in zip(redo, self._draw(len(redo), generator), strict=True):
                sources[i] = s
        raise TaskError(
            f"no source outside `exclude` after {MAX_DRAWS} draws: it holds {len(exclude)} "
            f"of the {self.num_sources} sources of task {self.name}"
        )

    def batch(
        self,
        batch_size: int,
        generator: torch.Generator,
        exclude: Set[str] = frozenset(),
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Random (src, tgt_in, tgt_out) as in `encode_pairs`; sources in `exclude` are
        redrawn, so held-out examples never reach training."""
        if batch_size < 1:
            raise TaskError(f"batch_size must be at least 1, got {batch_size}")
        sources = self._sources(batch_size, generator, exclude)
        return self.encode_pairs([(s, self.solve(s)) for s in sources])

    def held_out(self, n: int, seed: int) -> list[tuple[str, str]]:
        """n distinct (source, target) pairs drawn from their own generator seeded with
        `seed`, so the same seed always names the same evaluation set."""
        if n < 0:
            raise TaskError(f"cannot hold out a negative number of examples ({n})")
        if n > self.num_sources:
            raise TaskError(
                f"task {self.name} has only {self.num_sources} distinct sources; "
                f"cannot hold out {n}"
            )
        generator = torch.Generator().manual_seed(seed)
        seen: dict[str, None] = {}  # insertion-ordered set
        for _ in range(MAX_DRAWS):
            if len(seen) >= n:
                break
            # at least 64 per round, so that the last few rare sources do not take a round each
            seen.update(dict.fromkeys(self._draw(max(n - len(seen), 64), generator)))
        else:
            raise TaskError(f"drew fewer than {n} distinct sources in {MAX_DRAWS} rounds")
        return [(s, self.solve(s)) for s in list(seen)[:n]]

    def encode_pairs(
        self, pairs: list[tuple[str, str]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Ids for given (source, target) pairs, each tensor right-padded with PAD to the
        longest row of this batch: src (B, S), tgt_in (B, T) = BOS + target,
        tgt_out (B, T) = target + EOS."""
        if not pairs:
            raise TaskError("no (source, target) pairs to encode")
        encode = self.tokenizer.encode
        sources = [encode(s) for s, _ in pairs]
        targets = [encode(t) for _, t in pairs]
        S = max(len(s) for s in sources)
        T = max(len(t) for t in targets) + 1
        src = torch.tensor([s + [PAD] * (S - len(s)) for s in sources])  # (B, S)
        tgt_in = torch.tensor([[BOS] + t + [PAD] * (T - 1 - len(t)) for t in targets])  # (B, T)
        tgt_out = torch.tensor([t + [EOS] + [PAD] * (T - 1 - len(t)) for t in targets])  # (B, T)
        return src, tgt_in, tgt_out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "alphabet": self.alphabet,
            "min_len": self.min_len,
            "max_len": self.max_len,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Seq2SeqTask:
        keys = {"name", "alphabet", "min_len", "max_len"}
        unknown, missing = set(data) - keys, keys - set(data)
        if unknown or missing:
            raise TaskError(
                f"a task needs exactly the keys {sorted(keys)}; "
                f"unknown {sorted(unknown)}, missing {sorted(missing)}"
            )
        return cls(data["name"], data["alphabet"], data["min_len"], data["max_len"])


class InductionTask:
    """Next-token prediction on a random block of symbols followed by the same block:
    [BOS] r_1 .. r_L r_1 .. r_L, then random filler up to a fixed length. The first
    block is unpredictable (loss about log of the alphabet size); the repeat is
    predictable only by a model that finds the earlier occurrence of the current token
    and copies the token after it: an induction head (Olsson et al. 2022).

    L is drawn per row from [min_len, max_len], so no fixed offset finds the copy: with
    one L for every row, a layer-0 head can attend "L - 1 positions back" by position
    alone and look like an induction head without being one (we saw it happen). Symbols
    of a block are distinct when the alphabet allows, so every earlier occurrence is
    unique.
    """

    name = "induction"

    def __init__(self, alphabet: str, min_len: int, max_len: int) -> None:
        self.tokenizer = TaskTokenizer(alphabet)  # raises on an empty alphabet
        if not 2 <= min_len <= max_len:
            raise TaskError(
                f"task induction needs 2 <= min_len <= max_len; got {min_len} and {max_len}"
            )
        self.alphabet, self.min_len, self.max_len = alphabet, min_len, max_len
        self.seq_len = 2 * max_len + 1  # BOS, the longest block twice

    def sequences(
        self, batch_size: int, generator: torch.Generator, length: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids (B, 2 * max_len + 1) and each row's block length L (B,); `length`
        fixes L for every row (as a probe does)."""
        n, B, T = len(self.alphabet), batch_size, self.seq_len
        lengths = torch.randint(self.min_len, self.max_len + 1, (B,), generator=generator)
        if length is not None:
            lengths.fill_(length)
        if n >= self.max_len:  # distinct symbols: the first L of a random permutation
            block = torch.rand(B, n, generator=generator).argsort(dim=1)[:, : self.max_len]
        else:
            block = torch.randint(n, (B, self.max_len), generator=generator)
        filler = torch.randint(n, (B, T), generator=generator)  # (B, T)
        t = torch.arange(T)[None, :]  # (1, T) positions
        L = lengths[:, None]  # (B, 1)
        # position t holds block[t - 1] in the first copy, block[t - 1 - L] in the second
        index = torch.where(t <= L, t - 1, t - 1 - L).clamp(0, self.max_len - 1)  # (B, T)
        seq = torch.where(t <= 2 * L, block.gather(1, index), filler) + len(SPECIALS)
        seq[:, 0] = BOS
        return seq, lengths

    def batch(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """Inputs (B, 2 * max_len) and next-token targets (B, 2 * max_len)."""
        seq, _ = self.sequences(batch_size, generator)
        return seq[:, :-1], seq[:, 1:]


HELD_OUT = 1000  # examples of a task kept out of training, for validation and eval


def task_from_config(
    tc: TrainConfig,
) -> Seq2SeqTask | InductionTask | AdditionTask | CalculatorTask | FactsTask:
    """The synthetic task a run's train config names (tc.task must be set)."""
    if tc.task == "induction":
        return InductionTask(tc.task_alphabet, tc.task_min_len, tc.task_max_len)
    if tc.task == "addition-gpt":
        from glassbox.data.arithmetic import AdditionTask  # it builds on this module

        return AdditionTask(tc.task_min_len, tc.task_max_len, reverse=tc.reverse_answer)
    if tc.task == "calculator":
        from glassbox.data.calculator import CalculatorTask

        return CalculatorTask(tc.task_min_len, tc.task_max_len)
    if tc.task == "facts":  # task_max_len is the number of subjects
        from glassbox.data.facts import FactsTask

        return FactsTask(tc.task_max_len, seed=tc.seed)
    return Seq2SeqTask(tc.task, tc.task_alphabet, tc.task_min_len, tc.task_max_len)


def held_out_examples(
    task: Seq2SeqTask | AdditionTask | CalculatorTask, seed: int
) -> list[tuple[str, str]]:
    """A run's validation examples: fixed by the task and the seed, never trained on
    (at most half of the sources a small task can make)."""
    return task.held_out(min(HELD_OUT, task.num_sources // 2), seed + 1)
