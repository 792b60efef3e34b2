import pytest

from glassbox.config import ConfigError, ModelConfig, TrainConfig, from_preset, override


def test_n_embd_must_divide_into_heads():
    with pytest.raises(ConfigError, match="divisible by n_head"):
        ModelConfig(n_embd=130, n_head=4)


@pytest.mark.parametrize(
    "bad",
    [{"n_layer": 0}, {"dropout": 1.0}, {"pos_encoding": "rotary"}, {"attention": "flash"}],
)
def test_model_config_rejects_bad_values(bad):
    with pytest.raises(ConfigError):
        ModelConfig(**bad)


def test_train_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="min_lr"):
        TrainConfig(lr=1e-4, min_lr=1e-3)
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(batch_size=0)


def test_char_small_preset_is_the_benchmark_configuration():
    model, train = from_preset("char-small")
    assert (model.n_layer, model.n_head, model.n_embd, model.block_size) == (4, 4, 128, 64)
    assert (model.dropout, model.bias) == (0.0, False)
    assert (train.batch_size, train.max_iters, train.lr, train.min_lr) == (12, 2000, 1e-3, 1e-4)
    assert (train.warmup_iters, train.lr_decay_iters) == (100, 2000)
    assert (train.beta1, train.beta2, train.weight_decay, train.grad_clip) == (0.9, 0.99, 0.1, 1.0)
    assert (train.eval_interval, train.eval_iters) == (250, 20)


def test_override_checks_types_and_converts_strings():
    assert override(ModelConfig(), {"n_layer": "6", "bias": "true"}).n_layer == 6
    assert override(TrainConfig(), {"lr": 3}).lr == 3.0
    with pytest.raises(ConfigError, match="n_layer expects int"):
        override(ModelConfig(), {"n_layer": "six"})
    with pytest.raises(ConfigError, match="expects int"):
        override(ModelConfig(), {"n_layer": 2.5})


def test_unknown_key_is_an_error_with_a_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'n_layer'"):
        from_preset("char-small", n_layers=6)
    with pytest.raises(ConfigError, match="unknown preset"):
        from_preset("huge")


def test_n_kv_head_must_divide_n_head():
    assert ModelConfig(n_head=4, n_kv_head=2).kv_heads == 2
    assert ModelConfig(n_head=4).kv_heads == 4
    with pytest.raises(ConfigError, match=r"n_kv_head \(3\) must divide n_head \(4\)"):
        ModelConfig(n_head=4, n_kv_head=3)
