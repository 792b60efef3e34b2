"""Training speed of this checkout against another version of glassbox, on the same host.

    git worktree add /tmp/old 0543cb2
    python benchmarks/ab_train.py 400 6 float32 --old /tmp/old/src --data PATH

Trains `char-small` for STEPS steps (no evaluations) in a fresh subprocess, alternately
with this checkout's src/ and the --old one (A B, B A, ...), ROUNDS times each, and prints
the median ms per step of every slice and the median of the pairwise ratios old/new as
JSON. Short alternating slices, because the shared host's speed drifts over minutes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import statistics, sys, tempfile, torch
sys.path.insert(0, sys.argv[1])
from glassbox.config import from_preset
from glassbox.train.trainer import train
torch.set_num_threads(2)
with tempfile.TemporaryDirectory() as run_dir:
    model_config, train_config = from_preset(
        "char-small", data=sys.argv[4], run_dir=run_dir, max_iters=int(sys.argv[2]),
        eval_interval=10**6, device="cpu", dtype=sys.argv[3])
    result = train(model_config, train_config, progress=False)
print(statistics.median(result.ms_per_iter[10:]))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("steps", type=int)
    parser.add_argument("rounds", type=int)
    parser.add_argument("dtype", choices=["float32", "bfloat16"])
    parser.add_argument("--old", default="/tmp/old/src", help="src/ of the other version")
    parser.add_argument("--data", default="../shared/data/tinyshakespeare.txt")
    args = parser.parse_args()
    new = str(Path(__file__).resolve().parents[1] / "src")
    sides = {"new": new, "old": args.old}
    ms: dict[str, list[float]] = {"new": [], "old": []}
    for i in range(args.rounds):
        for name in ("new", "old") if i % 2 == 0 else ("old", "new"):
            argv = [sides[name], str(args.steps), args.dtype, args.data]
            out = subprocess.run(
                [sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, check=True
            )
            ms[name].append(float(out.stdout.split()[-1]))
    ratios = [old / new for old, new in zip(ms["old"], ms["new"], strict=True)]
    report = {"dtype": args.dtype, "steps": args.steps, "rounds": args.rounds}
    report |= {"new_ms": ms["new"], "old_ms": ms["old"], "old_over_new": ratios}
    print(json.dumps(report | {"median_ratio": statistics.median(ratios)}))


if __name__ == "__main__":
    main()
