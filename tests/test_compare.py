import argparse
import json

import pytest

from glassbox.commands import compare as compare_command
from glassbox.compare import SUITES, compare, format_table, parse_variant
from glassbox.config import ConfigError, from_preset
from glassbox.runs import load_configs
from glassbox.train import trainer

KEYS = {
    "variant",
    "changes",
    "params",
    "active_params",
    "val_loss",
    "best_val_loss",
    "train_loss",
    "tokens_per_s",
    "ms_per_iter",
    "seconds",
}


@pytest.fixture(autouse=True)
def _no_plots(monkeypatch):
    monkeypatch.setattr(trainer, "_plot", lambda run_dir: None)  # matplotlib: slow, unused here


@pytest.fixture
def tiny(text_file):
    """A few-step budget of char-tiny on the small test corpus."""
    return dict(
        data=str(text_file),
        max_iters=4,
        lr_decay_iters=4,
        warmup_iters=1,
        eval_iters=1,
        eval_interval=2,
        batch_size=4,
        device="cpu",
    )


def test_parse_variant_forms():
    assert parse_variant("rope:pos_encoding=rope,lr=2e-3") == (
        "rope",
        {"pos_encoding": "rope", "lr": "2e-3"},
    )
    assert parse_variant("n_layer=3,n-head=1") == (
        "n_layer=3,n-head=1",
        {"n_layer": "3", "n_head": "1"},
    )
    assert parse_variant("baseline") == ("baseline", {})
    assert parse_variant("data=C:/corpus.txt") == ("data=C:/corpus.txt", {"data": "C:/corpus.txt"})


def test_unknown_key_is_an_error_with_a_hint():
    with pytest.raises(ConfigError, match="did you mean 'pos_encoding'"):
        parse_variant("rope:pos_encodng=rope")
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        parse_variant("rope")
    with pytest.raises(ConfigError, match="may not set run_dir"):
        parse_variant("x:run_dir=elsewhere")


def test_a_bad_value_fails_before_any_run_starts(tmp_path, tiny):
    root = tmp_path / "runs"
    with pytest.raises(ConfigError, match="variant 'bad': pos_encoding must be one of"):
        compare(["baseline", "bad:pos_encoding=foo"], preset="char-tiny", base=tiny, run_root=root)
    with pytest.raises(ConfigError, match="n_layer expects int"):
        compare(["baseline", "n_layer=two"], preset="char-tiny", base=tiny, run_root=root)
    with pytest.raises(ConfigError, match="share the run folder"):
        compare(["a:lr=1e-3", "a:lr=2e-3"], preset="char-tiny", base=tiny, run_root=root)
    assert not root.exists()  # the good first variant was never trained


def test_rows_measure_each_variant_against_the_same_baseline(tmp_path, tiny):
    seen = []
    rows = compare(
        [
            "baseline",
            "same:norm=layernorm",  # the default, spelled out: must train identically
            "rope:pos_encoding=rope",
            "relative:pos_encoding=relative",
            "swiglu:activation=swiglu",
        ],
        preset="char-tiny",
        base=tiny,
        run_root=tmp_path / "runs",
        on_result=seen.append,
    )
    assert seen == rows
    assert all(set(row) == KEYS for row in rows)
    by = {row["variant"]: row for row in rows}
    assert by["rope"]["changes"] == {"pos_encoding": "rope"}
    for row in rows:
        assert row["tokens_per_s"] > 0 and row["ms_per_iter"] > 0 and row["seconds"] > 0
        assert 0 < row["best_val_loss"] <= row["val_loss"] < 10
        assert (tmp_path / "runs" / row["variant"] / "config.json").is_file()

    # Same seed, same data, same config: bit-for-bit the same losses.
    assert by["same"]["val_loss"] == by["baseline"]["val_loss"]
    assert by["same"]["train_loss"] == by["baseline"]["train_loss"]
    assert by["rope"]["val_loss"] != by["baseline"]["val_loss"]

    # Parameters follow the architecture, with vocab_size from the corpus, not the preset.
    model, _ = from_preset("char-tiny")
    table = model.block_size * model.n_embd
    assert by["baseline"]["params"] - by["rope"]["params"] == table  # rope has no table
    extra = model.n_layer * 2 * (2 * model.max_relative_distance + 1) * model.d_head
    assert by["relative"]["params"] - by["rope"]["params"] == extra  # keys + values per layer
    gelu, swiglu = by["baseline"]["params"], by["swiglu"]["params"]
    assert swiglu != gelu and abs(swiglu - gelu) / gelu < 0.01  # 2/3 width keeps the size

    text = format_table(rows)
    lines = text.splitlines()
    assert len(lines) == 2 + len(rows)
    for name in by:
        assert f"| {name} |" in text
    assert "| +0.0000 |" in lines[3] and "| 1.00× |" in lines[2]


