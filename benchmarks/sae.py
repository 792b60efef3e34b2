"""glassbox's sparse autoencoders against SAELens's, on the same activations.

Both train an SAE of the same kind (--kind relu: ReLU with an L1 penalty; topk: TopK
with AuxK) on the same rows of an activation file (one that `glassbox sae train`
collected), with the same expansion, L1 coefficient or k, learning rate, Adam betas,
batch size, steps, dead-feature window and schedule (linear warmup over the first 5% of
the steps, linear decay to 0 over the last 20%, λ warmed up over the first 5%), on the
CPU, and are scored on held-out rows of the same file: MSE, explained variance, L0 and
the fraction of features never active there. SAELens reads the rows through its
trainer's data-provider interface (an iterator of batches), so it runs offline.

    glassbox sae train runs/x --hook blocks.1.hook_resid_post --out sae/   # makes acts.npy
    pip install sae-lens    # in a separate environment: it pins its own torch
    PYTHONPATH=src python benchmarks/sae.py saelens sae/acts.npy --steps 2000 --json

and `benchmarks/sae.py frontier DIR... --png PATH` draws loss recovered against L0 for
SAE folders (docs/img/sae_frontier.png).

Where the two differ by design (so the figures compare two recipes, not two codings of
one): glassbox keeps decoder rows at unit norm and resamples dead features; SAELens's
"standard" SAE leaves the decoder norms free, penalises λ Σ f_i ‖W_dec,i‖ and starts
the decoder at norm 0.1 (Anthropic's April-2024 update), and does not resample. Its
TopK ranks pre-activations times decoder norms and weighs an unnormalised AuxK by 1
(glassbox: α = 1/32 on AuxK normalised by the error's variance, as Gao et al.). Both
scale inputs by one constant (glassbox: E‖x‖² = d; SAELens: expected_average_only_in).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from glassbox.analysis.sae import SAEConfig, dead_fraction, explained_variance, l0, train_sae

HELD_OUT = 20_000  # the file's last rows, kept for scoring


def score(encode, decode, rows: np.ndarray) -> dict[str, float]:
    x = torch.from_numpy(np.array(rows))  # (n, d)
    with torch.no_grad():
        f = encode(x)  # (n, m)
        x_hat = decode(f)  # (n, d)
    return {
        "mse": float((x - x_hat).pow(2).mean()),
        "explained_variance": explained_variance(x, x_hat),
        "l0": l0(f),
        "dead_fraction": dead_fraction((f > 0).sum(dim=0)),
    }


def batches(rows: np.ndarray, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Random batches (B, d), drawn as train_sae draws them."""
    rng = np.random.default_rng(seed)
    while True:
        index = np.sort(rng.integers(0, len(rows), batch_size))
        yield torch.from_numpy(np.asarray(rows[index], dtype=np.float32))


def run_glassbox(train: np.ndarray, held: np.ndarray, args: argparse.Namespace) -> dict:
    config = SAEConfig(
        d_in=train.shape[1], expansion=args.expansion, kind=args.kind, k=args.k, l1_coef=args.l1,
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
    )  # fmt: skip
    start = time.perf_counter()
    sae = train_sae(train, config)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, **score(sae.encode, sae.decode, held)}


