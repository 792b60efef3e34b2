"""Every bad input a user can give is one line on stderr, a non-zero exit, no traceback,
and a run folder left exactly as it was."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from glassbox.cli import main
from glassbox.config import ConfigError, TrainConfig
from glassbox.runs import BEST, CHECKPOINT, CONFIG, TOKENIZER, TOKENS


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny trained run, copied fresh for every case."""
    root = tmp_path_factory.mktemp("trained")
    corpus = root / "corpus.txt"
    corpus.write_text("To be, or not to be, that is the question.\n" * 60, encoding="utf-8")
    run = root / "run"
    code = main(
        ["train", "--data", str(corpus), "--run", str(run), "--preset", "char-tiny",
         "--n-embd", "16", "--block-size", "16", "--max-iters", "6", "--eval-interval", "3",
         "--eval-iters", "1", "--batch-size", "4", "--device", "cpu", "--no-progress"]
    )  # fmt: skip
    assert code == 0
    return run, corpus


@pytest.fixture
def run(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained[0], copy)
    return copy


def snapshot(folder: Path) -> dict[str, str]:
    """Every file in a folder by name, with a hash of its bytes (the lock file aside)."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != ".lock"
    }


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data))


def edit_config(run: Path, change) -> None:
    data = json.loads((run / CONFIG).read_text())
    change(data)
    write_json(run / CONFIG, data)


def edit_checkpoint(path: Path, change_tensors=None, change_meta=None) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata())
    tensors = load_file(path)
    if change_tensors:
        change_tensors(tensors)
    if change_meta:
        change_meta(metadata)
    save_file(tensors, path, metadata=metadata)


def tokens_path(run: Path) -> Path:
    return run / TOKENS


CORRUPT_FILES = {
    "config not JSON": (lambda r: (r / CONFIG).write_text("{oops"), ["sample"], "not valid JSON"),
    "config not UTF-8": (lambda r: (r / CONFIG).write_bytes(b"\xff\xfe{}"), ["sample"], "UTF-8"),
    "config a list": (lambda r: write_json(r / CONFIG, [1, 2]), ["eval"], "not a version-1"),
    "config without model": (
        lambda r: edit_config(r, lambda d: d.pop("model")),
        ["sample"],
        "no 'model' settings",
    ),
    "config model null": (
        lambda r: edit_config(r, lambda d: d.update(model=None)),
        ["eval"],
        "no 'model' settings",
    ),
    "config with a bad value": (
        lambda r: edit_config(r, lambda d: d["model"].update(n_layer="many")),
        ["sample"],
        "n_layer expects int",
    ),
    "tokenizer not JSON": (
        lambda r: (r / TOKENIZER).write_text("]"),
        ["sample"],
        "not valid JSON",
    ),
    "tokenizer of an unknown type": (
        lambda r: write_json(r / TOKENIZER, {"type": "morse"}),
        ["sample"],
        "unknown tokenizer type",
    ),
    "tokenizer a string": (
        lambda r: write_json(r / TOKENIZER, "abc"),
        ["sample"],
        "holds no tokenizer",
    ),
    "tokenizer missing its fields": (
        lambda r: write_json(r / TOKENIZER, {"type": "char"}),
        ["sample"],
        "not a glassbox character tokenizer",
    ),
    "tokenizer smaller than the model": (
        lambda r: edit_config(
            r, lambda d: d["model"].update(vocab_size=d["model"]["vocab_size"] + 3)
        ),
        ["sample"],
        "tokenizer is not this run's",
    ),
    "tokens.bin missing": (lambda r: tokens_path(r).unlink(), ["eval"], "is missing"),
    "tokens.bin truncated": (
        lambda r: tokens_path(r).write_bytes(tokens_path(r).read_bytes()[:20]),
        ["eval"],
        "fewer than block_size",
    ),
    "tokens.bin odd-sized": (
        lambda r: tokens_path(r).write_bytes(tokens_path(r).read_bytes()[:21]),
        ["eval"],
        "not a whole number",
    ),
    "tokens.bin with ids past the vocabulary": (
        lambda r: np.full(2000, 60000, dtype=np.uint16).tofile(tokens_path(r)),
        ["eval"],
        "outside the vocabulary",
    ),
    "checkpoint missing a tensor": (
        lambda r: edit_checkpoint(r / BEST, lambda t: t.pop("model.ln_f.weight")),
        ["sample"],
        "lacks ln_f.weight",
    ),
    "checkpoint with a wrong-shaped tensor": (
        lambda r: edit_checkpoint(
            r / BEST, lambda t: t.update({"model.ln_f.weight": torch.ones(3)})
        ),
        ["sample"],
        r"ln_f.weight has shape \(3,\)",
    ),
    "checkpoint metadata not JSON": (
        lambda r: edit_checkpoint(r / CHECKPOINT, change_meta=lambda m: m.update(meta="{")),
        ["train", "--resume"],
        "corrupt metadata",
    ),
    "checkpoint metadata without a step": (
        lambda r: edit_checkpoint(
            r / CHECKPOINT, change_meta=lambda m: m.update(meta=json.dumps({"val_loss": 1.0}))
        ),
        ["train", "--resume"],
        "no number for 'step'",
    ),
    "checkpoint with a wrong-size RNG state": (
        lambda r: edit_checkpoint(
            r / CHECKPOINT, lambda t: t.update({"rng.torch": torch.zeros(7, dtype=torch.uint8)})
        ),
        ["train", "--resume"],
        "RNG state",
    ),
    "checkpoint with a wrong-shaped optimizer tensor": (
        lambda r: edit_checkpoint(
            r / CHECKPOINT, lambda t: t.update({"optim.0.exp_avg": torch.zeros(2, 2)})
        ),
        ["train", "--resume"],
        "optimizer tensor optim.0.exp_avg",
    ),
}


def run_bad(capsys, argv: list[str]) -> str:
    """Run the CLI; it must fail with exactly one line on stderr. Returns that line."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code != 0, out
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("glassbox: error: ")
    return lines[0]


