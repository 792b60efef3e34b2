"""Try a change and measure it: train variants of one configuration side by side.

Every variant starts from the same preset and shared settings (`base`): same data, same
seed, same number of iterations, same schedule. Only the keys a variant names differ, so
a gap in validation loss or speed between two rows is the change's doing (or seed noise:
add variants that change only `seed` to see how large that is).

A variant is written `NAME:KEY=VALUE[,KEY=VALUE]`, or `KEY=VALUE[,KEY=VALUE]` (the text is
then its name), or `baseline` (the preset unchanged). Keys are ModelConfig and TrainConfig
fields; every config is built before the first run starts, so a typo in the fifth variant
fails at once rather than after four trainings.

    >>> rows = compare(["baseline", "rope:pos_encoding=rope"], preset="char-tiny")  # doctest: +SKIP
    >>> print(format_table(rows))  # doctest: +SKIP
"""

from __future__ import annotations

import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from glassbox.config import (
    ConfigError,
    ModelConfig,
    TrainConfig,
    from_preset,
    split_overrides,
)

SKIP = 10  # the first steps warm caches and the allocator up; not timed (as train_char.py)
# Set by the harness, never by a variant: each run's folder, and the tokenizer's vocabulary.
RESERVED = {"run_dir": "it is run_root/<variant name>", "vocab_size": "the tokenizer sets it"}

# The defaults (learned positions, LayerNorm, pre-norm, GELU) are the baseline of every
# group, so "all" trains it once and every other row is one change away from it.
_GROUPS: dict[str, list[str]] = {
    "positions": [
        "sinusoidal:pos_encoding=sinusoidal",
        "rope:pos_encoding=rope",
        "alibi:pos_encoding=alibi",
        "relative:pos_encoding=relative",
        "none:pos_encoding=none",
    ],
    "norms": ["rmsnorm:norm=rmsnorm", "batchnorm:norm=batchnorm"],
    "placement": ["post-norm:norm_placement=post"],
    "activations": ["swiglu:activation=swiglu", "relu2:activation=relu2"],
    # modded-nanogpt's changes to the recipe (the char-speedrun preset has them all)
    "speedrun": [
        "qk-norm:qk_norm=true",
        "untied:tie_embeddings=false",
        "zero-init:tie_embeddings=false,zero_init=true",
        "softcap:logit_softcap=15",
        "muon:optimizer=muon",
        "wsd:lr_schedule=wsd",
    ],
}
SUITES: dict[str, list[str]] = {name: ["baseline", *group] for name, group in _GROUPS.items()}
SUITES["all"] = ["baseline"] + [spec for group in _GROUPS.values() for spec in group]


def parse_variant(spec: str) -> tuple[str, dict[str, str]]:
    """Split a variant into its name and its changes (values stay strings until the
    configs are built); unknown keys are an error with a did-you-mean hint.

    >>> parse_variant("rope:pos_encoding=rope,lr=2e-3")
    ('rope', {'pos_encoding': 'rope', 'lr': '2e-3'})
    >>> parse_variant("n_layer=6")
    ('n_layer=6', {'n_layer': '6'})
    >>> parse_variant("baseline")
    ('baseline', {})
    """
    spec = spec.strip()
    if spec == "baseline":
        return spec, {}
    name, sep, body = spec.partition(":")
    if not sep or "=" in name:  # no name given (a value may itself hold a colon)
        name, body = spec, spec
    name = name.strip()
    if not name:
        raise ConfigError(f"variant {spec!r} has an empty name before ':'")
    if not body.strip():
        return name, {}  # "NAME:" is a named baseline
    changes: dict[str, str] = {}
    for item in body.split(","):
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")  # accept the CLI's spelling, pos-encoding
        if not eq or not key:
            raise ConfigError(
                f"variant {spec!r}: {item.strip()!r} is not KEY=VALUE "
                "(write NAME:KEY=VALUE[,KEY=VALUE], KEY=VALUE, or baseline)"
            )
        if key in changes:
            raise ConfigError(f"variant {spec!r} sets {key} twice")
        if key in RESERVED:
            raise ConfigError(f"variant {spec!r} may not set {key}: {RESERVED[key]}")
        changes[key] = value.strip()
    try:
        split_overrides(changes)  # only to check the keys
    except ConfigError as err:
        raise ConfigError(f"variant {spec!r}: {err}") from None
    return name, changes


def slug(name: str) -> str:
    """A folder name for a variant: `pos_encoding=rope,lr=2e-3` -> `pos_encoding-rope-lr-2e-3`."""
    return re.sub(r"[^A-Za-z0-9._]+", "-", name).strip("-.") or "variant"


def select_variants(variants: list[str], suite: str | None) -> list[str]:
    """The variants named on a command line: a list of specs or one suite, not both."""
    if variants and suite:
        raise ConfigError("give variants or --suite, not both")
    if suite is None:
        if not variants:
            raise ConfigError(f"nothing to compare: give variants or --suite ({', '.join(SUITES)})")
        return list(variants)
    if suite not in SUITES:
        raise ConfigError(f"unknown suite {suite!r}; choose from {', '.join(SUITES)}")
    return list(SUITES[suite])


def shared_settings(data: str | None = None, max_iters: int | None = None) -> dict[str, Any]:
    """The `base` of a command line's --data and --max-iters. A shorter or longer budget
    moves the end of the cosine schedule with it, as benchmarks/train_char.py does, so a
    short comparison still anneals its learning rate."""
    base: dict[str, Any] = {}
    if data is not None:
        base["data"] = data
    if max_iters is not None:
        base.update(max_iters=max_iters, lr_decay_iters=max_iters)
    return base


