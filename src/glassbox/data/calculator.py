"""A calculator for a decoder-only GPT: + - * and / (with remainder), each answer
preceded by the intermediate steps of the school algorithm (task calculator; the
"swole doge" project of Karpathy's exercises).

A model that must write a product or a quotient in one go has to do all of the school
algorithm's work inside one forward pass per digit; one that first writes the steps
(carries, partial products, the remainders of long division) can spend a token on each
of them and read its own earlier work back. The trace is taught like any other text,
with the next-token loss; only the problem is left out of the loss.

One row per problem, with N = max_len. Operands are zero-padded to N digits, as in
addition-gpt, so each digit of a problem sits at the same position in every row. Every
number after '=' is written least significant digit first (the order in which the
school algorithms make digits), at a fixed width, so each row of an operator has the
same layout:

    a+b=  carries (out of each column) > the sum (N + 1 digits)
          003+019=100>2200             3 + 19 = 22
    a-b=  sign (+ or -), borrows of |a - b| > |a - b| (N digits)
          003-019=-000>610             3 - 19 = -16
    a*b=  partial products a * b_j (N + 1 digits each, separated by ','), ';', the
          running sums of the first j + 1 shifted partials for j = 1..N - 2, '>' the
          product (2N digits)
          012*034=8400,6300,0000;80400>804000      12 * 34 = 408
    a/b=  one step of long division per digit of a, most significant first:
          "bring down" (N + 1 digits) ':' quotient digit ':' remainder (N digits),
          separated by ','; '>' the quotient (N digits) 'r' the remainder (N digits)
          017/005=0000:0:000,1000:0:100,7100:3:200>300r200    17 / 5 = 3 r 2

`glassbox sample` shows a row as these steps, written the usual way (see `explain`).
Every random number comes from the generator passed in, so a resumed run replays the
same problems.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Set

import torch
from torch import Tensor

from glassbox.data.arithmetic import (
    check_lengths,
    distinct_problems,
    draw_excluding,
    random_numbers,
)
from glassbox.data.tasks import DIGITS, EOS, PAD, TaskError, TaskTokenizer

TASK = "calculator"
OPS = "+-*/"
OP_NAMES = {"+": "addition", "-": "subtraction", "*": "multiplication", "/": "division"}
SYMBOLS = DIGITS + OPS + "=,;:>r"
MAX_DIGITS = 9  # rows grow as N squared (multiplication, division)
_PROBLEM = re.compile(r"\s*([0-9]+)\s*([-+*/x×÷])\s*([0-9]+)\s*=?\s*")
_SAME_OP = {"x": "*", "×": "*", "÷": "/"}


def little_endian(n: int, width: int) -> str:
    """n's digits least significant first, zero-padded to width: (168, 4) -> "8610"."""
    return str(n)[::-1].ljust(width, "0")


def read_number(digits: str) -> int:
    """The number written least significant first: "8610" -> 168."""
    return int(digits[::-1])


