"""What hook points cost when nothing is attached: the forward pass of a glassbox GPT
against the same model with every HookPoint swapped for nothing at all.

The stripped copy is the same module tree with each HookPoint's `__call__` bypassed: its
forward code still calls `self.hook_x(t)`, so we replace each HookPoint instance by a
bare identity *function* (no module), which is what the code would do with no hook
points written in. Both models share weights; logits are checked equal first.

    python benchmarks/hooks_overhead.py --json
    python benchmarks/hooks_overhead.py --preset gpt2 --batch-size 1 --context 128 --json

Prints JSON: median milliseconds per forward pass for each, and the overhead in percent.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch

from glassbox.config import from_preset
from glassbox.models import GPT
from glassbox.nn.hooks import HookPoint


def identity(x):
    return x


def strip_hook_points(model: GPT) -> GPT:
    """A copy of model whose hook points are plain functions (shares no hooks)."""
    bare = copy.deepcopy(model)
    for module in list(bare.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, HookPoint):
                del module._modules[name]
                object.__setattr__(module, name, identity)
    return bare


def time_forward(model, x: torch.Tensor, repeats: int, inner: int) -> list[float]:
    times = []
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(inner):
                model(x)
            times.append((time.perf_counter() - t0) / inner * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="char-small")
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--context", type=int, default=None, help="tokens (block_size)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--inner", type=int, default=10, help="forward passes per timing")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config, _ = from_preset(args.preset)
    torch.manual_seed(0)
    hooked = GPT(config).eval()
    bare = strip_hook_points(hooked).eval()
    T = args.context or config.block_size
    x = torch.randint(config.vocab_size, (args.batch_size, T))
    with torch.inference_mode():
        assert torch.equal(hooked(x), bare(x)), "stripping the hooks changed the logits"
    hooked_ms, bare_ms = [], []
    for _ in range(args.repeats):  # alternate, so drifts in machine speed hit both
        hooked_ms += time_forward(hooked, x, 1, args.inner)
        bare_ms += time_forward(bare, x, 1, args.inner)
    h, b = statistics.median(hooked_ms), statistics.median(bare_ms)
    result = {
        "preset": args.preset,
        "batch_size": args.batch_size,
        "context": T,
        "hook_points": len(hooked.hook_names()),
        "hooked_ms": round(h, 4),
        "bare_ms": round(b, 4),
        "overhead_percent": round((h / b - 1) * 100, 2),
    }
    print(json.dumps(result) if args.json else result)


if __name__ == "__main__":
    main()
