"""Checkpoints as single safetensors files, written atomically.

A checkpoint holds everything needed to continue a run exactly: model weights under
`model.*`, AdamW moments under `optim.*`, the RNG states as uint8 tensors under `rng.*`,
and, as JSON strings in the safetensors metadata, the step, the optimizer's hyperparameter
groups and any extra fields. Nothing is pickled, so loading a file never runs code.

Each file is written to a temporary name in the same directory, flushed to disk, and then
renamed over the old one: a crash mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import nn

from glassbox.errors import GlassboxError

FORMAT = "glassbox-checkpoint"
VERSION = "1"


class CheckpointError(GlassboxError):
    """A checkpoint file that is missing, of another format, or does not fit the model."""


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see either the old or the new file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict (persistent parameters and buffers), on the CPU."""
    return {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}


def save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    rng: dict[str, torch.Tensor] | None = None,
    meta: dict[str, Any] | None = None,
) -> None:
    """Write model (and optionally optimizer and RNG) state to one safetensors file."""
    tensors = {f"model.{k}": v for k, v in model_tensors(model).items()}
    header: dict[str, Any] = {"format": FORMAT, "version": VERSION, "meta": meta or {}}
    if optimizer is not None:
        state = optimizer.state_dict()
        for idx, param_state in state["state"].items():
            for key, value in param_state.items():
                tensors[f"optim.{idx}.{key}"] = torch.as_tensor(value).detach().cpu()
        header["optimizer_groups"] = state["param_groups"]
    for name, value in (rng or {}).items():
        tensors[f"rng.{name}"] = value
    metadata = {key: json.dumps(value) for key, value in header.items()}
    atomic_write(Path(path), save(tensors, metadata=metadata))


def _read(path: Path, prefix: str | None = "") -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors whose names start with prefix (none if prefix is None), and the header."""
    if not Path(path).is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
            names = f.keys()  # noqa: SIM118 - safe_open is not iterable
            keys = [k for k in names if prefix is not None and k.startswith(prefix)]
            tensors = {k: f.get_tensor(k) for k in keys}
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from None
    header = {key: json.loads(value) for key, value in raw.items()}
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a glassbox checkpoint")
    if header.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {header.get('version')}")
    return tensors, header


def read_meta(path: Path) -> dict[str, Any]:
    return _read(path, prefix=None)[1]["meta"]


def load_model_state(path: Path, model: nn.Module) -> dict[str, Any]:
    """Load the weights of a checkpoint into `model` (reading no optimizer tensors)."""
    tensors, header = _read(path, prefix="model.")
    state = {k.removeprefix("model."): v for k, v in tensors.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise CheckpointError(f"{path} does not fit this model: {first}") from None
    return header["meta"]


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Restore model and optimizer in place; returns the RNG tensors and the metadata."""
    tensors, header = _read(path)
    load_model_state(path, model)
    if "optimizer_groups" not in header:
        raise CheckpointError(f"{path} holds weights only; it cannot resume training")
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            per_param.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": per_param, "param_groups": header["optimizer_groups"]})
    rng = {k.removeprefix("rng."): v for k, v in tensors.items() if k.startswith("rng.")}
    return rng, header["meta"]
