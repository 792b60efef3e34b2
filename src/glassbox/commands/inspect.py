"""`glassbox inspect`: head detectors, circuits, logit lens, attribution and attention
pages for one run (glassbox.analysis.inspect builds the report; this prints it)."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="look inside a trained decoder: head detectors, logit lens, attribution, patterns",
        description="Analyses of a decoder run. --heads scores every head as previous-"
        "token, duplicate-token and induction head on repeated random tokens (and on the "
        "run's own text) and ablates the best induction head; --circuits reads the "
        "weights; --trace runs causal tracing on its own prompt; the others read --prompt.",
    )
    p.add_argument("run", help="run directory")
    p.add_argument("--prompt", default=None, help="text to analyse")
    p.add_argument("--heads", action="store_true", help="head detector scores and ablation")
    p.add_argument(
        "--circuits", action="store_true",
        help="from the weights: copying and composition scores, every head's W_OV and W_QK "
        "rank and singular values",
    )  # fmt: skip
    p.add_argument("--lens", action="store_true", help="logit lens at the last position")
    p.add_argument("--top-k", type=int, default=5, help="predictions per layer (5)")
    p.add_argument(
        "--routing", action="store_true", help="a sparse model's experts or heads per token"
    )
    p.add_argument("--dla", default=None, metavar="TOKEN", help="attribute this next token")
    p.add_argument(
        "--trace", default=None, metavar="PROMPT",
        help="causal tracing: corrupt the subject, restore one state at a time (ROME)",
    )  # fmt: skip
    p.add_argument(
        "--answer", default=None, metavar="TOKEN",
        help="--trace: the answer to track (one token; default: the task's answer or the "
        "model's top prediction)",
    )  # fmt: skip
    p.add_argument(
        "--subject", default=None, metavar="TEXT",
        help="--trace: the part of the prompt to corrupt (a facts run finds it itself)",
    )  # fmt: skip
    p.add_argument(
        "--trace-facts", type=int, default=0, metavar="N",
        help="a facts run: causal tracing averaged over N facts it recalls",
    )  # fmt: skip
    p.add_argument("--html", default=None, help="write an attention page here")
    p.add_argument(
        "--png", default=None, metavar="DIR",
        help="write figures here: attention heatmaps (--prompt), singular value spectra "
        "(--circuits), causal tracing heatmaps (--trace, --trace-facts)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from glassbox.analysis.inspect import describe_inspection, inspect_run

    report = inspect_run(
        args.run, args.prompt, heads=args.heads, circuits=args.circuits, lens=args.lens,
        top_k=args.top_k, target=args.dla, html=args.html, png=args.png, routing=args.routing,
        trace=args.trace, answer=args.answer, subject=args.subject, trace_facts=args.trace_facts,
    )  # fmt: skip
    print(json.dumps(report, ensure_ascii=False) if args.json else describe_inspection(report))
    return 0
