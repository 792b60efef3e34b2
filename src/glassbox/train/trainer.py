"""The training loop, from a text to a run directory you can sample from.

`train` starts a run; `resume` continues one from its last checkpoint. Both end in the
same loop, which is written to be replayed exactly: the data batches come from their own
seeded generator and every RNG state is saved with the checkpoint, so on the CPU a run
resumed from a checkpoint computes bit-for-bit the losses of a run never interrupted.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from glassbox import runs
from glassbox.checkpoint import (
    CheckpointError,
    is_sharded,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)
from glassbox.config import DECODER_TASKS, ModelConfig, TrainConfig, override
from glassbox.data import TokenDataset, corpus_name, iter_text, load_text, write_tokens
from glassbox.data.tasks import task_from_config
from glassbox.data.tokens import TRAIN_FRACTION
from glassbox.device import autocast, resolve_device, tune_cpu_allocator
from glassbox.errors import GlassboxError
from glassbox.models import build_model
from glassbox.tokenizers import BPETokenizer, CharTokenizer, Tokenizer
from glassbox.train import distributed, finetune, tensorboard
from glassbox.train.estimate import estimate_loss
from glassbox.train.objectives import build_objective
from glassbox.train.optim import configure_optimizer, lr_at, set_lr

# What may change when a run is resumed: how long, where and how fast it runs. (The replay
# is exact only if device and dtype stay as they were.)
RESUMABLE_KEYS = ("max_iters", "device", "compile", "threads", "dtype", "fsdp", "tensorboard")


class TrainingDiverged(GlassboxError):
    """The loss became NaN or infinite; the last good checkpoint is left untouched."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int  # iterations completed
    train_loss: float  # from the last evaluation
    val_loss: float
    best_val_loss: float
    ms_per_iter: list[float] = field(default_factory=list)  # this session's steps only


def train(
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    callback: Callable[[dict[str, Any]], None] | None = None,
    given: Collection[str] | None = None,
) -> TrainResult:
    """Tokenize the data (or set up the task), build the model that model_config.arch
    names and train it, writing everything to run_dir.

    given: the config fields the user set (the CLI passes the flags typed). With
    init_from, each is checked against the source model (glassbox.train.finetune.adopt);
    None counts every field that differs from its default.

    >>> from glassbox.config import from_preset
    >>> result = train(*from_preset("char-tiny", run_dir="runs/tiny"))  # doctest: +SKIP
    """
    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig()
    run_dir = Path(train_config.run_dir)
    ranks = distributed.from_env()
    distributed.start(ranks, resolve_device(train_config.device), train_config.batch_size)
    distributed.agree(ranks, "config", {**vars(model_config), **vars(train_config)})
    if not ranks.main:  # rank 0 prepares the run folder; this rank trains from it
        distributed.await_main(ranks)
        model_config, train_config = runs.load_configs(run_dir)
        return _loop(_Session(model_config, train_config, callback, ranks=ranks), 0, progress=False)
    with distributed.preparing(ranks) as ready:
        return _train_main(
            model_config, train_config, overwrite, progress, callback, given, ranks, ready
        )


def _train_main(
    model_config: ModelConfig, train_config: TrainConfig, overwrite: bool, progress: bool,
    callback, given, ranks: distributed.Ranks, ready: Callable[[], None],
) -> TrainResult:  # fmt: skip
    """train() on rank 0 (or alone): check, prepare the run folder, train."""
    run_dir = Path(train_config.run_dir)
    # Settings that cannot work fail before anything is written (or overwritten).
    source = text = None
    if train_config.init_from:  # the source's weights, shape and tokenizer (finetune.py)
        source = finetune.load_source(train_config.init_from)
        model_config, train_config = finetune.adopt(source, model_config, train_config, given)
        text = (source.tokenizer, finetune.corpus_chunks(source.tokenizer, train_config))
    finetune.check(model_config, train_config)
    if train_config.tensorboard:
        tensorboard.check_installed()
    if train_config.task:
        tokenizer, corpus = _prepare_task(model_config, train_config)
    elif model_config.arch == "encoder-decoder":
        raise GlassboxError(
            "an encoder-decoder trains on a source -> target task: pass --task "
            "(copy, reverse, sort or addition)"
        )
    if train_config.eval_full and model_config.arch != "decoder":
        raise GlassboxError(
            f"--eval-full scores a decoder on its val split; an {model_config.arch} is "
            "scored by its own objective (leave --eval-full out)"
        )
    if run_dir.exists() and not run_dir.is_dir():
        raise GlassboxError(f"--run {run_dir} is a file, not a folder")
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with runs.RunLock(run_dir):
            runs.remove_temp_files(run_dir)
            # A folder whose run never reached its first checkpoint holds nothing to lose.
            started = (run_dir / runs.CHECKPOINT).exists()
            if (run_dir / runs.CONFIG).exists() and started and not overwrite:
                raise GlassboxError(
                    f"{run_dir} already holds a run: resume it with --resume, "
                    "pick another --run, or pass --overwrite"
                )
            staged = run_dir / f".{runs.TOKENS}.tmp{os.getpid()}"
            if not train_config.task:  # the new corpus is checked before the old run goes
                tokenizer, corpus = _prepare_corpus(model_config, train_config, staged, text)
            runs.remove_run_files(run_dir)  # only what a run writes, nothing else there
            if staged.exists():
                staged.replace(run_dir / runs.TOKENS)
            vocab_size = runs.model_vocab_size(tokenizer, model_config.arch)
            model_config = override(model_config, {"vocab_size": vocab_size})
            runs.write_json(run_dir / runs.TOKENIZER, tokenizer.to_dict())
            runs.save_config(run_dir, model_config, train_config, corpus=corpus)
            init = source.state if source is not None else None
            ready()  # prepared: the other ranks may read the folder
            session = _Session(model_config, train_config, callback, init, ranks=ranks)
            return _loop(session, 0, progress=progress)
    except BaseException:
        if created:  # nothing of the failed run stays where there was no folder before
            _remove_if_empty(run_dir)
        raise


