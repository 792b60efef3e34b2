"""Training under torchrun: two CPU processes (gloo) train exactly as one process on the
same global batch, only rank 0 writes the run, and a run rank 0 cannot prepare ends every
rank with its error instead of leaving one waiting."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import free_port

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


# FSDP: the model sharded over the ranks


def test_fsdp_trains_as_one_process_and_its_sharded_checkpoint_loads_anywhere(
    tmp_path, text, capsys
):
    """Two FSDP ranks log the losses of one process; each writes its rows of the weights
    and moments, and one process samples from (and resumes) the pieces put together."""
    args = ["train", "--data", text, *TINY, "--batch-size", "8", "--grad-accum", "2"]
    assert main([*args, "--run", str(tmp_path / "one")]) == 0
    done = torchrun(*args, "--fsdp", "--run-dir", str(tmp_path / "fsdp"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert losses(tmp_path / "fsdp") == pytest.approx(losses(tmp_path / "one"), abs=1e-5)
    pieces = sorted(p.name for p in (tmp_path / "fsdp").glob("*.shard*"))
    assert pieces == [f"{kind}.step6.shard{r}-of-2.safetensors"
                      for kind in ("best", "checkpoint") for r in (0, 1)]  # fmt: skip
    texts = []
    for run in ("one", "fsdp"):
        capsys.readouterr()
        assert main(["sample", "--run", str(tmp_path / run), "--prompt", "the", "--top-k", "1",
                     "--max-new-tokens", "20"]) == 0  # fmt: skip
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1] and len(texts[0]) > 20


@pytest.mark.parametrize("first", ["one process", "fsdp"])
def test_a_run_moves_between_fsdp_and_one_process_as_if_never_stopped(tmp_path, text, first):
    """Stopped at step 6 and resumed to 9 the other way (FSDP after one process, or one
    process after FSDP): the losses of one process running all 9."""
    args = ["train", "--data", text, *TINY, "--batch-size", "8", "--lr-decay-iters", "10"]
    assert main([*args, "--max-iters", "9", "--run", str(tmp_path / "whole")]) == 0
    part = tmp_path / "part"
    resume = ["train", "--resume", "--max-iters", "9", "--no-progress"]
    if first == "fsdp":
        done = torchrun(*args, "--max-iters", "6", "--fsdp", "--run-dir", str(part), cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        assert main([*resume, "--no-fsdp", "--run", str(part)]) == 0
        assert not list(part.glob("*.shard*"))  # whole checkpoints replaced the pieces
    else:
        assert main([*args, "--max-iters", "6", "--run", str(part)]) == 0
        done = torchrun(*resume, "--fsdp", "--run-dir", str(part), cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        assert list(part.glob("checkpoint.step9.shard*"))
    assert losses(part) == pytest.approx(losses(tmp_path / "whole"), abs=1e-5)


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_a_corrupt_shard_ends_every_rank_with_its_name(tmp_path, text, damage):
    args = ["train", "--data", text, *TINY, "--batch-size", "8", "--fsdp"]
    run = tmp_path / "run"
    assert torchrun(*args, "--run-dir", str(run), cwd=tmp_path).returncode == 0
    shard = run / "checkpoint.step6.shard1-of-2.safetensors"
    if damage == "missing":
        shard.unlink()
    else:
        shard.write_bytes(shard.read_bytes()[:100])
    before = (run / "checkpoint.safetensors").read_bytes()
    done = torchrun("train", "--resume", "--max-iters", "9", "--fsdp", "--no-progress",
                    "--run-dir", str(run), cwd=tmp_path)  # fmt: skip
    assert done.returncode != 0
    said = "is missing its shard" if damage == "missing" else "cannot read shard"
    assert done.stderr.count("glassbox: error: ") == 2, done.stderr[-2000:]
    assert said in done.stderr and shard.name in done.stderr
    assert (run / "checkpoint.safetensors").read_bytes() == before  # nothing overwritten


def test_fsdp_in_bf16_computes_in_bf16_and_keeps_fp32_weights(tmp_path, text, capsys):
    """The mixed-precision policy: weights gathered in bf16 for the matmuls, gradients
    reduced and weights kept in fp32, so the losses stay near fp32's."""
    from safetensors import safe_open

    args = ["train", "--data", text, *TINY, "--batch-size", "8"]
    assert main([*args, "--run", str(tmp_path / "fp32")]) == 0
    done = torchrun(*args, "--fsdp", "--dtype", "bfloat16", "--run-dir", str(tmp_path / "bf16"),
                    cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    got, want = losses(tmp_path / "bf16"), losses(tmp_path / "fp32")
    assert got == pytest.approx(want, abs=0.02) and got != pytest.approx(want, abs=1e-6)
    with safe_open(str(tmp_path / "bf16" / "checkpoint.step6.shard0-of-2.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float32}  # noqa: SIM118


def test_fsdp_needs_torchrun(tmp_path, text, capsys):
    assert main(["train", "--data", text, *TINY, "--fsdp", "--run", str(tmp_path / "r")]) == 2
    assert "torchrun --nproc_per_node N" in capsys.readouterr().err


# Ranks that cannot work together end, all of them, with one clear line


def _rank(rank: int, port: int, *args: str, cwd, timeout_s: str = "60") -> subprocess.Popen:
    """One rank started by hand, as a node of a multi-node run would be."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RANK": str(rank), "LOCAL_RANK": "0",
           "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "GLASSBOX_DIST_TIMEOUT": timeout_s}  # fmt: skip
    cmd = [sys.executable, "-m", "glassbox", *args]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_ranks_started_with_different_configs_all_end(tmp_path, text):
    port = free_port()
    args = ["train", "--data", text, *TINY, "--batch-size", "8", "--run-dir", str(tmp_path / "r")]
    ranks = [_rank(0, port, *args, cwd=tmp_path), _rank(1, port, *args, "--lr", "3e-4",
                                                         cwd=tmp_path)]  # fmt: skip
    errors = [p.communicate(timeout=120)[1] for p in ranks]
    assert [p.returncode for p in ranks] == [2, 2]
    assert (
        "the ranks disagree on the config: lr is 0.001 on rank 0 and 0.0003 on rank 1"
        in (errors[0])
    )
    assert "disagree" in errors[1]
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("alone", [0, 1])
def test_a_rank_that_cannot_reach_the_others_ends_after_the_timeout(tmp_path, text, alone):
    """Rank 0 waiting for a rank that never comes, or a rank whose rank 0 is not there:
    each gives up after GLASSBOX_DIST_TIMEOUT seconds with one line."""
    import time

    args = ["train", "--data", text, *TINY, "--batch-size", "8", "--run-dir", str(tmp_path / "r")]
    began = time.monotonic()
    process = _rank(alone, free_port(), *args, cwd=tmp_path, timeout_s="3")
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2, err[-2000:]
    assert f"rank {alone} of 2 could not join the others at 127.0.0.1:" in err
    assert "within 3 s" in err
    assert time.monotonic() - began < 60
    assert not (tmp_path / "r").exists()
