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
    look = p.add_argument_group(
        "directions in embedding space (docs/embeddings.md): instead of embedding texts, "
        "look at the model's input token embeddings"
    )
    look.add_argument("--neighbours", metavar="WORD", help="the nearest tokens to WORD")
    look.add_argument(
        "--analogy", nargs=3, metavar=("A", "B", "C"), help="A is to B as C is to ?: the tokens "
        "nearest B - A + C (man king woman: queen)"
    )  # fmt: skip
    look.add_argument(
        "--direction", choices=["gender", "plural"], help="a direction fitted on word pairs, "
        "and held-out pairs projected onto it"
    )  # fmt: skip
    look.add_argument(
        "--similarity", action="store_true",
        help="cosine of paraphrase pairs against unrelated and same-words pairs",
    )  # fmt: skip
    look.add_argument("-k", type=int, default=10, help="how many tokens to list (10)")
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

    if args.neighbours or args.analogy or args.direction or args.similarity:
        if args.texts or args.file or args.out:
            raise GlassboxError(
                "--neighbours, --analogy, --direction and --similarity take no texts"
            )
        for line in look(load_encoder(args.model), args):
            print(line)
        return 0
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


def look(encoder, args: argparse.Namespace) -> list[str]:
    """The lines that --neighbours, --analogy, --direction and --similarity print."""
    from glassbox.analysis import directions as d

    if args.k < 1:
        raise GlassboxError(f"-k must be at least 1; got {args.k}")
    model, tokenizer = encoder.model, encoder.tokenizer
    lines: list[str] = []
    if args.neighbours or args.analogy or args.direction:
        space = d.input_space(model, tokenizer)
    if args.neighbours:
        lines.append(f"nearest to {args.neighbours!r} (input embeddings, cosine):")
        lines += d.format_scored(d.neighbours(space, tokenizer, args.neighbours, k=args.k))
    if args.analogy:
        a, b, c = args.analogy
        lines.append(f"{b} - {a} + {c} (input embeddings, the three words left out):")
        lines += d.format_scored(d.analogy(space, tokenizer, a, b, c, k=args.k))
    if args.direction:
        fit, held_out = d.DIRECTIONS[args.direction]
        report = d.direction_report(space, tokenizer, fit, held_out)
        lines += d.format_direction_report(report, args.direction)
    if args.similarity:
        lines += d.format_similarity_report(d.similarity_report(model, tokenizer))
    return lines
