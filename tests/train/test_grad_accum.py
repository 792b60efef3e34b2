"""Gradient accumulation, proved: k micro-batches of b rows give the same gradient, and so
the same optimizer step, as one batch of k·b rows (fp32), through the trainer's own step:
--grad-accum is a memory trade and never changes what is learned. The same holds across
two ranks, with DDP and with FSDP, against one process on the whole batch.

The optimizer is swapped for plain SGD, whose step is lr times the gradient, so that the
weights compare the gradients themselves: AdamW divides by the root of its second moment,
and a gradient component that is zero up to rounding would then move by ±lr either way.
"""

from __future__ import annotations

import pytest
import torch
from helpers import free_port

from glassbox.config import from_preset
from glassbox.train.objectives import CausalLM
from glassbox.train.trainer import _Session


class FixedRows(CausalLM):
    """Batches that are consecutive slices of one fixed (x, y), `rows` at a time, in order:
    the same data however it is cut into micro-batches."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, rows: int) -> None:
        self.x, self.y, self.rows, self.next = x, y, rows, 0
        self.tokens_per_batch = rows * x.size(1)

    def batch(self, split: str, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        start = self.next % len(self.x)
        self.next += self.rows
        return self.x[start : start + self.rows], self.y[start : start + self.rows]


def session(tmp_path, batch_size: int, grad_accum: int, **changes) -> _Session:
    model_config, train_config = from_preset(
        "induction", run_dir=str(tmp_path / f"run-{batch_size}x{grad_accum}"),
        batch_size=batch_size, grad_accum=grad_accum, device="cpu", dtype="float32",
        lr=0.5, warmup_iters=0, **changes,
    )  # fmt: skip
    steps = _Session(model_config, train_config, callback=None)
    steps.optimizer = torch.optim.SGD(steps.model.parameters(), lr=train_config.lr)
    steps.metrics = open(tmp_path / f"metrics-{batch_size}x{grad_accum}.jsonl", "w")  # noqa: SIM115
    return steps


# An MoE's z-loss is a mean over tokens and accumulates exactly; its balancing loss,
# E * sum_e f_e * P_e, is a product of two batch means, so it is computed per micro-batch
# (as Switch computes it per device) and accumulates only approximately: left out here.
MOE = {"mlp": "moe", "attn_only": False, "n_experts": 4, "moe_balance_coef": 0.0}


@pytest.mark.parametrize("changes", [{}, {"grad_clip": 0.05}, MOE])
def test_k_micro_batches_step_like_one_batch_of_k_times_the_rows(tmp_path, changes):
    k, b = 4, 3
    one = session(tmp_path, batch_size=k * b, grad_accum=1, **changes)
    accumulated = session(tmp_path, batch_size=b, grad_accum=k, **changes)
    torch.testing.assert_close(one.model.state_dict(), accumulated.model.state_dict())
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(one.mc.vocab_size, (3 * k * b, 16), generator=generator)  # 3 steps' worth
    y = torch.randint(one.mc.vocab_size, (3 * k * b, 16), generator=generator)
    one.objective = FixedRows(x, y, k * b)
    accumulated.objective = FixedRows(x, y, b)
    for it in range(3):
        loss_one, _, _ = one.step(it)
        loss_acc, _, _ = accumulated.step(it)
        assert loss_acc == pytest.approx(loss_one, rel=1e-5)  # the mean of equal-sized means
        for (name, p), q in zip(
            one.model.named_parameters(), accumulated.model.parameters(), strict=True
        ):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
        moved = (one.model.tok_emb.weight - accumulated.model.tok_emb.weight).abs().max()
        assert moved < 1e-6
    start = session(tmp_path, batch_size=b, grad_accum=1, **changes).model
    assert (start.tok_emb.weight - one.model.tok_emb.weight).abs().max() > 1e-3  # it moved


def _rank_steps(rank: int, tmp_path, port: int, fsdp: bool, k: int, rows: int, x, y) -> None:
    """One of two ranks: k micro-steps of `rows` global rows each (half of them this
    rank's), three optimizer steps; rank 0 then writes the whole weights."""
    import os

    from safetensors.torch import save_file

    from glassbox.checkpoint import is_sharded
    from glassbox.train.distributed import Ranks

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2"
    )
    torch.set_num_threads(1)
    model_config, train_config = from_preset(
        "induction", run_dir=str(tmp_path / "ranks"), batch_size=rows, grad_accum=k,
        device="cpu", dtype="float32", lr=0.5, warmup_iters=0, fsdp=fsdp,
    )  # fmt: skip
    steps = _Session(model_config, train_config, callback=None, ranks=Ranks(rank, 2, 0))
    steps.optimizer = torch.optim.SGD(steps.model.parameters(), lr=train_config.lr)
    steps.objective = FixedRows(x, y, rows)
    steps.metrics = open(tmp_path / f"metrics-rank{rank}.jsonl", "w")  # noqa: SIM115
    losses = [steps.step(it)[0] for it in range(3)]
    state = {n: p.full_tensor() if is_sharded(p) else p.detach()
             for n, p in steps.model.named_parameters()}  # fmt: skip
    if rank == 0:
        save_file(state, str(tmp_path / "ranks.safetensors"))
        torch.save(torch.tensor(losses), tmp_path / "losses.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp"])
def test_k_micro_batches_on_two_ranks_step_like_one_batch_in_one_process(tmp_path, fsdp):
    """The same proof across processes: 2 ranks (gloo), each accumulating k micro-batches
    of its b rows, take the step one process takes on one batch of 2·k·b rows."""
    from safetensors.torch import load_file

    k, b = 2, 3
    one = session(tmp_path, batch_size=2 * k * b, grad_accum=1)
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(one.mc.vocab_size, (3 * 2 * k * b, 16), generator=generator)
    y = torch.randint(one.mc.vocab_size, (3 * 2 * k * b, 16), generator=generator)
    one.objective = FixedRows(x, y, 2 * k * b)
    losses = [one.step(it)[0] for it in range(3)]
    torch.multiprocessing.spawn(
        _rank_steps, args=(tmp_path, free_port(), fsdp, k, 2 * b, x, y), nprocs=2, join=True
    )
    ranks = load_file(str(tmp_path / "ranks.safetensors"))
    for name, p in one.model.named_parameters():
        torch.testing.assert_close(ranks[name], p.detach(), rtol=1e-5, atol=1e-6, msg=name)
    got = torch.load(tmp_path / "losses.pt", weights_only=True).tolist()
    assert got == pytest.approx(losses, rel=1e-5)
