"""Train the `char-small` preset on a text file and print its speed and losses as JSON.

    python benchmarks/train_char.py --data ../shared/data/tinyshakespeare.txt --json

The configuration is nanoGPT's CPU recipe for shakespeare_char (4 layers, 4 heads, 128
wide, context 64, batch 12, 2000 iterations), so the figures compare with nanoGPT's
`train.py` run side by side (see docs/benchmarks.md for that command).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

import torch

from glassbox.config import from_preset
from glassbox.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="UTF-8 text file to train on")
    parser.add_argument("--max-iters", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as run_dir:
        model_config, train_config = from_preset(
            "char-small",
            data=args.data,
            run_dir=run_dir,
            max_iters=args.max_iters,
            lr_decay_iters=args.max_iters,
            threads=args.threads,
            compile=args.compile,
            seed=args.seed,
            device="cpu",
        )
        start = time.perf_counter()
        result = train(model_config, train_config, progress=not args.json)
        wall = time.perf_counter() - start
        params = sum(
            p.numel()
            for p in __import__("glassbox")
            .models.GPT(__import__("glassbox").runs.load_configs(run_dir)[0])
            .parameters()
        )
    ms = statistics.median(result.ms_per_iter[10:])  # the first steps warm caches up
    tokens_per_iter = train_config.batch_size * model_config.block_size * train_config.grad_accum
    report = {
        "benchmark": "train_char",
        "data": args.data,
        "params": params,
        "iters": result.step,
        "threads": torch.get_num_threads(),
        "compile": args.compile,
        "ms_per_iter_median": round(ms, 3),
        "tokens_per_s": round(tokens_per_iter / ms * 1000, 1),
        "train_loss": round(result.train_loss, 4),
        "val_loss": round(result.val_loss, 4),
        "best_val_loss": round(result.best_val_loss, 4),
        "wall_s": round(wall, 1),
        "torch": torch.__version__,
    }
    json.dump(report, sys.stdout, indent=None if args.json else 2)
    print()


if __name__ == "__main__":
    main()