def compare(
    variants: list[str],
    *,
    preset: str = "char-small",
    base: dict[str, Any] | None = None,
    run_root: str | Path = "runs/compare",
    progress: bool = False,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train each variant of preset + base, one after another, and return one row each:
    variant, changes, params, active_params (per token: a mixture of experts uses only
    the experts it picks), val_loss (last evaluation), best_val_loss, train_loss,
    tokens_per_s and ms_per_iter (medians over the steps after the first SKIP), seconds
    (the whole run, evaluations included), and for a mixture of experts the medians over
    the run's last tenth of expert_imbalance, expert_max_min and dropped
    (LanguageModel.routing_stats). `on_result` sees each row as it is finished.

    Runs are kept in run_root/<variant>, so any of them can be sampled or resumed later.
    They run one after another, so their tokens/s compare fairly only on a machine that
    nothing else is using meanwhile; the losses do not depend on the machine's load.
    """
    base = dict(base or {})
    if "run_dir" in base:
        raise ConfigError(f"base may not set run_dir: {RESERVED['run_dir']}")
    if not variants:
        raise ConfigError("nothing to compare: give at least one variant")
    from_preset(preset, **base)  # a bad preset or shared setting is not one variant's fault
    plans = []  # every config is built (and so checked) before anything trains
    folders: dict[str, str] = {}
    for spec in variants:
        name, changes = parse_variant(spec)
        folder = slug(name)
        if folder in folders:
            raise ConfigError(
                f"variants {folders[folder]!r} and {name!r} would share the run folder "
                f"{folder!r}; give them different names"
            )
        folders[folder] = name
        run_dir = str(Path(run_root) / folder)
        try:
            model_config, train_config = from_preset(
                preset, **{**base, **changes, "run_dir": run_dir}
            )
        except ConfigError as err:
            raise ConfigError(f"variant {name!r}: {err}") from None
        plans.append((name, changes, model_config, train_config))

    import glassbox.train.trainer  # noqa: F401  (torch's import, not the first run's seconds)

    rows = []
    for i, (name, changes, model_config, train_config) in enumerate(plans, 1):
        if progress:
            shown = _changes_text(changes)
            print(f"[{i}/{len(plans)}] {name}: {shown}", file=sys.stderr, flush=True)
        row = {
            "variant": name,
            "changes": changes,
            **_train_one(model_config, train_config, progress),
        }
        rows.append(row)
        if on_result is not None:
            on_result(row)
    return rows


def _train_one(
    model_config: ModelConfig, train_config: TrainConfig, progress: bool
) -> dict[str, Any]:
    """Train one variant from scratch; its size, losses and speed."""
    from glassbox.analysis.count import active_params
    from glassbox.models import build_model
    from glassbox.runs import load_configs
    from glassbox.train.trainer import train

    speeds: list[float] = []
    routing: list[dict[str, float]] = []

    def record(row: dict[str, Any]) -> None:
        if row["kind"] == "train":
            speeds.append(row["tokens_per_s"])
            if "expert_imbalance" in row:
                routing.append(
                    {k: row[k] for k in ("expert_imbalance", "expert_max_min", "dropped")}
                )

    start = time.perf_counter()
    result = train(model_config, train_config, overwrite=True, progress=progress, callback=record)
    seconds = time.perf_counter() - start
    trained_config = load_configs(result.run_dir)[0]  # vocab_size comes from the tokenizer
    last = routing[-len(routing) // 10 :] if routing else []  # the run's last tenth
    balance = {k: statistics.median(r[k] for r in last) for k in last[0]} if last else {}
    return {
        "params": build_model(trained_config).num_params(),
        "active_params": active_params(trained_config),
        **balance,
        "val_loss": result.val_loss,
        "best_val_loss": result.best_val_loss,
        "train_loss": result.train_loss,
        "tokens_per_s": _median_after_warmup(speeds),
        "ms_per_iter": _median_after_warmup(result.ms_per_iter),
        "seconds": seconds,
    }


def _median_after_warmup(values: list[float]) -> float:
    """The median of the steps after the first SKIP (of all of them in a shorter run)."""
    timed = values[SKIP:] if len(values) > SKIP else values
    return statistics.median(timed) if timed else float("nan")


def _changes_text(changes: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in changes.items()) or "(none)"


def format_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of compare's rows; the first row is the reference for the Δ and
    speed columns (a positive Δ means a worse validation loss than the first row's).

    >>> row = dict(variant="baseline", changes={}, params=804096, val_loss=1.909,
    ...            tokens_per_s=19047.0)
    >>> print(format_table([row]).splitlines()[2])
    | baseline | (none) | 804,096 | 1.9090 | +0.0000 | 19,047 | 1.00× |
    """
    header = ["variant", "changes", "params", "val loss", "Δ vs first", "tokens/s", "speed"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    if not rows:
        return "\n".join(lines)
    first = rows[0]
    for row in rows:
        cells = [
            row["variant"],
            _changes_text(row["changes"]),
            f"{row['params']:,}",
            f"{row['val_loss']:.4f}",
            f"{row['val_loss'] - first['val_loss']:+.4f}",
            f"{row['tokens_per_s']:,.0f}",
            f"{row['tokens_per_s'] / first['tokens_per_s']:.2f}×",
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def describe_row(row: dict[str, Any]) -> str:
    """One line for a finished variant, printed while the others still train."""
    return (
        f"{row['variant']}: val loss {row['val_loss']:.4f} (best {row['best_val_loss']:.4f}), "
        f"{row['tokens_per_s']:,.0f} tokens/s, {row['params']:,} params, "
        f"{row['seconds']:.0f} s"
    )
