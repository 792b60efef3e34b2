"""Attention's quadratic cost, measured: time and memory of one attention layer against
the context length T.

Every query scores every key, so a causal layer does about 2·T²·C multiply-adds for the
scores and the weighted sum, and the manual path also stores the (B, H, T, T) scores and
pattern: time and memory both grow as T². PyTorch's fused kernel
(F.scaled_dot_product_attention, `--attention sdpa`) does the same arithmetic but, on
the CPU as on GPUs, processes keys in blocks with an online softmax and never stores
the T x T matrix, so its memory grows as T. This script times one SelfAttention of
glassbox (its qkv and output projections included, which are linear in T) on the
manual and the fused path, the forward pass alone (no autograd) and forward plus
backward, for T from 64 up, and fits the exponent k of cost ∝ T^k (the least-squares
slope on log-log axes over the largest half of the sizes, where the T² term dominates).

Next to it, the arithmetic `glassbox count` prints for a model of this width: the KV
cache (linear in T: 2·C numbers per token per layer) and the attention FLOPs, so the
measured curves can be read against the formulas.

Memory is the rise of the process's peak resident memory (VmHWM, reset through
/proc/self/clear_refs, Linux) during the measured call, on the CPU; CUDA's peak
allocated memory on a GPU. On the CPU, glibc's malloc is first told to map every block
over 128 KiB on its own (a fixed M_MMAP_THRESHOLD), so a freed tensor leaves the
resident set at once and the next call's peak is its own, not memory the allocator
kept from an earlier one. Sizes whose estimated peak exceeds --max-gb are skipped.

    python benchmarks/attention_cost.py                       # T = 64 .. 8192 (minutes)
    python benchmarks/attention_cost.py --max-t 512 --repeats 2   # a smoke run

Prints one JSON object on stdout (each point also goes to stderr as it is measured).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import sys
import time
from pathlib import Path

import torch

from glassbox.analysis.count import flops_per_token, kv_cache_bytes
from glassbox.config import ModelConfig
from glassbox.nn.attention import SelfAttention

MANUAL_COPIES = 6  # (B, H, T, T) float tensors the manual path holds at once, fwd + bwd


def estimated_bytes(impl: str, B: int, H: int, T: int, C: int, dtype_bytes: int = 4) -> int:
    """A generous upper bound on the peak memory of one forward + backward pass."""
    linear = 12 * B * T * C * dtype_bytes  # activations of the projections, their grads
    if impl == "manual":
        return linear + MANUAL_COPIES * B * H * T * T * dtype_bytes
    return linear


M_MMAP_THRESHOLD = -3  # mallopt's parameter number, from glibc's malloc.h


def map_big_blocks(threshold: int = 128 * 1024) -> bool:
    """Fix glibc's mmap threshold, so blocks above it go back to the system when freed
    (by default the threshold rises to the largest block freed, and later blocks of
    that size come from, and return to, the heap); False where this is not glibc."""
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False


class PeakMemory:
    """The rise of peak memory during a `with` block: CUDA's allocator statistics on a
    GPU, the process's peak resident set (VmHWM, reset first) on the CPU; None where
    neither can be read."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.bytes: int | None = None

    @staticmethod
    def _status(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
        raise OSError(field)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
            self._start = self._status("VmRSS")
        except OSError:
            self._start = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device) - self._start
        elif self._start is not None:
            self.bytes = self._status("VmHWM") - self._start


def measure(layer: SelfAttention, x: torch.Tensor, backward: bool, repeats: int) -> dict:
    """Fastest of `repeats` timed calls (after one warm-up), and the peak memory of one."""

    def call() -> None:
        if backward:
            layer(x).sum().backward()
            layer.zero_grad(set_to_none=True)
            x.grad = None
        else:
            with torch.no_grad():
                layer(x)

    def sync() -> None:
        if x.is_cuda:
            torch.cuda.synchronize(x.device)

    call()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - start)
    with PeakMemory(x.device) as peak:
        call()
    mib = None if peak.bytes is None else round(max(peak.bytes, 0) / 2**20, 2)
    return {"ms": round(min(times) * 1000, 3), "mib": mib}