@pytest.mark.parametrize("case", sorted(CORRUPT_FILES))
def test_a_corrupt_run_file_is_one_clear_line(case, run, capsys):
    corrupt, command, message = CORRUPT_FILES[case]
    corrupt(run)
    before = snapshot(run)
    quiet = ["--no-progress"] if command[0] == "train" else []
    line = run_bad(capsys, [*command, "--run", str(run), *quiet])
    assert re.search(message, line), line
    assert snapshot(run) == before


BAD_VALUES = {
    "no samples": (["sample", "--num-samples", "0"], "at least 1"),
    "temperature nan": (["sample", "--temperature", "nan"], "temperature must be"),
    "temperature inf": (["sample", "--temperature", "inf"], "temperature must be"),
    "an empty stop text": (["sample", "--stop", "", "--max-new-tokens", "3"], "must not be empty"),
    "eval batch size 0": (["eval", "--batch-size", "0"], "batch_size must be"),
    "eval batches 0": (["eval", "--batches", "0"], "batches must be"),
    "negative context": (["count", "--context", "-5"], "context must be"),
    "html in a missing folder": (
        ["inspect", "{run}", "--prompt", "To", "--html", "{nodir}/x.html"],
        "does not exist",
    ),
    "weight decay nan": (["train", "--weight-decay", "nan"], "weight_decay must be a finite"),
    "lr inf": (["train", "--lr", "inf"], "lr must be a finite"),
    "grad clip nan": (["train", "--grad-clip", "nan"], "grad_clip must be a finite"),
    "a problem-task switch on a corpus run": (
        ["train", "--no-mask-problem"],
        "applies to tasks addition-gpt, calculator, facts only",
    ),
    "resume with fewer iterations than done": (
        ["train", "--resume", "--max-iters", "2", "--no-progress"],
        "already at iteration 6",
    ),
    "train over a run without --overwrite": (["train", "--no-progress"], "already holds a run"),
    "overwrite with a missing corpus": (
        ["train", "--overwrite", "--data", "{nodir}/missing.txt", "--no-progress"],
        "missing.txt",
    ),
    "overwrite with a corpus too short": (
        ["train", "--overwrite", "--data", "{short}", "--no-progress"],
        "fewer than block_size",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_a_bad_value_is_one_clear_line(case, run, tmp_path, capsys):
    argv, message = BAD_VALUES[case]
    short = tmp_path / "short.txt"
    short.write_text("tiny")
    argv = [a.format(run=run, nodir=tmp_path / "nodir", short=short) for a in argv]
    if argv[0] in ("sample", "eval", "train") and "--run" not in argv:
        argv += ["--run", str(run)]
    if argv[0] == "count":
        argv += ["--run", str(run)]
    before = snapshot(run)
    line = run_bad(capsys, argv)
    assert message in line, line
    assert snapshot(run) == before


def test_sample_rejects_a_prompt_before_printing_it(run, capsys):
    line = run_bad(capsys, ["sample", "--run", str(run), "--prompt", "€€€"])
    assert "€" in line or "not in" in line or "cannot" in line
    assert capsys.readouterr().out == ""  # the prompt was not echoed first


def test_train_into_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    line = run_bad(capsys, ["train", "--run", str(target), "--no-progress"])
    assert "is a file" in line
    assert target.read_text() == "keep me"


def test_a_failed_data_check_leaves_no_folder_behind(tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("tiny")
    run_bad(
        capsys, ["train", "--data", str(short), "--run", str(tmp_path / "new"), "--no-progress"]
    )
    assert not (tmp_path / "new").exists()


def test_train_config_refuses_names_it_does_not_know():
    for bad in (dict(dtype="fp16"), dict(task="revrse"), dict(device="gpu")):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)


def test_generation_memory_does_not_grow_with_the_tokens_asked_for(trained):
    from glassbox.generate import generate
    from glassbox.runs import load_model

    model, _ = load_model(trained[0])
    stream = generate(model, torch.zeros(1, 1, dtype=torch.long), 10**12, temperature=0)
    tokens = [int(next(stream)[0]) for _ in range(40)]  # past block_size: the window slides
    assert len(tokens) == 40


def test_a_reader_that_stops_early_gets_no_error(trained):
    """`glassbox sample | head -1`: the closed pipe ends the command quietly."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "glassbox", "sample", "--run", str(trained[0])]
    child = subprocess.Popen(
        [*command, "--max-new-tokens", "100000", "--prompt", "To"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    child.stdout.read(2)
    child.stdout.close()
    assert child.wait(timeout=120) == 141
    assert child.stderr.read() == b""
