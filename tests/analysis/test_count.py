import json

import pytest
import torch

from glassbox.analysis import count_report, flops_per_token, kv_cache_bytes, param_table
from glassbox.cli import main
from glassbox.config import ModelConfig, from_preset
from glassbox.models import GPT


@pytest.mark.parametrize(
    "changes",
    [dict(), dict(n_kv_head=2), dict(bias=True, pos_encoding="sinusoidal"), dict(n_layer=3)],
)
def test_the_table_sums_to_the_built_model(changes):
    config = ModelConfig(vocab_size=65, **changes)
    table = param_table(config)
    assert table["total"] == GPT(config).num_params()
    assert table["total"] == sum(v for k, v in table.items() if k != "total")
    assert table["head"] == 0  # tied


def test_gpt2_sizes():
    expected = {"gpt2": 124_439_808, "gpt2-medium": 354_823_168, "gpt2-large": 774_030_080,
                "gpt2-xl": 1_557_611_200}  # fmt: skip
    for name, n in expected.items():
        assert param_table(from_preset(name)[0])["total"] == n, name


def test_flops_follow_the_2n_rule_plus_attention():
    config = from_preset("gpt2")[0]
    report = count_report(config)
    flops = report["flops_per_token"]
    # dense matmuls are 2 FLOPs per weight; N also holds biases and norms, hence "about"
    assert flops["forward_parts"]["dense"] == pytest.approx(flops["forward_2n_rule"], rel=0.01)
    at_1 = flops_per_token(config, 1)["attention"]
    at_1024 = flops_per_token(config, 1024)["attention"]
    assert at_1024 == 1024 * at_1 == 4 * 12 * 1024 * 768


def test_flops_match_a_count_of_the_matmuls():
    config = ModelConfig(vocab_size=65, n_layer=2, n_head=4, n_embd=32, block_size=16)
    C, V, T = 32, 65, 16
    per_layer = 2 * (C * 3 * C + C * C + 2 * 4 * C * C)  # qkv, proj, fc, proj
    assert flops_per_token(config, T)["total"] == 2 * per_layer + 2 * V * C + 2 * 4 * T * C


def test_kv_cache_bytes_match_a_real_cache():
    config = ModelConfig(vocab_size=65, n_head=4, n_kv_head=2)
    cache = GPT(config).new_cache(batch_size=3)
    assert cache.bytes() == kv_cache_bytes(config) * config.block_size * 3
    assert kv_cache_bytes(config, "bfloat16") * 2 == kv_cache_bytes(config)
    with torch.device("meta"):
        assert kv_cache_bytes(from_preset("gpt2")[0]) == 2 * 12 * 768 * 4


def test_count_cli(capsys, tmp_path):
    assert main(["count", "--preset", "gpt2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["params"]["total"] == 124_439_808
    assert main(["count", "--preset", "gpt2", "--n-kv-head", "4"]) == 0
    out = capsys.readouterr().out
    assert "4 KV heads" in out and "24,576 bytes per token" in out


@pytest.mark.parametrize("arch", ["encoder", "encoder-decoder"])
def test_every_architecture_is_counted_whole(arch):
    from glassbox.models import build_model

    for shared in (True, False):
        config = ModelConfig(arch=arch, shared_embeddings=shared)
        table = param_table(config)
        assert table["total"] == build_model(config).num_params()
        assert table["head"] == 0  # every parameter found its component
