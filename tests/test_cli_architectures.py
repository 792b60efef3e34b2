"""The encoder, the encoder-decoder and the interpretability commands, end to end."""

import json

import pytest

from glassbox.cli import main

SMALL = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--eval-iters", "2",
         "--device", "cpu", "--no-progress"]  # fmt: skip


def run_json(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_encoder_trains_fills_masks_and_refuses_to_sample(tmp_path, text_file, capsys):
    run = str(tmp_path / "enc")
    argv = ["train", "--arch", "encoder", "--data", str(text_file), "--run", run,
            "--block-size", "16", "--max-iters", "4", "--eval-interval", "2", *SMALL]  # fmt: skip
    assert main(argv) == 0
    predictions = run_json(capsys, ["fill-mask", "--run", run, "Fir[MASK]t [MASK]", "--json"])
    assert len(predictions) == 2  # one list per [MASK]
    for options in predictions:
        assert len(options) == 5
        probs = [p for _, p in options]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    result = run_json(capsys, ["eval", "--run", run, "--json", "--batches", "2"])
    assert result["masked_lm_loss"] > 0
    assert main(["sample", "--run", run]) == 2
    assert "fills masks" in capsys.readouterr().err
    assert main(["fill-mask", "--run", run, "no mask here"]) == 2
    report = run_json(capsys, ["inspect", run, "--prompt", "First", "--lens", "--json"])
    assert report["tokens"] == ["[CLS]", "F", "i", "r", "s", "t"]  # as the encoder trained
    assert main(["inspect", run, "--heads"]) == 2  # detectors read causal attention


def test_encoder_decoder_learns_to_reverse_and_reports_exact_match(tmp_path, capsys):
    run = str(tmp_path / "rev")
    argv = ["train", "--task", "reverse", "--task-min-len", "3", "--task-max-len", "6",
            "--max-iters", "300", "--lr-decay-iters", "300", "--eval-interval", "300",
            "--n-embd", "64", "--run", run, "--device", "cpu", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    result = run_json(capsys, ["eval", "--run", run, "--json"])
    assert result["task"] == "reverse" and result["examples"] == 1000
    assert result["exact_match"] >= 0.99, result["misses"]
    capsys.readouterr()
    assert main(["sample", "--run", run, "--prompt", "12345", "--beam-size", "3"]) == 0
    assert capsys.readouterr().out.strip() == "54321"
    assert main(["sample", "--run", run, "--prompt", "12345", "--beam-size", "0"]) == 2
    assert "beam size must be >= 1" in capsys.readouterr().err
    assert main(["sample", "--run", run, "--prompt", "1234567890"]) == 2
    assert "longer than the 6" in capsys.readouterr().err
    html = tmp_path / "attn.html"
    report = run_json(capsys, ["inspect", run, "--prompt", "12345", "--html", str(html),
                               "--json"])  # fmt: skip
    assert report["output"] == "54321"
    pages = [tmp_path / f"attn-{part}.html" for part in ("encoder", "decoder", "cross")]
    assert report["html"] == [str(p) for p in pages] and all(p.is_file() for p in pages)
    assert main(["inspect", run, "--prompt", "12345", "--lens"]) == 2


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--task", "reverse", "--task-alphabet", ""], "needs a non-empty alphabet"),
        (["--task", "reverse", "--task-max-len", "60"], "longer than block_size"),
        (["--task", "reverse", "--arch", "encoder"], "needs --arch encoder-decoder"),
        (["--arch", "encoder-decoder"], "pass --task"),
    ],
)
def test_bad_task_settings_are_one_line_errors(tmp_path, text_file, capsys, flags, message):
    argv = ["train", *flags, "--data", str(text_file), "--run", str(tmp_path / "x"),
            "--max-iters", "1", "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()  # nothing written for settings that cannot work


def test_induction_heads_form_and_ablating_them_removes_the_gap(tmp_path, capsys):
    """The proof of docs/interpretability.md, from the command line (about 30 s)."""
    run = str(tmp_path / "induction")
    assert main(["train", "--task", "induction", "--run", run, "--device", "cpu",
                 "--no-progress"]) == 0  # fmt: skip
    report = run_json(capsys, ["inspect", run, "--heads", "--json"])["heads"]
    induction, previous = report["scores"]["induction"], report["scores"]["previous_token"]
    assert max(induction[1]) >= 0.9  # an induction head in layer 1
    assert max(induction[0]) < 0.2  # and none in layer 0, which cannot have one
    assert max(previous[0]) >= 0.5  # a previous-token head in layer 0
    losses, ablated = report["losses"], report["ablated"]
    assert losses["repeat_loss"] < 0.1 * losses["first_block_loss"]
    assert ablated["repeat_loss"] > 0.9 * ablated["first_block_loss"]  # the gap is gone


def test_inspect_reads_a_prompt(tmp_path, capsys):
    run = str(tmp_path / "ind")
    assert main(["train", "--task", "induction", "--run", run, "--max-iters", "5",
                 "--device", "cpu", "--no-progress"]) == 0  # fmt: skip
    html, png = tmp_path / "a.html", tmp_path / "png"
    report = run_json(capsys, ["inspect", run, "--prompt", "abcabc", "--lens", "--dla", "a",
                               "--html", str(html), "--png", str(png), "--json"])  # fmt: skip
    assert report["tokens"] == list("abcabc")
    assert list(report["lens"]) == ["embed", "blocks.0", "final"]
    assert abs(report["dla"]["logit"] - sum(report["dla"]["parts"].values())) < 1e-9
    assert html.read_text().count("<script") == 2  # self-contained: data and code inline
    assert sorted(p.name for p in png.iterdir()) == ["attention_layer0.png", "attention_layer1.png"]
    assert main(["inspect", run, "--prompt", "abc!"]) == 2  # '!' is not in the alphabet
    losses = run_json(capsys, ["eval", "--run", run, "--json"])  # no corpus: the task's probe
    assert losses["first_block_loss"] > 0 and losses["repeat_loss"] > 0
    assert main(["sample", "--run", run, "--prompt", "abcab", "--max-new-tokens", "3"]) == 0
    assert main(["inspect", run, "--lens"]) == 2  # --lens reads a --prompt


def test_the_cli_offers_every_task():
    from glassbox.config import TASKS
    from glassbox.data.tasks import TASKS as SEQ2SEQ_TASKS

    assert (*SEQ2SEQ_TASKS, "induction", "addition-gpt", "calculator", "facts") == TASKS
