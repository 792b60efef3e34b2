"""`glassbox embed TEXT...`: sentence embeddings from a pretrained encoder (glassbox.embed),
as JSON lines or a .npy file."""

from __future__ import annotations

import argparse
import sys

from glassbox.errors import GlassboxError

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"  # looked up in the local HF cache


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "embed",
        help="sentence embeddings from a pretrained encoder (all-MiniLM-L6-v2, BERT)",
        description="Embed texts with a BERT-style sentence encoder: the texts given, else "
        "--file's lines, else standard input's lines. Prints one JSON object per text "
        "({text, embedding}), or writes --out FILE.npy (N rows, in input order). The "
        "model is a Hugging Face or sentence-transformers folder, or a model name in the "
        "local Hugging Face cache; nothing is downloaded.",
    )
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to embed")
    p.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"folder or cached name ({DEFAULT_MODEL})"
    )
    p.add_argument("--file", default=None, help="embed this file's lines (- for stdin)")
    p.add_argument("--out", default=None, help="write the vectors to this .npy file")
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (32)")
    p.set_defaults(handler=run)


def read_texts(args: argparse.Namespace) -> list[str]:
    """The texts to embed: the arguments, else the file's (or stdin's) non-empty lines."""
    if args.texts and args.file:
        raise GlassboxError("give texts or --file, not both")
    if args.texts:
        texts = list(args.texts)
    elif args.file in (None, "-"):
        if args.file is None and sys.stdin.isatty():
            raise GlassboxError("nothing to embed: give texts, --file FILE, or lines on stdin")
        texts = sys.stdin.read().splitlines()
    else:
        try:
            with open(args.file, encoding="utf-8") as f:
                texts = f.read().splitlines()
        except FileNotFoundError:
            raise GlassboxError(f"no such file: {args.file}") from None
        except UnicodeDecodeError:
            raise GlassboxError(f"{args.file} is not UTF-8 text") from None
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise GlassboxError("nothing to embed: every text given is empty")
    return texts


def run(args: argparse.Namespace) -> int:
    import json

    from glassbox.embed import load_encoder

    texts = read_texts(args)
    if args.out is not None and not args.out.endswith(".npy"):
        raise GlassboxError(f"--out writes a .npy file; got {args.out}")
    encoder = load_encoder(args.model)
    vectors = encoder.encode(texts, batch_size=args.batch_size, progress=len(texts) >= 1000)
    if args.out is not None:
        import io
        from pathlib import Path

        import numpy as np

        from glassbox.checkpoint import atomic_write

        buffer = io.BytesIO()
        np.save(buffer, vectors)
        atomic_write(Path(args.out), buffer.getvalue())
        print(f"wrote {args.out}: {len(texts)} x {encoder.dim} float32 ({encoder.name})")
        return 0
    for text, vector in zip(texts, vectors, strict=True):
        print(json.dumps({"text": text, "embedding": [round(float(x), 7) for x in vector]}))
    return 0
