"""`glassbox export RUN DIR`: a run as a Hugging Face GPT-2 folder (config.json,
model.safetensors, vocab.json + merges.txt) that transformers loads
(glassbox.pretrained does the work)."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a run as a Hugging Face GPT-2 folder",
        description="Write a decoder run as a folder that transformers' "
        "GPT2LMHeadModel.from_pretrained loads. A tokenizer other than byte-level BPE with "
        "GPT-2's split pattern is written as glassbox_tokenizer.json instead of vocab.json + "
        "merges.txt (glassbox import gpt2 reads it back). Models GPT-2 cannot express "
        "(RoPE, RMSNorm, no biases, SwiGLU, grouped-query, post-norm, encoders) are refused.",
    )
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("out_dir", metavar="DIR", help="the folder to write")
    p.add_argument(
        "--checkpoint", default="best", choices=["best", "last"], help="which weights (best)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an export already there")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from glassbox.pretrained import describe_export, export_gpt2

    report = export_gpt2(args.run, args.out_dir, checkpoint=args.checkpoint,
                         overwrite=args.overwrite)  # fmt: skip
    print(json.dumps(report) if args.json else describe_export(report))
    return 0
