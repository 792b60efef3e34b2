"""Checkpoints as single safetensors files, written atomically.

A checkpoint holds everything needed to continue a run exactly: model weights under
`model.*`, the optimizer's state (AdamW's moments, Muon's momentum) under `optim.*`, the
RNG states as uint8 tensors under `rng.*`, and, as JSON strings in the safetensors
metadata, the step, the optimizer's hyperparameter groups and any extra fields. Nothing
is pickled, so loading a file never runs code.

Each file is written to a temporary name in the same directory, flushed to disk, and then
renamed over the old one: a crash mid-save leaves the previous checkpoint intact.

A model sharded with FSDP is saved in pieces: every rank writes the rows it holds of each
sharded tensor to a file of its own (`checkpoint.step500.shard1-of-4.safetensors`), and
when all have, rank 0 writes the checkpoint itself, which names those files and holds
the rest. Reading one puts the pieces back together, so a sharded checkpoint loads into a
single process, and a whole one into any number of FSDP ranks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Shards:
    """This process's part in saving a sharded checkpoint: its rank among `world`, and
    `barrier`, which returns once every rank has called it."""

    rank: int
    world: int
    barrier: Callable[[], None]


def is_sharded(tensor: torch.Tensor) -> bool:
    """Whether `tensor` is a DTensor, of which this process holds only some rows."""
    if not torch.distributed.is_available():
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    rng: dict[str, torch.Tensor] | None = None,
    meta: dict[str, Any] | None = None,
    shards: Shards | None = None,
) -> None:
    """Write model (and optionally optimizer and RNG) state to one safetensors file, and,
    for a sharded model, each rank's rows to a file of its own (every rank calls this)."""
    path = Path(path)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    header: dict[str, Any] = {"format": FORMAT, "version": VERSION, "meta": meta or {}}
    if optimizer is not None:
        state = optimizer.state_dict()
        for idx, param_state in state["state"].items():
            for key, value in param_state.items():
                tensors[f"optim.{idx}.{key}"] = torch.as_tensor(value)
        header["optimizer_groups"] = state["param_groups"]
    sharded = sorted(k for k, v in tensors.items() if is_sharded(v))
    if sharded:
        if shards is None:
            raise CheckpointError(f"{path}: a sharded model is saved by all its ranks at once")
        tag = f"step{header['meta'].get('step', 0)}"
        files = [f"{path.stem}.{tag}.shard{r}-of-{shards.world}{path.suffix}"
                 for r in range(shards.world)]  # fmt: skip
        local = {k: _rows(path, k, tensors.pop(k)) for k in sharded}  # this rank's rows
        atomic_write(path.with_name(files[shards.rank]), save(local))
        shards.barrier()  # every piece is on disk before the checkpoint names them
        if shards.rank != 0:
            return
        header["shards"] = {"files": files, "tensors": sharded}
    tensors = {k: _cpu(v) for k, v in tensors.items()}
    for name, value in (rng or {}).items():
        tensors[f"rng.{name}"] = value
    metadata = {key: json.dumps(value) for key, value in header.items()}
    atomic_write(path, save(tensors, metadata=metadata))
    keep = set(header.get("shards", {}).get("files", []))
    for old in shard_files(path):
        if old.name not in keep:  # pieces of the checkpoint this one replaced
            old.unlink(missing_ok=True)


def _cpu(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().cpu().contiguous()


def _rows(path: Path, name: str, tensor: torch.Tensor) -> torch.Tensor:
    """This rank's rows of a DTensor split along dim 0 (how FSDP shards), on the CPU."""
    from torch.distributed.tensor import Shard

    if tuple(tensor.placements) != (Shard(0),):
        raise CheckpointError(
            f"{path}: {name} is placed {tensor.placements}; only rows split over one "
            "mesh dimension (FSDP's Shard(0)) can be saved"
        )
    return _cpu(tensor.to_local())


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
    if "shards" in header and prefix is not None:
        tensors.update(_join_shards(Path(path), header["shards"], prefix))
    return tensors, header


def _join_shards(path: Path, shards: Any, prefix: str) -> dict[str, torch.Tensor]:
    """The whole tensors of a sharded checkpoint: each one's rows from every shard file,
    in rank order (FSDP splits dim 0 like torch.chunk, so they concatenate back)."""
    try:
        files, names = list(shards["files"]), list(shards["tensors"])
    except (TypeError, KeyError):
        raise CheckpointError(f"{path} has corrupt metadata (its list of shards)") from None
    wanted = [n for n in names if n.startswith(prefix)]
    pieces: dict[str, list[torch.Tensor]] = {n: [] for n in wanted}
    for name in files:
        shard = path.with_name(name)
        if not shard.is_file():
            raise CheckpointError(f"{path} is missing its shard {shard.name}")
        try:
            with safe_open(str(shard), framework="pt") as f:
                for n in wanted:
                    pieces[n].append(f.get_tensor(n))
        except Exception as err:  # a truncated or foreign file, a tensor it lacks
            raise CheckpointError(f"cannot read shard {shard}: {err}") from None
    try:
        return {n: torch.cat(parts) for n, parts in pieces.items()}
    except RuntimeError:
        raise CheckpointError(f"the shards of {path} do not fit together") from None


def shard_files(path: Path) -> list[Path]:
    """The shard files that sit beside checkpoint `path` (none for a whole one)."""
    return sorted(Path(path).parent.glob(f"{Path(path).stem}.step*.shard*{Path(path).suffix}"))


def read_meta(path: Path) -> dict[str, Any]:
    return _read(path, prefix=None)[1]["meta"]


def load_model_state(path: Path, model: nn.Module) -> dict[str, Any]:
    """Load the weights of a checkpoint into `model` (reading no optimizer tensors); a
    missing, extra or wrong-shaped tensor is an error that names it."""
    tensors, header = _read(path, prefix="model.")
    state = {k.removeprefix("model."): v for k, v in tensors.items()}
    wanted = model.state_dict()
    check_tensors(path, state, wanted)
    model.load_state_dict({k: _like(v, wanted[k]) for k, v in state.items()})
    return header["meta"]


def _like(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A whole tensor from a file, made to fit `target`: for a sharded target, the rows
    this rank holds (every rank has read the whole tensor, so nothing is sent)."""
    if not is_sharded(target):
        return value
    from torch.distributed.tensor import distribute_tensor

    value = value.to(device=target.device, dtype=target.dtype)
    return distribute_tensor(value, target.device_mesh, target.placements, src_data_rank=None)


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
    wanted = model.state_dict()
    check_tensors(path, state, wanted)
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
    model.load_state_dict({k: _like(v, wanted[k]) for k, v in state.items()})
    for idx, moments in per_param.items():  # a moment is sharded like its parameter
        for name, value in moments.items():
            if value.dim() > 0:
                moments[name] = _like(value, params[idx])
    try:
        optimizer.load_state_dict({"state": per_param, "param_groups": groups})
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path} has an optimizer state this run cannot use: {err}") from None
    rng = {k.removeprefix("rng."): v for k, v in tensors.items() if k.startswith("rng.")}
    return rng, meta