def slope(sizes: list[int], values: list[float]) -> float | None:
    """Least-squares slope of log(value) against log(T) over the largest half of the
    sizes (at least two points); None without two positive values."""
    points = [(math.log(t), math.log(v)) for t, v in zip(sizes, values, strict=True) if v and v > 0]
    if len(points) >= 4:
        points = points[len(points) // 2 :]
    if len(points) < 2:
        return None
    mean_x = sum(p[0] for p in points) / len(points)
    mean_y = sum(p[1] for p in points) / len(points)
    var = sum((p[0] - mean_x) ** 2 for p in points)
    return round(sum((p[0] - mean_x) * (p[1] - mean_y) for p in points) / var, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-t", type=int, default=64)
    parser.add_argument("--max-t", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--n-embd", type=int, default=256)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-gb", type=float, default=8.0, help="skip sizes estimated above")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: its default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    mapped = device.type == "cuda" or map_big_blocks()
    B, C, H = args.batch_size, args.n_embd, args.n_head
    sizes = [args.min_t]  # doubling up to max_t
    while sizes[-1] * 2 <= args.max_t:
        sizes.append(sizes[-1] * 2)
    points = []
    for impl in ("manual", "sdpa"):
        config = ModelConfig(n_embd=C, n_head=H, n_layer=1, block_size=max(sizes), attention=impl)
        torch.manual_seed(0)
        layer = SelfAttention(config).to(device)
        for T in sizes:
            point = {"impl": impl, "T": T}
            if estimated_bytes(impl, B, H, T, C) > args.max_gb * 2**30:
                points.append({**point, "skipped": f"estimated above {args.max_gb} GB"})
                continue
            x = torch.randn(B, T, C, device=device, requires_grad=True)  # (B, T, C)
            forward = measure(layer, x, backward=False, repeats=args.repeats)
            both = measure(layer, x, backward=True, repeats=args.repeats)
            points.append({**point, "forward_ms": forward["ms"], "forward_mib": forward["mib"],
                           "forward_backward_ms": both["ms"],
                           "forward_backward_mib": both["mib"]})  # fmt: skip
            print(json.dumps(points[-1]), file=sys.stderr, flush=True)  # progress
    fits = {}
    for impl in ("manual", "sdpa"):
        done = [p for p in points if p["impl"] == impl and "skipped" not in p]
        ts = [p["T"] for p in done]
        fits[impl] = {
            key: slope(ts, [p[key] or 0 for p in done])
            for key in ("forward_ms", "forward_backward_ms", "forward_mib", "forward_backward_mib")
        }
    model = ModelConfig(n_embd=C, n_head=H, n_layer=1, block_size=max(sizes))
    arithmetic = {
        "kv_cache_bytes_per_token": kv_cache_bytes(model),  # what `glassbox count` prints
        "kv_cache_mib": {T: round(B * T * kv_cache_bytes(model) / 2**20, 3) for T in sizes},
        # forward attention FLOPs of a causal sequence: T tokens at mean context (T + 1) / 2
        "attention_gflops": {
            T: round(B * T * flops_per_token(model, (T + 1) / 2)["attention"] / 1e9, 4)
            for T in sizes
        },
        "scores_mib_per_copy": {T: round(B * H * T * T * 4 / 2**20, 2) for T in sizes},
    }
    settings = {"batch_size": B, "n_embd": C, "n_head": H, "device": str(device),
                "threads": torch.get_num_threads(), "repeats": args.repeats,
                "torch": torch.__version__, "cpu_memory_exact": mapped}  # fmt: skip
    print(json.dumps({"settings": settings, "fits": fits, "arithmetic": arithmetic,
                      "points": points}))  # fmt: skip


if __name__ == "__main__":
    main()