def resume(
    run_dir: Path | str,
    *,
    progress: bool = True,
    callback: Callable[[dict[str, Any]], None] | None = None,
    **changes: Any,
) -> TrainResult:
    """Continue a run from its last checkpoint; `changes` may set RESUMABLE_KEYS only.

    A run killed before its first checkpoint starts again from iteration 0, which is the
    same as continuing it. Everything is checked before the run's files change.
    """
    model_config, train_config = runs.load_configs(run_dir)
    frozen = sorted(set(changes) - set(RESUMABLE_KEYS))
    if frozen:
        raise GlassboxError(
            f"cannot change {', '.join(frozen)} when resuming; "
            f"only {', '.join(RESUMABLE_KEYS)} may change"
        )
    train_config = override(train_config, {**changes, "run_dir": str(run_dir)})
    ranks = distributed.from_env()
    if ranks.active:
        return _resume_ranks(model_config, train_config, callback, progress, ranks)
    with runs.RunLock(run_dir):
        runs.remove_temp_files(run_dir)
        started = (Path(run_dir) / runs.CHECKPOINT).exists()
        init = None  # a fine-tuning run killed before its first checkpoint: the source again
        if train_config.init_from and not started:
            init = finetune.load_source(train_config.init_from).state
        session = _Session(model_config, train_config, callback, init)
        start = session.restore() if started else 0
        _continue_at(start, train_config)
        return _loop(session, start, progress=progress)


def _continue_at(start: int, tc: TrainConfig) -> None:
    """Before a resumed run continues at iteration `start`: check that max_iters reaches
    it, drop the log rows after it, and record the run's new settings."""
    if tc.max_iters < start:
        raise GlassboxError(
            f"{tc.run_dir} is already at iteration {start}; --max-iters must be at least "
            f"that (it counts from the start of the run, not from now)"
        )
    _truncate_metrics(Path(tc.run_dir) / runs.METRICS, start)
    runs.update_train_config(tc.run_dir, tc)


def _resume_ranks(
    mc: ModelConfig, tc: TrainConfig, callback, progress: bool, ranks: distributed.Ranks
) -> TrainResult:
    """resume() under torchrun, with any number of ranks: the run's data order is one
    generator that every rank replays, so the checkpoint does not depend on the ranks
    that wrote it. Rank 0 checks the checkpoint and trims the log before the others
    start; every rank then restores the same checkpoint."""
    run_dir = Path(tc.run_dir)
    distributed.start(ranks, resolve_device(tc.device), tc.batch_size)
    distributed.agree(ranks, "resumed run's settings", vars(tc))
    checkpoint = run_dir / runs.CHECKPOINT
    if tc.init_from and not checkpoint.exists():
        raise GlassboxError(
            f"{run_dir} was killed before its first checkpoint: start it again with "
            "`glassbox train`, or resume it with one process"
        )
    if not ranks.main:
        distributed.await_main(ranks)
        session = _Session(mc, tc, callback, ranks=ranks)
        return _loop(session, session.restore() if checkpoint.exists() else 0, progress=False)
    with distributed.preparing(ranks) as ready, runs.RunLock(run_dir):
        runs.remove_temp_files(run_dir)
        start = int(read_meta(checkpoint)["step"]) if checkpoint.exists() else 0
        _continue_at(start, tc)
        ready()
        session = _Session(mc, tc, callback, ranks=ranks)
        return _loop(session, session.restore() if start else 0, progress=progress)


