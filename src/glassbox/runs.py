"""A run directory: what a training run writes, and how a trained model is loaded back.

runs/NAME/
  config.json              model and train configs (JSON)
  tokenizer.json           the tokenizer (JSON)
  tokens.bin               the corpus as token ids (numpy memmap)
  checkpoint.safetensors   latest full state: weights, AdamW moments, RNG, step
  best.safetensors         weights with the lowest validation loss so far
  metrics.jsonl            one JSON object per training step and per evaluation
  loss.png                 the loss curves, drawn when training ends
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from glassbox.checkpoint import atomic_write, load_model_state
from glassbox.config import ModelConfig, TrainConfig, override
from glassbox.data import TokenDataset
from glassbox.errors import GlassboxError
from glassbox.models import build_model
from glassbox.tokenizers import Tokenizer, load_tokenizer

FORMAT = "glassbox-run"
VERSION = 1
CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
TOKENS = "tokens.bin"
CHECKPOINT = "checkpoint.safetensors"
BEST = "best.safetensors"
METRICS = "metrics.jsonl"
PLOT = "loss.png"


class RunError(GlassboxError):
    """A run directory that is missing or incomplete."""


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode())


def save_config(run_dir: Path, model: ModelConfig, train: TrainConfig, **extra: Any) -> None:
    data = {"format": FORMAT, "version": VERSION, "model": vars(model), "train": vars(train)}
    write_json(Path(run_dir) / CONFIG, {**data, **extra})


def update_train_config(run_dir: Path | str, train: TrainConfig) -> None:
    """Record the train settings a resumed run continues with, keeping everything else."""
    data = read_config(run_dir)
    data["train"] = vars(train)
    write_json(Path(run_dir) / CONFIG, data)


def remove_run_files(run_dir: Path | str) -> None:
    """Delete what a run writes (and nothing else a user may keep in the folder)."""
    for name in (CONFIG, TOKENIZER, TOKENS, CHECKPOINT, BEST, METRICS, PLOT):
        (Path(run_dir) / name).unlink(missing_ok=True)


def read_config(run_dir: Path | str) -> dict[str, Any]:
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise RunError(f"{run_dir} is not a glassbox run (no {CONFIG}); train one first")
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise RunError(f"{path} is not a version-{VERSION} glassbox run config")
    return data


def load_configs(run_dir: Path | str) -> tuple[ModelConfig, TrainConfig]:
    data = read_config(run_dir)
    return override(ModelConfig(), data["model"]), override(TrainConfig(), data["train"])


def load_run_tokenizer(run_dir: Path | str) -> Tokenizer:
    path = Path(run_dir) / TOKENIZER
    if not path.is_file():
        raise RunError(f"{run_dir} has no {TOKENIZER}")
    return load_tokenizer(json.loads(path.read_text(encoding="utf-8")))


def load_tokens(run_dir: Path | str, vocab_size: int) -> TokenDataset:
    """The run's corpus as token ids, split into train and val."""
    return TokenDataset(Path(run_dir) / TOKENS, vocab_size)


def checkpoint_path(run_dir: Path | str, which: str = "best") -> Path:
    """`best` falls back to the latest checkpoint when no evaluation has happened yet."""
    if which not in ("best", "last"):
        raise RunError(f"checkpoint must be best or last; got {which!r}")
    best, last = Path(run_dir) / BEST, Path(run_dir) / CHECKPOINT
    if which == "best" and best.is_file():
        return best
    if last.is_file():
        return last
    raise RunError(f"{run_dir} has no checkpoint yet")


def load_model(
    run_dir: Path | str, which: str = "best", device: str = "cpu"
) -> tuple[nn.Module, Tokenizer]:
    """The trained model (in eval mode; GPT, Encoder or EncoderDecoder as its config's
    arch says) and its tokenizer.

    >>> model, tokenizer = load_model("runs/default")  # doctest: +SKIP
    """
    model_config, _ = load_configs(run_dir)
    tokenizer = load_run_tokenizer(run_dir)
    model = build_model(model_config)
    load_model_state(checkpoint_path(run_dir, which), model)
    return model.to(device).eval(), tokenizer
