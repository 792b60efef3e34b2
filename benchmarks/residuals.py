"""Why residual connections work: the same small GPT trained with and without them.

For each depth, two models from the same initial weights, one as built and one with its
residual additions removed by hooks (glassbox.analysis.residuals.no_residuals), trained
on the same batches of the embedded default corpus, one character per token. Prints
JSON: per run the final training loss (mean of the last tenth of the steps) and the
gradient norm of each block's parameters at initialisation; --png draws the loss
curves and the gradient norms (docs/interpretability.md).

    python benchmarks/residuals.py --png docs/img/residuals.png        # about 3 min, 2 CPUs
    python benchmarks/residuals.py --depths 2 --steps 20               # a smoke run
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from glassbox.analysis.residuals import plot_residual_experiment, residual_experiment
from glassbox.data import load_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--n-embd", type=int, default=64)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default="default", help="corpus (default, shakespeare, a path)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: its default)")
    parser.add_argument("--png", default=None, help="write the figure here")
    parser.add_argument("--curves", action="store_true", help="print every step's loss too")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    result = residual_experiment(
        load_text(args.data), depths=args.depths, steps=args.steps, n_embd=args.n_embd,
        block_size=args.block_size, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
    )  # fmt: skip
    if args.png:
        result["png"] = str(plot_residual_experiment(result, args.png))
    result["seconds"] = round(time.perf_counter() - start, 1)
    for run in result["runs"]:
        run["final_loss"] = round(run["final_loss"], 4)
        run["init_grad_norms"] = [round(v, 4) for v in run["init_grad_norms"]]
        if not args.curves:
            del run["losses"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