def _loop(session: _Session, start: int, *, progress: bool) -> TrainResult:
    """Iterations start..max_iters, evaluating and saving on schedule. A run resumed at
    `start` has already evaluated there."""
    tc = session.tc
    main = session.ranks.main
    if main:  # only rank 0 writes to the run folder
        session.metrics = open(session.run_dir / runs.METRICS, "a", encoding="utf-8")  # noqa: SIM115
        if tc.tensorboard:
            session.board = tensorboard.Board(session.run_dir, start, session.last_eval)
    progress = progress and main
    if progress:
        tqdm.write(finetune.describe_trainable(session.model))
        if session.board is not None:
            tqdm.write(f"tensorboard: tensorboard --logdir {session.board.log_dir}")
    bar = tqdm(total=tc.max_iters, initial=start, disable=not progress, unit="it", desc="train")
    try:
        for it in range(start, tc.max_iters + 1):
            due = it % tc.eval_interval == 0 or it == tc.max_iters
            if due and (it > start or start == 0):
                train_loss, val_loss = session.evaluate_and_save(it)
                if progress:
                    bar.write(f"iter {it}: train loss {train_loss:.4f}, val loss {val_loss:.4f}")
            if it == tc.max_iters:
                break
            loss, lr, tokens_per_s = session.step(it)
            routing = {
                "imbalance": f"{session.routing['expert_imbalance']:.2f}",
                "dropped": f"{session.routing['dropped']:.1%}",
            } if session.routing else {}  # fmt: skip
            bar.set_postfix(
                loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_s:,.0f}", **routing,
                refresh=False,
            )  # fmt: skip
            bar.update()
    finally:
        bar.close()
        if main:
            session.metrics.close()
        if session.board is not None:
            session.board.close()
    if main:
        _plot(session.run_dir)
    return TrainResult(
        session.run_dir, tc.max_iters, *session.last_eval, session.best_val, session.times
    )


def _remove_if_empty(run_dir: Path) -> None:
    """Remove a folder that holds nothing but our lock file (and the lock file)."""
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {runs.LOCK}:
        (run_dir / runs.LOCK).unlink(missing_ok=True)
        run_dir.rmdir()