class CalculatorTask:
    """Random rows "a op b=trace>answer", their held-out problems, and reading answers.

    Problems are (op, a, b) with op an index into OPS; a batch of them is a (k, 3) tensor.

    >>> task = CalculatorTask(1, 2)
    >>> task.row(task.parse("17/5"))
    '17/05=100:0:10,710:3:20>30r20'
    >>> task.solve("17/5"), task.solve("3-19"), task.operator("12*34")
    ('3r2', '-16', '*')
    """

    name = TASK
    problem_size = 3  # a problem is (op, a, b)

    def __init__(self, min_len: int = 1, max_len: int = 3) -> None:
        check_lengths(TASK, min_len, max_len, MAX_DIGITS)
        self.min_len, self.max_len = min_len, max_len
        self.tokenizer = TaskTokenizer(SYMBOLS)
        self.prompt_len = 2 * max_len + 2  # a op b =
        biggest = 10**max_len - 1
        self.seq_len = 1 + max(  # the longest row, with its EOS
            len(self.row((op, biggest, biggest))) for op in range(len(OPS))
        )

    def __repr__(self) -> str:
        return f"CalculatorTask({self.min_len}, {self.max_len})"

    @property
    def num_sources(self) -> int:
        """How many distinct problems this task can draw (bounds held-out sets)."""
        lo, hi = self.min_len, self.max_len
        numbers = 10**hi - (10 ** (lo - 1) if lo > 1 else 0)
        divisors = numbers - (1 if lo == 1 else 0)  # never divide by zero
        return 3 * numbers * numbers + numbers * divisors

    # -- problems and their answers ------------------------------------------------------

    def parse(self, problem: str) -> tuple[int, int, int]:
        """(op index, a, b) of "a op b" or "a op b="; x and × mean *, ÷ means /."""
        match = _PROBLEM.fullmatch(problem) if isinstance(problem, str) else None
        if match is None:
            raise TaskError(
                f"a calculator problem looks like '123*45=' (operators + - * /), not {problem!r}"
            )
        a, op, b = int(match[1]), _SAME_OP.get(match[2], match[2]), int(match[3])
        for n in (a, b):
            if len(str(n)) > self.max_len:
                raise TaskError(
                    f"this task works on numbers of up to {self.max_len} digits; "
                    f"{n} has {len(str(n))}"
                )
        if op == "/" and b == 0:
            raise TaskError(f"{a}/0: division by zero has no answer")
        return OPS.index(op), a, b

    def solve(self, problem: str) -> str:
        """The answer written the usual way: "17/5" -> "3r2", "3-19" -> "-16"."""
        return _answer(*self.parse(problem))

    def operator(self, problem: str) -> str:
        return OPS[self.parse(problem)[0]]

    def length(self, problem: str) -> int:
        """Digits of the larger operand: the length a per-length score groups by."""
        _, a, b = self.parse(problem)
        return len(str(max(a, b)))

    # -- rows ---------------------------------------------------------------------------

    def prompt(self, problem: tuple[int, int, int]) -> str:
        op, a, b = problem
        N = self.max_len
        return f"{a:0{N}d}{OPS[op]}{b:0{N}d}="

    def solution(self, problem: tuple[int, int, int]) -> str:
        """What follows the prompt: the trace, '>' and the answer (module docstring)."""
        op, a, b = problem
        N = self.max_len
        if OPS[op] == "+":
            carries = [(a % 10 ** (i + 1) + b % 10 ** (i + 1)) // 10 ** (i + 1) for i in range(N)]
            return "".join(map(str, carries)) + ">" + little_endian(a + b, N + 1)
        if OPS[op] == "-":
            big, small = max(a, b), min(a, b)
            borrows = [int(big % 10 ** (i + 1) < small % 10 ** (i + 1)) for i in range(N)]
            sign = "-" if a < b else "+"
            return sign + "".join(map(str, borrows)) + ">" + little_endian(big - small, N)
        if OPS[op] == "*":
            digits = [b // 10**j % 10 for j in range(N)]
            partials = [little_endian(a * d, N + 1) for d in digits]
            running = [little_endian(a * (b % 10 ** (j + 1)), N + 1 + j) for j in range(1, N - 1)]
            return ",".join(partials) + ";" + ",".join(running) + ">" + little_endian(a * b, 2 * N)
        steps, rest = [], 0
        for i in reversed(range(N)):  # long division, most significant digit of a first
            current = rest * 10 + a // 10**i % 10
            q, rest = divmod(current, b)
            steps.append(f"{little_endian(current, N + 1)}:{q}:{little_endian(rest, N)}")
        q, r = divmod(a, b)
        return ",".join(steps) + ">" + little_endian(q, N) + "r" + little_endian(r, N)

    def row(self, problem: tuple[int, int, int]) -> str:
        """One row as the model sees it, without EOS."""
        return self.prompt(problem) + self.solution(problem)

    def encode(self, problems: Tensor) -> Tensor:
        """Ids of whole rows (B, seq_len): prompt, trace, answer, EOS, then PAD."""
        rows = torch.full((problems.size(0), self.seq_len), PAD)  # (B, seq_len)
        for i, problem in enumerate(problems.tolist()):
            ids = self.tokenizer.encode(self.row(tuple(problem))) + [EOS]
            rows[i, : len(ids)] = torch.tensor(ids)
        return rows

    def prompts(self, problems: Tensor) -> Tensor:
        """Ids of "a op b=" (B, prompt_len) for problems (B, 3)."""
        ids = [self.tokenizer.encode(self.prompt(tuple(p))) for p in problems.tolist()]
        return torch.tensor(ids, dtype=torch.long).view(-1, self.prompt_len)

    def read_answer(self, written: str, problem: str) -> str:
        """The answer in what a model wrote after the prompt of `problem` (its trace,
        '>', the answer), written the usual way; anything malformed is returned after a
        '?', which can never equal an answer.

        >>> CalculatorTask(1, 2).read_answer("100:0:10,710:3:20>30r20", "17/5")
        '3r2'
        """
        op = OPS[self.parse(problem)[0]]
        N = self.max_len
        trace, sep, answer = written.partition(">")
        sign = trace[:1] if op == "-" else ""
        widths = {"+": [N + 1], "-": [N], "*": [2 * N], "/": [N, N]}[op]
        parts = answer.split("r") if op == "/" else [answer]
        well_formed = (
            sep
            and [len(p) for p in parts] == widths
            and all(p.isdigit() for p in parts)
            and sign in ("", "+", "-")
        )
        if not well_formed:
            return "?" + written
        numbers = [read_number(p) for p in parts]
        if op == "/":
            return f"{numbers[0]}r{numbers[1]}"
        return f"-{numbers[0]}" if sign == "-" and numbers[0] else str(numbers[0])

    def written(self, ids: Iterable[int]) -> str:
        """The text of ids up to the first EOS (specials other than EOS by name)."""
        out = []
        for i in ids:
            if i == EOS:
                break
            out.append(self.tokenizer.token_str(i))
        return "".join(out)

    # -- drawing problems ---------------------------------------------------------------

    def draw(
        self, k: int, generator: torch.Generator, exclude: Set[tuple[int, int, int]] = frozenset()
    ) -> Tensor:
        """k random problems (k, 3): an operator drawn uniformly, then two operands;
        problems in `exclude` are redrawn, so held-out problems never reach training."""
        return draw_excluding(self._draw, k, generator, exclude, self)

    def _draw(self, k: int, generator: torch.Generator) -> Tensor:
        ops = torch.randint(len(OPS), (k, 1), generator=generator)  # (k, 1)
        operands = random_numbers(k, self.min_len, self.max_len, generator)  # (k, 2)
        nonzero = torch.randint(1, 10, (k,), generator=generator)  # (k,) a divisor for b = 0
        divide = (ops[:, 0] == OPS.index("/")) & (operands[:, 1] == 0)
        operands[:, 1] = torch.where(divide, nonzero, operands[:, 1])
        return torch.cat([ops, operands], dim=1)  # (k, 3)

    def held_out(self, n: int, seed: int) -> list[tuple[str, str]]:
        """n distinct (problem, answer) pairs such as ("12*34", "408"), from their own
        generator seeded with `seed`, so the same seed always names the same set."""
        problems = distinct_problems(self._draw, n, seed, self)
        return [(f"{a}{OPS[op]}{b}", _answer(op, a, b)) for op, a, b in problems]

    # -- showing a trace ----------------------------------------------------------------

    def explain(self, problem: str, written: str) -> list[str]:
        """The steps a model wrote for `problem`, as lines a person would write them
        (numbers the usual way); a trace that does not have the layout is shown raw.

        >>> task = CalculatorTask(1, 2)
        >>> task.explain("12*34", "840,630;>8040")
        ['12 * 4 = 48', '12 * 3 = 36', '48 + 360 = 408', '= 408']
        """
        op_index, a, b = self.parse(problem)
        op = OPS[op_index]
        trace, _, answer = written.partition(">")
        try:
            if op == "+":
                lines = [f"carries, rightmost column first: {' '.join(trace)}"]
            elif op == "-":
                big, small = (b, a) if trace[:1] == "-" else (a, b)
                lines = [f"{big} - {small}, borrows rightmost column first: {' '.join(trace[1:])}"]
            elif op == "*":
                partials, _, running = trace.partition(";")
                products = [read_number(p) for p in partials.split(",")]
                lines = [f"{a} * {b // 10**j % 10} = {p}" for j, p in enumerate(products)]
                sums = [products[0]] + [read_number(s) for s in running.split(",") if s]
                sums.append(read_number(answer))
                lines += [
                    f"{sums[j - 1]} + {products[j] * 10**j} = {sums[j]}"
                    for j in range(1, min(len(sums), len(products)))
                ]
            else:
                lines = []
                for step in trace.split(","):
                    current, q, rest = step.split(":")
                    lines.append(
                        f"bring down: {read_number(current)}, {read_number(current)} / {b} "
                        f"= {q} r {read_number(rest)}"
                    )
        except (ValueError, IndexError):
            return [written]
        return [*lines, f"= {self.read_answer(written, problem)}"]


def _answer(op: int, a: int, b: int) -> str:
    sign = OPS[op]
    if sign == "/":
        return f"{a // b}r{a % b}"
    return str({"+": a + b, "-": a - b, "*": a * b}[sign])


@torch.no_grad()
def work_out(model, task: CalculatorTask, problems: list[str], batch_size: int = 500) -> list[str]:
    """What a decoder run writes after each problem's prompt, greedily, up to its EOS
    (trace, '>', answer), as text, for task.read_answer and task.explain.

    >>> work_out(model, task, ["12*34"])  # doctest: +SKIP
    ['8400,6300;>804000']
    """
    device = next(model.parameters()).device
    parsed = torch.tensor([task.parse(p) for p in problems], dtype=torch.long).view(-1, 3)
    out: list[str] = []
    for start in range(0, len(problems), batch_size):
        seq = task.prompts(parsed[start : start + batch_size]).to(device)  # (b, prompt_len)
        done = torch.zeros(seq.size(0), dtype=torch.bool, device=device)  # (b,)
        for _ in range(task.seq_len - task.prompt_len):
            next_id = model(seq)[:, -1].argmax(-1)  # (b,)
            seq = torch.cat([seq, next_id[:, None]], dim=1)  # (b, T + 1)
            done |= next_id == EOS
            if bool(done.all()):
                break
        out += [task.written(row) for row in seq[:, task.prompt_len :].tolist()]
    return out
