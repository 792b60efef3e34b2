"""`glassbox train`: train a GPT, an encoder or an encoder-decoder into a run folder."""

from __future__ import annotations

import argparse

from glassbox.commands.options import add_config_flags, given
from glassbox.config import PRESETS, default_preset, from_preset
from glassbox.errors import GlassboxError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a GPT, an encoder or an encoder-decoder",
        description="Train a model. Without flags: a GPT with the char-small preset on "
        "the embedded default corpus, saved in runs/default. --arch encoder trains a "
        "masked-LM encoder on the same corpora; --task reverse (copy, sort, addition) "
        "trains an encoder-decoder on a generated task (preset seq2seq).",
    )
    p.add_argument(
        "--preset",
        default=None,
        choices=list(PRESETS),
        help="starting configuration (char-small; encoder with --arch encoder; seq2seq or "
        "induction with --task); "
        + "; ".join(f"{k}: {v.description}" for k, v in PRESETS.items()).replace("%", "%%"),
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --run from its last checkpoint"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_flags(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from glassbox.runs import load_configs
    from glassbox.train import distributed
    from glassbox.train.trainer import resume, train

    changes = given(args)
    progress = not args.no_progress
    if args.resume:
        run_dir = changes.pop("run_dir", None)
        if run_dir is None:
            raise GlassboxError("--resume needs --run DIR: the run to continue")
        result = resume(run_dir, progress=progress, **changes)
    else:
        preset = args.preset or default_preset(changes.get("arch"), changes.get("task"))
        model_config, train_config = from_preset(preset, **changes)
        result = train(
            model_config, train_config, overwrite=args.overwrite, progress=progress,
            given=set(changes),
        )  # fmt: skip
    if not distributed.from_env().main:  # under torchrun, rank 0 speaks for the run
        return 0
    print(
        f"done: {result.step} iterations, val loss {result.val_loss:.4f} "
        f"(best {result.best_val_loss:.4f}); run saved in {result.run_dir}"
    )
    model_config, train_config = load_configs(result.run_dir)
    print(next_steps(str(result.run_dir), model_config.arch, train_config.task))
    return 0


def next_steps(run_dir: str, arch: str, task: str = "") -> str:
    """What a user can do with a run that has just finished training."""
    if arch == "decoder" and task:
        return (
            f"score it: glassbox eval --run {run_dir}\n"
            f"sample from it: glassbox sample --run {run_dir} --prompt ..."
        )
    if arch == "encoder":
        return f'fill masks with it: glassbox fill-mask --run {run_dir} "text with [MASK]"'
    if arch == "encoder-decoder":
        return (
            f"score it: glassbox eval --run {run_dir}\n"
            f"run it: glassbox sample --run {run_dir} --prompt SOURCE"
        )
    return f"sample from it: glassbox sample --run {run_dir}"
