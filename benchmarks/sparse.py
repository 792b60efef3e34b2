"""Sparse sublayers against dense ones: mixture-of-experts MLPs and mixture-of-heads
attention, trained side by side with char-small's recipe.

    python benchmarks/sparse.py --shakespeare ../shared/data/tinyshakespeare.txt
    python benchmarks/sparse.py --shakespeare FILE --max-iters 1000 --speed-rounds 7

Two measurements, printed as JSON (stdout) and markdown tables (stderr):

1. Quality. Every variant trains with the same data, seed, schedule and number of steps
   (glassbox.compare, the API behind `glassbox compare`), on the embedded default corpus
   and on tiny Shakespeare: validation loss, total and active parameters, and for the
   mixtures of experts how evenly the router spread the tokens (the most tokens an
   expert served over the fewest, median over the run's last tenth), with and without
   the load-balancing loss.
2. Speed. A run's own tokens/s is measured minutes apart from the others', and this
   host drifts by more than the differences in question, so speed is measured apart:
   the dense model and each variant train in the same process on the same batch, in
   alternating slices of a few dozen steps (dense, variant, dense, variant, ...), and
   the ratio of each pair of neighbouring slices is taken; the table gives the median
   ratio and its spread.

The variants, with char-small's shape (4 layers, 4 heads, 128 wide, MLP 4x wide):
- moe 4x top-1 (Switch): 4 experts, each the dense MLP; a token uses one, so the model
  has as many active parameters per token as the dense one (plus a router), and four
  times the MLP parameters in total; also without the load-balancing loss;
- moe 8x top-2 (Mixtral-style): 8 experts, each an MLP 2x wide, 2 per token: again the
  dense model's active MLP parameters, four times as many in total;
- dense 16x MLP: a dense model with as many parameters in total as the moe ones;
- moh 50/75/100%: mixture-of-heads attention keeping 2, 3 or 4 of the 4 heads per token.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

import torch

from glassbox.compare import compare, parse_variant
from glassbox.config import from_preset
from glassbox.models import build_model
from glassbox.train.objectives import lm_loss
from glassbox.train.optim import configure_optimizer

DENSE = "dense"
VARIANTS = [
    f"{DENSE}:",  # a named baseline: char-small unchanged
    "moe 4x top-1 (same active):mlp=moe,n_experts=4,moe_top_k=1",
    "moe 4x top-1, no balancing:mlp=moe,n_experts=4,moe_top_k=1,moe_balance_coef=0",
    "moe 8x top-2 (same active):mlp=moe,n_experts=8,moe_top_k=2,mlp_ratio=2",
    "dense 16x MLP (same total):mlp_ratio=16",
    "moh 50%:attention_kind=moh,moh_active_heads=2",
    "moh 75%:attention_kind=moh,moh_active_heads=3",
    "moh 100%:attention_kind=moh,moh_active_heads=4",
]


def changes_of(spec: str) -> dict[str, str]:
    body = spec.partition(":")[2]
    return dict(item.split("=") for item in body.split(",")) if body else {}


def name_of(spec: str) -> str:
    return spec.split(":", 1)[0]


def speed_ratios(spec: str, steps: int, rounds: int, vocab_size: int) -> dict:
    """tokens/s of `spec` over the dense model's, from alternating slices of `steps`
    training steps on one random batch (forward, backward, AdamW step)."""
    pairs = []
    models = {}
    for label, changes in ((DENSE, {}), (spec, changes_of(spec))):
        model_config, train_config = from_preset(
            "char-small", **changes, device="cpu", vocab_size=vocab_size
        )
        torch.manual_seed(0)
        model = build_model(model_config)
        models[label] = (model, configure_optimizer(model, train_config, "cpu"))
    B, T = train_config.batch_size, model_config.block_size
    x = torch.randint(vocab_size, (B, T), generator=torch.Generator().manual_seed(0))
    y = x.roll(-1, dims=1)

    def slice_ms(label: str) -> float:
        model, optimizer = models[label]
        start = time.perf_counter()
        for _ in range(steps):
            loss = lm_loss(model(x), y) + model.aux_loss()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return (time.perf_counter() - start) * 1000 / steps

    slice_ms(DENSE), slice_ms(spec)  # warm both up
    for _ in range(rounds):
        dense_ms, variant_ms = slice_ms(DENSE), slice_ms(spec)
        pairs.append(dense_ms / variant_ms)
    return {
        "speed_vs_dense": statistics.median(pairs),
        "speed_min": min(pairs),
        "speed_max": max(pairs),
        "pairs": len(pairs),
    }


def table(rows: list[dict], speeds: dict[str, dict]) -> str:
    head = ("| variant | params | active | val loss | Δ vs dense | speed vs dense (spread) "
            "| expert max/min |")  # fmt: skip
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|"]
    dense = rows[0]["val_loss"]
    for row in rows:
        speed = speeds.get(row["variant"])
        speed_text = (
            f"{speed['speed_vs_dense']:.2f}× ({speed['speed_min']:.2f}–{speed['speed_max']:.2f})"
            if speed
            else "1.00×"
        )
        balance = f"{row['expert_max_min']:.2f}" if "expert_max_min" in row else ""
        lines.append(
            f"| {row['variant']} | {row['params']:,} | {row['active_params']:,} | "
            f"{row['val_loss']:.4f} | {row['val_loss'] - dense:+.4f} | {speed_text} | {balance} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shakespeare", required=True, help="tiny Shakespeare's input.txt")
    parser.add_argument("--max-iters", type=int, default=2000, help="steps per run (2000)")
    parser.add_argument("--speed-steps", type=int, default=20, help="steps per slice (20)")
    parser.add_argument("--speed-rounds", type=int, default=5, help="pairs of slices (5)")
    parser.add_argument("--skip-quality", action="store_true", help="measure speed only")
    args = parser.parse_args()
    for spec in VARIANTS:  # a bad variant fails now, not after the speed measurement
        parse_variant(spec)
    result: dict = {"max_iters": args.max_iters, "speed": {}, "quality": {}}
    for spec in VARIANTS[1:]:
        result["speed"][name_of(spec)] = speed_ratios(
            spec, args.speed_steps, args.speed_rounds, vocab_size=65
        )
        print(json.dumps({name_of(spec): result["speed"][name_of(spec)]}), file=sys.stderr)
    if not args.skip_quality:
        base = {"max_iters": args.max_iters, "lr_decay_iters": args.max_iters, "device": "cpu"}
        for corpus in ("default", args.shakespeare):
            with tempfile.TemporaryDirectory() as root:
                rows = compare(VARIANTS, base={**base, "data": corpus}, run_root=root,
                               progress=True)  # fmt: skip
            name = "default" if corpus == "default" else "shakespeare"
            result["quality"][name] = rows
            print(f"\n{name}, {args.max_iters} steps\n" + table(rows, result["speed"]),
                  file=sys.stderr, flush=True)  # fmt: skip
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
