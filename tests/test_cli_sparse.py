"""Sparse models from the command line: train a tiny mixture-of-experts and a tiny
mixture-of-heads run, read their routing in the metrics and with `inspect --routing`,
count their active parameters, and get one clear line for settings that cannot work."""

from __future__ import annotations

import json

import pytest

from glassbox.analysis.count import active_params, count_report, param_table
from glassbox.cli import main
from glassbox.config import ModelConfig

TINY = [
    "--n-layer", "2", "--n-head", "4", "--n-embd", "32", "--block-size", "16",
    "--batch-size", "4", "--max-iters", "6", "--lr-decay-iters", "6", "--warmup-iters", "1",
    "--eval-interval", "3", "--eval-iters", "1", "--device", "cpu", "--no-progress",
]  # fmt: skip
MOE = ["--mlp", "moe", "--n-experts", "4", "--top-k", "2"]
MOH = ["--attention-kind", "moh", "--moh-active-heads", "2"]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "text.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def moe_run(tmp_path_factory, text_file):
    run = str(tmp_path_factory.mktemp("moe") / "run")
    assert main(["train", "--data", text_file, "--run", run, *TINY, *MOE]) == 0
    return run


def test_an_moe_run_logs_how_evenly_its_experts_are_used(moe_run):
    with open(f"{moe_run}/metrics.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if '"train"' in line]
    assert rows and all(row["expert_imbalance"] >= 1.0 for row in rows)
    assert all(row["expert_max_min"] >= row["expert_imbalance"] for row in rows)
    assert all(row["dropped"] == 0.0 for row in rows)  # dropless by default
    for row in rows:  # tokens each expert served, per layer: 4 experts, top-2 of 4x16 tokens
        assert sorted(row["expert_load"]) == ["blocks.0.mlp", "blocks.1.mlp"]
        assert all(
            len(load) == 4 and sum(load) == 2 * 4 * 16 for load in row["expert_load"].values()
        )


def test_inspect_routing_shows_each_tokens_experts(moe_run, capsys):
    capsys.readouterr()
    assert main(["inspect", moe_run, "--prompt", "the fox", "--routing", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    layers = report["routing"]
    assert sorted(layers) == ["blocks.0.mlp", "blocks.1.mlp"]
    for route in layers.values():
        assert len(route["experts"]) == len("the fox")  # one row per token
        assert all(len(e) == 2 and len(set(e)) == 2 for e in route["experts"])  # top-2
        assert sum(route["load"]) == 2 * len("the fox") and len(route["load"]) == 4
    assert main(["inspect", moe_run, "--prompt", "the fox", "--routing"]) == 0
    assert "blocks.1.mlp: experts per token" in capsys.readouterr().out


def test_sampling_an_moe_run_with_and_without_the_cache_agrees(moe_run, capsys):
    args = ["sample", "--run", moe_run, "--prompt", "the ", "--max-new-tokens", "12", "--seed", "3"]
    capsys.readouterr()
    assert main(args) == 0
    cached = capsys.readouterr().out
    assert main([*args, "--no-cache"]) == 0
    assert capsys.readouterr().out == cached


def test_inspect_routing_shows_the_heads_of_a_moh_run(tmp_path, text_file, capsys):
    run = str(tmp_path / "moh")
    assert main(["train", "--data", text_file, "--run", run, *TINY, *MOH]) == 0
    capsys.readouterr()
    assert main(["inspect", run, "--prompt", "the fox", "--routing", "--json"]) == 0
    heads = json.loads(capsys.readouterr().out)["routing"]["blocks.0.attn"]["heads"]
    assert len(heads) == len("the fox") and all(len(h) == 2 for h in heads)


def test_a_dense_run_has_no_routing_to_show(tmp_path, text_file, capsys):
    run = str(tmp_path / "dense")
    assert main(["train", "--data", text_file, "--run", run, *TINY]) == 0
    capsys.readouterr()
    assert main(["inspect", run, "--prompt", "the fox", "--routing"]) == 2
    assert "has no router" in capsys.readouterr().err


def test_count_separates_active_from_total_parameters(capsys):
    dense = ModelConfig(vocab_size=65)
    moe = ModelConfig(vocab_size=65, mlp="moe", n_experts=8, moe_top_k=2, mlp_ratio=2)
    one_expert = 2 * 2 * 128 * 128  # fc and proj of an MLP 2x wide, no biases
    router = 128 * 8
    assert param_table(moe)["mlp"] == 4 * (8 * one_expert + router)
    assert active_params(moe) == param_table(moe)["total"] - 4 * 6 * one_expert
    # 2 experts 2x wide are as many active MLP weights as the dense 4x MLP (+ the router)
    assert active_params(moe) == active_params(dense) + 4 * router
    report = count_report(moe)
    dense_report = count_report(dense)
    extra = report["flops_per_token"]["forward_parts"]["dense"]
    assert extra - dense_report["flops_per_token"]["forward_parts"]["dense"] == 2 * 4 * router
    assert main(["count", "--mlp", "moe", "--n-experts", "8", "--top-k", "2"]) == 0
    assert "active parameters per token" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([*MOE[:4], "--top-k", "5"], "moe_top_k (--top-k) must be between 1 and n_experts (4)"),
        (["--mlp", "moe", "--n-experts", "0"], "n_experts must be at least 1"),
        (
            ["--mlp", "moe", "--no-dropless", "--capacity-factor", "0"],
            "capacity_factor must be > 0",
        ),
        (["--mlp", "moe", "--attn-only"], "an attn_only model has none"),
        (["--attention-kind", "moh", "--moh-shared-heads", "4"], "moh_shared_heads must be in"),
        (["--attention-kind", "moh", "--moh-active-heads", "5"], "moh_active_heads must be in"),
    ],
)
def test_settings_that_cannot_work_are_one_line_errors(tmp_path, text_file, capsys, flags, message):
    run = tmp_path / "run"
    assert main(["train", "--data", text_file, "--run", str(run), *TINY, *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not run.exists()


def test_a_dense_run_cannot_be_fine_tuned_as_an_moe(moe_run, tmp_path, text_file, capsys):
    dense = str(tmp_path / "dense")
    assert main(["train", "--data", text_file, "--run", dense, *TINY]) == 0
    capsys.readouterr()
    ft = tmp_path / "ft"
    args = ["train", "--init-from", dense, "--data", text_file, "--run", str(ft), "--mlp", "moe"]
    assert main([*args, "--no-progress"]) == 2
    assert "--mlp moe contradicts --init-from" in capsys.readouterr().err
    assert not ft.exists()
