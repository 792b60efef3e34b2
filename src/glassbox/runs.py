"""A run directory: what a training run writes, and how a trained model is loaded back.

runs/NAME/
  config.json              model and train configs (JSON)
  tokenizer.json           the tokenizer (JSON)
  tokens.bin               the corpus as token ids (numpy memmap)
  checkpoint.safetensors   latest full state: weights, AdamW moments, RNG, step
  best.safetensors         weights with the lowest validation loss so far
  *.stepN.shardR-of-W.*    under FSDP, each rank's rows of the two files above
  metrics.jsonl            one JSON object per training step and per evaluation
  loss.png                 the loss curves, drawn when training ends
  .lock                    held by the process training into the folder
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from glassbox.checkpoint import atomic_write, load_model_state, shard_files
from glassbox.config import ModelConfig, TrainConfig, override
from glassbox.data import TokenDataset
from glassbox.errors import GlassboxError
from glassbox.jsonfiles import read_json
from glassbox.models import build_model
from glassbox.nn.lora import add_lora, merge_lora
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
LOCK = ".lock"  # held while a process trains into the folder (RunLock)


class RunError(GlassboxError):
    """A run directory that is missing, incomplete, corrupt or in use."""


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
    for shard in shard_files(Path(run_dir) / CHECKPOINT) + shard_files(Path(run_dir) / BEST):
        shard.unlink()


def remove_temp_files(run_dir: Path | str) -> list[Path]:
    """Delete the temporary files that killed or failed writes left behind (only call it
    while holding the run's lock: then no other process is writing one)."""
    stale = [p for p in Path(run_dir).glob(".*.tmp*") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def read_config(run_dir: Path | str) -> dict[str, Any]:
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise RunError(f"{run_dir} is not a glassbox run (no {CONFIG}); train one first")
    data = read_json(path, "run config", RunError)
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        raise RunError(f"{path} is not a version-{VERSION} glassbox run config")
    for part in ("model", "train"):
        if not isinstance(data.get(part), dict):
            raise RunError(f"{path} has no {part!r} settings: the run config is corrupt")
    return data


def load_configs(run_dir: Path | str) -> tuple[ModelConfig, TrainConfig]:
    data = read_config(run_dir)
    try:
        return override(ModelConfig(), data["model"]), override(TrainConfig(), data["train"])
    except GlassboxError as err:
        raise RunError(f"{Path(run_dir) / CONFIG}: {err}") from None


def load_run_tokenizer(run_dir: Path | str) -> Tokenizer:
    path = Path(run_dir) / TOKENIZER
    if not path.is_file():
        raise RunError(f"{run_dir} has no {TOKENIZER}")
    data = read_json(path, "tokenizer", RunError)
    if not isinstance(data, dict):
        raise RunError(f"{path} holds no tokenizer (a JSON object with a type)")
    try:
        return load_tokenizer(data)
    except GlassboxError as err:
        raise RunError(f"{path}: {err}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise RunError(f"{path} is not a valid {data.get('type')} tokenizer ({err!r})") from None


def model_vocab_size(tokenizer: Tokenizer, arch: str) -> int:
    """The model vocabulary a tokenizer calls for: its ids, plus an encoder's specials
    (unless the tokenizer has its own, as BERT's WordPiece has)."""
    from glassbox.models.encoder import ENCODER_SPECIALS
    from glassbox.tokenizers import WordPiece

    own = isinstance(tokenizer, WordPiece)
    return tokenizer.vocab_size + (len(ENCODER_SPECIALS) if arch == "encoder" and not own else 0)


def load_tokens(run_dir: Path | str, vocab_size: int, block_size: int) -> TokenDataset:
    """The run's corpus as token ids, split into train and val, each checked to hold at
    least one window of block_size + 1 tokens."""
    if not (Path(run_dir) / TOKENS).is_file():
        why = "it was imported" if read_config(run_dir).get("imported") else f"{TOKENS} is missing"
        raise RunError(
            f"{run_dir} has no corpus of its own ({why}): score it on a text with "
            f"eval --data PATH, or train on one with train --init-from {run_dir}"
        )
    dataset = TokenDataset(Path(run_dir) / TOKENS, vocab_size)
    dataset.check_fits(block_size)
    return dataset


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
    run_dir: Path | str, which: str = "best", device: str = "cpu", *, keep_lora: bool = False
) -> tuple[nn.Module, Tokenizer]:
    """The trained model (in eval mode; GPT, Encoder or EncoderDecoder as its config's
    arch says) and its tokenizer.

    A LoRA run (train config lora_rank > 0) saves its adapters beside the frozen weights;
    they are added before loading and then merged into the weights (glassbox.nn.lora), so
    the model is a plain one, unless keep_lora asks for the adapters as they were trained.

    >>> model, tokenizer = load_model("runs/default")  # doctest: +SKIP
    """
    model_config, train_config = load_configs(run_dir)
    tokenizer = load_run_tokenizer(run_dir)
    expected = model_vocab_size(tokenizer, model_config.arch)
    if expected != model_config.vocab_size:
        raise RunError(
            f"{Path(run_dir) / TOKENIZER} has {tokenizer.vocab_size} ids but the model's "
            f"vocabulary has {model_config.vocab_size}: the tokenizer is not this run's"
        )
    model = build_model(model_config)
    if train_config.lora_rank:  # A's random init (overwritten next) leaves the global RNG be
        rank, alpha = train_config.lora_rank, train_config.lora_alpha
        add_lora(model, rank, alpha, generator=torch.Generator())
    load_model_state(checkpoint_path(run_dir, which), model)
    if train_config.lora_rank and not keep_lora:
        merge_lora(model)
    return model.to(device).eval(), tokenizer


class RunLock:
    """An exclusive lock on a run folder, held by whoever writes it (train, resume).

    It is an flock on the folder's `.lock` file: the kernel releases it when the holder
    exits, however it exits, so a killed run never leaves a lock that blocks the next
    one. The file keeps the holder's pid and start time, for the message another process
    gets. Where flock is missing (Windows), runs are not locked.
    """

    def __init__(self, run_dir: Path | str) -> None:
        self.path = Path(run_dir) / LOCK
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise RunError(
                    f"{self.path.parent} is in use by {holder}; wait for it to finish "
                    "(two runs writing one folder would corrupt it)"
                ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} (since {time.strftime('%Y-%m-%d %H:%M:%S')})".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing releases the flock
            self.fd = None