class _Session:
    """The state of one training session: model, optimizer, RNG and the metrics log."""

    def __init__(
        self, mc: ModelConfig, tc: TrainConfig, callback, init_state=None,
        ranks: distributed.Ranks = distributed.SINGLE,
    ) -> None:  # fmt: skip
        self.mc, self.tc, self.callback, self.ranks = mc, tc, callback, ranks
        self.run_dir = Path(tc.run_dir)
        self.objective = build_objective(mc, tc)
        self.device = distributed.start(ranks, resolve_device(tc.device), tc.batch_size)
        if tc.threads:
            torch.set_num_threads(tc.threads)
        if self.device == "cpu":
            tune_cpu_allocator()
        torch.manual_seed(tc.seed)  # the initial weights, and dropout from then on
        self.model = build_model(mc)
        if init_state is not None:  # --init-from: the source's weights replace the fresh ones
            self.model.load_state_dict(init_state)
        finetune.adapt(self.model, tc)  # LoRA adapters and frozen parts, as tc says
        self.model = self.model.to(self.device)
        if tc.fsdp:  # before the optimizer, which must hold the sharded parameters
            distributed.shard_model(self.model, ranks, self.device, tc.dtype)
        self.optimizer = configure_optimizer(self.model, tc, self.device)
        self.batches = torch.Generator().manual_seed(tc.seed)  # the data order, on its own
        forward = self.model
        if ranks.active and not tc.fsdp:  # gradients averaged; rank 0's weights copied out
            from torch.nn.parallel import DistributedDataParallel

            forward = DistributedDataParallel(
                self.model, device_ids=[self.device] if self.device.startswith("cuda") else None,
                find_unused_parameters=mc.mlp == "moe",  # experts no token picked this step
            )  # fmt: skip
        self.forward = torch.compile(forward) if tc.compile else forward  # save `model`
        self.best_val = math.inf
        self.last_eval = (math.nan, math.nan)  # (train loss, val loss)
        self.times: list[float] = []  # ms per step, this session only
        self.tokens_per_step = self.objective.tokens_per_batch * tc.grad_accum
        self.metrics = None  # opened by _loop, after a resume has trimmed the file
        self.board: tensorboard.Board | None = None  # --tensorboard, on rank 0
        self.routing: dict[str, Any] = {}  # routing_stats of the latest step

    def restore(self) -> int:
        """Load the last checkpoint; returns the iteration to continue from."""
        path = self.run_dir / runs.CHECKPOINT
        rng, meta = load_checkpoint(path, self.model, self.optimizer)
        for key in ("step", "best_val_loss", "train_loss", "val_loss"):
            value = meta.get(key)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise CheckpointError(f"{path} has corrupt metadata: no number for {key!r}")
        for name, now in (("torch", torch.get_rng_state()), ("batches", self.batches.get_state())):
            saved = rng.get(name)
            if saved is None or saved.dtype != now.dtype or saved.shape != now.shape:
                raise CheckpointError(f"{path} has no valid {name!r} RNG state to resume from")
        torch.set_rng_state(rng["torch"])
        self.batches.set_state(rng["batches"])
        cuda = [rng[k] for k in sorted(rng) if k.startswith("cuda.")]
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda)
        self.best_val = meta["best_val_loss"]
        self.last_eval = (meta["train_loss"], meta["val_loss"])
        return int(meta["step"])

    def rng_state(self) -> dict[str, torch.Tensor]:
        state = {"torch": torch.get_rng_state(), "batches": self.batches.get_state()}
        if torch.cuda.is_available():
            for i, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
                state[f"cuda.{i}"] = cuda_state
        return state

    def log(self, row: dict[str, Any]) -> None:
        if not self.ranks.main:
            return
        self.metrics.write(json.dumps(row) + "\n")
        self.metrics.flush()
        if self.board is not None:
            self.board.write(row)
        if self.callback is not None:
            self.callback(row)

    def evaluate_and_save(self, it: int) -> tuple[float, float]:
        """Estimate both losses, then checkpoint (and keep the weights if val improved)."""
        self.model.eval()
        losses = estimate_loss(
            self.forward,
            self.objective,
            eval_iters=self.tc.eval_iters,
            seed=self.tc.seed + 1,
            device=self.device,
            dtype=self.tc.dtype,
            full_val=self.tc.eval_full,
        )
        self.model.train()
        # the same on every rank (the same batches), but one rounding must decide `improved`
        train_loss, val_loss = (distributed.mean(losses[k], self.ranks, self.device)
                                for k in ("train", "val"))  # fmt: skip
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise TrainingDiverged(
                f"the evaluation at iteration {it} gave a loss of {train_loss} (train) and "
                f"{val_loss} (val); training stopped without saving. The last good checkpoint "
                f"is still in {self.run_dir}; try a lower --lr"
            )
        self.last_eval = (train_loss, val_loss)
        self.log({"kind": "eval", "iter": it, "train_loss": train_loss, "val_loss": val_loss})
        improved = val_loss < self.best_val
        self.best_val = min(self.best_val, val_loss)
        # Rank 0 writes the weights every rank holds; a sharded model, every rank its rows.
        shards = distributed.shards(self.ranks) if self.tc.fsdp else None
        if not self.ranks.main and shards is None:
            return train_loss, val_loss
        if improved:
            save_checkpoint(
                self.run_dir / runs.BEST, self.model, meta={"step": it, "val_loss": val_loss},
                shards=shards,
            )  # fmt: skip
        meta = {
            "step": it,
            "best_val_loss": self.best_val,
            "train_loss": train_loss,
            "val_loss": val_loss,
        }
        save_checkpoint(
            self.run_dir / runs.CHECKPOINT, self.model, self.optimizer, self.rng_state(), meta,
            shards=shards,
        )  # fmt: skip
        return train_loss, val_loss

    def step(self, it: int) -> tuple[float, float, float]:
        """One optimizer step over grad_accum micro-batches: (mean loss, lr, tokens/s).

        A non-finite loss stops before the optimizer step, so no bad weights are saved.
        """
        tc, t0 = self.tc, time.perf_counter()
        lr = lr_at(it, tc)
        set_lr(self.optimizer, lr, tc)  # Muon's groups: the same schedule at muon_lr
        loss_sum = 0.0
        for micro in range(tc.grad_accum):
            batch = distributed.shard(self.objective.batch("train", self.batches), self.ranks)
            batch = tuple(t.to(self.device) for t in batch)
            last = micro == tc.grad_accum - 1  # gradients are averaged once, at the end
            with distributed.gradient_sync(self.model, self.forward, self.ranks, last):
                with autocast(self.device, tc.dtype):
                    loss = self.objective.loss(self.forward, batch) / tc.grad_accum
                loss.backward()
            loss_sum += loss.item()
        loss_sum = distributed.mean(loss_sum, self.ranks, self.device)  # the global batch's
        if not math.isfinite(loss_sum):
            raise TrainingDiverged(
                f"loss became {loss_sum} at iteration {it}; training stopped. The last good "
                f"checkpoint is still in {self.run_dir}; try a lower --lr"
            )
        # clipping measures the norm; with grad_clip 0 it is measured for the log alone
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), tc.grad_clip if tc.grad_clip > 0 else math.inf
        )
        if is_sharded(grad_norm):
            grad_norm = grad_norm.full_tensor()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        self.times.append(dt * 1000)
        tokens_per_s = self.tokens_per_step / dt
        self.routing = self.model.routing_stats()  # experts' balance, last micro-batch
        row = {"kind": "train", "iter": it, "loss": loss_sum, "lr": lr, "ms": dt * 1000,
               "tokens_per_s": tokens_per_s, "grad_norm": float(grad_norm),
               **self.routing}  # fmt: skip
        self.log(row)
        return loss_sum, lr, tokens_per_s


