"""Training under torchrun: two CPU processes (gloo) train exactly as one process on the
same global batch, only rank 0 writes the run, and a run rank 0 cannot prepare ends every
rank with its error instead of leaving one waiting."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from glassbox.cli import main

TINY = [
    "--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "16",
    "--max-iters", "6", "--lr-decay-iters", "6", "--warmup-iters", "1", "--eval-interval", "3",
    "--eval-iters", "2", "--device", "cpu", "--no-progress", "--threads", "1",
]  # fmt: skip


def torchrun(*args: str, cwd) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node 2 -m glassbox ARGS`. (torchrun's own parser
    takes `--run` for an abbreviation of its --run-path: the run goes in --run-dir.)"""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "glassbox", *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def losses(run) -> list[float]:
    with open(run / "metrics.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return [row["loss"] if row["kind"] == "train" else row["val_loss"] for row in rows]


@pytest.fixture
def text(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 200, encoding="utf-8")
    return str(path)


def test_two_ranks_train_as_one_process_on_the_same_global_batch(tmp_path, text, capsys):
    args = ["train", "--data", text, *TINY, "--batch-size", "8", "--grad-accum", "2"]
    assert main([*args, "--run", str(tmp_path / "one")]) == 0
    done = torchrun(*args, "--run-dir", str(tmp_path / "two"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), abs=1e-5)
    assert done.stdout.count("done: 6 iterations") == 1  # rank 0 speaks for the run
    assert (tmp_path / "two" / "checkpoint.safetensors").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--batch-size", "7"], "must be a multiple of 2"),  # every rank finds it
        (["--batch-size", "8", "--data", "no/such/file.txt"], "no such data file"),  # rank 0 does
    ],
)
def test_a_run_that_cannot_start_ends_every_rank(tmp_path, text, flags, message):
    args = ["train", "--data", text, *TINY, *flags, "--run-dir", str(tmp_path / "run")]
    done = torchrun(*args, cwd=tmp_path)
    assert done.returncode != 0
    assert message in done.stderr
    assert not (tmp_path / "run").exists()


def test_a_run_resumes_on_another_number_of_ranks_as_if_never_stopped(tmp_path, text, capsys):
    """Stopped at step 6 in one process, resumed to 9 on two: the same losses as one
    process running all 9 (the data order is one generator that every rank replays)."""
    args = ["train", "--data", text, *TINY, "--batch-size", "8", "--lr-decay-iters", "10"]
    assert main([*args, "--max-iters", "9", "--run", str(tmp_path / "whole")]) == 0
    assert main([*args, "--max-iters", "6", "--run", str(tmp_path / "part")]) == 0
    done = torchrun("train", "--resume", "--run-dir", str(tmp_path / "part"), "--max-iters", "9",
                    "--no-progress", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert losses(tmp_path / "part") == pytest.approx(losses(tmp_path / "whole"), abs=1e-5)


def _rank_pid(torchrun_pid: int, rank: int) -> int | None:
    """The pid of torchrun's worker with RANK=rank (read from /proc), if it is running."""
    for child in subprocess.run(["pgrep", "-P", str(torchrun_pid)], capture_output=True,
                                text=True).stdout.split():  # fmt: skip
        try:
            with open(f"/proc/{child}/environ", "rb") as f:
                if f"RANK={rank}".encode() in f.read().split(b"\0"):
                    return int(child)
        except OSError:
            continue
    return None


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the ranks through /proc")
def test_a_killed_rank_loses_nothing_past_the_last_checkpoint(tmp_path, text, capsys):
    """SIGKILL rank 1 once the run has checkpointed; torchrun stops the other rank, and
    `--resume` (in one process) finishes with exactly the losses of a run never stopped."""
    import signal
    import time

    from glassbox.checkpoint import read_meta

    args = ["train", "--data", text, *TINY, "--batch-size", "8", "--max-iters", "300",
            "--lr-decay-iters", "300", "--eval-interval", "20"]  # fmt: skip
    assert main([*args, "--run", str(tmp_path / "whole")]) == 0
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "glassbox", *args, "--run-dir", str(run)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE) as torchrun_process:  # fmt: skip
        deadline = time.monotonic() + 120
        checkpoint = run / "checkpoint.safetensors"
        while time.monotonic() < deadline:
            try:
                if read_meta(checkpoint)["step"] >= 20:
                    break
            except Exception:  # not written yet, or being replaced
                pass
            time.sleep(0.02)
        victim = _rank_pid(torchrun_process.pid, 1)
        assert victim is not None, "rank 1 was not found (the run ended too soon?)"
        os.kill(victim, signal.SIGKILL)
        torchrun_process.communicate(timeout=120)
        assert torchrun_process.returncode != 0  # the run did not finish
    step = read_meta(checkpoint)["step"]
    assert 20 <= step < 300
    assert main(["train", "--resume", "--run", str(run), "--no-progress"]) == 0
    assert losses(run) == pytest.approx(losses(tmp_path / "whole"), abs=1e-5)
