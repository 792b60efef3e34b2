"""Fault injection: a run killed with SIGKILL at chosen points (in the middle of each kind
of write among them), a full disk, and two processes on one folder. After each, the run
resumes and ends bit for bit where an uninterrupted run ends, or is refused with one line
and nothing changed."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from glassbox import runs
from glassbox.checkpoint import read_meta
from glassbox.cli import main
from glassbox.config import from_preset
from glassbox.train.trainer import resume, train

SETTINGS = dict(
    n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, max_iters=12, warmup_iters=2,
    lr_decay_iters=12, eval_interval=4, eval_iters=2, device="cpu",
    threads=1,  # the child and this process must sum in the same order to match bit for bit
)  # fmt: skip

# The child trains the same run, but dies with SIGKILL at the nth write of one file,
# halfway through it (a torn temporary file, or a half line of metrics).
CHILD = r"""
import json, os, signal, sys
from pathlib import Path
from glassbox import checkpoint, runs
from glassbox.config import from_preset
from glassbox.train import trainer

settings, target, nth = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
seen = {"n": 0}

def maybe_die(path, data, torn):
    if Path(path).name == target:
        seen["n"] += 1
        if seen["n"] == nth:
            with open(torn, "ab") as f:
                f.write(data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)

def write(path, data):
    maybe_die(path, data, Path(path).with_name(f".{Path(path).name}.tmp{os.getpid()}"))
    real_write(path, data)

real_write = checkpoint.atomic_write
checkpoint.atomic_write = runs.atomic_write = write
real_log = trainer._Session.log

def log(self, row):
    path = self.run_dir / runs.METRICS
    maybe_die(path, (json.dumps(row) + "\n").encode(), path)
    real_log(self, row)

if target == runs.METRICS:
    trainer._Session.log = log
trainer.train(*from_preset("char-small", **settings), progress=False)
"""


@pytest.fixture
def settings(tmp_path, text_file):
    return dict(SETTINGS, data=str(text_file), run_dir=str(tmp_path / "run"))


@pytest.fixture
def reference(tmp_path, settings):
    """What the run looks like when nothing goes wrong."""
    run_dir = tmp_path / "reference"
    train(*from_preset("char-small", **{**settings, "run_dir": str(run_dir)}), progress=False)
    return run_dir


def assert_same_run(run_dir: Path, reference: Path) -> None:
    for name in (runs.CHECKPOINT, runs.BEST):
        ours, theirs = load_file(run_dir / name), load_file(reference / name)
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert ours[key].equal(theirs[key]), f"{name}: {key} differs"

    def losses(path: Path) -> list[tuple]:
        rows = [json.loads(line) for line in (path / runs.METRICS).read_text().splitlines()]
        return [(r["kind"], r["iter"], r.get("loss"), r.get("val_loss")) for r in rows]

    assert losses(run_dir) == losses(reference)
    assert not list(run_dir.glob(".*.tmp*"))  # the killed write's temp file is gone


def kill_during(settings: dict, target: str, nth: int) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(settings), target, str(nth)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr


@pytest.mark.parametrize(
    ("target", "nth"),
    [
        (runs.CHECKPOINT, 2),  # the iteration-4 checkpoint, half written
        (runs.BEST, 3),  # the iteration-8 best weights, half written
        (runs.METRICS, 7),  # a half line of metrics after six whole ones
    ],
)
def test_a_run_killed_mid_write_resumes_bit_for_bit(settings, reference, target, nth):
    kill_during(settings, target, nth)
    resume(settings["run_dir"], progress=False)
    assert_same_run(Path(settings["run_dir"]), reference)


def test_a_run_killed_before_its_first_checkpoint_can_be_resumed_or_retrained(
    settings, reference, capsys
):
    kill_during(settings, runs.CHECKPOINT, 1)  # dies writing the iteration-0 checkpoint
    run_dir = Path(settings["run_dir"])
    assert (run_dir / runs.CONFIG).exists() and not (run_dir / runs.CHECKPOINT).exists()
    resume(run_dir, progress=False)  # starts again at iteration 0
    assert_same_run(run_dir, reference)

    kill_during(settings | {"run_dir": str(run_dir.with_name("again"))}, runs.CHECKPOINT, 1)
    train(
        *from_preset("char-small", **settings | {"run_dir": str(run_dir.with_name("again"))}),
        progress=False,
    )  # fmt: skip  (not "already holds a run": nothing was trained)
    assert_same_run(run_dir.with_name("again"), reference)


def test_a_killed_run_config_write_leaves_the_folder_retrainable(settings, reference):
    kill_during(settings, runs.CONFIG, 1)
    train(*from_preset("char-small", **settings), progress=False)
    assert_same_run(Path(settings["run_dir"]), reference)


def test_a_full_disk_is_one_line_and_the_run_resumes_after(
    settings, reference, monkeypatch, capsys
):
    run_dir = Path(settings["run_dir"])
    train(*from_preset("char-small", **{**settings, "max_iters": 4}), progress=False)
    real_replace = os.replace

    def disk_full(src, dst):
        if Path(dst).name == runs.CHECKPOINT:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", disk_full)
    code = main(["train", "--resume", "--run", str(run_dir), "--max-iters", "12", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "No space left on device" in err
    assert not list(run_dir.glob(".*.tmp*"))
    monkeypatch.setattr(os, "replace", real_replace)
    resume(run_dir, progress=False, max_iters=12)
    # The finished run matches the reference (max_iters aside, which the resume changed).
    assert_same_run(run_dir, reference)


def test_resume_survives_a_torn_metrics_line(settings, reference):
    run_dir = Path(settings["run_dir"])
    train(*from_preset("char-small", **{**settings, "max_iters": 8}), progress=False)
    with open(run_dir / runs.METRICS, "a") as f:
        f.write('{"kind": "train", "it')  # what a kill mid-write leaves
    resume(run_dir, progress=False, max_iters=12)
    assert_same_run(run_dir, reference)


def test_two_processes_never_write_one_run(settings, capsys):
    run_dir = Path(settings["run_dir"])
    forever = {**settings, "max_iters": 10**6, "lr_decay_iters": 10**6}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(forever), "none", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        lock = run_dir / runs.LOCK
        deadline = time.monotonic() + 60
        while not (lock.exists() and (run_dir / runs.CHECKPOINT).exists()):
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.05)
        before = (run_dir / runs.CONFIG).read_bytes()
        overwrite = ["train", "--overwrite", "--run", str(run_dir), "--data", settings["data"]]
        for argv in (["train", "--resume", "--run", str(run_dir)], overwrite):
            assert main([*argv, "--no-progress"]) == 2
            err = capsys.readouterr().err
            assert f"is in use by pid {child.pid}" in err and err.count("\n") == 1
        assert (run_dir / runs.CONFIG).read_bytes() == before
    finally:
        child.kill()
        child.wait()
    # The killed holder's lock does not block the next process.
    step = max(read_meta(run_dir / runs.CHECKPOINT)["step"], 1)
    assert resume(run_dir, progress=False, max_iters=step).step == step
