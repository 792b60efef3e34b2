"""Time to nanoGPT's tiny-Shakespeare loss: char-speedrun against char-small, on this CPU.

    python benchmarks/speedrun.py --data ../shared/data/tinyshakespeare.txt
    python benchmarks/speedrun.py --data FILE --rounds 5 \\
        --recipe char-small --recipe char-speedrun --recipe "char-speedrun max_iters=700"
    python benchmarks/speedrun.py --data FILE --rounds 1 --stop-at-target \
        --recipe "char-small eval_interval=100" \
        --recipe "char-small eval_interval=100 pos_encoding=rope"

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
rounds of (first recipe's time / this recipe's time) with its range; the first recipe's
time is its time to the target, or to its last evaluation if it ends above it.

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

# --ablation: char-small, then one change at a time (each row keeps the ones above it,
# except bf16, which is slower on this host's CPU and is left out below it), to
# char-speedrun. Evaluated every 100 steps (all counted), stopping at the target.
_ADAMW = "char-small eval_interval=100 lr=2e-3 batch_size=16"
_MODEL = ["pos_encoding=rope", "norm=rmsnorm qk_norm=true", "activation=relu2",
          "tie_embeddings=false zero_init=true logit_softcap=15"]  # fmt: skip
_MUON = ("optimizer=muon muon_momentum=0.9 lr=2.5e-2 beta1=0.8 beta2=0.95 weight_decay=0 "
         "max_iters=220 lr_decay_iters=220 warmup_iters=20 eval_interval=110")  # fmt: skip
ABLATION = [
    "char-small eval_interval=100",
    "char-small eval_interval=100 dtype=bfloat16",
    _ADAMW,
    *[" ".join([_ADAMW, *_MODEL[: i + 1]]) for i in range(len(_MODEL))],
    " ".join([_ADAMW, *_MODEL, _MUON]),
    "char-speedrun",
]

CHILD = r"""
import json, sys, time
import torch
from glassbox.config import from_preset
from glassbox.train import train

preset, data, run_dir, overrides = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
stop_at = float(sys.argv[5])  # a val loss to stop at (the target), or -1: train to the end
class Reached(Exception):
    pass
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
    if row["kind"] == "eval" and row["val_loss"] <= stop_at:
        raise Reached
model_config, train_config = from_preset(
    preset, data=data, run_dir=run_dir, device="cpu", eval_full=True, **overrides)
start = time.perf_counter()
try:
    train(model_config, train_config, progress=False, callback=on_row)
except Reached:
    pass
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


def run_once(spec: str, data: str, threads: int, stop_at: float = -1.0) -> dict:
    preset, overrides = parse_recipe(spec)
    overrides.setdefault("threads", str(threads))
    with tempfile.TemporaryDirectory() as tmp:
        args = [sys.executable, "-c", CHILD, preset, data, str(Path(tmp) / "run"),
                json.dumps(overrides), str(stop_at)]  # fmt: skip
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


def baseline_time(run: dict) -> float:
    """The first recipe's time: to the target, or where it never gets there, to its last
    evaluation (char-small defines the target by where its 2000 steps end, and may end a
    hair above it on this machine's arithmetic)."""
    return run["time_to_target_s"] or run["evals"][-1]["s"]


def summarize(scored: dict[str, list[dict]], base: str) -> dict[str, dict]:
    """Each recipe's medians (min, max) over its runs, and its speedup over the first,
    the median of the per-round ratios (first recipe's time / this recipe's)."""
    summary = {}
    for spec, runs in scored.items():
        times = [run["time_to_target_s"] for run in runs]
        entry = {
            "time_to_target_s": spread([t for t in times if t is not None]),
            "reached": sum(t is not None for t in times),
            "less_earlier_evals_s": spread(
                [r["less_earlier_evals_s"] for r in runs if r["less_earlier_evals_s"]]
            ),
            "loss_at_budget": spread([r["loss_at_budget"] for r in runs if r["loss_at_budget"]]),
            "final_val_loss": spread([r["final_val_loss"] for r in runs]),
            "total_s": spread([r["total_s"] for r in runs]),
            "ms_per_step": spread([r["ms_per_step"] for r in runs]),
        }
        if spec == base:
            entry["baseline_time_s"] = spread([baseline_time(r) for r in runs])
        else:
            pairs = [baseline_time(b) / r["time_to_target_s"]
                     for b, r in zip(scored[base], runs, strict=True)
                     if r["time_to_target_s"]]  # fmt: skip
            entry["speedup_over_first"] = spread(pairs)
        summary[spec] = entry
    return summary


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
    parser.add_argument("--ablation", action="store_true",
                        help="run the ABLATION recipes (one change at a time) with "
                        "--stop-at-target instead of --recipe")  # fmt: skip
    parser.add_argument("--stop-at-target", action="store_true",
                        help="end each run at its first evaluation at or under the target "
                        "(for ablations: the loss at the budget is then not measured)")  # fmt: skip
    args = parser.parse_args()
    if args.ablation:
        args.recipes, args.stop_at_target = ABLATION, True
    recipes = args.recipes or ["char-small", "char-speedrun"]
    for spec in recipes:
        parse_recipe(spec)  # a typo fails before the first long run
    scored: dict[str, list[dict]] = {spec: [] for spec in recipes}
    for r in range(args.rounds):
        for spec in recipes if r % 2 == 0 else recipes[::-1]:
            stop_at = args.target if args.stop_at_target else -1.0
            run = score(run_once(spec, args.data, args.threads, stop_at), args.target, args.budget)
            scored[spec].append(run)
            print(f"round {r + 1} {spec}: target at {run['time_to_target_s']} s, "
                  f"final {run['final_val_loss']:.4f} after {run['total_s']} s",
                  file=sys.stderr)  # fmt: skip
    summary = summarize(scored, recipes[0])
    print(json.dumps({
        "target": args.target, "budget_s": args.budget, "rounds": args.rounds,
        "threads": args.threads, "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "summary": summary, "runs": scored,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
