"""EX2 on a wall-clock budget: train the `addition-gpt` preset (a GPT that adds numbers of
up to 5 digits), or the `calculator` preset (+ - * / with chain-of-thought traces), and
print its held-out exact match as JSON.

    python benchmarks/ex2_addition.py                    # 600 s, the preset's recipe
    python benchmarks/ex2_addition.py --ablation         # 4 x 600 s: reversed/masked on/off
    python benchmarks/ex2_addition.py --budget 120 --set n_layer=2 --set lr=3e-3
    python benchmarks/ex2_addition.py --preset calculator --budget 1200

The budget is the whole wall-clock time of one configuration, measured from the moment
it starts: a short calibration run (CALIBRATION_ITERS steps, thrown away), the training
run, and the evaluation of its 1,000 held-out problems. The trainer is not changed: the
calibration measures seconds per step, and the training run gets as many iterations as
fit in what is left (with a margin for its periodic evaluations and for the final
score), its cosine schedule decaying to the end of them. If the machine slows down
mid-run, a guard stops training at the budget and the last saved checkpoint is scored;
the JSON says so ("stopped_at_budget"). The score is of the last checkpoint, not the
best one: the best is picked by the loss on the very problems scored, so it would be a
biased pick.

Held-out problems are never drawn for training (glassbox.train.objectives.ProblemLM);
answers are greedy, written by the model token by token after '=' and un-reversed
before they are compared with the sum.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from glassbox.config import from_preset
from glassbox.evaluate import evaluate_run
from glassbox.train import train

PRESETS = ("addition-gpt", "calculator")
CALIBRATION_ITERS = 20  # steps timed to size the run; the first SKIP warm caches up
SKIP = 5
EVAL_RESERVE_S = 20.0  # the final score of 1,000 problems takes a few seconds; margin
EVALS = 12  # evaluations (and checkpoints) during the run, the first at step 0
SAFETY = 0.93  # of the steps that seem to fit, train this fraction (the host's speed drifts)
ABLATION = [  # (reverse_answer, mask_problem)
    (True, True),
    (True, False),
    (False, True),
    (False, False),
]


class OutOfTime(Exception):
    """Raised from the trainer's callback when the budget runs out mid-run."""


def parse_sets(items: list[str]) -> dict[str, str]:
    changes = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            sys.exit(f"--set expects KEY=VALUE, got {item!r}")
        changes[key] = value
    return changes


def seconds_per_step(root: Path, preset: str, base: dict, label: str) -> float:
    """Median seconds per training step of this exact model and batch, on this machine
    now (a throwaway run of CALIBRATION_ITERS steps)."""
    calibration = from_preset(
        preset, **base, run_dir=str(root / f"{label}-calibration"),
        max_iters=CALIBRATION_ITERS, lr_decay_iters=CALIBRATION_ITERS,
        warmup_iters=min(10, CALIBRATION_ITERS), eval_interval=CALIBRATION_ITERS, eval_iters=1,
    )  # fmt: skip
    result = train(*calibration, progress=False, overwrite=True)
    return statistics.median(result.ms_per_iter[SKIP:]) / 1000


