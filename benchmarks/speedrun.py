"""Time to nanoGPT's tiny-Shakespeare loss: char-speedrun against char-small, on this CPU.

    python benchmarks/speedrun.py --data ../shared/data/tinyshakespeare.txt
    python benchmarks/speedrun.py --data FILE --rounds 5 \\
        --recipe char-small --recipe char-speedrun --recipe "char-speedrun max_iters=700"

A recipe is a preset and optional field=value overrides (glassbox.config's fields). Each
round trains every recipe once, in a fresh process, in turn (the order reversed every
other round, so the host's drift hits all alike). A run is `glassbox train`'s own loop
(glassbox.train.train) with eval_full on: every evaluation scores the whole val split as
`glassbox eval` does, and its time counts. The clock starts when train() is called, so
it includes tokenizing the corpus, building the model and every evaluation; only the
Python and torch imports are left out (the same for every recipe).

Per run: each evaluation's iteration, val loss and seconds since the start; the time to
the target is the time at the end of the first evaluation at or under it (on the
recipe's fixed eval schedule; null if never), and the loss at the budget is the val loss
of the last evaluation finished within --budget seconds. Also reported: the time to the
target less the evaluations before the crossing (what a run that evaluated only there
would take). Printed as JSON: each recipe's
runs and medians (min, max), and for every recipe after the first, the median over
rounds of (first recipe's time / this recipe's time) with its range.

The target 1.898 is what nanoGPT's CPU recipe (char-small here) reaches after 2000 steps,
and 92 s its wall time for them on this 2-core machine (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET = 1.898
BUDGET_S = 92.0

CHILD = r"""
import json, sys, time
import torch
from glassbox.config import from_preset
from glassbox.train import train

preset, data, run_dir, overrides = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
evals = []
steps = []
last = [0.0]  # when the previous row was logged
def on_row(row):
    now = time.perf_counter() - start
    if row["kind"] == "eval":  # the evaluation took the time since the last step's row
        evals.append({"iter": row["iter"], "val_loss": row["val_loss"], "s": round(now, 2),
                      "eval_s": round(now - last[0], 2)})
    else:
        steps.append(row["ms"])
    last[0] = now
model_config, train_config = from_preset(
    preset, data=data, run_dir=run_dir, device="cpu", eval_full=True, **overrides)
start = time.perf_counter()
train(model_config, train_config, progress=False, callback=on_row)
total = time.perf_counter() - start
steps.sort()
print(json.dumps({"evals": evals, "total_s": round(total, 2), "iters": len(steps),
                  "ms_per_step": round(steps[len(steps) // 2], 2)}))
"""


def parse_recipe(spec: str) -> tuple[str, dict[str, str]]:
    """'char-speedrun max_iters=700 lr=3e-3' -> ('char-speedrun', {'max_iters': '700', ...});
    the values stay strings, which glassbox.config converts and checks like CLI flags."""
    preset, *pairs = spec.split()
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--recipe {spec!r}: {pair!r} is not field=value")
        overrides[key.replace("-", "_")] = value
    return preset, overrides


def run_once(spec: str, data: str, threads: int) -> dict:
    preset, overrides = parse_recipe(spec)
    overrides.setdefault("threads", str(threads))
    with tempfile.TemporaryDirectory() as tmp:
        args = [sys.executable, "-c", CHILD, preset, data, str(Path(tmp) / "run"),
                json.dumps(overrides)]  # fmt: skip
        out = subprocess.run(args, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{spec}: the run failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def score(run: dict, target: float, budget: float) -> dict:
    """The first evaluation at or under the target, and the last one inside the budget."""
    hit = next((e for e in run["evals"] if e["val_loss"] <= target), None)
    inside = [e for e in run["evals"] if e["s"] <= budget]
    # the same, less every evaluation before the crossing (the first one includes start-up)
    evals_before = sum(e["eval_s"] for e in run["evals"][1:] if hit and e["iter"] < hit["iter"])
    return {
        "time_to_target_s": hit["s"] if hit else None,
        "less_earlier_evals_s": round(hit["s"] - evals_before, 2) if hit else None,
        "iter_at_target": hit["iter"] if hit else None,
        "loss_at_budget": inside[-1]["val_loss"] if inside else None,
        "final_val_loss": run["evals"][-1]["val_loss"],
        "total_s": run["total_s"],
        "ms_per_step": run["ms_per_step"],
        "evals": run["evals"],
    }


def spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "n": len(values)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="tiny Shakespeare (../shared/data/...)")
    parser.add_argument("--recipe", action="append", dest="recipes", metavar="SPEC",
                        help="'PRESET [field=value ...]', repeatable; the first is the "
                        "baseline (default: char-small, then char-speedrun)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="runs of each recipe (3)")
    parser.add_argument("--target", type=float, default=TARGET, help=f"val loss ({TARGET})")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help=f"seconds ({BUDGET_S})")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    args = parser.parse_args()
    recipes = args.recipes or ["char-small", "char-speedrun"]
    for spec in recipes:
        parse_recipe(spec)  # a typo fails before the first long run
    scored: dict[str, list[dict]] = {spec: [] for spec in recipes}
    for r in range(args.rounds):
        for spec in recipes if r % 2 == 0 else recipes[::-1]:
            run = score(run_once(spec, args.data, args.threads), args.target, args.budget)
            scored[spec].append(run)
            print(f"round {r + 1} {spec}: target at {run['time_to_target_s']} s, "
                  f"final {run['final_val_loss']:.4f} after {run['total_s']} s",
                  file=sys.stderr)  # fmt: skip
    base = recipes[0]
    summary = {}
    for spec, runs in scored.items():
        times = [run["time_to_target_s"] for run in runs]
        entry = {
            "time_to_target_s": spread([t for t in times if t is not None]),
            "reached": sum(t is not None for t in times),
            "loss_at_budget": spread([r["loss_at_budget"] for r in runs if r["loss_at_budget"]]),
            "final_val_loss": spread([r["final_val_loss"] for r in runs]),
            "total_s": spread([r["total_s"] for r in runs]),
            "ms_per_step": spread([r["ms_per_step"] for r in runs]),
        }
        if spec != base:
            pairs = [b["time_to_target_s"] / s["time_to_target_s"]
                     for b, s in zip(scored[base], runs, strict=True)
                     if b["time_to_target_s"] and s["time_to_target_s"]]  # fmt: skip
            entry["speedup_over_first"] = spread(pairs)
        summary[spec] = entry
    print(json.dumps({
        "target": args.target, "budget_s": args.budget, "rounds": args.rounds,
        "threads": args.threads, "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "summary": summary, "runs": scored,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
