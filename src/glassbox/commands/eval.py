"""`glassbox eval`: score a run (loss and perplexity, exact match, masked-LM loss, or the
induction probe, as glassbox.evaluate picks for the run's kind)."""

from __future__ import annotations

import argparse
import json

from glassbox.commands.options import add_beam_options, add_run_options


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", help="loss and perplexity of a run on a dataset; exact match of a task run"
    )
    add_run_options(p)
    add_beam_options(p)
    p.add_argument(
        "--batches", type=int, default=50, help="encoder runs: masked batches scored (50)"
    )
    p.add_argument(
        "--data",
        default=None,
        help="default | shakespeare | a file, folder or glob (the run's own split if omitted)",
    )
    p.add_argument(
        "--split",
        default="val",
        choices=["train", "val"],
        help="which split of the run's corpus, when --data is omitted (val)",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from glassbox.evaluate import describe, evaluate_run

    result = evaluate_run(
        args.run, checkpoint=args.checkpoint, device=args.device, data=args.data,
        split=args.split, batch_size=args.batch_size, batches=args.batches,
        beam_size=args.beam_size, alpha=args.length_penalty,
    )  # fmt: skip
    print(json.dumps(result) if args.json else describe(result))
    return 0
