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
    """Replace `path` with `data` so that readers see either the old or the new file.

    A write that fails (a full disk, say) removes its temporary file and raises a
    CheckpointError naming the file; the old file is left as it was.
    """
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write {path}: {err.strerror or err}") from None
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
    try:
        header = {key: json.loads(value) for key, value in raw.items()}
    except json.JSONDecodeError:
        raise CheckpointError(f"{path} has corrupt metadata (not JSON)") from None
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a glassbox checkpoint")
    if header.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {header.get('version')}")
    if not isinstance(header.get("meta", {}), dict):
        raise CheckpointError(f"{path} has corrupt metadata (meta is not an object)")
    header.setdefault("meta", {})
    return tensors, header


def read_meta(path: Path) -> dict[str, Any]:
    return _read(path, prefix=None)[1]["meta"]


def load_model_state(path: Path, model: nn.Module) -> dict[str, Any]:
    """Load the weights of a checkpoint into `model` (reading no optimizer tensors); a
    missing, extra or wrong-shaped tensor is an error that names it."""
    tensors, header = _read(path, prefix="model.")
    state = {k.removeprefix("model."): v for k, v in tensors.items()}
    check_tensors(path, state, model.state_dict())
    model.load_state_dict(state)
    return header["meta"]


def check_tensors(
    path: Path, found: dict[str, torch.Tensor], wanted: dict[str, torch.Tensor]
) -> None:
    """`found` must hold exactly the names of `wanted`, each with the same shape."""
    missing = sorted(set(wanted) - set(found))
    extra = sorted(set(found) - set(wanted))
    if missing or extra:
        what = f"lacks {missing[0]}" if missing else f"has an unexpected tensor {extra[0]}"
        more = len(missing) + len(extra) - 1
        raise CheckpointError(
            f"{path} does not fit this model: it {what}" + (f" (and {more} more)" if more else "")
        )
    for name, tensor in wanted.items():
        if found[name].shape != tensor.shape:
            raise CheckpointError(
                f"{path} does not fit this model: {name} has shape {tuple(found[name].shape)}, "
                f"the model's is {tuple(tensor.shape)}"
            )


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Restore model and optimizer in place; returns the RNG tensors and the metadata.
    Everything is checked before anything is loaded, so a bad file changes nothing."""
    tensors, header = _read(path)
    meta = header["meta"]
    state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    check_tensors(path, state, model.state_dict())
    if "optimizer_groups" not in header:
        raise CheckpointError(f"{path} holds weights only; it cannot resume training")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            per_param.setdefault(int(idx), {})[name] = value
    for idx, moments in per_param.items():
        if not 0 <= idx < len(params):
            raise CheckpointError(
                f"{path} has optimizer state for a parameter #{idx} the model lacks"
            )
        for name, value in moments.items():
            if value.dim() > 0 and value.shape != params[idx].shape:
                raise CheckpointError(
                    f"{path}: optimizer tensor optim.{idx}.{name} has shape "
                    f"{tuple(value.shape)}, its parameter's is {tuple(params[idx].shape)}"
                )
    groups = header["optimizer_groups"]
    if not isinstance(groups, list) or len(groups) != len(optimizer.param_groups):
        raise CheckpointError(f"{path} has corrupt optimizer groups")
    model.load_state_dict(state)
    try:
        optimizer.load_state_dict({"state": per_param, "param_groups": groups})
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path} has an optimizer state this run cannot use: {err}") from None
    rng = {k.removeprefix("rng."): v for k, v in tensors.items() if k.startswith("rng.")}
    return rng, meta
