"""`glassbox sae train` and `glassbox sae inspect` on a tiny run: what they write and
print, and one clear line for each input that cannot work."""

from __future__ import annotations

import json

import pytest

from glassbox.cli import main

HOOK = "blocks.1.hook_resid_post"
TINY = [
    "--n-layer", "2", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
    "--batch-size", "4", "--max-iters", "8", "--warmup-iters", "1", "--lr-decay-iters", "8",
    "--eval-interval", "4", "--eval-iters", "1", "--device", "cpu", "--no-progress",
]  # fmt: skip
SMALL = ["--expansion", "2", "--k", "4", "--tokens", "512", "--steps", "30",
         "--batch-size", "64", "--eval-tokens", "128"]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-sae")
    text = folder / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog.\n" * 60, encoding="utf-8")
    assert main(["train", "--data", str(text), "--run", str(folder / "run"), *TINY]) == 0
    return str(folder / "run")


@pytest.fixture(scope="module")
def sae_dir(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("sae") / "sae"
    assert main(["sae", "train", run, "--hook", HOOK, *SMALL, "--out", str(out), "--json"]) == 0
    return out


def test_train_writes_the_sae_and_prints_its_metrics(sae_dir, run, capsys):
    assert {p.name for p in sae_dir.iterdir()} == {
        "acts.npy", "acts.npy.json", "sae.safetensors", "config.json", "metrics.json",
    }  # fmt: skip
    metrics = json.loads((sae_dir / "metrics.json").read_text())
    assert metrics["l0"] == pytest.approx(4.0) and metrics["eval_tokens"] == 128
    keys = ("mse", "explained_variance", "dead_fraction", "dense_fraction", "ce_clean", "ce_sae",
            "ce_zero", "ce_mean", "loss_recovered", "loss_recovered_mean")  # fmt: skip
    assert all(isinstance(metrics[key], float) for key in keys)
    config = json.loads((sae_dir / "config.json").read_text())
    assert config["hook"] == HOOK and config["sae"]["d_in"] == 16 and config["sae"]["k"] == 4
    # a second run reuses the activation file that matches, and prints in words
    capsys.readouterr()
    assert main(["sae", "train", run, "--hook", HOOK, *SMALL, "--out", str(sae_dir)]) == 0
    out = capsys.readouterr().out
    assert "collected" not in out and "loss recovered" in out and "L0 4.0" in out


def test_inspect_prints_each_feature_and_writes_the_page(sae_dir, tmp_path, capsys):
    capsys.readouterr()
    page = tmp_path / "features.html"
    assert main(["sae", "inspect", str(sae_dir), "--features", "0-3,7", "--html", str(page)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines[:5]] == ["0", "1", "2", "3", "7"]
    assert lines[-1] == f"wrote {page}"
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and '"index":7' in text
    assert main(["sae", "inspect", str(sae_dir)]) == 0  # the first 50, or all 32 here
    assert len(capsys.readouterr().out.splitlines()) == 32


def one_line_error(capsys, argv: list[str], message: str) -> None:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hook", "blocks.1.hook_resid_pots"], "nearest: blocks.1.hook_resid_post"),
        (["--hook", "nope"], "valid names: hook_embed, hook_pos_embed, blocks.0.hook_resid_pre"),
        (["--hook", "blocks.0.attn.hook_pattern"], "one vector per token"),
        (["--hook", HOOK, "--k", "40"], "k must be between 1 and the 32 features"),
        (["--hook", HOOK, "--expansion", "0.5"], "expansion must be >= 1"),
        (["--hook", HOOK, "--steps", "0"], "steps must be >= 1"),
        (["--hook", HOOK, "--tokens", "10000000"], "ask for at most that many"),
    ],
)
def test_train_bad_inputs_are_one_line_errors(run, tmp_path, capsys, args, message):
    out = tmp_path / "sae"
    one_line_error(
        capsys, ["sae", "train", run, "--expansion", "2", *args, "--out", str(out)], message
    )
    assert not (out / "sae.safetensors").exists()


def test_activations_of_another_hook_are_refused(run, sae_dir, tmp_path, capsys):
    acts = str(sae_dir / "acts.npy")  # collected at blocks.1
    argv = ["sae", "train", run, "--hook", "blocks.0.hook_resid_post", "--acts", acts,
            *SMALL, "--out", str(tmp_path / "x")]  # fmt: skip
    one_line_error(capsys, argv, f"holds {HOOK} of")
    argv = ["sae", "train", run, "--hook", HOOK, "--acts", acts, *SMALL, "--tokens", "100",
            "--out", str(tmp_path / "x")]  # fmt: skip
    one_line_error(capsys, argv, "holds 512 tokens, not the --tokens 100")


def test_inspect_bad_inputs_are_one_line_errors(sae_dir, tmp_path, capsys):
    one_line_error(capsys, ["sae", "inspect", str(sae_dir), "--features", "30-40"], "within 0-31")
    one_line_error(capsys, ["sae", "inspect", str(sae_dir), "--features", "a"], "look like")
    one_line_error(capsys, ["sae", "inspect", str(tmp_path)], "is not an SAE folder")
    one_line_error(capsys, ["sae", "inspect", str(sae_dir), "--top", "0"], "--top must be >= 1")


def test_an_encoder_run_is_refused(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog.\n" * 60, encoding="utf-8")
    enc = str(tmp_path / "enc")
    assert main(["train", "--arch", "encoder", "--data", str(text), "--run", enc, *TINY]) == 0
    argv = ["sae", "train", enc, "--hook", HOOK, "--out", str(tmp_path / "s")]
    one_line_error(capsys, argv, "is not a decoder run (arch encoder)")
