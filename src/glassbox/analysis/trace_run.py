"""Causal tracing of a trained run's prompts: the glue between `glassbox inspect --trace`
/ `--trace-facts` and glassbox.analysis.tracing, which does the maths on a model.

A facts run knows its subjects and answers; any other run is told the subject text and
the answer (or takes the model's own prediction). The reports are JSON-ready dicts, and
`describe_trace` renders one as text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from glassbox import runs
from glassbox.analysis.labels import output_folder, token_text
from glassbox.analysis.tracing import average_trace, plot_trace
from glassbox.analysis.tracing import trace as causal_trace
from glassbox.errors import GlassboxError


def subject_span(tokenizer, prompt: str, subject: str) -> tuple[int, int]:
    """Token positions [start, end) of the first occurrence of `subject` in `prompt`; it
    must begin and end at token boundaries (BPE: give the leading space too).

    >>> from glassbox.tokenizers import CharTokenizer
    >>> subject_span(CharTokenizer("abc "), "ab cab", "cab")
    (3, 6)
    """
    where = prompt.find(subject) if subject.strip() else -1
    if where < 0:
        raise GlassboxError(f"the subject {subject!r} does not occur in the prompt {prompt!r}")
    ids = tokenizer.encode(prompt)
    before = tokenizer.encode(prompt[:where])
    through = tokenizer.encode(prompt[: where + len(subject)])
    if ids[: len(before)] != before or ids[: len(through)] != through:
        raise GlassboxError(
            f"the subject {subject!r} does not start and end at token boundaries of the "
            "prompt (with BPE, include the space before it)"
        )
    return len(before), len(through)


def _facts_task(run_dir: Path | str):
    """The FactsTask of a facts run, or None for any other run."""
    train_config = runs.load_configs(run_dir)[1]
    if train_config.task != "facts":
        return None
    from glassbox.data.tasks import task_from_config

    return task_from_config(train_config)


def _peaks(maps: dict[str, Tensor], rows: list[str]) -> dict[str, dict[str, Any]]:
    """For each kind, where restoring one state brings p(answer) back the most."""
    peaks = {}
    for kind, grid in maps.items():  # (L, rows)
        layer, row = divmod(int(grid.argmax()), grid.size(1))
        peaks[kind] = {"layer": layer, "row": row, "at": rows[row], "p": float(grid.max())}
    return peaks


def trace_report(
    run_dir: Path | str, model, tokenizer, prompt: str, answer: str | None = None,
    subject: str | None = None, png: Path | str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Causal tracing of one prompt (glassbox.analysis.tracing.trace). A facts run finds
    the subject (one of its made-up names) and knows the answer; another run needs
    `subject`, the text to corrupt, and its answer defaults to the model's own top
    prediction. `answer` must be one token."""
    task = _facts_task(run_dir)
    ids = tokenizer.encode(prompt)
    if not ids:
        raise GlassboxError("the --trace prompt encodes to no tokens")
    if subject is not None:
        start, end = subject_span(tokenizer, prompt, subject)
    elif task is not None:
        start, end = task.find_subject(ids)
    else:
        raise GlassboxError(
            "--trace needs --subject TEXT, the part of the prompt to corrupt (only a facts "
            "run finds its subjects itself)"
        )
    tokens = torch.tensor([ids])  # (1, T)
    if answer is not None:
        answer_ids = tokenizer.encode(answer)
        if len(answer_ids) != 1:
            raise GlassboxError(
                f"--answer must be one token of this run's tokenizer; {answer!r} is "
                f"{len(answer_ids)} tokens"
            )
        answer_id = answer_ids[0]
    elif task is not None and task.knows(prompt):
        answer_id = tokenizer.encode(task.solve(prompt))[0]
    else:
        with torch.no_grad():
            answer_id = int(model(tokens)[0, -1].argmax())  # what the model says
    result = causal_trace(model, tokens, range(start, end), answer_id)
    names = [token_text(tokenizer, i) for i in ids]
    report: dict[str, Any] = {
        "prompt": prompt,
        "tokens": names,
        "subject": [start, end],
        "answer": token_text(tokenizer, answer_id),
        "clean": result.clean,
        "corrupted": result.corrupted,
        "peaks": _peaks(result.maps, names),
        "maps": {kind: grid.tolist() for kind, grid in result.maps.items()},  # (L, T)
    }
    if png:
        from glassbox.analysis.attention_page import visible_token

        title = f"{prompt!r} -> {report['answer']!r}"
        path = output_folder(png) / "trace.png"
        labels = [visible_token(name) for name in names]
        report["png"] = str(plot_trace(result.maps, labels, path, clean=result.clean,
                                       corrupted=result.corrupted, title=title,
                                       subject=(start, end)))  # fmt: skip
    return report


