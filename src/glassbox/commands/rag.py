"""`glassbox rag index` and `glassbox rag query`: retrieval-augmented generation from the
command line (glassbox.rag does the work; docs/retrieval.md walks through it)."""

from __future__ import annotations

import argparse
import json
import time

from glassbox.errors import GlassboxError

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"  # a folder, or a name in the HF cache


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "rag",
        help="retrieval: index documents, then find the chunks that answer a question",
        description="Chunk and embed documents into an index folder (rag index), then "
        "retrieve the chunks nearest a question, write them into a prompt, and optionally "
        "continue that prompt with a glassbox run (rag query).",
    )
    steps = p.add_subparsers(dest="rag_step", required=True, metavar="STEP")
    index = steps.add_parser(
        "index",
        help="chunk and embed documents into an index folder",
        description="Cut each document into overlapping windows of WordPiece tokens, embed "
        "each with a sentence encoder, and write vectors.npy, chunks.jsonl and manifest.json "
        "into INDEX (built beside it and renamed into place when complete).",
    )
    index.add_argument(
        "docs",
        nargs="+",
        metavar="DOCS",
        help="text files, folders, or globs such as 'notes/**/*.md' (quoted)",
    )
    index.add_argument("--out", required=True, metavar="INDEX", help="the index folder to write")
    index.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"sentence-transformers folder or cached name ({DEFAULT_MODEL})",
    )
    index.add_argument("--chunk-tokens", type=int, default=128, help="tokens per chunk (128)")
    index.add_argument("--overlap", type=int, default=32, help="tokens shared by neighbours (32)")
    index.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "float16"],
        help="how vectors.npy stores the vectors (float32)",
    )
    index.add_argument("--batch-size", type=int, default=64, help="chunks embedded at once (64)")
    index.add_argument(
        "--ivf-lists",
        type=int,
        default=0,
        metavar="L",
        help="also build an approximate index of L k-means lists (0: none)",
    )
    index.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an --out that exists and is not an index (deletes it)",
    )
    index.add_argument("--no-progress", action="store_true", help="no progress bar")
    index.set_defaults(handler=run)

    query = steps.add_parser(
        "query",
        help="the chunks of an index that best answer a question",
        description="Embed QUESTION with the index's model, score every chunk (one matrix "
        "product) and print the top k with score, source and character offsets.",
    )
    query.add_argument("index", metavar="INDEX", help="an index folder from `glassbox rag index`")
    query.add_argument("question", metavar="QUESTION", help="what to look for, in words")
    query.add_argument(
        "-k", "--top-k", type=int, default=5, metavar="K", help="chunks to retrieve (5)"
    )
    query.add_argument(
        "--model",
        default=None,
        help="embed with this model, which must be the index's (default: it)",
    )
    query.add_argument(
        "--nprobe",
        type=int,
        default=0,
        metavar="P",
        help="search only the P nearest IVF lists (0: exact search of all)",
    )
    query.add_argument(
        "--prompt",
        action="store_true",
        help="print the retrieval-augmented prompt instead of the chunks",
    )
    query.add_argument(
        "--run", default=None, help="continue the prompt with this glassbox decoder run"
    )
    query.add_argument(
        "--checkpoint",
        default="best",
        choices=["best", "last"],
        help="--run's best-validation or latest weights (best)",
    )
    query.add_argument("--device", default="auto", help="--run's device: auto | cpu | cuda | mps")
    query.add_argument("--max-new-tokens", type=int, default=200, help="--run: tokens (200)")
    query.add_argument("--temperature", type=float, default=0.8, help="--run: 0 is greedy (0.8)")
    query.add_argument("--seed", type=int, default=None, help="--run: make the draw repeatable")
    query.add_argument(
        "--verify",
        action="store_true",
        help="check every index file's sha256 first (reads them all)",
    )
    query.add_argument("--json", action="store_true", help="print one JSON object")
    query.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    return run_index(args) if args.rag_step == "index" else run_query(args)


def run_index(args: argparse.Namespace) -> int:
    from glassbox import rag
    from glassbox.embed import load_encoder

    rag.check_out(args.out, args.overwrite)  # before the model loads: fail fast
    rag.document_files(args.docs)
    started = time.perf_counter()
    encoder = load_encoder(args.model)
    index = rag.build_index(
        args.docs,
        args.out,
        encoder,
        chunk_tokens=args.chunk_tokens,
        overlap=args.overlap,
        dtype=args.dtype,
        batch_size=args.batch_size,
        ivf_lists=args.ivf_lists,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    m = index.manifest
    size = m["files"][rag.VECTORS]["bytes"] / 1e6
    print(
        f"indexed {m['count']} chunks of {m['sources']} files into {args.out} "
        f"({m['dim']}-d {m['dtype']}, {size:.1f} MB) in {time.perf_counter() - started:.1f} s"
    )
    return 0


def run_query(args: argparse.Namespace) -> int:
    from glassbox import rag
    from glassbox.embed import load_encoder

    index = rag.load_index(args.index, verify=args.verify)
    rag.check_query(index, args.question, args.top_k, args.nprobe)  # before the model loads
    encoder = load_encoder(args.model or index.model_name)
    hits = rag.retrieve(index, encoder, args.question, args.top_k, nprobe=args.nprobe)
    prompt = rag.rag_prompt(args.question, hits)
    answer = _generate(args, prompt) if args.run else None
    if args.json:
        result = {
            "question": args.question,
            "index": args.index,
            "model": index.model_name,
            "hits": [
                {
                    "rank": h.rank,
                    "id": h.id,
                    "score": round(h.score, 6),
                    "source": h.chunk.source,
                    "start": h.chunk.start,
                    "end": h.chunk.end,
                    "text": h.chunk.text,
                }
                for h in hits
            ],
        }
        if args.prompt or args.run:
            result["prompt"] = prompt
        if answer is not None:
            result["answer"] = answer
        print(json.dumps(result, ensure_ascii=False))
        return 0
    if args.prompt:
        print(prompt)
    else:
        for h in hits:
            print(f"{h.rank}. {h.score:.4f}  {h.chunk.source}  chars {h.chunk.start}-{h.chunk.end}")
            print("   " + " ".join(h.chunk.text.split()))
    if answer is not None:
        print(f"\n--- {args.run} answers:\n{answer}")
    return 0


def _generate(args: argparse.Namespace, prompt: str) -> str:
    """The run's continuation of the prompt (a char model sees only its last block_size
    characters: it shows the plumbing, not an answer)."""
    from glassbox.device import resolve_device
    from glassbox.generate import generate_text
    from glassbox.runs import load_model

    model, tokenizer = load_model(args.run, args.checkpoint, resolve_device(args.device))
    if model.config.arch != "decoder":
        raise GlassboxError(
            f"{args.run} holds an {model.config.arch} model; --run needs a decoder that "
            "continues text"
        )
    options = dict(temperature=args.temperature, seed=args.seed)
    return "".join(generate_text(model, tokenizer, prompt, args.max_new_tokens, **options))