def test_suites_share_one_baseline():
    everything = SUITES["all"]
    assert everything.count("baseline") == 1
    for name, suite in SUITES.items():
        assert suite[0] == "baseline"
        assert set(suite) <= set(everything), name
        for spec in suite:
            parse_variant(spec)  # every suite entry is well formed
    values = {v for spec in everything for v in parse_variant(spec)[1].values()}
    assert {"sinusoidal", "rope", "alibi", "relative", "rmsnorm", "batchnorm"} <= values
    assert {"post", "swiglu"} <= values
    assert {"relu2", "muon", "wsd"} <= values  # the speedrun suite (issue 17)
    assert {"qk_norm", "tie_embeddings", "zero_init", "logit_softcap"} <= {
        key for spec in SUITES["speedrun"] for key in parse_variant(spec)[1]
    }


def test_the_speedrun_variants_each_train_one_change_away_from_the_baseline(tmp_path, tiny):
    variants = [
        "baseline",
        "qk-norm:qk_norm=true",
        "relu2:activation=relu2",
        "head:tie_embeddings=false,zero_init=true",
        "softcap:logit_softcap=5",
        "muon:optimizer=muon,muon_lr=0.05",
        "wsd:lr_schedule=wsd,decay_fraction=0.5",
    ]
    rows = compare(variants, preset="char-tiny", base=tiny, run_root=tmp_path / "runs")
    by = {row["variant"]: row for row in rows}
    for row in rows:
        assert 0 < row["best_val_loss"] <= row["val_loss"] < 10, row["variant"]
    baseline = by["baseline"]
    vocab = load_configs(tmp_path / "runs" / "baseline")[0].vocab_size
    n_embd = from_preset("char-tiny")[0].n_embd
    assert by["head"]["params"] == baseline["params"] + vocab * n_embd  # lm_head of its own
    for name in ("qk-norm", "relu2", "softcap", "muon", "wsd"):
        assert by[name]["params"] == baseline["params"], name  # no parameters of their own
    for name in ("qk-norm", "relu2", "head", "muon", "wsd"):
        assert by[name]["val_loss"] != baseline["val_loss"], name
    assert by["head"]["changes"] == {"tie_embeddings": "false", "zero_init": "true"}


def test_the_char_speedrun_preset_runs_in_compare(tmp_path, tiny):
    rows = compare(["baseline", "adamw:optimizer=adamw,lr_schedule=cosine"],
                   preset="char-speedrun", base=tiny, run_root=tmp_path / "runs")  # fmt: skip
    assert rows[0]["params"] == rows[1]["params"]
    assert all(0 < row["val_loss"] < 10 for row in rows)
    assert rows[0]["val_loss"] != rows[1]["val_loss"]


def parse(argv):
    parser = argparse.ArgumentParser()
    compare_command.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["compare", *argv])


def test_cli_json_keeps_stdout_for_the_json(tmp_path, text_file, capsys):
    args = parse(
        ["baseline", "lr=3e-3", "--preset", "char-tiny", "--data", str(text_file),
         "--max-iters", "2", "--run-root", str(tmp_path / "runs"), "--json"]
    )  # fmt: skip
    assert compare_command.run(args) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)  # the evaluation lines and progress went to stderr
    assert (report["preset"], report["data"], report["max_iters"]) == (
        "char-tiny",
        str(text_file),
        2,
    )
    assert [row["variant"] for row in report["rows"]] == ["baseline", "lr=3e-3"]
    assert "baseline: val loss" in err and "lr=3e-3: val loss" in err
    assert "iter 2: train loss" in err  # the trainer's own lines, moved off stdout
    assert (tmp_path / "runs" / "lr-3e-3").is_dir()


def test_cli_takes_variants_or_a_suite_not_both():
    with pytest.raises(ConfigError, match="not both"):
        compare_command.run(parse(["baseline", "--suite", "norms"]))
    with pytest.raises(ConfigError, match="nothing to compare"):
        compare_command.run(parse([]))
