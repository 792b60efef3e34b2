"""Decoding speed: our KV-cache loop, our uncached loop, and Hugging Face's generate.

    python benchmarks/generate.py --json
    python benchmarks/generate.py --models tiny --new-tokens 128 --batch-sizes 1 --json

Our model runs as `glassbox sample` runs it on the CPU (large matmuls packed for oneDNN,
glassbox.generate.cpu). Both models hold exactly the same random weights (ours, renamed
into GPT-2's layout with glassbox.models.convert); the benchmark first asserts that they
compute the same logits (<= 1e-4) and reports whether greedy decoding picked the same
tokens. Every figure is the median of --repeats runs, in fp32, with --threads threads;
tokens/s counts the new tokens of all rows. Uncached loops are quadratic, so they run only
up to --uncached-max new tokens. `transformers` is a benchmark and test dependency only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from glassbox.config import ModelConfig, from_preset
from glassbox.device import tune_cpu_allocator
from glassbox.generate import generate
from glassbox.generate.cpu import pack_for_cpu
from glassbox.models import GPT
from glassbox.models.convert import to_gpt2_state_dict

MODELS = {
    "gpt2": from_preset("gpt2")[0],
    # the tiny configuration: 4 layers, 128 wide, a character vocabulary
    "tiny": ModelConfig(
        vocab_size=65,
        block_size=1024,
        n_layer=4,
        n_head=4,
        n_embd=128,
        bias=True,
        activation="gelu_tanh",
    ),  # fmt: skip
}


def hugging_face(model: GPT):
    from transformers import GPT2Config, GPT2LMHeadModel

    c = model.config
    config = GPT2Config(
        vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd, n_layer=c.n_layer,
        n_head=c.n_head, activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )  # fmt: skip
    hf = GPT2LMHeadModel(config).eval()
    hf.load_state_dict(to_gpt2_state_dict(model), strict=False)
    return hf


def time_ours(model: GPT, prompt: torch.Tensor, n: int, use_cache: bool) -> tuple[float, list]:
    start = time.perf_counter()
    tokens = list(generate(model, prompt, n, temperature=0, use_cache=use_cache))
    return time.perf_counter() - start, torch.stack(tokens, dim=1).tolist()


def time_hf(hf, prompt: torch.Tensor, n: int, use_cache: bool) -> tuple[float, list]:
    start = time.perf_counter()
    with torch.no_grad():
        out = hf.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n,
            do_sample=False, use_cache=use_cache, pad_token_id=0,
        )  # fmt: skip
    return time.perf_counter() - start, out[:, prompt.size(1) :].tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gpt2,tiny")
    parser.add_argument("--new-tokens", default="128,512")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--uncached-max", type=int, default=128)
    parser.add_argument("--no-hf", action="store_true", help="skip Hugging Face")
    parser.add_argument("--json", action="store_true", help="print one line of JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tune_cpu_allocator()

    results = []
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = GPT(MODELS[name]).eval()
        hf = None if args.no_hf else hugging_face(model)
        if hf is not None:  # same weights, same function: check before timing anything
            probe = torch.randint(0, model.config.vocab_size, (2, args.prompt_len))
            with torch.no_grad():
                gap = (hf(probe).logits - model(probe)).abs().max().item()
            assert gap <= 1e-4, f"Hugging Face and glassbox logits differ by {gap}"
        pack_for_cpu(model)  # what `glassbox sample` does on the CPU
        if hf is not None:
            with torch.no_grad():
                gap = (hf(probe).logits - model(probe)).abs().max().item()
            assert gap <= 1e-4, f"packed glassbox logits differ from Hugging Face's by {gap}"
        for n in map(int, args.new_tokens.split(",")):
            for batch in map(int, args.batch_sizes.split(",")):
                prompt = torch.randint(0, model.config.vocab_size, (batch, args.prompt_len))
                row = {"model": name, "new_tokens": n, "batch_size": batch}
                runners = [("ours_cached", time_ours, model, True)]
                if hf is not None:
                    runners.append(("hf_cached", time_hf, hf, True))
                if n <= args.uncached_max:
                    runners.append(("ours_uncached", time_ours, model, False))
                    if hf is not None:
                        runners.append(("hf_uncached", time_hf, hf, False))
                tokens = {}
                for label, runner, target, use_cache in runners:
                    runner(target, prompt[:, :8], 4, use_cache)  # warm up
                    times = []
                    for _ in range(args.repeats):
                        seconds, tokens[label] = runner(target, prompt, n, use_cache)
                        times.append(seconds)
                    row[f"{label}_tokens_per_s"] = round(batch * n / statistics.median(times), 2)
                if "hf_cached" in tokens:
                    row["speedup_vs_hf_cached"] = round(
                        row["ours_cached_tokens_per_s"] / row["hf_cached_tokens_per_s"], 3
                    )
                    row["same_greedy_tokens_as_hf"] = tokens["ours_cached"] == tokens["hf_cached"]
                if "ours_uncached" in tokens:
                    row["cache_speedup"] = round(
                        row["ours_cached_tokens_per_s"] / row["ours_uncached_tokens_per_s"], 2
                    )
                results.append(row)
                if not args.json:
                    print(json.dumps(row), flush=True)
    report = {
        "benchmark": "generate",
        "threads": args.threads,
        "repeats": args.repeats,
        "prompt_len": args.prompt_len,
        "torch": torch.__version__,
        "results": results,
    }
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
