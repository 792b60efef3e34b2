"""Train architecture variants of `char-small` side by side and print loss, speed and size.

    python benchmarks/compare_variants.py --data ../shared/data/tinyshakespeare.txt \\
        --suite all --json
    python benchmarks/compare_variants.py --data ../shared/data/tinyshakespeare.txt \\
        baseline rope:pos_encoding=rope --max-iters 500

Every variant trains with the same data, seed, schedule and 2000 iterations (the preset's
budget), fp32 on the CPU, through glassbox.compare (the API behind `glassbox compare`).
JSON goes to stdout; each finished row and then the markdown table go to stderr.

How long: the baseline takes ~40 ms per step on the project's 2-core CPU, so ~80 s of
steps plus ~5 s of evaluations per variant; `--suite all` trains 10 variants (one shared
baseline, then 5 position encodings, 2 norms, post-norm and SwiGLU), about 15 minutes,
more if relative positions or batchnorm run slower than the baseline. Variants run one
after another, minutes apart, and this host's speed drifts by ±10% over minutes (see
docs/benchmarks.md): read the tokens/s column as a rough ratio; the losses are exact and
repeatable (same seed, same data order).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

import torch

from glassbox.compare import (
    SUITES,
    compare,
    describe_row,
    format_table,
    select_variants,
    shared_settings,
)
from glassbox.config import PRESETS, from_preset
from glassbox.errors import GlassboxError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", metavar="VARIANT", help="as for glassbox compare")
    parser.add_argument("--suite", choices=list(SUITES), default=None)
    parser.add_argument("--data", required=True, help="UTF-8 text file to train on")
    parser.add_argument("--preset", default="char-small", choices=list(PRESETS))
    parser.add_argument("--max-iters", type=int, default=None, help="(the preset's: 2000)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu (as train_char.py) | cuda | ...")
    parser.add_argument(
        "--run-root", default=None, help="keep the runs here (default: a temporary folder)"
    )
    parser.add_argument("--json", action="store_true", help="print one line of JSON")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    variants = select_variants(args.variants, args.suite)
    base = {
        **shared_settings(args.data, args.max_iters),
        "threads": args.threads,
        "device": args.device,
        "dtype": "float32",
    }
    max_iters = from_preset(args.preset, **base)[1].max_iters

    def show(row: dict) -> None:
        print(describe_row(row), file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as scratch:
        rows = compare(
            variants,
            preset=args.preset,
            base=base,
            run_root=args.run_root or scratch,
            on_result=show,
        )
    print(format_table(rows), file=sys.stderr)
    report = {
        "benchmark": "compare_variants",
        "preset": args.preset,
        "data": args.data,
        "max_iters": max_iters,
        "threads": args.threads,
        "device": args.device,
        "torch": torch.__version__,
        "rows": rows,
    }
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    try:
        main()
    except GlassboxError as err:
        sys.exit(f"compare_variants: error: {err}")
