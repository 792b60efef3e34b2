"""The addition-gpt task (EX2): the a+b=c layout, the reversed answer, held-out problems
kept out of training, and reading a model's greedy answer back, checked with oracle
models that write a known sequence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from glassbox.config import TrainConfig, default_preset, from_preset
from glassbox.data.arithmetic import AdditionTask, answer
from glassbox.data.tasks import EOS, TaskError, held_out_examples, task_from_config
from glassbox.evaluate import problem_exact_match
from glassbox.train.objectives import IGNORE, ProblemLM


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rows(task: AdditionTask, seq: torch.Tensor) -> list[str]:
    return [task.tokenizer.decode(row) for row in seq]


def test_a_row_is_padded_operands_then_the_reversed_sum_then_eos():
    task = AdditionTask(1, 5)
    assert task.text((123, 45)) == "00123+00045=861000"
    assert task.text((99999, 1)) == "99999+00001=000001"  # the carry reaches the 6th digit
    assert AdditionTask(1, 5, reverse=False).text((123, 45)) == "00123+00045=000168"
    seq = task.encode(torch.tensor([[123, 45], [0, 0]]))
    assert seq.shape == (2, task.seq_len) == (2, 19)
    assert (seq[:, -1] == EOS).all()
    assert rows(task, seq) == ["00123+00045=861000", "00000+00000=000000"]


@pytest.mark.parametrize("reverse", [True, False])
def test_every_drawn_row_holds_the_right_sum(reverse):
    task = AdditionTask(1, 4, reverse=reverse)
    for text in rows(task, task.encode(task.draw(256, gen()))):
        problem, written = text.split("=")
        a, b = (int(n) for n in problem.split("+"))
        assert len(problem) == 2 * 4 + 1 and len(written) == 5
        assert written == (str(a + b).zfill(5)[::-1] if reverse else str(a + b).zfill(5))


def test_operand_digit_counts_stay_in_range_and_cover_it():
    task = AdditionTask(2, 4)
    operands = task.draw(2000, gen())
    counts = {len(str(n)) for n in operands.flatten().tolist()}  # no leading zeros in ints
    assert counts == {2, 3, 4}
    ones = AdditionTask(1, 1).draw(2000, gen())
    assert set(ones.flatten().tolist()) == set(range(10))  # one-digit numbers include 0


def test_same_seed_same_problems_and_a_saved_state_replays():
    task = AdditionTask(1, 5)
    assert torch.equal(task.draw(8, gen(3)), task.draw(8, gen(3)))
    assert not torch.equal(task.draw(8, gen(3)), task.draw(8, gen(4)))
    generator = gen(5)
    task.draw(8, generator)
    state = generator.get_state()
    first = task.draw(8, generator)
    generator.set_state(state)
    assert torch.equal(task.draw(8, generator), first)


def test_held_out_is_deterministic_distinct_and_solved():
    task = AdditionTask(1, 3)
    pairs = task.held_out(200, seed=7)
    assert pairs == task.held_out(200, seed=7) != task.held_out(200, seed=8)
    assert len({p for p, _ in pairs}) == 200
    assert all(int(s) == sum(map(int, p.split("+"))) for p, s in pairs)
    assert len(held_out_examples(AdditionTask(1, 1), 0)) == 50  # half of the 100 problems


def test_held_out_problems_never_reach_training_batches():
    task = AdditionTask(1, 1)  # 100 problems, 50 held out: without the exclusion, certain
    held_out = held_out_examples(task, seed=1337)
    held = {task.parse(p) for p, _ in held_out}
    objective = ProblemLM(task, 256, held_out)
    generator = gen()
    trained = set()
    for _ in range(5):
        x, _ = objective.batch("train", generator)
        trained.update(task.parse(t.split("=")[0]) for t in rows(task, x))
    assert trained.isdisjoint(held)
    assert len(trained) == 50  # every other problem comes up
    plain = {tuple(ab) for ab in task.draw(256, generator).tolist()}
    assert plain & held  # teeth: the same draws without exclusion hit held-out problems
    val, _ = objective.batch("val", generator)
    assert {task.parse(t.split("=")[0]) for t in rows(task, val)} <= held


def test_excluding_every_problem_is_an_error_not_a_hang():
    task = AdditionTask(1, 1)
    every = {(a, b) for a in range(10) for b in range(10)}
    with pytest.raises(TaskError, match="holds 100 of the 100 problems"):
        task.draw(4, gen(), every)


@pytest.mark.parametrize("mask", [True, False])
def test_the_targets_mask_exactly_the_problem(mask):
    task = AdditionTask(1, 3)
    x, y = ProblemLM(task, 64, [], mask_problem=mask).batch("train", gen())
    seq = torch.cat([x, y[:, -1:]], dim=1)  # y's last target (EOS) is the row's last token
    if mask:  # the masked targets hide nothing of the row: x holds it all
        operands = torch.tensor([task.parse(t.split("=")[0]) for t in rows(task, x)])
        assert torch.equal(seq, task.encode(operands))
    problem = 2 * 3 + 1  # targets "a" (after its first digit), "+", "b", "="
    answer_part = y[:, problem:]
    assert torch.equal(answer_part, seq[:, problem + 1 :])  # N + 1 digits and EOS
    assert answer_part.shape[1] == 3 + 2
    if mask:
        assert (y[:, :problem] == IGNORE).all()
        assert y[0].tolist().count(IGNORE) == problem  # and nothing else
    else:
        assert torch.equal(y, seq[:, 1:])


class Oracle(nn.Module):
    """A stand-in decoder that writes a known row: its logits at the last position
    favour the next token of `writer(operands)`, read off the prompt it is given."""

    def __init__(self, task: AdditionTask, writer) -> None:
        super().__init__()
        self.task, self.writer = task, writer
        self.weight = nn.Parameter(torch.zeros(()))  # a parameter, for the device

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        tok = self.task.tokenizer
        prompt = [tok.decode(row) for row in seq[:, : self.task.prompt_len]]
        full = self.writer(torch.tensor([self.task.parse(p) for p in prompt]))  # (B, L)
        following = full[:, 1 : seq.size(1) + 1]  # (B, T): the token after each position
        return F.one_hot(following, tok.vocab_size).float()  # (B, T, V)


def test_greedy_answers_are_read_back_unreversed():
    task = AdditionTask(1, 5)
    problems = ["123+45", "99999+1=", " 0+0 ", "7+99995"]
    assert answer(Oracle(task, task.encode), task, problems) == ["168", "100000", "0", "100002"]
    forward = AdditionTask(1, 5, reverse=False)
    assert answer(Oracle(forward, forward.encode), forward, problems)[0] == "168"
    # a model that writes the sum the usual way, where the run expects it reversed, is wrong
    assert answer(Oracle(task, forward.encode), task, ["123+45"]) == ["861000"]


def test_exact_match_counts_per_length_and_shows_misses():
    task = AdditionTask(1, 3)
    pairs = task.held_out(300, seed=0)

    def off_by_one_on_three_digits(operands):  # a model that slips on 3-digit problems
        bump = (operands.max(1).values >= 100).long()  # (B,)
        return task.encode(torch.stack([operands[:, 0] + bump, operands[:, 1]], 1))

    scores = problem_exact_match(Oracle(task, off_by_one_on_three_digits), task, pairs)
    assert set(scores["by_length"]) == {"1", "2", "3"}
    assert scores["by_length"]["3"]["exact_match"] == 0.0
    assert scores["by_length"]["1"]["exact_match"] == scores["by_length"]["2"]["exact_match"] == 1
    threes = scores["by_length"]["3"]["examples"]
    assert sum(s["examples"] for s in scores["by_length"].values()) == 300
    assert scores["exact_match"] == pytest.approx(1 - threes / 300)
    miss = scores["misses"][0]
    assert int(miss["output"]) == int(miss["target"]) + 1


def test_read_answer_refuses_anything_but_digits_then_eos():
    task = AdditionTask(1, 2)
    ids = task.tokenizer.encode
    assert task.read_answer(ids("860") + [EOS]) == "68"
    assert task.read_answer(ids("86") + [EOS, EOS]) != "68"  # one digit short
    assert task.read_answer(ids("8600")) != "68"  # no EOS after N + 1 digits
    assert task.read_answer(ids("8=0") + [EOS]) == "8=0<eos>"


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("12-3", "looks like '123\\+45='"),
        ("\n", "looks like"),
        ("12+", "looks like"),
        ("1234+5", "up to 3 digits; 1234 has 4"),
    ],
)
def test_bad_problems_are_one_line_task_errors(problem, message):
    with pytest.raises(TaskError, match=message) as err:
        AdditionTask(1, 3).parse(problem)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("args", "message"),
    [((0, 3), "1 <= min_len"), ((4, 3), "min_len <= max_len"), ((1, 19), "<= 18 digits"),
     ((1, 2.5), "must be an integer")],
)  # fmt: skip
def test_bad_task_settings_are_task_errors(args, message):
    with pytest.raises(TaskError, match=message):
        AdditionTask(*args)


def test_the_config_names_the_task_and_its_preset():
    assert default_preset(task="addition-gpt") == "addition-gpt"
    model, train = from_preset(default_preset(task="addition-gpt"))
    task = task_from_config(train)
    assert isinstance(task, AdditionTask) and (task.min_len, task.max_len) == (1, 5)
    assert model.arch == "decoder" and model.block_size >= task.seq_len - 1
    off = task_from_config(
        TrainConfig(task="addition-gpt", task_min_len=1, task_max_len=5, reverse_answer=False)
    )
    assert off.reverse is False
