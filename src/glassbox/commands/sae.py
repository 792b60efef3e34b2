"""`glassbox sae train` and `glassbox sae inspect`: sparse autoencoders on one hook of a
run (glassbox.analysis.sae trains and scores them, glassbox.analysis.activations collects
what they read, glassbox.analysis.sae_page draws the feature browser; docs/sae.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from glassbox.errors import GlassboxError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sae",
        help="sparse autoencoders: a dictionary of features for one activation of a run",
        description="Train a sparse autoencoder on the activations at one hook point of a "
        "decoder run (sae train), then browse its features (sae inspect).",
    )
    steps = p.add_subparsers(dest="sae_step", required=True, metavar="STEP")
    train = steps.add_parser(
        "train",
        help="collect a hook's activations and train an SAE on them",
        description="Run RUN's model over --tokens tokens of its own train split, stream "
        "the activations at --hook into a memory-mapped file (--acts; reused when it "
        "matches), train an SAE on them, score it on the val split (MSE, explained "
        "variance, L0, dead and dense features, loss recovered) and write sae.safetensors, "
        "config.json and metrics.json into --out.",
    )
    train.add_argument("run", metavar="RUN", help="a decoder run directory")
    train.add_argument("--hook", required=True, help="e.g. blocks.1.hook_resid_post")
    train.add_argument("--out", required=True, metavar="DIR", help="folder to write the SAE in")
    train.add_argument("--kind", default="topk", choices=["topk", "relu"], help="(topk)")
    train.add_argument("--expansion", type=float, default=8.0, help="features per dimension (8)")
    train.add_argument("--k", type=int, default=32, help="topk: active features per token (32)")
    train.add_argument("--l1", type=float, default=2.0, help="relu: the L1 coefficient λ (2)")
    train.add_argument("--tokens", type=int, default=200_000, help="activations to collect")
    train.add_argument("--steps", type=int, default=2000, help="Adam steps (2000)")
    train.add_argument("--batch-size", type=int, default=1024, help="activations per step")
    train.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (1e-3)")
    train.add_argument("--seed", type=int, default=0, help="initialization and batches (0)")
    train.add_argument(
        "--eval-tokens", type=int, default=32_768, help="val-split tokens to score on (32768)"
    )
    train.add_argument(
        "--acts", default=None, metavar="PATH", help="activation file (DIR/acts.npy)"
    )
    train.add_argument("--checkpoint", default="best", choices=["best", "last"], help="(best)")
    train.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (cpu)")
    train.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    train.set_defaults(handler=run_train)

    inspect = steps.add_parser(
        "inspect",
        help="each feature's top contexts, activation histogram and logit effects",
        description="Print a line per feature (density, largest activation, the token it "
        "promotes most, its top context) and, with --html, write a self-contained page to "
        "browse them.",
    )
    inspect.add_argument("sae", metavar="DIR", help="a folder written by `glassbox sae train`")
    inspect.add_argument("--html", default=None, metavar="PATH", help="write the page here")
    inspect.add_argument(
        "--features", default=None, help="which: 0-49, 3,7,10-12 or all (the first 50)"
    )
    inspect.add_argument("--top", type=int, default=12, help="contexts per feature (12)")
    inspect.add_argument("--acts", default=None, metavar="PATH", help="activation file")
    inspect.set_defaults(handler=run_inspect)


def run_train(args: argparse.Namespace) -> int:
    from glassbox.analysis import activations as A
    from glassbox.analysis.sae import SAEConfig, evaluate_sae, save_sae, train_sae
    from glassbox.device import resolve_device
    from glassbox.runs import load_model, load_tokens

    device = resolve_device(args.device)
    model, _ = load_model(args.run, args.checkpoint, device)
    A.check_decoder(model, args.run)
    A.check_hook(model, args.hook, args.run)
    # SAEConfig checks the sizes now, before minutes of collecting activations
    config = SAEConfig(
        d_in=A.hook_width(model, args.hook), expansion=args.expansion, kind=args.kind, k=args.k,
        l1_coef=args.l1, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed,
    )  # fmt: skip
    out = Path(args.out)
    acts_path = Path(args.acts) if args.acts else out / "acts.npy"
    if acts_path.exists():
        acts = A.open_activations(acts_path, args.run, args.hook, args.checkpoint)
        if len(acts.rows) != args.tokens:
            raise GlassboxError(
                f"{acts_path} holds {len(acts.rows)} tokens, not the --tokens {args.tokens} "
                f"asked for: pass --tokens {len(acts.rows)} or another --acts path"
            )
    else:
        out.mkdir(parents=True, exist_ok=True)
        acts = A.collect(
            args.run, args.hook, n_tokens=args.tokens, out_path=acts_path,
            which=args.checkpoint, device=device,
        )  # fmt: skip
        if not args.json:
            print(f"collected {args.tokens} x {config.d_in} activations into {acts_path}")

    def log(row: dict) -> None:
        print(
            f"step {row['step']:>6}  loss {row['loss']:.4f}  mse (scaled) {row['mse_scaled']:.5f}  "
            f"L0 {row['l0']:.1f}  dead {100 * row['dead_fraction']:.1f}%"
        )

    sae = train_sae(acts.rows, config, device=device, log=None if args.json else log)
    val = load_tokens(args.run, model.config.vocab_size, model.config.block_size).splits["val"]
    metrics = evaluate_sae(sae, model, args.hook, val, n_tokens=args.eval_tokens)
    info = {
        "run": str(Path(args.run).resolve()),
        "checkpoint": args.checkpoint,
        "fingerprint": acts.meta["fingerprint"],
        "hook": args.hook,
        "activations": str(acts_path.resolve()),
    }
    save_sae(sae, out, info, metrics)
    if args.json:
        print(json.dumps(metrics))
        return 0
    m = metrics
    print(
        f"{m['eval_tokens']} val tokens: MSE {m['mse']:.5f}, explained variance "
        f"{m['explained_variance']:.3f}, L0 {m['l0']:.1f}, dead {100 * m['dead_fraction']:.1f}%, "
        f"dense {100 * m['dense_fraction']:.1f}%\n"
        f"CE clean {m['ce_clean']:.4f}, SAE {m['ce_sae']:.4f}, zero-ablated {m['ce_zero']:.4f}, "
        f"mean-ablated {m['ce_mean']:.4f}\n"
        f"loss recovered {100 * m['loss_recovered']:.1f}% (vs zero-ablation), "
        f"{100 * m['loss_recovered_mean']:.1f}% (vs mean-ablation)\nwrote {out}"
    )
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from glassbox.analysis.activations import open_activations
    from glassbox.analysis.sae import load_sae
    from glassbox.analysis.sae_page import feature_data, parse_features, write_sae_html
    from glassbox.runs import load_model, load_tokens

    if args.top < 1:
        raise GlassboxError(f"--top must be >= 1; got {args.top}")
    sae, info = load_sae(args.sae)
    m = sae.config.d_sae
    features = parse_features(args.features or f"0-{min(m, 50) - 1}", m)
    run, hook = info["run"], info["hook"]
    acts = open_activations(args.acts or info["activations"], run, hook, info["checkpoint"])
    model, tokenizer = load_model(run, info["checkpoint"])
    split = load_tokens(run, model.config.vocab_size, model.config.block_size).splits["train"]
    data = feature_data(sae, acts, split, tokenizer, features, model=model, top=args.top)
    for f in data:
        top = "(never active)"
        if f["contexts"]:  # the strongest context, its top token in brackets
            tokens, at = f["contexts"][0]["tokens"], f["contexts"][0]["at"]
            top = (
                "".join(tokens[max(0, at - 30) : at])
                + f"[{tokens[at]}]"
                + "".join(tokens[at + 1 :])
            )
        promotes = f["promoted"][0][0] if f["promoted"] else "-"
        print(
            f"feature {f['index']:>5}  density {100 * f['density']:6.2f}%  max {f['max']:7.3f}  "
            f"promotes {promotes:<6}  {top}"
        )
    if args.html:
        title = f"{sae.config.kind} SAE features at {hook}"
        about = f"{run}, {len(acts.rows)} tokens, {sae.config.d_sae} features"
        print(f"wrote {write_sae_html(args.html, data, title=title, info=about)}")
    return 0
