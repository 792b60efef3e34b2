"""The training loop, from a text to a run directory you can sample from.

`train` starts a run; `resume` continues one from its last checkpoint. Both end in the
same loop, which is written to be replayed exactly: the data batches come from their own
seeded generator and every RNG state is saved with the checkpoint, so on the CPU a run
resumed from a checkpoint computes bit-for-bit the losses of a run never interrupted.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from glassbox import runs
from glassbox.config import ModelConfig, TrainConfig, override
from glassbox.data import TokenDataset, corpus_name, iter_text, write_tokens
from glassbox.device import autocast, resolve_device, tune_cpu_allocator
from glassbox.errors import GlassboxError
from glassbox.models.gpt import GPT, lm_loss
from glassbox.tokenizers import CharTokenizer
from glassbox.train.checkpoint import load_checkpoint, save_checkpoint
from glassbox.train.evaluate import estimate_loss
from glassbox.train.optim import configure_optimizer, lr_at

# What may change when a run is resumed: nothing that alters the maths already done.
RESUMABLE_KEYS = ("max_iters", "device", "compile", "threads")


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
) -> TrainResult:
    """Tokenize the data, build a GPT and train it, writing everything to run_dir.

    >>> from glassbox.config import from_preset
    >>> result = train(*from_preset("char-tiny", run_dir="runs/tiny"))  # doctest: +SKIP
    """
    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig()
    run_dir = Path(train_config.run_dir)
    if (run_dir / runs.CONFIG).exists():
        if not overwrite:
            raise GlassboxError(
                f"{run_dir} already holds a run: resume it with --resume, "
                "pick another --run-dir, or pass --overwrite"
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)

    spec = train_config.data
    tokenizer = CharTokenizer.train(iter_text(spec))  # one pass for the alphabet...
    n_tokens = write_tokens(  # ...and one to write the ids
        iter_text(spec), tokenizer.encode, tokenizer.vocab_size, run_dir / runs.TOKENS
    )
    model_config = override(model_config, {"vocab_size": tokenizer.vocab_size})
    dataset = TokenDataset(run_dir / runs.TOKENS, tokenizer.vocab_size)
    dataset.check_fits(model_config.block_size)
    runs.write_json(run_dir / runs.TOKENIZER, tokenizer.to_dict())
    runs.save_config(
        run_dir, model_config, train_config, corpus={"name": corpus_name(spec), "tokens": n_tokens}
    )
    (run_dir / runs.METRICS).unlink(missing_ok=True)
    return _loop(
        model_config, train_config, dataset, resume=False, progress=progress, callback=callback
    )


def resume(
    run_dir: Path | str,
    *,
    progress: bool = True,
    callback: Callable[[dict[str, Any]], None] | None = None,
    **changes: Any,
) -> TrainResult:
    """Continue a run from its last checkpoint; `changes` may set RESUMABLE_KEYS only."""
    model_config, train_config = runs.load_configs(run_dir)
    frozen = sorted(set(changes) - set(RESUMABLE_KEYS))
    if frozen:
        raise GlassboxError(
            f"cannot change {', '.join(frozen)} when resuming; "
            f"only {', '.join(RESUMABLE_KEYS)} may change"
        )
    train_config = override(train_config, {**changes, "run_dir": str(run_dir)})
    runs.save_config(
        run_dir,
        model_config,
        train_config,
        **{
            k: v
            for k, v in runs.read_config(run_dir).items()
            if k not in ("format", "version", "model", "train")
        },
    )
    dataset = TokenDataset(Path(run_dir) / runs.TOKENS, model_config.vocab_size)
    return _loop(
        model_config, train_config, dataset, resume=True, progress=progress, callback=callback
    )


def _rng_state(batch_generator: torch.Generator) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state(), "batches": batch_generator.get_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            state[f"cuda.{i}"] = s
    return state


def _set_rng_state(state: dict[str, torch.Tensor], batch_generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    batch_generator.set_state(state["batches"])
    cuda = [state[k] for k in sorted(state) if k.startswith("cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def _loop(
    mc: ModelConfig,
    tc: TrainConfig,
    dataset: TokenDataset,
    *,
    resume: bool,
    progress: bool,
    callback: Callable[[dict[str, Any]], None] | None,
) -> TrainResult:
    run_dir = Path(tc.run_dir)
    device = resolve_device(tc.device)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    if device == "cpu":
        tune_cpu_allocator()
    torch.manual_seed(tc.seed)
    model = GPT(mc).to(device)
    optimizer = configure_optimizer(model, tc, device)
    batches = torch.Generator().manual_seed(tc.seed)

    start, best_val, last_eval = 0, math.inf, {"train": math.nan, "val": math.nan}
    if resume:
        rng, meta = load_checkpoint(run_dir / runs.CHECKPOINT, model, optimizer)
        _set_rng_state(rng, batches)
        start, best_val = meta["step"], meta["best_val_loss"]
        last_eval = {"train": meta["train_loss"], "val": meta["val_loss"]}
        _truncate_metrics(run_dir / runs.METRICS, start)

    forward = torch.compile(model) if tc.compile else model  # state is saved from `model`
    tokens_per_iter = tc.batch_size * tc.grad_accum * mc.block_size
    times: list[float] = []
    bar = tqdm(
        total=tc.max_iters,
        initial=start,
        disable=not progress,
        unit="it",
        dynamic_ncols=True,
        desc="train",
    )
    with open(run_dir / runs.METRICS, "a", encoding="utf-8") as metrics:

        def log(row: dict[str, Any]) -> None:
            metrics.write(json.dumps(row) + "\n")
            metrics.flush()
            if callback is not None:
                callback(row)

        for it in range(start, tc.max_iters + 1):
            evaluate_now = it % tc.eval_interval == 0 or it == tc.max_iters
            if evaluate_now and not (resume and it == start):
                model.eval()
                last_eval = estimate_loss(
                    forward,
                    dataset,
                    batch_size=tc.batch_size,
                    block_size=mc.block_size,
                    eval_iters=tc.eval_iters,
                    seed=tc.seed + 1,
                    device=device,
                )
                model.train()
                log(
                    {
                        "kind": "eval",
                        "iter": it,
                        "train_loss": last_eval["train"],
                        "val_loss": last_eval["val"],
                    }
                )
                if last_eval["val"] < best_val:
                    best_val = last_eval["val"]
                    save_checkpoint(
                        run_dir / runs.BEST, model, meta={"step": it, "val_loss": best_val}
                    )
                meta = {
                    "step": it,
                    "best_val_loss": best_val,
                    "train_loss": last_eval["train"],
                    "val_loss": last_eval["val"],
                }
                save_checkpoint(
                    run_dir / runs.CHECKPOINT, model, optimizer, _rng_state(batches), meta
                )
                if progress:
                    bar.write(
                        f"iter {it}: train loss {last_eval['train']:.4f}, "
                        f"val loss {last_eval['val']:.4f}"
                    )
            if it == tc.max_iters:
                break

            t0 = time.perf_counter()
            lr = lr_at(it, tc)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum = 0.0
            for _ in range(tc.grad_accum):
                x, y = dataset.batch("train", tc.batch_size, mc.block_size, batches)
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with autocast(device):
                    loss = lm_loss(forward(x), y) / tc.grad_accum
                loss.backward()
                loss_sum += loss.item()
            if not math.isfinite(loss_sum):
                bar.close()
                raise TrainingDiverged(
                    f"loss became {loss_sum} at iteration {it}; training stopped. The last "
                    f"good checkpoint is still in {run_dir}; try a lower --lr"
                )
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            dt = time.perf_counter() - t0
            times.append(dt * 1000)
            log(
                {
                    "kind": "train",
                    "iter": it,
                    "loss": loss_sum,
                    "lr": lr,
                    "ms": dt * 1000,
                    "tokens_per_s": tokens_per_iter / dt,
                }
            )
            bar.set_postfix(
                loss=f"{loss_sum:.4f}",
                lr=f"{lr:.2e}",
                tok_s=f"{tokens_per_iter / dt:,.0f}",
                refresh=False,
            )
            bar.update()
    bar.close()
    _plot(run_dir)
    return TrainResult(run_dir, tc.max_iters, last_eval["train"], last_eval["val"], best_val, times)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop rows logged after the checkpoint, which the resumed run will log again."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["iter"] < step or (row["kind"] == "eval" and row["iter"] == step):
            keep.append(line + "\n")
    runs.atomic_write(path, "".join(keep).encode())


def _plot(run_dir: Path) -> None:
    from glassbox.plot import plot_losses

    plot_losses(run_dir / runs.METRICS, run_dir / runs.PLOT)