def run_saelens(train: np.ndarray, held: np.ndarray, args: argparse.Namespace) -> dict:
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    d = train.shape[1]
    shape = {"d_in": d, "d_sae": round(args.expansion * d)}
    if args.kind == "relu":
        sae = StandardTrainingSAE(
            StandardTrainingSAEConfig(
                **shape, l1_coefficient=args.l1, l1_warm_up_steps=int(0.05 * args.steps),
                normalize_activations="expected_average_only_in",
            )
        )  # fmt: skip
    else:
        sae = TopKTrainingSAE(
            TopKTrainingSAEConfig(
                **shape, k=args.k, normalize_activations="expected_average_only_in"
            )
        )
    config = SAETrainerConfig(
        total_training_samples=args.steps * args.batch_size,
        train_batch_size_samples=args.batch_size, lr=args.lr, lr_end=args.lr,
        lr_warm_up_steps=int(0.05 * args.steps), lr_decay_steps=int(0.2 * args.steps),
        adam_beta1=0.9, adam_beta2=0.999, device="cpu", n_batches_for_norm_estimate=50,
        dead_feature_window=-(-SAEConfig.dead_tokens // args.batch_size),  # in steps
    )  # fmt: skip
    trainer = SAETrainer(config, sae, batches(train, args.batch_size, args.seed))
    start = time.perf_counter()
    sae = trainer.fit()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, **score(sae.encode, sae.decode, held)}


def compare(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    rows = np.load(args.acts, mmap_mode="r")  # (N, d)
    train, held = rows[:-HELD_OUT], rows[-HELD_OUT:]
    # the first Adam step imports parts of torch (seconds): pay that outside the timings
    train_sae(train[:256], SAEConfig(d_in=train.shape[1], expansion=1, steps=2, batch_size=8))
    results = {"glassbox": run_glassbox(train, held, args)}
    torch.manual_seed(args.seed)  # SAELens initialises from torch's global generator
    results["sae_lens"] = run_saelens(train, held, args)
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "acts", "handler")}
    if args.json:
        print(json.dumps({"settings": settings, "held_out": HELD_OUT, **results}))
        return
    print(f"{len(train)} training rows, {HELD_OUT} held out; {settings}")
    print(f"{'':10} {'seconds':>8} {'MSE':>10} {'expl.var':>9} {'L0':>7} {'dead':>6}")
    for name, r in results.items():
        print(
            f"{name:10} {r['seconds']:8.1f} {r['mse']:10.6f} {r['explained_variance']:9.4f} "
            f"{r['l0']:7.2f} {100 * r['dead_fraction']:5.1f}%"
        )


def frontier(args: argparse.Namespace) -> None:
    """Loss recovered against L0 for SAE folders (their metrics.json), one marker per kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for kind, marker in (("topk", "o"), ("relu", "s")):
        points = []
        for folder in args.dirs:
            config = json.loads((Path(folder) / "config.json").read_text())["sae"]
            if config["kind"] == kind:
                m = json.loads((Path(folder) / "metrics.json").read_text())
                label = f"k={config['k']}" if kind == "topk" else f"λ={config['l1_coef']:g}"
                points.append((m["l0"], 100 * m["loss_recovered"], label))
        points.sort()
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=marker, label=kind)
            for x, y, label in points:
                ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.axhline(90, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("L0 (active features per token, val split)")
    ax.set_ylabel("loss recovered (%)")
    ax.set_title(args.title, fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.png, dpi=120)
    print(f"wrote {args.png}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    steps = p.add_subparsers(required=True)
    c = steps.add_parser("saelens", help="train both on one activation file and score them")
    c.add_argument("acts", help="an activation file (.npy) from glassbox sae train")
    c.add_argument("--kind", default="relu", choices=["relu", "topk"])
    c.add_argument("--k", type=int, default=32)
    c.add_argument("--expansion", type=float, default=8.0)
    c.add_argument("--l1", type=float, default=2.0)
    c.add_argument("--lr", type=float, default=1e-3)
    c.add_argument("--steps", type=int, default=2000)
    c.add_argument("--batch-size", type=int, default=1024)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--json", action="store_true")
    c.set_defaults(handler=compare)
    f = steps.add_parser("frontier", help="plot loss recovered against L0 for SAE folders")
    f.add_argument("dirs", nargs="+", help="folders written by glassbox sae train")
    f.add_argument("--png", required=True)
    f.add_argument("--title", default="SAEs on char-small, blocks.1.hook_resid_post, 8x")
    f.set_defaults(handler=frontier)
    args = p.parse_args()
    args.handler(args)


if __name__ == "__main__":
    main()
