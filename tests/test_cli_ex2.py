"""EX2 and the calculator from the command line: train a tiny run, score it with `eval`,
ask it a problem with `sample`, and get one clear line for settings that cannot work."""

from __future__ import annotations

import json
import re

import pytest

from glassbox.cli import main

TINY = [
    "--task", "addition-gpt", "--task-max-len", "2", "--n-layer", "1", "--n-head", "2",
    "--n-embd", "32", "--batch-size", "32", "--max-iters", "30", "--lr-decay-iters", "30",
    "--warmup-iters", "5", "--eval-interval", "15", "--eval-iters", "2", "--device", "cpu",
    "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def addition_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ex2") / "run"
    assert main(["train", "--run", str(run), *TINY]) == 0
    return str(run)


def test_eval_reports_exact_match_overall_and_per_length(addition_run, capsys):
    capsys.readouterr()
    assert main(["eval", "--run", addition_run, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["task"] == "addition-gpt" and result["reversed"] is True
    assert 0 <= result["exact_match"] <= 1 and result["examples"] == 1000
    assert set(result["by_length"]) == {"1", "2"}  # digits of the larger operand
    assert sum(s["examples"] for s in result["by_length"].values()) == 1000
    for miss in result["misses"]:
        a, b = miss["source"].split("+")
        assert miss["target"] == str(int(a) + int(b)) != miss["output"]
    assert main(["eval", "--run", addition_run]) == 0
    text = capsys.readouterr().out
    assert "held-out problems" in text and "by digits of the larger number: 1: " in text


def test_sample_answers_a_problem_in_one_line(addition_run, capsys):
    capsys.readouterr()
    assert main(["sample", "--run", addition_run, "--prompt", "12+7="]) == 0
    assert re.fullmatch(r"12\+7=\S+\n", capsys.readouterr().out)


@pytest.mark.parametrize(
    ("prompt", "message"), [("123+4=", "up to 2 digits; 123 has 3"), ("1+x", "looks like")]
)
def test_a_bad_problem_is_a_one_line_error(addition_run, capsys, prompt, message):
    capsys.readouterr()
    assert main(["sample", "--run", addition_run, "--prompt", prompt]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arch", "encoder-decoder"], "trains a decoder"),
        (["--block-size", "8"], "longer than block_size 8"),
        (["--task-max-len", "19"], "<= 18 digits"),
    ],
)
def test_settings_that_cannot_work_are_one_line_errors(tmp_path, capsys, args, message):
    run = tmp_path / "run"
    assert main(["train", "--run", str(run), *TINY, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not run.exists()  # nothing written


def test_the_ablation_flags_belong_to_addition_gpt_only(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--run", str(run), "--task", "reverse", "--no-mask-problem", "--no-progress"]
    assert main(args) == 2
    assert "applies to tasks addition-gpt, calculator, facts only" in capsys.readouterr().err
    assert not run.exists()


def test_ablation_flags_reach_the_run(tmp_path, capsys):
    run = str(tmp_path / "run")
    flags = ["--no-reverse-answer", "--no-mask-problem", "--max-iters", "2", "--eval-interval", "2"]
    assert main(["train", "--run", run, *TINY, *flags]) == 0
    capsys.readouterr()
    assert main(["eval", "--run", run, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["reversed"] is False


@pytest.fixture(scope="module")
def calculator_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("calc") / "run"
    tiny = [*TINY[2:], "--block-size", "32"]  # TINY without its task
    assert main(["train", "--run", str(run), "--task", "calculator", *tiny]) == 0
    return str(run)


def test_calculator_eval_scores_each_operator_and_the_trace(calculator_run, capsys):
    capsys.readouterr()
    assert main(["eval", "--run", calculator_run, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["task"] == "calculator" and result["examples"] == 1000
    assert set(result["by_operator"]) == {"+", "-", "*", "/"}
    assert sum(s["examples"] for s in result["by_operator"].values()) == 1000
    assert 0 <= result["trace_exact"] <= result["exact_match"]  # a right trace ends right
    assert main(["eval", "--run", calculator_run]) == 0
    assert "by operator: *" in capsys.readouterr().out


def test_calculator_sample_shows_the_row_and_its_steps(calculator_run, capsys):
    capsys.readouterr()
    assert main(["sample", "--run", calculator_run, "--prompt", "12*34"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("12*34=") and len(lines) >= 2
    assert all(line.startswith("  ") for line in lines[1:])
    assert main(["sample", "--run", calculator_run, "--prompt", "7/0"]) == 2
    assert "division by zero" in capsys.readouterr().err
