"""`glassbox superposition`: train the toy model of superposition at several sparsities,
print what it keeps, and draw it (glassbox.analysis.superposition does the work)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# The --phase grid: feature density 1 - S from 1 to 0.01, relative importance 0.1 to 10,
# both evenly spaced on a log scale, as in the paper's figure.
PHASE_DENSITY = [1.0, 0.56, 0.32, 0.18, 0.1, 0.056, 0.032, 0.018, 0.01]
PHASE_IMPORTANCE = [0.1, 0.18, 0.32, 0.56, 1.0, 1.8, 3.2, 5.6, 10.0]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "superposition",
        help="the toy model of superposition: n sparse features squeezed into m < n dims",
        description="Train Elhage et al.'s toy model (x' = ReLU(WᵀWx + b)) once per "
        "sparsity, all at once on the CPU, and report which features it represents. With "
        "--out, write W's columns (for 2 dims), WᵀW, the feature norms and a JSON summary.",
    )
    p.add_argument("--features", type=int, default=5, help="n, the number of features (5)")
    p.add_argument("--dims", type=int, default=2, help="m, the hidden dimensions (2)")
    p.add_argument(
        "--sparsity", type=float, nargs="+", default=[0.0, 0.7, 0.9, 0.97],
        help="probability that a feature is 0; one model per value (0 0.7 0.9 0.97)",
    )  # fmt: skip
    p.add_argument(
        "--importance", type=float, default=0.9,
        help="feature i has importance r**i; 1 makes them equal (0.9)",
    )  # fmt: skip
    p.add_argument("--steps", type=int, default=2000, help="Adam steps (2000)")
    p.add_argument(
        "--restarts", type=int, default=1,
        help="train this many models per sparsity and keep the lowest loss (1)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="initialization and data seed (0)")
    p.add_argument("--linear", action="store_true", help="drop the ReLU: x' = WᵀWx + b")
    p.add_argument(
        "--phase", action="store_true",
        help="also map 2 features in 1 dimension over sparsity x relative importance",
    )  # fmt: skip
    p.add_argument("--out", default=None, metavar="DIR", help="write PNGs and summary.json here")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from glassbox.analysis import superposition as toy

    result = toy.train_toy(
        args.sparsity, args.importance, n_features=args.features, n_hidden=args.dims,
        relu=not args.linear, steps=args.steps, restarts=args.restarts, seed=args.seed,
    )  # fmt: skip
    summary = {"toy": toy.toy_report(result)}
    print(toy.describe_toy(summary["toy"]))
    if args.phase:
        diagram = toy.phase_diagram(
            [1 - d for d in PHASE_DENSITY], PHASE_IMPORTANCE, relu=not args.linear,
            steps=args.steps, seed=args.seed,
        )  # fmt: skip
        summary["phase"] = toy.phase_report(diagram)
        print(toy.describe_phase(summary["phase"]))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        written = [
            toy.plot_gram(result, out / "gram.png"),
            toy.plot_norms(result, out / "norms.png"),
        ]
        if args.dims == 2:
            written.append(toy.plot_columns(result, out / "columns.png"))
        if args.phase:
            written.append(toy.plot_phase(diagram, out / "phase.png"))
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        written.append(out / "summary.json")
        print("wrote " + ", ".join(str(p) for p in written))
    return 0
