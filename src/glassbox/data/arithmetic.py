"""Addition for a decoder-only GPT: one sequence per problem, `a+b=c`, the digits of c
written least significant first (Karpathy's EX2 in "Let's build GPT"; task addition-gpt).

The encoder-decoder task `addition` (glassbox.data.tasks) maps "a+b" to c; here one
causal model reads the problem and then writes the answer, so the same next-token loss
that trains a GPT on text trains it to add. Every row has the same layout, with
N = max_len:

    00123+00045=861000<eos>     (N = 5: a and b zero-padded to N digits, then c = a + b
                                 as N + 1 digits, least significant first, then EOS)

Three choices make it learnable in minutes on a CPU, and none gives an answer away:

- Reversed answer (reverse=True): school addition goes right to left, because a carry
  moves left. Written least significant first, each digit of c depends only on digits
  already seen and the carry from the digit the model has just written; written the
  usual way, the first digit written depends on every carry at once.
- Fixed-width operands: zero-padding a and b to N digits puts the k-th digit of every
  operand at the same position, so "which digits add up here" is the same offset in
  every row (learned absolute positions can find it), and rows need no padding tokens
  or key mask. The padding is a function of the problem alone, applied the same way at
  evaluation and in `glassbox sample`.
- Loss on the answer only (glassbox.train.objectives.ProblemLM, mask_problem=True): the
  digits of a and b are random, so predicting them teaches nothing and only adds noise
  to the gradient; the loss counts the N + 1 answer digits and EOS.

Numbers have task_min_len..task_max_len digits (each operand's count drawn uniformly),
like the encoder-decoder task's. Every random number comes from the generator passed
in, so a resumed run replays the same problems.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Set

import torch
from torch import Tensor

from glassbox.data.tasks import DIGITS, EOS, MAX_DRAWS, TaskError, TaskTokenizer

TASK = "addition-gpt"
SYMBOLS = DIGITS + "+="
MAX_DIGITS = 18  # a + b of up to 18 digits stays below 2**63 (int64 tensors)
_POW10 = torch.tensor([10**i for i in range(MAX_DIGITS + 1)])  # (19,)
_PROBLEM = re.compile(r"([0-9]+)\+([0-9]+)=?")


class AdditionTask:
    """Random `a+b=c` rows for a decoder, their held-out problems, and reading answers.

    >>> task = AdditionTask(1, 3)
    >>> task.text(task.parse("123+45"))
    '123+045=8610'
    >>> AdditionTask(1, 3, reverse=False).text((123, 45))
    '123+045=0168'
    >>> task.solve("123+45="), task.length("7+123")
    ('168', 3)
    """

    name = TASK
    problem_size = 2  # a problem is (a, b)

    def __init__(self, min_len: int = 1, max_len: int = 5, *, reverse: bool = True) -> None:
        check_lengths(TASK, min_len, max_len, MAX_DIGITS)
        self.min_len, self.max_len, self.reverse = min_len, max_len, reverse
        self.tokenizer = TaskTokenizer(SYMBOLS)
        self.zero, self.plus, self.equals = self.tokenizer.encode("0+=")
        N = max_len
        self.prompt_len = 2 * N + 2  # a + b =
        self.answer_len = N + 1  # a carry can add a digit
        self.seq_len = self.prompt_len + self.answer_len + 1  # then EOS

    def __repr__(self) -> str:
        return f"AdditionTask({self.min_len}, {self.max_len}, reverse={self.reverse})"

    @property
    def num_sources(self) -> int:
        """How many distinct problems (a, b) this task can draw (bounds held-out sets)."""
        lo, hi = self.min_len, self.max_len
        numbers = 10**hi - (10 ** (lo - 1) if lo > 1 else 0)  # lo..hi digits, no leading 0
        return numbers * numbers

    def parse(self, problem: str) -> tuple[int, int]:
        """The operands of "a+b" or "a+b=" (spaces around it are ignored)."""
        match = _PROBLEM.fullmatch(problem.strip()) if isinstance(problem, str) else None
        if match is None:
            raise TaskError(f"an addition problem looks like '123+45=', not {problem!r}")
        a, b = int(match[1]), int(match[2])
        for n in (a, b):
            if len(str(n)) > self.max_len:
                raise TaskError(
                    f"this task adds numbers of up to {self.max_len} digits; {n} has {len(str(n))}"
                )
        return a, b

    def solve(self, problem: str) -> str:
        """The sum, written the usual way: "57+68" -> "125"."""
        a, b = self.parse(problem)
        return str(a + b)

    def length(self, problem: str) -> int:
        """Digits of the larger operand: the length a per-length score groups by."""
        return len(str(max(self.parse(problem))))

    def draw(
        self, k: int, generator: torch.Generator, exclude: Set[tuple[int, int]] = frozenset()
    ) -> Tensor:
        """k random problems as operands (k, 2); problems in `exclude` are redrawn, so
        held-out problems never reach training."""
        return draw_excluding(self._draw, k, generator, exclude, self)

    def _draw(self, k: int, generator: torch.Generator) -> Tensor:
        return random_numbers(k, self.min_len, self.max_len, generator)  # (k, 2)

    def _digit_ids(self, numbers: Tensor, width: int, reverse: bool) -> Tensor:
        """Token ids of numbers (B,) zero-padded to `width` digits (B, width): least
        significant first if `reverse`, else the usual way."""
        digits = numbers[:, None] // _POW10[:width] % 10  # (B, width), 10**0 first
        return self.zero + (digits if reverse else digits.flip(1))

    def prompts(self, operands: Tensor) -> Tensor:
        """Ids of "a+b=" (B, prompt_len) for operands (B, 2)."""
        B, N = operands.size(0), self.max_len
        a = self._digit_ids(operands[:, 0], N, reverse=False)  # (B, N)
        b = self._digit_ids(operands[:, 1], N, reverse=False)  # (B, N)
        plus = torch.full((B, 1), self.plus)
        equals = torch.full((B, 1), self.equals)
        return torch.cat([a, plus, b, equals], dim=1)  # (B, 2N + 2)

    def encode(self, operands: Tensor) -> Tensor:
        """Ids of whole rows "a+b=c<eos>" (B, seq_len) for operands (B, 2)."""
        B = operands.size(0)
        total = operands.sum(1)  # (B,)
        answer = self._digit_ids(total, self.answer_len, reverse=self.reverse)  # (B, N + 1)
        eos = torch.full((B, 1), EOS)
        return torch.cat([self.prompts(operands), answer, eos], dim=1)  # (B, seq_len)

    def text(self, operands: tuple[int, int]) -> str:
        """One row as the model sees it, without EOS: (123, 45) -> "00123+00045=861000"."""
        return self.tokenizer.decode(self.encode(torch.tensor([operands]))[0])

    def read_answer(self, ids: Iterable[int]) -> str:
        """The sum a model wrote after '=' (answer_len digits, then EOS), written the
        usual way without leading zeros; anything else is returned as written (specials
        by name), which can never equal a sum.

        >>> task = AdditionTask(1, 3)
        >>> task.read_answer(task.tokenizer.encode("8610") + [EOS])
        '168'
        >>> task.read_answer(task.tokenizer.encode("86+0") + [EOS])
        '86+0<eos>'
        """
        ids = list(ids)
        n = self.answer_len
        written = ids[:n]
        digits = all(self.zero <= i < self.zero + 10 for i in written)
        if len(ids) > n and digits and len(written) == n and ids[n] == EOS:
            text = self.tokenizer.decode(written)
            return str(int(text[::-1] if self.reverse else text))
        return "".join(self.tokenizer.token_str(i) for i in ids[: n + 1])

    def held_out(self, n: int, seed: int) -> list[tuple[str, str]]:
        """n distinct (problem, sum) pairs such as ("123+45", "168"), drawn from their own
        generator seeded with `seed`, so the same seed always names the same set."""
        return [(f"{a}+{b}", str(a + b)) for a, b in distinct_problems(self._draw, n, seed, self)]


def check_lengths(task: str, min_len: int, max_len: int, max_digits: int) -> None:
    """Operand lengths a task can draw: integers with 1 <= min_len <= max_len <= max_digits."""
    for label, value in (("min_len", min_len), ("max_len", max_len)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TaskError(f"{label} of task {task} must be an integer, not {value!r}")
    if not 1 <= min_len <= max_len <= max_digits:
        raise TaskError(
            f"task {task} needs 1 <= min_len <= max_len <= {max_digits} digits, "
            f"got min_len={min_len}, max_len={max_len}"
        )


def draw_excluding(
    draw: Callable[[int, torch.Generator], Tensor], k: int, generator: torch.Generator,
    exclude: Set[tuple[int, ...]], task,
) -> Tensor:  # fmt: skip
    """k problems from draw(k, generator) (k, width), any that is in `exclude` drawn again,
    so that a task's held-out problems never reach training."""
    if k < 1:
        raise TaskError(f"batch_size must be at least 1, got {k}")
    problems = draw(k, generator)
    for _ in range(MAX_DRAWS):
        redo = [i for i, p in enumerate(map(tuple, problems.tolist())) if p in exclude]
        if not redo:
            return problems
        problems[redo] = draw(len(redo), generator)
    raise TaskError(
        f"no problem outside `exclude` after {MAX_DRAWS} draws: it holds {len(exclude)} "
        f"of the {task.num_sources} problems of task {task.name}"
    )


