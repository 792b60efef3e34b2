"""`glassbox fill-mask`: an encoder run's top predictions for every [MASK] in a text."""

from __future__ import annotations

import argparse
import json

from glassbox.commands.options import add_run_options
from glassbox.errors import GlassboxError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fill-mask",
        help="an encoder's predictions for each [MASK] in a text",
        description='Show the top predictions of an --arch encoder run for every "[MASK]".',
    )
    add_run_options(p)
    p.add_argument("text", help='text with one or more "[MASK]"')
    p.add_argument("--top-k", type=int, default=5, help="predictions per mask (5)")
    p.add_argument("--json", action="store_true", help="print a JSON list per mask")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from glassbox.device import resolve_device
    from glassbox.generate.fill_mask import fill_mask
    from glassbox.runs import load_model

    model, tokenizer = load_model(args.run, args.checkpoint, resolve_device(args.device))
    if model.config.arch != "encoder":
        raise GlassboxError(
            f"{args.run} holds a {model.config.arch} model; fill-mask needs one trained with "
            "--arch encoder"
        )
    predictions = fill_mask(model, tokenizer, args.text, args.top_k)
    if args.json:
        print(json.dumps(predictions, ensure_ascii=False))
        return 0
    for i, options in enumerate(predictions, 1):
        shown = "  ".join(f"{tok!r} {p:.3f}" for tok, p in options)
        print(f"[MASK] {i}: {shown}")
    return 0