def _prepare_task(mc: ModelConfig, tc: TrainConfig) -> tuple[Tokenizer, dict[str, Any]]:
    """A synthetic task needs no corpus: only its tokenizer, and room for its sequences."""
    task = task_from_config(tc)
    if tc.task in DECODER_TASKS:  # a decoder reads the whole sequence
        if mc.arch != "decoder":
            raise GlassboxError(f"task {tc.task} trains a decoder, not {mc.arch}")
        if mc.position_table and task.seq_len - 1 > mc.block_size:
            raise GlassboxError(
                f"task {tc.task} feeds {task.seq_len - 1} tokens, longer than block_size "
                f"{mc.block_size}; raise --block-size or lower --task-max-len"
            )
        return task.tokenizer, {"name": f"task:{tc.task}", "tokens": 0}
    if mc.arch != "encoder-decoder":
        raise GlassboxError(
            f"task {tc.task} maps a source to a target: it needs --arch encoder-decoder, "
            f"not {mc.arch}"
        )
    longest = max(task.max_source_len, task.max_target_len)
    if mc.position_table and longest > mc.block_size:
        raise GlassboxError(
            f"task {tc.task} makes sequences of up to {longest} tokens, longer than "
            f"block_size {mc.block_size}; raise --block-size or lower --task-max-len"
        )
    return task.tokenizer, {"name": f"task:{tc.task}", "tokens": 0}


def _prepare_corpus(
    mc: ModelConfig,
    tc: TrainConfig,
    path: Path,
    text: tuple[Tokenizer, Iterable[str]] | None = None,
) -> tuple[Tokenizer, dict[str, Any]]:
    """Build the tokenizer (unless `text` brings one, with the chunks to encode) and write
    the corpus's ids to `path`, checking that the corpus is long enough for block_size
    (the file is removed if it is not)."""
    tokenizer, chunks = text or _build_tokenizer(tc)
    try:
        n_tokens = write_tokens(chunks, tokenizer.encode, tokenizer.vocab_size, path)
        TokenDataset(path, tokenizer.vocab_size).check_fits(mc.block_size)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return tokenizer, {"name": corpus_name(tc.data), "tokens": n_tokens}


def _build_tokenizer(tc: TrainConfig) -> tuple[Tokenizer, Iterable[str]]:
    """The run's tokenizer, and the text to encode with it (in chunks).

    The character alphabet comes from the whole text, so that a character seen only in the
    validation split can still be encoded. BPE learns its merges from the training split
    alone (the first TRAIN_FRACTION of the characters), so that the validation loss is
    measured on text the tokenizer was not fitted to; the text is then encoded in one
    piece, since a chunk boundary could cut a word that BPE would have merged.
    """
    if tc.tokenizer == "bpe":
        text = load_text(tc.data)
        train_text = text[: int(len(text) * TRAIN_FRACTION)]
        return BPETokenizer.train(train_text, tc.bpe_vocab_size), [text]
    return CharTokenizer.train(iter_text(tc.data)), iter_text(tc.data)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop rows logged after the checkpoint, which the resumed run will log again, and
    any line a kill tore in half."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
            if row["iter"] < step or (row["kind"] == "eval" and row["iter"] == step > 0):
                keep.append(line + "\n")
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a torn or foreign line: the run logs its rows again from `step`
    runs.atomic_write(path, "".join(keep).encode())


def _plot(run_dir: Path) -> None:
    from glassbox.plot import plot_losses

    plot_losses(run_dir / runs.METRICS, run_dir / runs.PLOT)
