"""`glassbox tokenize`: how a text splits into tokens, and how many there are."""

from __future__ import annotations

import argparse
import json
import os
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tokenize",
        help="show how a text splits into tokens",
        description="Show the tokens of a text (coloured in a terminal, a JSON list of "
        "pieces when piped) and count them.",
    )
    p.add_argument(
        "--tokenizer",
        default="runs/default",
        help="a run directory, a .tiktoken file, a tokenizer JSON file, a folder with GPT-2's "
        "encoder.json and vocab.bpe (or Hugging Face's vocab.json and merges.txt), or cl100k "
        "(runs/default)",
    )
    p.add_argument("--ids", action="store_true", help="print the ids as a JSON list")
    p.add_argument("text", nargs="?", default=None, help="the text (read from stdin if omitted)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from glassbox.tokenizers import open_tokenizer
    from glassbox.tokenizers.display import encode_for_display, pieces, read_text, render, summary

    tokenizer = open_tokenizer(args.tokenizer)
    # stdin as bytes: text that is not valid UTF-8 keeps its bytes (as surrogate escapes)
    text = read_text(sys.stdin.buffer) if args.text is None else args.text
    ids = encode_for_display(tokenizer, text)
    if args.ids:
        print(json.dumps(ids))
        return 0
    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    print(render(pieces(tokenizer, ids), color))
    print(summary(text, ids))
    return 0
