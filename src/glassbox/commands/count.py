"""`glassbox count`: parameters by component, FLOPs per token and KV-cache bytes."""

from __future__ import annotations

import argparse
import json

from glassbox.commands.options import add_config_flags, given
from glassbox.config import PRESETS, from_preset


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "count",
        help="parameters, FLOPs and KV-cache memory of a model",
        description="Count a preset's, a run's or a configured model's "
        "parameters by component, FLOPs per token and KV-cache bytes.",
    )
    p.add_argument("--preset", default="char-small", choices=list(PRESETS))
    p.add_argument("--run", default=None, help="count this run's model instead of a preset")
    p.add_argument("--context", type=int, default=None, help="sequence length (block_size)")
    p.add_argument("--batch-size", type=int, default=1, help="for the KV-cache total (1)")
    p.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16", "float16", "int8"],
        help="KV-cache precision",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_config_flags(p, train=False, skip=set())
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from glassbox.analysis.count import count_report, describe_count
    from glassbox.config import override
    from glassbox.runs import load_configs

    changes = given(args)
    if args.run:
        config = override(load_configs(args.run)[0], changes)
    else:
        config = from_preset(args.preset, **changes)[0]
    report = count_report(config, args.context, args.batch_size, args.dtype)
    print(json.dumps(report) if args.json else describe_count(report))
    return 0
