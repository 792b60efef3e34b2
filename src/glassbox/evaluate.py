"""Scoring a trained run, whatever it learned: the Python side of `glassbox eval`.

A decoder trained on a corpus is scored by its loss over a whole split (or any text); an
encoder-decoder by exact match on its task's held-out examples; an encoder by its
masked-LM loss; an induction run by its loss on random blocks and on their repeats; an
addition-gpt or calculator run by exact match of its greedy answers to held-out problems,
overall, per number length and (calculator) per operator, with how often the calculator's
trace was right too.
`evaluate_run` picks the right one from the run's configs and returns a JSON-ready dict
that `describe` renders as text.

>>> result = evaluate_run("runs/default")  # doctest: +SKIP
>>> print(describe(result))  # doctest: +SKIP
val split of the run's corpus: loss 1.8342, perplexity 6.261 over 111,488 tokens
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from glassbox import runs
from glassbox.config import PROBLEM_TASKS
from glassbox.data import load_text
from glassbox.data.tasks import BOS, EOS, PAD, held_out_examples, task_from_config
from glassbox.data.tokens import windows
from glassbox.device import autocast, resolve_device
from glassbox.errors import GlassboxError
from glassbox.train.objectives import lm_loss


@torch.no_grad()
def mean_loss(
    forward: Callable[[Tensor], Tensor],
    batches: Iterable[tuple[Tensor, Tensor]],
    device: str,
    dtype: str = "auto",
) -> dict[str, float]:
    """Token-weighted mean loss and perplexity over every batch (a full pass over a split)."""
    total, count = 0.0, 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        with autocast(device, dtype):
            loss = lm_loss(forward(x), y)
        total += loss.item() * y.numel()
        count += y.numel()
    loss = total / count
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": count}


def problem_exact_match(model, task, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """The fraction of held-out (problem, answer) pairs a decoder run answers exactly
    (greedy), overall and by the digits of the larger operand; for the calculator also by
    operator, and the fraction whose whole trace was the school algorithm's. A few of
    the misses come with it.

    >>> problem_exact_match(model, task, [("123+45", "168")])  # doctest: +SKIP
    {'exact_match': 1.0, 'examples': 1, 'by_length': {'3': {'exact_match': 1.0, 'examples': 1}},
     'reversed': True, 'misses': []}
    """
    if not pairs:
        raise GlassboxError("no held-out problems to score")
    problems = [problem for problem, _ in pairs]
    extra: dict[str, Any] = {}
    if task.name == "calculator":
        from glassbox.data.calculator import work_out

        written = dict(zip(problems, work_out(model, task, problems), strict=True))
        outputs = [task.read_answer(written[p], p) for p in problems]
        traces = [task.solution(task.parse(p)) == written[p] for p in problems]
        extra["trace_exact"] = sum(traces) / len(traces)
        extra["by_operator"] = _grouped([task.operator(p) for p in problems], pairs, outputs)
    else:
        from glassbox.data.arithmetic import answer

        outputs = answer(model, task, problems)
        extra["reversed"] = task.reverse
    misses = _misses(pairs, outputs)
    return {
        "exact_match": 1 - len(misses) / len(pairs),
        "examples": len(pairs),
        "by_length": _grouped([task.length(p) for p in problems], pairs, outputs),
        **extra,
        "misses": misses[:5],
    }


def _misses(pairs: list[tuple[str, str]], outputs: list[str]) -> list[dict[str, str]]:
    """The (source, target) pairs whose output is not the target, with that output."""
    return [
        {"source": source, "target": target, "output": output}
        for (source, target), output in zip(pairs, outputs, strict=True)
        if output != target
    ]


def _grouped(keys: list, pairs: list[tuple[str, str]], outputs: list[str]) -> dict[str, Any]:
    """Exact match of the outputs grouped by key, in key order."""
    right: dict[Any, list[bool]] = {}
    for key, (_, target), output in zip(keys, pairs, outputs, strict=True):
        right.setdefault(key, []).append(output == target)
    return {
        str(k): {"exact_match": sum(r) / len(r), "examples": len(r)}
        for k, r in sorted(right.items())
    }


@torch.no_grad()
def exact_match(
    model,
    task,
    pairs: list[tuple[str, str]],
    *,
    beam_size: int = 1,
    alpha: float = 0.6,
    batch_size: int = 250,
) -> dict[str, Any]:
    """The fraction of `pairs` (source, target) whose decoded output equals the target
    exactly, with a few of the misses to look at."""
    from glassbox.generate.seq2seq import translate

    outputs: list[str] = []
    for i in range(0, len(pairs), batch_size):
        sources = [source for source, _ in pairs[i : i + batch_size]]
        outputs += translate(
            model, task.tokenizer, sources, bos=BOS, eos=EOS, pad=PAD,
            max_len=task.max_target_len, beam_size=beam_size, alpha=alpha,
        )  # fmt: skip
    misses = _misses(pairs, outputs)
    return {
        "exact_match": 1 - len(misses) / len(pairs),
        "examples": len(pairs),
        "beam_size": beam_size,
        "misses": misses[:5],
    }


def evaluate_run(
    run_dir: Path | str,
    *,
    checkpoint: str = "best",
    device: str = "auto",
    data: str | None = None,
    split: str = "val",
    batch_size: int = 64,
    batches: int = 50,
    beam_size: int = 1,
    alpha: float = 0.6,
) -> dict[str, Any]:
    """Score a run the way its kind asks for (see the module docstring).

    data: a corpus (default | shakespeare | a path) to score a decoder on instead of its
    own split. batches: encoder runs only, the number of masked batches scored.
    """
    for name, value in (("batch_size", batch_size), ("batches", batches)):
        if value < 1:
            raise GlassboxError(f"{name} must be a positive integer; got {value}")
    device = resolve_device(device)
    model, tokenizer = runs.load_model(run_dir, checkpoint, device)
    model_config, train_config = runs.load_configs(run_dir)
    run = str(run_dir)
    if model_config.arch != "decoder" or train_config.task:
        if data is not None:
            raise GlassboxError(f"--data applies to runs trained on a corpus; {run} is not one")
        if train_config.task == "induction":
            from glassbox.analysis.inspect import induction_probe, repeat_losses

            tokens, start = induction_probe(train_config, model)
            return {"run": run, "task": "induction", **repeat_losses(model, tokens, start)}
        if train_config.task == "facts":  # recall per template, not exact match of a row
            from glassbox.data.facts import recall

            return {"run": run, "task": "facts", **recall(model, task_from_config(train_config))}
        if train_config.task in PROBLEM_TASKS:
            task = task_from_config(train_config)
            pairs = held_out_examples(task, train_config.seed)
            return {"run": run, "task": task.name, **problem_exact_match(model, task, pairs)}
        if model_config.arch == "encoder-decoder":
            task = task_from_config(train_config)
            pairs = held_out_examples(task, train_config.seed)
            scores = exact_match(model, task, pairs, beam_size=beam_size, alpha=alpha)
            return {"run": run, "task": task.name, **scores}
        from glassbox.train.estimate import estimate_loss
        from glassbox.train.objectives import build_objective

        objective = build_objective(model_config, train_config)
        losses = estimate_loss(model, objective, eval_iters=batches, seed=0, device=device)
        return {"run": run, "masked_lm_loss": losses[split], "split": split}
    T = model_config.block_size
    if data is None:
        dataset = runs.load_tokens(run_dir, tokenizer.vocab_size, T)
        batches_of_windows = dataset.windows(split, T, batch_size)
        source = f"{split} split of the run's corpus"
    else:
        ids = np.asarray(tokenizer.encode(load_text(data)), dtype=np.int64)  # (N,)
        if len(ids) < T + 1:
            raise GlassboxError(f"{data} has {len(ids)} tokens; eval needs {T + 1}")
        batches_of_windows = windows(ids, T, batch_size)
        source = data
    with torch.inference_mode():
        return {"run": run, "data": source, **mean_loss(model, batches_of_windows, device)}


def describe(result: dict[str, Any]) -> str:
    """evaluate_run's result as the lines `glassbox eval` prints."""
    if "repeat_loss" in result:
        return (
            f"induction: loss {result['first_block_loss']:.4f} on random blocks, "
            f"{result['repeat_loss']:.4f} on their repeats"
        )
    if result.get("task") == "facts":
        from glassbox.data.facts import describe_recall

        return describe_recall(result)
    if "by_length" in result:
        lines = [
            f"{result['task']}: exact match {result['exact_match']:.2%} on "
            f"{result['examples']} held-out problems (greedy)",
            "  by digits of the larger number: "
            + ", ".join(
                f"{n}: {s['exact_match']:.2%} of {s['examples']}"
                for n, s in result["by_length"].items()
            ),
        ]
        if "by_operator" in result:
            lines.append(
                "  by operator: "
                + ", ".join(
                    f"{op} {s['exact_match']:.2%} of {s['examples']}"
                    for op, s in result["by_operator"].items()
                )
            )
            lines.append(f"  whole trace right: {result['trace_exact']:.2%}")
        lines += [f"  {m['source']}= {m['output']} (want {m['target']})" for m in result["misses"]]
        return "\n".join(lines)
    if "exact_match" in result:
        lines = [
            f"{result['task']}: exact match {result['exact_match']:.2%} on "
            f"{result['examples']} held-out examples (beam {result['beam_size']})"
        ]
        lines += [
            f"  {m['source']} -> {m['output']} (want {m['target']})" for m in result["misses"]
        ]
        return "\n".join(lines)
    if "masked_lm_loss" in result:
        return f"{result['split']} masked-LM loss {result['masked_lm_loss']:.4f}"
    return (
        f"{result['data']}: loss {result['loss']:.4f}, perplexity {result['perplexity']:.3f} "
        f"over {result['tokens']:,} tokens"
    )
