"""`glassbox compare`: train variants of one preset side by side (glassbox.compare)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

from glassbox.compare import (
    SUITES,
    compare,
    describe_row,
    format_table,
    select_variants,
    shared_settings,
)
from glassbox.config import PRESETS, from_preset


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    suites = "; ".join(f"{k}: {', '.join(v)}" for k, v in SUITES.items() if k != "all")
    p = subparsers.add_parser(
        "compare",
        help="train variants with the same data, seed and budget; tabulate loss and speed",
        description="Train several variants of one preset, identical but for the keys "
        "each variant sets, and print their final validation loss, tokens/s and "
        "parameters. Example: glassbox compare baseline rope:pos_encoding=rope "
        "swiglu:activation=swiglu --preset char-tiny",
    )
    p.add_argument(
        "variants",
        nargs="*",
        metavar="VARIANT",
        help="NAME:KEY=VALUE[,KEY=VALUE], KEY=VALUE[,...] or baseline; keys are config "
        "fields (n_layer, pos_encoding, lr, ...)",
    )
    p.add_argument(
        "--suite",
        default=None,
        choices=list(SUITES),
        help=f"a ready-made list instead of VARIANTs ({suites}; all: their union, one baseline)",
    )
    p.add_argument("--preset", default="char-small", choices=list(PRESETS))
    p.add_argument(
        "--data", default=None, help="default | shakespeare | PATH, shared by all (the preset's)"
    )
    p.add_argument(
        "--max-iters",
        type=int,
        default=None,
        help="iterations per variant; the LR schedule ends there too (the preset's)",
    )
    p.add_argument(
        "--run-root", default="runs/compare", help="runs go in RUN_ROOT/VARIANT (runs/compare)"
    )
    p.add_argument(
        "--json", action="store_true", help="print one JSON object (progress goes to stderr)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Each row as it finishes, then the table (or the JSON)."""
    variants = select_variants(args.variants, args.suite)
    base = shared_settings(args.data, args.max_iters)
    train_config = from_preset(args.preset, **base)[1]
    report = sys.stderr if args.json else sys.stdout

    def show(row: dict[str, Any]) -> None:
        print(describe_row(row), file=report, flush=True)

    # The trainer writes its evaluation lines to stdout; keep stdout for the JSON alone.
    quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with quiet:
        rows = compare(
            variants,
            preset=args.preset,
            base=base,
            run_root=args.run_root,
            progress=not args.no_progress,
            on_result=show,
        )
    if args.json:
        print(
            json.dumps(
                {
                    "preset": args.preset,
                    "data": train_config.data,
                    "max_iters": train_config.max_iters,
                    "rows": rows,
                }
            )
        )
        return 0
    print()
    print(format_table(rows))
    print(f"\nruns saved in {args.run_root}/<variant>; sample one with glassbox sample --run")
    return 0
