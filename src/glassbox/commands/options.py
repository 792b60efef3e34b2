"""Flags that several commands share: one per config field, and a run to read."""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields
from typing import Any

from glassbox.config import (
    ACTIVATIONS,
    ARCHS,
    ATTENTION_IMPLS,
    ATTENTION_KINDS,
    DTYPES,
    LR_SCHEDULES,
    MLP_KINDS,
    NORM_PLACEMENTS,
    NORMS,
    OPTIMIZERS,
    POS_ENCODINGS,
    TASKS,
    TOKENIZERS,
    ModelConfig,
    TrainConfig,
)

CHOICES = {
    "arch": ARCHS,
    "task": TASKS,
    "norm_placement": NORM_PLACEMENTS,
    "pos_encoding": POS_ENCODINGS,
    "attention": ATTENTION_IMPLS,
    "attention_kind": ATTENTION_KINDS,
    "mlp": MLP_KINDS,
    "activation": ACTIVATIONS,
    "norm": NORMS,
    "dtype": DTYPES,
    "tokenizer": TOKENIZERS,
    "optimizer": OPTIMIZERS,
    "lr_schedule": LR_SCHEDULES,
}
NOT_FLAGS = {"vocab_size"}  # set from the tokenizer, never by hand
ALIASES = {"run_dir": ["--run"], "bpe_vocab_size": ["--vocab-size"], "moe_top_k": ["--top-k"]}
MEANING = {  # what a bare "(char-small: X)" would not tell
    "data": "default | shakespeare | a UTF-8 file | a folder | a glob like 'src/**/*.py' "
    "(quoted, so that the shell leaves it to glassbox)",
    "mlp": "dense, or moe: a mixture of experts (docs/architectures.md)",
    "n_experts": "moe: routed experts per layer",
    "moe_top_k": "moe: experts per token (1: Switch, 2: Mixtral-style)",
    "dropless": "moe: serve every token; --no-dropless caps each expert in training",
    "capacity_factor": "moe with --no-dropless: slots per expert = factor * tokens * k / E",
    "n_shared_experts": "moe: experts every token also goes through",
    "moe_balance_coef": "moe: weight of the load-balancing loss",
    "moe_z_coef": "moe: weight of the router z-loss",
    "attention_kind": "mha, or moh: a mixture of heads (docs/architectures.md)",
    "moh_shared_heads": "moh: heads every token uses",
    "moh_active_heads": "moh: routed heads each token keeps (0: all)",
    "moh_balance_coef": "moh: weight of the heads' load-balancing loss",
    "qk_norm": "RMS-normalize each head's queries and keys before the scores",
    "tie_embeddings": "the output layer is the token embedding; --no-tie-embeddings: an "
    "lm_head of its own",
    "zero_init": "start each block's output projections and an untied lm_head at zero",
    "logit_softcap": "logits = cap * tanh(logits / cap); 0 = off",
    "optimizer": "adamw, or muon: orthogonalized momentum for the blocks' matrices "
    "(docs/training.md)",
    "muon_lr": "muon: learning rate of the blocks' matrices",
    "muon_momentum": "muon: momentum of the gradient average",
    "lr_schedule": "cosine, or wsd: warmup, stable, then a linear decay",
    "decay_fraction": "wsd: the share of --lr-decay-iters spent decaying",
}


def _help(name: str, default: Any) -> str:
    return " ".join(filter(None, [MEANING.get(name), f"(char-small: {default})"]))


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_flags(
    parser: argparse.ArgumentParser, train: bool = True, skip: set[str] = NOT_FLAGS
) -> list[str]:
    """One flag per config field (every field is typed, so a typo or a wrong type is an
    argparse error rather than a silent default); returns the field names, which are also
    the dests. Unset flags stay None, so `given` tells them from a preset's values."""
    names = []
    classes = ((ModelConfig, "model"), (TrainConfig, "training"))[: 2 if train else 1]
    for cls, title in classes:
        group = parser.add_argument_group(f"{title} settings (default: the preset's)")
        for f in fields(cls):
            if f.name in skip:
                continue
            names.append(f.name)
            default = f.default if f.default is not MISSING else None
            aliases = [flag(f.name)] + ALIASES.get(f.name, [])
            if f.type == "bool":
                group.add_argument(
                    *aliases,
                    dest=f.name,
                    default=None,
                    action=argparse.BooleanOptionalAction,
                    help=_help(f.name, default),
                )
            else:
                kind = {"int": int, "float": float, "str": str}[str(f.type)]
                group.add_argument(
                    *aliases,
                    dest=f.name,
                    type=kind,
                    default=None,
                    choices=CHOICES.get(f.name),
                    metavar=f.name.upper(),
                    help=_help(f.name, default),
                )
    parser.set_defaults(config_names=names)
    return names


def given(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields set on the command line (the flags add_config_flags made)."""
    return {n: getattr(args, n) for n in args.config_names if getattr(args, n) is not None}


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", default="runs/default", help="run directory (runs/default)")
    p.add_argument(
        "--checkpoint",
        default="best",
        choices=["best", "last"],
        help="best-validation weights or the latest ones (best)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")


def add_beam_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--beam-size", type=int, default=1, help="encoder-decoder runs: 1 = greedy (1)")
    p.add_argument(
        "--length-penalty",
        type=float,
        default=0.6,
        help="beam search's alpha in ((5 + length) / 6) ** alpha (0.6)",
    )
