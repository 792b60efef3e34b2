"""The calculator task ("swole doge"): the school algorithm's steps in each row, checked
against arithmetic done independently here, held-out problems kept out of training,
and reading a model's trace and answer back, with an oracle that writes known rows."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from glassbox.config import ConfigError, TrainConfig, default_preset, from_preset
from glassbox.data.calculator import OPS, CalculatorTask, read_number, work_out
from glassbox.data.tasks import EOS, PAD, TaskError, held_out_examples, task_from_config
from glassbox.evaluate import describe, problem_exact_match
from glassbox.train.objectives import IGNORE, ProblemLM


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_rows_of_each_operator_by_hand():
    task = CalculatorTask(1, 3)
    row = lambda p: task.row(task.parse(p))  # noqa: E731
    # 3 + 19: column 0 is 3 + 9 = 12 (carry 1), then 0 + 1 + 1, then 0: sum 022
    assert row("3+19") == "003+019=100>2200"
    # 3 - 19 is -(19 - 3): no borrows in 019 - 003 = 016
    assert row("3-19") == "003-019=-000>610"
    assert row("50-7") == "050-007=+100>340"  # 0 - 7 borrows, then 5 - 0 - 1 borrows none
    # 12 * 34: partials 12 * 4 = 48, 12 * 3 = 36, 12 * 0 = 0; 48 + 360 = 408 (running sum)
    assert row("12*34") == "012*034=8400,6300,0000;80400>804000"
    # 17 / 5: bring down 0, 1, 17: quotients 0, 0, 3; remainders 0, 1, 2
    assert row("17/5") == "017/005=0000:0:000,1000:0:100,7100:3:200>300r200"


def _school_carries(a: int, b: int, n: int) -> list[int]:
    carry, out = 0, []
    for i in range(n):
        carry = (a // 10**i % 10 + b // 10**i % 10 + carry) // 10
        out.append(carry)
    return out


def _school_borrows(big: int, small: int, n: int) -> list[int]:
    borrow, out = 0, []
    for i in range(n):
        borrow = int(big // 10**i % 10 - small // 10**i % 10 - borrow < 0)
        out.append(borrow)
    return out


@pytest.mark.parametrize("max_len", [1, 2, 3, 4])
def test_every_drawn_row_holds_the_school_steps_and_the_right_answer(max_len):
    task = CalculatorTask(1, max_len)
    N = max_len
    problems = task.draw(400, gen(max_len))
    assert set(problems[:, 0].tolist()) == {0, 1, 2, 3}  # every operator is drawn
    for op, a, b in problems.tolist():
        problem = f"{a}{OPS[op]}{b}"
        solution = task.solution((op, a, b))
        trace, _, answer = solution.partition(">")
        exact = {"+": a + b, "-": a - b, "*": a * b}.get(OPS[op])
        want = f"{a // b}r{a % b}" if OPS[op] == "/" else str(exact)
        assert task.read_answer(solution, problem) == want == task.solve(problem)
        assert len(task.row((op, a, b))) + 1 <= task.seq_len
        if OPS[op] == "+":
            assert [int(c) for c in trace] == _school_carries(a, b, N)
        elif OPS[op] == "-":
            assert trace[0] == ("-" if a < b else "+")
            assert [int(c) for c in trace[1:]] == _school_borrows(max(a, b), min(a, b), N)
        elif OPS[op] == "*":
            partials, _, running = trace.partition(";")
            digits = [b // 10**j % 10 for j in range(N)]
            assert [read_number(p) for p in partials.split(",")] == [a * d for d in digits]
            sums = [read_number(s) for s in running.split(",") if s]
            assert sums == [a * (b % 10 ** (j + 1)) for j in range(1, N - 1)]
        else:
            rest = 0
            for i, step in zip(reversed(range(N)), trace.split(","), strict=True):
                current, q, new_rest = step.split(":")
                assert read_number(current) == rest * 10 + a // 10**i % 10
                rest = read_number(new_rest)
                assert int(q) * b + rest == read_number(current) and rest < b


def test_division_never_draws_a_zero_divisor():
    task = CalculatorTask(1, 1)
    problems = task.draw(2000, gen())
    divisions = problems[problems[:, 0] == OPS.index("/")]
    assert len(divisions) > 300 and (divisions[:, 2] > 0).all()


def test_rows_are_padded_after_eos_and_the_loss_skips_problem_and_padding():
    task = CalculatorTask(1, 2)
    problems = torch.tensor([[0, 3, 19], [3, 17, 5]])  # 3+19 (short row), 17/5 (longest)
    seq = task.encode(problems)
    assert seq.shape == (2, task.seq_len)
    short = task.tokenizer.encode(task.row((0, 3, 19))) + [EOS]
    assert seq[0, : len(short)].tolist() == short and (seq[0, len(short) :] == PAD).all()
    objective = ProblemLM(task, 2, [])
    x, y = objective.batch("train", gen())
    assert x.shape == y.shape == (2, task.seq_len - 1)
    assert (y[:, : task.prompt_len - 1] == IGNORE).all()  # "a op b=" is not predicted
    assert not (y == PAD).any()  # padding is IGNORE, never a target
    after_eos = (x == EOS).cumsum(1) > 0  # positions at or after the EOS input
    assert (y[after_eos] == IGNORE).all()
    unmasked = ProblemLM(task, 2, [], mask_problem=False).batch("train", gen())[1]
    assert (unmasked[:, 0] != IGNORE).all()


def test_held_out_problems_are_fixed_by_the_seed_and_never_trained_on():
    task = CalculatorTask(1, 1)
    held = task.held_out(150, seed=3)
    assert held == task.held_out(150, seed=3) and held != task.held_out(150, seed=4)
    assert len({p for p, _ in held}) == 150
    assert all(task.solve(p) == answer for p, answer in held)
    objective = ProblemLM(task, 256, held)
    seen = set()
    for i in range(20):
        x, _ = objective.batch("train", gen(i))
        seen |= {task.tokenizer.decode(row[: task.prompt_len - 1]) for row in x}
    held_prompts = {task.prompt(task.parse(p))[:-1] for p, _ in held}
    assert not seen & held_prompts
    val, _ = objective.batch("val", gen())
    assert {task.tokenizer.decode(row[: task.prompt_len - 1]) for row in val} <= held_prompts


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("7/0", "division by zero"),
        ("1234+1", "up to 3 digits; 1234 has 4"),
        ("2^3", "looks like"),
        ("", "looks like"),
        (None, "looks like"),
    ],
)
def test_bad_problems_get_one_clear_error(problem, message):
    with pytest.raises(TaskError, match=message):
        CalculatorTask(1, 3).parse(problem)


def test_operator_spellings_and_bad_settings():
    task = CalculatorTask(1, 3)
    assert task.parse("12 x 3") == task.parse("12×3") == task.parse("12*3=") == (2, 12, 3)
    assert task.parse("12÷3") == (3, 12, 3)
    with pytest.raises(TaskError, match="1 <= min_len <= max_len <= 9"):
        CalculatorTask(2, 10)
    with pytest.raises(TaskError, match="must be an integer"):
        CalculatorTask(1, 2.5)


def test_a_malformed_answer_never_counts_and_a_malformed_trace_is_shown_raw():
    task = CalculatorTask(1, 2)
    assert task.read_answer("100>220", "3+19") == "22"
    assert task.read_answer("100>22", "3+19").startswith("?")  # one digit short
    assert task.read_answer("100220", "3+19").startswith("?")  # no '>'
    assert task.read_answer("-00>61", "3-19") == "-16"
    assert task.read_answer("+00>00", "3-3") == "0"
    assert task.read_answer("9:9>30r20", "17/5") == "3r2"  # the answer alone is read
    assert task.explain("17/5", "9:9>30r20") == ["9:9>30r20"]
    steps = task.explain("17/5", task.solution(task.parse("17/5")))
    assert steps == ["bring down: 1, 1 / 5 = 0 r 1", "bring down: 17, 17 / 5 = 3 r 2", "= 3r2"]


class Oracle(nn.Module):
    """A stand-in decoder whose next token is that of `writer(problem)`'s row."""

    def __init__(self, task: CalculatorTask, writer) -> None:
        super().__init__()
        self.task, self.writer = task, writer
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        task, tok = self.task, self.task.tokenizer
        rows = []
        for row in seq.tolist():
            prompt = tok.decode(row[: task.prompt_len])
            rows.append(tok.encode(task.prompt(task.parse(prompt)) + self.writer(prompt)) + [EOS])
        width = max(map(len, rows))
        full = torch.tensor([r + [PAD] * (width - len(r)) for r in rows])
        following = full[:, 1 : seq.size(1) + 1]  # (B, T)
        return F.one_hot(following, tok.vocab_size).float()


