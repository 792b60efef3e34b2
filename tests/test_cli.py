import json
import subprocess
import sys

import pytest

from glassbox.cli import main

TINY = [
    "--n-layer",
    "1",
    "--n-head",
    "2",
    "--n-embd",
    "16",
    "--block-size",
    "16",
    "--batch-size",
    "4",
    "--max-iters",
    "6",
    "--warmup-iters",
    "1",
    "--lr-decay-iters",
    "6",
    "--eval-interval",
    "3",
    "--eval-iters",
    "2",
    "--device",
    "cpu",
    "--no-progress",
]


@pytest.fixture
def trained_run(tmp_path, text_file):
    run = tmp_path / "run"
    assert main(["train", "--data", str(text_file), "--run", str(run), *TINY]) == 0
    return run


def test_train_then_sample_then_eval(trained_run, capsys):
    capsys.readouterr()
    assert (
        main(
            [
                "sample",
                "--run",
                str(trained_run),
                "--prompt",
                "First",
                "--max-new-tokens",
                "20",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("First") and len(out) == len("First") + 20 + 1
    assert main(["eval", "--run", str(trained_run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["loss"] > 0 and result["perplexity"] > 1 and result["tokens"] > 0


def test_sampling_twice_with_a_seed_prints_the_same_text(trained_run, capsys):
    args = ["sample", "--run", str(trained_run), "--max-new-tokens", "30", "--seed", "7"]
    main(args)
    first = capsys.readouterr().out
    main(args)
    assert capsys.readouterr().out == first


def test_eval_on_another_file(trained_run, text_file, capsys):
    assert main(["eval", "--run", str(trained_run), "--data", str(text_file)]) == 0
    assert "perplexity" in capsys.readouterr().out


def test_prompt_outside_the_vocabulary_is_a_one_line_error(trained_run, capsys):
    assert main(["sample", "--run", str(trained_run), "--prompt", "Zebra ☃"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("glassbox: error:") and "'Z'" in err and "'☃'" in err
    assert "\n" not in err and "Traceback" not in err


def test_unknown_and_mistyped_flags_are_errors(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--n-layers", "2"])
    assert "unrecognized arguments: --n-layers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--n-layer", "two"])
    assert "invalid int value" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n-embd", "30", "--n-head", "4"], "divisible by n_head"),
        (["--data", "/no/such/file.txt"], "no such data file"),
    ],
)
def test_bad_training_input_gets_a_clear_error(tmp_path, capsys, args, message):
    assert main(["train", "--run", str(tmp_path / "r"), *args, "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_sample_from_a_missing_run(tmp_path, capsys):
    assert main(["sample", "--run", str(tmp_path / "nope")]) == 2
    assert "not a glassbox run" in capsys.readouterr().err


def test_module_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "glassbox", "--help"], capture_output=True, text=True, check=True
    )
    assert "usage: glassbox" in result.stdout and "train" in result.stdout


@pytest.mark.parametrize("command", ["train", "sample", "eval"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: glassbox {command}" in capsys.readouterr().out


def test_sampling_without_the_cache_prints_the_same_text(trained_run, capsys):
    args = ["sample", "--run", str(trained_run), "--max-new-tokens", "25", "--seed", "3"]
    main(args)
    cached = capsys.readouterr().out
    main([*args, "--no-cache"])
    assert capsys.readouterr().out == cached


def test_several_samples_with_a_stop_string(trained_run, capsys):
    assert main(["sample", "--run", str(trained_run), "--prompt", "First", "--num-samples", "3",
                 "--max-new-tokens", "40", "--seed", "0", "--stop", "\n"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    samples = out.split("--- sample ")[1:]
    assert len(samples) == 3
    for sample in samples:
        text = sample.split("\n", 1)[1]
        assert text.startswith("First") and text.count("\n") == 1  # cut at the first newline


def test_the_speedrun_flags_train_a_run_that_samples_counts_and_resumes(
    tmp_path, text_file, capsys
):
    data, run = text_file, tmp_path / "run"
    recipe = ["--pos-encoding", "rope", "--norm", "rmsnorm", "--qk-norm", "--activation",
              "relu2", "--no-tie-embeddings", "--zero-init", "--logit-softcap", "15",
              "--optimizer", "muon", "--muon-lr", "0.03", "--lr-schedule", "wsd",
              "--decay-fraction", "0.4"]  # fmt: skip
    assert main(["train", "--data", str(data), "--run", str(run), *TINY, *recipe]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"]["qk_norm"] is True and saved["model"]["tie_embeddings"] is False
    assert saved["train"]["optimizer"] == "muon" and saved["train"]["muon_lr"] == 0.03
    capsys.readouterr()
    assert main(["sample", "--run", str(run), "--prompt", "First", "--max-new-tokens", "10"]) == 0
    assert capsys.readouterr().out.startswith("First")
    assert main(["count", "--run", str(run), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    vocab = saved["model"]["vocab_size"]
    assert report["params"]["head"] == vocab * 16  # the untied lm_head, counted
    assert main(["train", "--resume", "--run", str(run), "--max-iters", "9", "--no-progress"]) == 0
    assert main(["train", "--run", str(tmp_path / "bad"), "--optimizer", "muon",
                 "--muon-lr", "-1", "--no-progress"]) == 2  # fmt: skip
    assert "muon_lr must be positive" in capsys.readouterr().err
