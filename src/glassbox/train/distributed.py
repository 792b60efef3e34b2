"""Training on several processes with DistributedDataParallel, started by torchrun:

    torchrun --standalone --nproc_per_node 2 -m glassbox train --data shakespeare

Every rank builds the same model from the same seed (DDP also copies rank 0's weights to
the others when it wraps the model), draws the same global batch of `batch_size` rows
from the same data generator, and trains on its own slice of it; DDP averages the
gradients, so a step is the step one process would take on the whole batch. Only rank 0
touches the run folder (corpus, config, checkpoints, metrics, progress bar); the others
wait until it has prepared the run and then read it. Backend nccl on CUDA, gloo on the CPU.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from glassbox.errors import GlassboxError

TIMEOUT = timedelta(minutes=10)  # how long a rank waits for the others at a collective


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
        dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    return device


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
