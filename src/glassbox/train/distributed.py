"""Training on several processes with DistributedDataParallel, started by torchrun:

    torchrun --standalone --nproc_per_node 2 -m glassbox train --data shakespeare

Every rank builds the same model from the same seed (DDP also copies rank 0's weights to
the others when it wraps the model), draws the same global batch of `batch_size` rows
from the same data generator, and trains on its own slice of it; DDP averages the
gradients, so a step is the step one process would take on the whole batch. Only rank 0
touches the run folder (corpus, config, checkpoints, metrics, progress bar); the others
wait until it has prepared the run and then read it. Backend nccl on CUDA, gloo on the CPU.

With `--fsdp` the model is sharded instead of copied (FSDP's `fully_shard`, one unit per
block): each rank keeps 1/world of every parameter, gradient and AdamW moment, gathers a
block's weights just before it runs and frees them after.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from glassbox.checkpoint import Shards
from glassbox.device import resolve_dtype
from glassbox.errors import GlassboxError

# How long a rank waits for the others, to join and then at each collective; the
# environment variable GLASSBOX_DIST_TIMEOUT (seconds) changes it.
TIMEOUT = timedelta(minutes=10)


@dataclass(frozen=True)
class Ranks:
    """Where this process stands: its rank, the number of ranks, its rank on this node."""

    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


SINGLE = Ranks()


def from_env() -> Ranks:
    """The ranks torchrun describes in RANK, WORLD_SIZE and LOCAL_RANK (one process when
    they are not set)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def start(ranks: Ranks, device: str, batch_size: int) -> str:
    """Join the process group (once) and return this rank's device; a batch that the
    ranks cannot split evenly is an error on every rank."""
    if not ranks.active:
        return device
    if batch_size % ranks.world:
        raise GlassboxError(
            f"batch_size {batch_size} is the global batch, split over {ranks.world} ranks: "
            f"it must be a multiple of {ranks.world}"
        )
    cuda = device.startswith("cuda")
    if cuda:
        device = f"cuda:{ranks.local}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        timeout = _timeout()
        try:
            dist.init_process_group("nccl" if cuda else "gloo", timeout=timeout)
        except (RuntimeError, ValueError) as err:  # DistStoreError and timeouts among them
            where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise GlassboxError(
                f"rank {ranks.rank} of {ranks.world} could not join the others at {where} "
                f"within {timeout.total_seconds():g} s ({first}); check that every rank "
                "started and can reach that address"
            ) from None
    return device


def _timeout() -> timedelta:
    value = os.environ.get("GLASSBOX_DIST_TIMEOUT")
    if value is None:
        return TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise GlassboxError(f"GLASSBOX_DIST_TIMEOUT must be a number of seconds; got {value!r}")
    return timedelta(seconds=seconds)


def agree(ranks: Ranks, what: str, settings: dict[str, Any]) -> None:
    """Every rank must have been started with the same settings: ranks that were not end,
    all of them, with the first difference named."""
    if not ranks.active:
        return
    every: list[Any] = [None] * ranks.world
    dist.all_gather_object(every, settings)
    for rank, theirs in enumerate(every):
        differ = sorted(k for k in settings.keys() | theirs.keys()
                        if settings.get(k) != theirs.get(k))  # fmt: skip
        if differ and rank != ranks.rank:
            low, high = sorted((ranks.rank, rank))
            key = differ[0]
            mine, other = (settings, theirs) if ranks.rank == low else (theirs, settings)
            raise GlassboxError(
                f"the ranks disagree on the {what}: {key} is {mine.get(key)!r} on rank {low} "
                f"and {other.get(key)!r} on rank {high}; start every rank with the same flags"
            )


def shard_model(model: nn.Module, ranks: Ranks, device: str, dtype: str) -> None:
    """Shard `model` in place with FSDP: every Block its own unit, then the rest (the
    embeddings and the head, tied or not). Under bf16 the gathered weights are bf16 and
    the gradients are reduced in fp32; the sharded master weights stay fp32."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    from glassbox.nn.block import Block

    if not ranks.active:
        raise GlassboxError(
            "--fsdp shards the model over the processes torchrun starts: run "
            "`torchrun --nproc_per_node N -m glassbox train --fsdp ...` with N >= 2, "
            "or pass --no-fsdp to train (or resume) in one process"
        )
    low = resolve_dtype(device, dtype) == "bfloat16"
    policy = MixedPrecisionPolicy(
        param_dtype=torch.bfloat16 if low else None, reduce_dtype=torch.float32
    )
    for block in [m for m in model.modules() if isinstance(m, Block)]:
        fully_shard(block, mp_policy=policy)
    fully_shard(model, mp_policy=policy)


def gradient_sync(
    model: nn.Module, forward: nn.Module, ranks: Ranks, last: bool
) -> contextlib.AbstractContextManager:
    """The context of one micro-step's backward pass: gradients are averaged over the
    ranks on the last micro-step of an optimizer step only."""
    if not ranks.active:
        return contextlib.nullcontext()
    from torch.distributed.fsdp import FSDPModule

    if isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(last)
        return contextlib.nullcontext()
    return contextlib.nullcontext() if last else forward.no_sync()


def shards(ranks: Ranks) -> Shards:
    """What save_checkpoint needs to write a sharded model from every rank."""
    return Shards(ranks.rank, ranks.world, dist.barrier)


def announce(ranks: Ranks, error: str | None = None) -> None:
    """Rank 0 tells the others that the run is prepared (or why it is not)."""
    if ranks.active:
        dist.broadcast_object_list([error], src=0)


@contextmanager
def preparing(ranks: Ranks) -> Iterator[Callable[[], None]]:
    """Rank 0's preparation of a run: call the `ready()` it yields once the other ranks
    may read the run folder; an error raised before then is announced to them, so that
    they end with it instead of waiting."""
    done: list[bool] = []

    def ready() -> None:
        announce(ranks)
        done.append(True)

    try:
        yield ready
    except BaseException as err:
        if ranks.active and not done:
            announce(ranks, str(err) or type(err).__name__)
        raise


def await_main(ranks: Ranks) -> None:
    """The other ranks wait for rank 0's `announce`; its error becomes theirs."""
    message = [None]
    dist.broadcast_object_list(message, src=0)
    if message[0] is not None:
        raise GlassboxError(f"rank 0 could not prepare the run: {message[0]}")


def shard(batch: tuple[torch.Tensor, ...], ranks: Ranks) -> tuple[torch.Tensor, ...]:
    """This rank's rows of a global batch: rows [rank * b, (rank + 1) * b) of each
    tensor, b = rows / world."""
    if not ranks.active:
        return batch
    rows = batch[0].size(0) // ranks.world
    return tuple(t[ranks.rank * rows : (ranks.rank + 1) * rows] for t in batch)


def mean(value: float, ranks: Ranks, device: str) -> float:
    """The mean of a number over the ranks (the global batch's loss from the slices')."""
    if not ranks.active:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total) / ranks.world
