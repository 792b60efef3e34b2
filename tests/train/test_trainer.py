import json
import math
from pathlib import Path

import pytest
import torch

from glassbox import runs
from glassbox.data import DataError
from glassbox.errors import GlassboxError
from glassbox.train.trainer import TrainingDiverged, resume, train


def train_rows(run_dir):
    rows = [json.loads(line) for line in (run_dir / runs.METRICS).read_text().splitlines()]
    return [(r["iter"], r["loss"]) for r in rows if r["kind"] == "train"], [
        (r["iter"], r["val_loss"]) for r in rows if r["kind"] == "eval"
    ]


def test_a_run_writes_everything_needed_to_sample_and_resume(tiny_configs):
    result = train(*tiny_configs(), progress=False)
    run_dir = result.run_dir
    for name in (
        runs.CONFIG,
        runs.TOKENIZER,
        runs.TOKENS,
        runs.CHECKPOINT,
        runs.BEST,
        runs.METRICS,
        runs.PLOT,
    ):
        assert (run_dir / name).is_file(), name
    assert (run_dir / runs.PLOT).read_bytes()[:4] == b"\x89PNG"
    steps, evals = train_rows(run_dir)
    assert [i for i, _ in steps] == list(range(12))
    assert [i for i, _ in evals] == [0, 4, 8, 12]
    assert evals[-1][1] < evals[0][1]  # it learned something
    assert result.best_val_loss == min(v for _, v in evals)


def test_resumed_run_matches_the_uninterrupted_one_exactly(tiny_configs, tmp_path):
    # dropout > 0 so that the RNG state of the model matters too
    model_config, train_config = tiny_configs(dropout=0.1, run_dir=str(tmp_path / "full"))
    train(model_config, train_config, progress=False)
    full_steps, full_evals = train_rows(tmp_path / "full")

    model_config, train_config = tiny_configs(dropout=0.1, run_dir=str(tmp_path / "crash"))

    def crash_after_iteration_6(row):
        if row["kind"] == "train" and row["iter"] == 6:
            raise KeyboardInterrupt  # the checkpoint of iteration 4 is the last one

    with pytest.raises(KeyboardInterrupt):
        train(model_config, train_config, progress=False, callback=crash_after_iteration_6)
    resume(tmp_path / "crash", progress=False)
    steps, evals = train_rows(tmp_path / "crash")
    assert steps == full_steps  # bit-for-bit equal losses, and no duplicated rows
    assert evals == full_evals


def test_resume_can_extend_a_run_but_not_change_its_maths(tiny_configs):
    result = train(*tiny_configs(), progress=False)
    longer = resume(result.run_dir, progress=False, max_iters=16)
    assert longer.step == 16
    with pytest.raises(GlassboxError, match="cannot change lr"):
        resume(result.run_dir, progress=False, lr=1.0)


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tiny_configs, monkeypatch):
    from glassbox.train.objectives import CausalLM

    model_config, train_config = tiny_configs()
    run_dir = tmp = train_config.run_dir
    real_loss = CausalLM.loss

    def loss_that_explodes(self, model, batch, *, train=True, calls=[0]):  # noqa: B006
        calls[0] += train  # counts training steps, not evaluation batches
        blow_up = train and calls[0] == 7
        return real_loss(self, model, batch) * (math.nan if blow_up else 1.0)

    monkeypatch.setattr(CausalLM, "loss", loss_that_explodes)
    with pytest.raises(TrainingDiverged, match="loss became nan at iteration"):
        train(model_config, train_config, progress=False)
    meta = runs.read_config(tmp)
    assert meta["model"]["n_layer"] == 2
    from glassbox.checkpoint import read_meta

    assert read_meta(runs.checkpoint_path(run_dir, "last"))["step"] == 4
    weights = runs.load_model(run_dir)[0].state_dict()
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_an_existing_run_is_not_overwritten_silently(tiny_configs):
    result = train(*tiny_configs(), progress=False)
    with pytest.raises(GlassboxError, match="already holds a run"):
        train(*tiny_configs(), progress=False)
    assert train(*tiny_configs(), progress=False, overwrite=True).run_dir == result.run_dir


def test_text_shorter_than_the_context_is_an_error(tiny_configs, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("too short")
    with pytest.raises(DataError, match="fewer than block_size"):
        train(*tiny_configs(data=str(short)), progress=False)


def test_bfloat16_autocast_on_the_cpu_trains_and_keeps_fp32_weights(tiny_configs):
    result = train(*tiny_configs(dtype="bfloat16"), progress=False)
    model, _ = runs.load_model(result.run_dir)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert math.isfinite(result.val_loss)


def test_a_task_run_resumes_exactly(tmp_path):
    from glassbox.config import from_preset

    def configs(run: str, iters: int):
        return from_preset(
            "seq2seq", run_dir=str(tmp_path / run), max_iters=iters, lr_decay_iters=8,
            eval_interval=4, eval_iters=2, n_embd=32, batch_size=8, device="cpu",
        )  # fmt: skip

    whole = train(*configs("whole", 8), progress=False)
    train(*configs("split", 4), progress=False)
    resumed = resume(tmp_path / "split", progress=False, max_iters=8)
    assert resumed.val_loss == whole.val_loss


def test_a_nan_first_seen_at_an_evaluation_keeps_the_last_good_checkpoint(
    tiny_configs, monkeypatch
):
    """Weights can turn NaN in a step whose own loss was finite; the next evaluation then
    sees NaN, and must stop without saving, so that resume and sample still work."""
    import glassbox.train.trainer as trainer

    model_config, train_config = tiny_configs()
    run_dir = Path(train_config.run_dir)
    real_estimate = trainer.estimate_loss
    calls = {"n": 0}

    def estimate_then_nan(*args, **kwargs):
        calls["n"] += 1
        losses = real_estimate(*args, **kwargs)
        return {k: math.nan for k in losses} if calls["n"] == 3 else losses

    monkeypatch.setattr(trainer, "estimate_loss", estimate_then_nan)
    with pytest.raises(TrainingDiverged, match="evaluation at iteration 8.*without saving"):
        train(model_config, train_config, progress=False)
    from glassbox.checkpoint import read_meta

    assert read_meta(run_dir / runs.CHECKPOINT)["step"] == 4  # the iteration-8 state was not saved
    monkeypatch.setattr(trainer, "estimate_loss", real_estimate)
    assert resume(run_dir, progress=False).step == 12  # and the run goes on from there


def test_eval_full_logs_the_loss_glassbox_eval_gives_the_checkpoint(tiny_configs):
    """A speedrun stops at a target that eval must confirm: the val loss in the log is
    eval's number for the saved weights, not an estimate from a few batches."""
    from glassbox.evaluate import evaluate_run

    result = train(*tiny_configs(eval_full=True, dtype="bfloat16"), progress=False)
    _, evals = train_rows(result.run_dir)
    scored = evaluate_run(result.run_dir, checkpoint="last", device="cpu")
    assert evals[-1][1] == pytest.approx(scored["loss"], rel=1e-6)


def test_eval_full_is_refused_where_there_is_no_val_split(tiny_configs):
    from glassbox.config import ConfigError

    with pytest.raises(ConfigError, match="eval_full scores the val split of a corpus"):
        tiny_configs(eval_full=True, task="reverse")
    with pytest.raises(GlassboxError, match="--eval-full scores a decoder"):
        train(*tiny_configs(eval_full=True, arch="encoder"), progress=False)