def test_exact_match_per_operator_and_length_with_the_trace():
    task = CalculatorTask(1, 2)
    pairs = task.held_out(400, seed=0)

    def wrong_division(prompt):  # right everywhere but one slip in each quotient
        solution = task.solution(task.parse(prompt))
        if "/" not in prompt:
            return solution
        trace, _, answer = solution.partition(">")
        quotient, _, rest = answer.partition("r")
        slipped = str((int(quotient[0]) + 1) % 10) + quotient[1:]
        return f"{trace}>{slipped}r{rest}"

    scores = problem_exact_match(Oracle(task, wrong_division), task, pairs)
    ops = scores["by_operator"]
    assert set(ops) == set(OPS)
    assert ops["/"]["exact_match"] == 0 and ops["+"]["exact_match"] == 1 == ops["*"]["exact_match"]
    divisions = ops["/"]["examples"]
    assert scores["exact_match"] == pytest.approx(1 - divisions / 400)
    assert scores["trace_exact"] == pytest.approx(1 - divisions / 400)
    assert sum(s["examples"] for s in scores["by_length"].values()) == 400
    assert all("/" in m["source"] for m in scores["misses"])
    text = describe({"task": "calculator", **scores})
    assert "by operator: * 100.00%" in text and "whole trace right" in text
    right = Oracle(task, lambda p: task.solution(task.parse(p)))
    assert work_out(right, task, ["12*34"]) == [task.solution(task.parse("12*34"))]


def test_config_and_preset():
    assert default_preset(task="calculator") == "calculator"
    model, train = from_preset("calculator")
    task = task_from_config(train)
    assert isinstance(task, CalculatorTask) and task.seq_len - 1 <= model.block_size
    assert len(held_out_examples(task, train.seed)) == 1000
    TrainConfig(task="calculator", mask_problem=False)
    with pytest.raises(ConfigError, match="reverse_answer applies to task addition-gpt only"):
        TrainConfig(task="calculator", reverse_answer=False)
    with pytest.raises(ConfigError, match="mask_problem applies to tasks"):
        TrainConfig(task="induction", mask_problem=False)