def run_one(
    budget: float, root: Path, preset: str, changes: dict, threads: int, label: str
) -> dict:
    """Calibrate, train and score one configuration within `budget` seconds. threads=0
    times 1 thread and all cores and keeps the faster (on a busy host, extra threads
    wait for each other and a step can take several times longer)."""
    start = time.perf_counter()

    # 1. Calibration: seconds per step of this exact model and batch, on this machine now.
    candidates = [threads] if threads else sorted({1, os.cpu_count() or 1})
    timed = {n: seconds_per_step(root, preset, dict(changes, device="cpu", threads=n), label)
             for n in candidates}  # fmt: skip
    threads = min(timed, key=timed.get)
    step_s = timed[threads]
    base = dict(changes, device="cpu", threads=threads)

    # 2. Size the run: each of its EVALS evaluations costs about 2 * eval_iters forward
    # passes (a third of a step each, no backward) and saves a checkpoint, so a run the
    # guard stops loses little.
    model_config, train_config = from_preset(preset, **base, run_dir=str(root / label))
    per_eval_s = 2 * train_config.eval_iters * step_s / 3 + 0.05  # + a checkpoint save
    left = budget - (time.perf_counter() - start) - EVAL_RESERVE_S
    iters = max(1, int(SAFETY * (left - EVALS * per_eval_s) / step_s))
    model_config, train_config = from_preset(
        preset, **base, run_dir=str(root / label), max_iters=iters, lr_decay_iters=iters,
        warmup_iters=min(train_config.warmup_iters, iters // 10),
        eval_interval=max(1, iters // (EVALS - 1)),
    )  # fmt: skip

    # 3. Train, with a guard that stops at the budget if the host slows down.
    deadline = start + budget - EVAL_RESERVE_S / 2
    last_iter = [0]

    def guard(row: dict) -> None:
        last_iter[0] = row["iter"]
        if row["kind"] == "train" and time.perf_counter() > deadline:
            raise OutOfTime

    train_start = time.perf_counter()
    stopped = False
    try:
        train(model_config, train_config, progress=False, overwrite=True, callback=guard)
    except OutOfTime:
        stopped = True
    train_s = time.perf_counter() - train_start

    # 4. Score the last checkpoint on the held-out problems.
    eval_start = time.perf_counter()
    scores = evaluate_run(train_config.run_dir, checkpoint="last", device="cpu")
    eval_s = time.perf_counter() - eval_start
    total_s = time.perf_counter() - start
    per_operator = {
        "by_operator": {op: s["exact_match"] for op, s in scores["by_operator"].items()},
        "trace_exact": scores["trace_exact"],
    } if "by_operator" in scores else {}  # fmt: skip
    return {
        "label": label,
        "preset": preset,
        "reverse_answer": train_config.reverse_answer,
        "mask_problem": train_config.mask_problem,
        "exact_match": scores["exact_match"],
        "examples": scores["examples"],
        "by_length": {n: s["exact_match"] for n, s in scores["by_length"].items()},
        **per_operator,
        "misses": scores["misses"],
        "max_iters": iters,
        "iters_done": iters if not stopped else last_iter[0],
        "stopped_at_budget": stopped,
        "ms_per_step_calibrated": round(step_s * 1000, 2),
        "threads": threads,
        "batch_size": train_config.batch_size,
        "calibration_s": round(train_start - start, 1),
        "train_s": round(train_s, 1),
        "eval_s": round(eval_s, 1),
        "total_s": round(total_s, 1),
        "budget_s": budget,
        "within_budget": total_s <= budget,
        "overrides": changes,
    }


def table(rows: list[dict]) -> str:
    lengths = sorted({n for row in rows for n in row["by_length"]}, key=int)
    head = "| reversed | masked | exact match | " + " | ".join(f"{n} digits" for n in lengths)
    head += " | steps | total s |"
    lines = [head, "|" + "---|" * (5 + len(lengths))]  # 5: reversed, masked, match, steps, s
    for row in rows:
        cells = [f"{row['by_length'].get(n, float('nan')):.2%}" for n in lengths]
        lines.append(
            f"| {'yes' if row['reverse_answer'] else 'no'} | "
            f"{'yes' if row['mask_problem'] else 'no'} | {row['exact_match']:.2%} | "
            + " | ".join(cells)
            + f" | {row['iters_done']} | {row['total_s']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=600.0, help="seconds per run (600)")
    parser.add_argument("--preset", default=PRESETS[0], choices=PRESETS, help="(addition-gpt)")
    parser.add_argument(
        "--ablation", action="store_true", help="all four reversed/masked combinations"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads; 0: the faster of 1 and all (0)"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a preset setting (repeatable), e.g. --set n_layer=2",
    )  # fmt: skip
    parser.add_argument(
        "--run-root", default=None, help="keep the runs here (default: a temporary folder)"
    )
    args = parser.parse_args()
    if args.budget < 2 * EVAL_RESERVE_S:
        sys.exit(f"--budget must be at least {2 * EVAL_RESERVE_S:.0f} seconds")
    changes = parse_sets(args.set)
    if args.ablation and args.preset != "addition-gpt":
        sys.exit("--ablation switches reverse_answer, which only addition-gpt has")
    combos = ABLATION if args.ablation else [(None, None)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.run_root or tmp)
        rows = []
        for reverse, mask in combos:
            these = dict(changes)
            label = "preset"
            if reverse is not None:
                these.update(reverse_answer=reverse, mask_problem=mask)
                label = f"{'reversed' if reverse else 'forward'}-{'masked' if mask else 'unmasked'}"
            rows.append(run_one(args.budget, root, args.preset, these, args.threads, label))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(json.dumps(rows if args.ablation else rows[0]))
    if args.ablation:
        print(table(rows), file=sys.stderr)


if __name__ == "__main__":
    main()
