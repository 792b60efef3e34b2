"""`--tensorboard`: the rows of metrics.jsonl, readable by TensorBoard, purged on resume
like the log; and without the package, a clear line before anything is written."""

import json

import pytest

from glassbox.cli import main

TINY = [
    "--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "16",
    "--batch-size", "4", "--max-iters", "6", "--lr-decay-iters", "6", "--warmup-iters", "1",
    "--eval-interval", "3", "--eval-iters", "2", "--device", "cpu", "--no-progress",
]  # fmt: skip


def scalars(log_dir) -> dict[str, dict[int, float]]:
    """Every scalar TensorBoard would show: {tag: {step: value}}, the latest write of a
    step winning, as TensorBoard's own reader does after a purge."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def test_tensorboard_shows_what_the_metrics_log_holds(tmp_path, text, capsys):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    shown = [a for a in TINY if a != "--no-progress"]  # the line comes with the progress bar
    moe = ["--mlp", "moe", "--n-experts", "4"]
    assert main(["train", "--data", text, *shown, *moe, "--tensorboard", "--run", str(run)]) == 0
    out = capsys.readouterr()
    assert f"tensorboard --logdir {run / 'tensorboard'}" in out.out + out.err
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    board = scalars(run / "tensorboard")
    train = [r for r in rows if r["kind"] == "train"]
    assert board["loss/train_step"] == pytest.approx({r["iter"]: r["loss"] for r in train})
    assert board["optim/lr"] == pytest.approx({r["iter"]: r["lr"] for r in train})
    assert board["optim/grad_norm"] == pytest.approx({r["iter"]: r["grad_norm"] for r in train})
    assert set(board["speed/tokens_per_s"]) == set(range(6))
    assert board["loss/val"] == pytest.approx(
        {r["iter"]: r["val_loss"] for r in rows if r["kind"] == "eval"}
    )
    shares = [board[f"experts/load/blocks.0.mlp/expert{i}"][5] for i in range(4)]
    assert sum(shares) == pytest.approx(1.0)  # each expert's share of the layer's tokens
    assert board["experts/imbalance"][5] == pytest.approx(train[-1]["expert_imbalance"])


def test_a_resumed_run_replaces_what_the_killed_run_wrote_after_its_checkpoint(tmp_path, text):
    """Resumed from step 3 after the run got to 6: TensorBoard keeps one value per step,
    the resumed run's, which are those of a run never stopped."""
    pytest.importorskip("tensorboard")
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert main(["train", "--data", text, *TINY, "--tensorboard", "--run", str(whole)]) == 0
    assert main(["train", "--data", text, *TINY, "--tensorboard", "--run", str(part)]) == 0
    # as if killed after step 6's rows were written but before step 6's checkpoint: the
    # step-3 checkpoint is the last one, so steps 3-5 are written again by the resumed run
    assert main(["train", "--data", text, *TINY, "--max-iters", "3", "--tensorboard",
                 "--run", str(tmp_path / "at3")]) == 0  # fmt: skip
    for name in ("checkpoint.safetensors", "best.safetensors"):
        (part / name).write_bytes((tmp_path / "at3" / name).read_bytes())
    assert main(["train", "--resume", "--run", str(part), "--no-progress"]) == 0
    got, want = scalars(part / "tensorboard"), scalars(whole / "tensorboard")
    assert got["loss/train_step"] == pytest.approx(want["loss/train_step"], abs=1e-6)
    assert got["loss/val"] == pytest.approx(want["loss/val"], abs=1e-6)


def test_tensorboard_missing_is_one_line_before_anything_is_written(tmp_path, text, capsys,
                                                                     monkeypatch):  # fmt: skip
    import importlib.util

    real = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "tensorboard" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    run = tmp_path / "run"
    assert main(["train", "--data", text, *TINY, "--tensorboard", "--run", str(run)]) == 2
    assert "pip install 'glassbox[tensorboard]'" in capsys.readouterr().err
    assert not run.exists()