def trace_facts_report(
    run_dir: Path | str, model, n: int, png: Path | str | None = None, seed: int = 0
) -> dict[str, Any]:
    """Causal tracing averaged over n facts of a facts run (glassbox.analysis.tracing.
    average_trace): statements in its training templates, in an order fixed by `seed`,
    keeping those the model recalls (top-1), as the paper traces known facts."""
    task = _facts_task(run_dir)
    if task is None:
        raise GlassboxError(
            "--trace-facts averages over the facts of a facts run (glassbox train --task "
            "facts); trace one prompt of any run with --trace"
        )
    problems = task.all_problems(task.train_templates)  # (N, 2)
    order = torch.randperm(len(problems), generator=torch.Generator().manual_seed(seed))
    problems = problems[order]
    answers = torch.tensor([task.tokenizer.encode(task.answer(*p))[0] for p in problems.tolist()])
    prompts = task.prompts(problems)  # (N, prompt_len)
    with torch.no_grad():
        known = model(prompts)[:, -1].argmax(-1) == answers  # (N,)
    chosen = known.nonzero().flatten()[:n].tolist()
    if not chosen:
        raise GlassboxError(f"{run_dir} recalls none of its facts: train it longer")
    facts = []
    for i in chosen:
        template = task.templates[int(problems[i, 1])][1]
        facts.append((prompts[i], range(*task.subject_span(template)), int(answers[i])))
    avg = average_trace(model, facts)
    rows = avg["categories"]
    report: dict[str, Any] = {
        "facts": avg["facts"],
        "known": int(known.sum()),
        "statements": len(problems),
        "clean": avg["clean"],
        "corrupted": avg["corrupted"],
        "categories": rows,
        "counts": avg["counts"],
        "peaks": _peaks(avg["maps"], rows),
        "maps": {kind: grid.tolist() for kind, grid in avg["maps"].items()},  # (L, rows)
    }
    if png:
        n_subject = sum("subject" in row for row in rows)
        title = f"{run_dir}: mean over {avg['facts']} facts"
        path = output_folder(png) / "trace_facts.png"
        report["png"] = str(plot_trace(avg["maps"], rows, path, clean=avg["clean"],
                                       corrupted=avg["corrupted"], title=title,
                                       subject=(0, n_subject)))  # fmt: skip
    return report


_KIND_NAMES = {"resid": "residual stream", "mlp": "MLP output", "attn": "attention output"}


def describe_trace(trace: dict[str, Any]) -> list[str]:
    """A trace_report or trace_facts_report as text: the probabilities, where each kind
    of state restores the answer most, and the maps (rows: positions, columns: layers)."""
    if "prompt" in trace:
        start, end = trace["subject"]
        rows = [f"{t}*" if start <= i < end else t for i, t in enumerate(trace["tokens"])]
        lines = [
            f"causal tracing of {trace['prompt']!r} -> {trace['answer']!r} (noise on the "
            f"subject, tokens {start}-{end - 1}; * below)"
        ]
    else:
        rows = trace["categories"]
        lines = [
            f"causal tracing averaged over {trace['facts']} facts the model recalls "
            f"({trace['known']} of {trace['statements']} statements in training templates)"
        ]
    lines.append(f"p(answer): clean {trace['clean']:.3f}, corrupted {trace['corrupted']:.3f}")
    for kind, peak in trace["peaks"].items():
        lines.append(
            f"  restoring one {_KIND_NAMES[kind]:<17} brings most back at layer "
            f"{peak['layer']}, {peak['at']!r}: {peak['p']:.3f}"
        )
    width = max(len(r) for r in rows) + 2
    for kind, grid in trace["maps"].items():  # (L, rows)
        lines.append(f"p(answer) restoring the {_KIND_NAMES[kind]} (columns: layers)")
        for i, row in enumerate(rows):
            lines.append(f"  {row:<{width}}" + " ".join(f"{layer[i]:.2f}" for layer in grid))
    if "png" in trace:
        lines.append(f"wrote {trace['png']}")
    return lines
