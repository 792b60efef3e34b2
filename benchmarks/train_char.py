"""Train the `char-small` preset on a text file and print its speed and losses as JSON.

    python benchmarks/train_char.py --data ../shared/data/tinyshakespeare.txt --json
    python benchmarks/train_char.py --data ../shared/data/tinyshakespeare.txt \\
        --nanogpt /tmp/nanogpt --repeats 3 --json

The configuration is nanoGPT's CPU recipe for shakespeare_char (4 layers, 4 heads, 128
wide, context 64, batch 12, 2000 iterations). With --nanogpt DIR (a checkout of
karpathy/nanoGPT; never part of this repository) the same configuration also runs through
nanoGPT's own train.py, alternating with ours, and the JSON gives both and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from glassbox.config import from_preset
from glassbox.models import GPT
from glassbox.runs import load_configs
from glassbox.train import train

SKIP = 10  # the first iterations warm caches and the allocator up; not timed


def run_glassbox(data: str, iters: int, threads: int, compile: bool, seed: int, dtype: str) -> dict:
    with tempfile.TemporaryDirectory() as run_dir:
        model_config, train_config = from_preset(
            "char-small",
            data=data,
            run_dir=run_dir,
            max_iters=iters,
            lr_decay_iters=iters,
            threads=threads,
            compile=compile,
            seed=seed,
            device="cpu",
            dtype=dtype,
        )
        start = time.perf_counter()
        result = train(model_config, train_config, progress=False)
        wall = time.perf_counter() - start
        params = GPT(load_configs(run_dir)[0]).num_params()  # vocab_size set by the tokenizer
    tokens_per_iter = train_config.batch_size * model_config.block_size
    ms = statistics.median(result.ms_per_iter[SKIP:])
    return {
        "params": params,
        "ms_per_iter_median": round(ms, 3),
        "tokens_per_s": round(tokens_per_iter / ms * 1000, 1),
        "train_loss": round(result.train_loss, 4),
        "val_loss": round(result.val_loss, 4),
        "wall_s": round(wall, 1),
    }


def prepare_nanogpt_data(data: str, nanogpt: Path) -> None:
    """Write nanoGPT's shakespeare_char files (train.bin, val.bin, meta.pkl) for `data`,
    the same encoding its prepare.py makes, without its download step."""
    text = Path(data).read_text(encoding="utf-8")
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], dtype=np.uint16)
    out = nanogpt / "data" / "shakespeare_char"
    out.mkdir(parents=True, exist_ok=True)
    n = int(len(ids) * 0.9)
    ids[:n].tofile(out / "train.bin")
    ids[n:].tofile(out / "val.bin")
    meta = {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}
    with open(out / "meta.pkl", "wb") as f:  # nanoGPT reads this; we only write it
        pickle.dump(meta, f)


def run_nanogpt(nanogpt: Path, iters: int, threads: int) -> dict:
    args = [
        sys.executable,
        "train.py",
        "config/train_shakespeare_char.py",
        "--device=cpu",
        "--compile=False",
        "--eval_iters=20",
        "--log_interval=1",
        "--block_size=64",
        "--batch_size=12",
        "--n_layer=4",
        "--n_head=4",
        "--n_embd=128",
        f"--max_iters={iters}",
        f"--lr_decay_iters={iters}",
        "--dropout=0.0",
        "--bias=False",
        "--out_dir=/tmp/nanogpt-out",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    log = subprocess.run(args, cwd=nanogpt, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    times = [float(t) for t in re.findall(r"^iter \d+: .*time ([\d.]+)ms", log.stdout, re.M)]
    evals = re.findall(r"^step \d+: train loss ([\d.]+), val loss ([\d.]+)", log.stdout, re.M)
    ms = statistics.median(times[SKIP:])
    return {
        "ms_per_iter_median": round(ms, 3),
        "tokens_per_s": round(12 * 64 / ms * 1000, 1),
        "train_loss": float(evals[-1][0]),
        "val_loss": float(evals[-1][1]),
        "wall_s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="UTF-8 text file to train on")
    parser.add_argument("--max-iters", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="torch.compile our model")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="our precision (nanoGPT's CPU recipe is float32)",
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs of each; medians reported")
    parser.add_argument("--nanogpt", type=Path, help="a nanoGPT checkout to run side by side")
    parser.add_argument("--json", action="store_true", help="print one line of JSON")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.nanogpt:
        prepare_nanogpt_data(args.data, args.nanogpt)
    ours, theirs = [], []
    for _ in range(args.repeats):  # alternate, so that drifts in machine load hit both
        ours.append(
            run_glassbox(
                args.data, args.max_iters, args.threads, args.compile, args.seed, args.dtype
            )
        )
        if args.nanogpt:
            theirs.append(run_nanogpt(args.nanogpt, args.max_iters, args.threads))

    def summary(runs: list[dict]) -> dict:
        out = dict(runs[0])
        for key in ("ms_per_iter_median", "tokens_per_s", "wall_s"):
            out[key] = round(statistics.median(r[key] for r in runs), 3)
        out["ms_per_iter_runs"] = [r["ms_per_iter_median"] for r in runs]
        return out

    report = {
        "benchmark": "train_char",
        "data": args.data,
        "iters": args.max_iters,
        "threads": args.threads,
        "compile": args.compile,
        "dtype": args.dtype,
        "repeats": args.repeats,
        "torch": torch.__version__,
        **summary(ours),
    }
    if args.nanogpt:
        report["nanogpt"] = summary(theirs)
        report["speedup_vs_nanogpt"] = round(
            report["nanogpt"]["ms_per_iter_median"] / report["ms_per_iter_median"], 3
        )
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
