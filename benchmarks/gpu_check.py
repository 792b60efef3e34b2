"""A GPU check, ready to run: train GPT-2 small's shape on synthetic tokens and print
tokens/s and model FLOPs utilisation (MFU) as JSON.

    python benchmarks/gpu_check.py                        # cuda, bf16, compile, 300 steps
    python benchmarks/gpu_check.py --no-compile --steps 100
    python benchmarks/gpu_check.py --device cpu --preset char-small --steps 20 --peak-tflops 1

MFU is what nanoGPT reports: the FLOPs the model needs per token for a training step
(glassbox.analysis.count: 3x the forward, attention included, at the mean causal
context) times tokens/s, over the device's peak dense bf16 FLOP/s. nanoGPT reports about
40-50% for GPT-2 small on A100s with torch.compile. The peak is looked up from the
device's name (PEAK_TFLOPS) or given with --peak-tflops.

The data is random token ids (no download, no tokenizer): the speed of a step does not
depend on what the tokens say. Steps before --warmup (compilation, allocator) are not
timed. Run the CUDA tests with it: `python -m pytest -q tests/test_device.py` and
`python benchmarks/gpu_check.py` (both also run on a CPU-only machine, where the CUDA
tests skip).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from glassbox.analysis.count import count_report
from glassbox.config import from_preset
from glassbox.device import autocast, resolve_device
from glassbox.models import build_model
from glassbox.train.objectives import lm_loss
from glassbox.train.optim import configure_optimizer

# Dense bf16 tensor-core peaks (TFLOP/s, without sparsity), from the vendors' data sheets.
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0,
               "4090": 165.0, "V100": 125.0, "T4": 65.0}  # fmt: skip


def peak_tflops(device: str, given: float | None) -> float | None:
    if given is not None:
        return given
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    return next((tflops for key, tflops in PEAK_TFLOPS.items() if key in name), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="gpt2", help="model shape (gpt2: 124M)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--block-size", type=int, default=None, help="(the preset's)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (steps // 5)")
    parser.add_argument("--peak-tflops", type=float, default=None)
    args = parser.parse_args()
    device = resolve_device(args.device)
    changes = {"block_size": args.block_size} if args.block_size else {}
    model_config, train_config = from_preset(
        args.preset, **changes, batch_size=args.batch_size, device=device, attention="sdpa"
    )
    torch.manual_seed(0)
    model = build_model(model_config).to(device)
    optimizer = configure_optimizer(model, train_config, device)
    forward = torch.compile(model) if args.compile else model
    B, T, V = args.batch_size, model_config.block_size, model_config.vocab_size
    generator = torch.Generator().manual_seed(0)
    warmup = args.warmup if args.warmup is not None else args.steps // 5
    times, losses = [], []
    for step in range(args.steps):
        x = torch.randint(V, (B, T + 1), generator=generator).to(device)  # (B, T+1)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast(device, args.dtype):
            loss = lm_loss(forward(x[:, :-1]), x[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        losses.append(loss.item())
        if step >= warmup:
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    tokens_per_s = B * T / seconds
    flops_per_token = count_report(model_config)["flops_per_token"]["training"]
    peak = peak_tflops(device, args.peak_tflops)
    result = {
        "device": torch.cuda.get_device_name(torch.device(device))
        if device.startswith("cuda")
        else device,
        "preset": args.preset, "params": model.num_params(), "batch_size": B, "block_size": T,
        "dtype": args.dtype, "compile": args.compile, "steps_timed": len(times),
        "ms_per_step": round(seconds * 1000, 2), "tokens_per_s": round(tokens_per_s),
        "training_flops_per_token": flops_per_token,
        "mfu": round(tokens_per_s * flops_per_token / (peak * 1e12), 4) if peak else None,
        "peak_tflops": peak, "first_loss": losses[0], "last_loss": losses[-1],
    }  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