def distinct_problems(
    draw: Callable[[int, torch.Generator], Tensor], n: int, seed: int, task
) -> list[tuple[int, ...]]:
    """n distinct problems from draw, with their own generator seeded with `seed`, so the
    same seed always names the same set (a task's held-out problems)."""
    if n < 0:
        raise TaskError(f"cannot hold out a negative number of examples ({n})")
    if n > task.num_sources:
        raise TaskError(
            f"task {task.name} has only {task.num_sources} distinct problems; cannot hold out {n}"
        )
    generator = torch.Generator().manual_seed(seed)
    seen: dict[tuple[int, ...], None] = {}  # insertion-ordered set
    for _ in range(MAX_DRAWS):
        if len(seen) >= n:
            return list(seen)[:n]
        # at least 64 per round, so that the last few rare problems do not take a round each
        seen.update(dict.fromkeys(map(tuple, draw(max(n - len(seen), 64), generator).tolist())))
    raise TaskError(f"drew fewer than {n} distinct problems in {MAX_DRAWS} rounds")


def random_numbers(k: int, min_len: int, max_len: int, generator: torch.Generator) -> Tensor:
    """Pairs of operands (k, 2): a digit count from [min_len, max_len] each, then that
    many uniform digits, the leading one nonzero (a one-digit number may be 0)."""
    N = max_len
    counts = torch.randint(min_len, N + 1, (k, 2, 1), generator=generator)  # (k, 2, 1)
    digits = torch.randint(10, (k, 2, N), generator=generator)  # (k, 2, N), 10**i first
    lead = torch.randint(1, 10, (k, 2, 1), generator=generator)  # (k, 2, 1)
    i = torch.arange(N)  # (N,) the power of ten of each digit
    digits = torch.where((i == counts - 1) & (counts > 1), lead, digits)
    digits = torch.where(i < counts, digits, 0)  # (k, 2, N)
    return (digits * _POW10[:N]).sum(-1)  # (k, 2)


@torch.no_grad()
def answer(model, task: AdditionTask, problems: list[str], batch_size: int = 500) -> list[str]:
    """Greedy answers of a decoder run to problems like "123+45" (read_answer's form):
    the model writes answer_len + 1 tokens after '=', each the argmax given the ones it
    has written (never the true digits), and the sum is un-reversed before it is shown.

    >>> answer(model, task, ["123+45="])  # doctest: +SKIP
    ['168']
    """
    device = next(model.parameters()).device
    operands = torch.tensor([task.parse(p) for p in problems], dtype=torch.long)  # (B, 2)
    operands = operands.view(-1, 2)  # (0, 2) when there are no problems
    out: list[str] = []
    for start in range(0, len(problems), batch_size):
        seq = task.prompts(operands[start : start + batch_size]).to(device)  # (b, 2N + 2)
        for _ in range(task.answer_len + 1):
            logits = model(seq)[:, -1]  # (b, V): the next token after the last one
            seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], dim=1)  # (b, T + 1)
        out += [task.read_answer(row) for row in seq[:, task.prompt_len :].tolist()]
    return out
