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


@pytest.mark.parametrize(
    "cls, bad, message",
    [
        (ModelConfig, {"logit_softcap": -1.0}, r"logit_softcap must be a finite number >= 0"),
        (ModelConfig, {"logit_softcap": float("inf")}, r"logit_softcap must be a finite"),
        (ModelConfig, {"activation": "relu3"}, r"activation must be one of .*relu2"),
        (TrainConfig, {"optimizer": "sgd"}, r"optimizer must be one of adamw, muon; got 'sgd'"),
        (TrainConfig, {"muon_lr": 0.0}, r"muon_lr must be positive; got 0.0"),
        (TrainConfig, {"muon_lr": -0.02}, r"muon_lr must be positive"),
        (TrainConfig, {"muon_momentum": 1.0}, r"muon_momentum must be in \[0, 1\)"),
        (TrainConfig, {"lr_schedule": "linear"}, r"lr_schedule must be one of cosine, wsd"),
        (TrainConfig, {"decay_fraction": 0.0}, r"decay_fraction must be in \(0, 1\]"),
        (TrainConfig, {"decay_fraction": 1.5}, r"decay_fraction must be in \(0, 1\]"),
        (TrainConfig, {"optimizer": "muon", "fsdp": True}, r"optimizer muon .* fsdp"),
    ],
)
def test_recipe_settings_reject_bad_values_in_one_line(cls, bad, message):
    with pytest.raises(ConfigError, match=message) as info:
        cls(**bad)
    assert "\n" not in str(info.value)


def test_char_speedrun_preset_uses_the_modern_recipe_on_char_smalls_task():
    model, train = from_preset("char-speedrun")
    small_model, small_train = from_preset("char-small")
    assert (model.n_layer, model.n_head, model.n_embd) == (4, 4, 128)
    assert model.block_size == small_model.block_size  # the same task: context 64
    assert (model.pos_encoding, model.norm, model.activation) == ("rope", "rmsnorm", "relu2")
    assert model.qk_norm and not model.tie_embeddings and model.zero_init
    assert model.logit_softcap > 0
    # fp32 on a CPU (bf16 autocast is slower there on the host it was tuned on), bf16 on CUDA
    assert (train.optimizer, train.lr_schedule, train.dtype) == ("muon", "wsd", "auto")
    assert train.data == "shakespeare" and train.max_iters == train.lr_decay_iters
    assert train.eval_full  # its val loss is the number `glassbox eval` gives, held to 1.898
    assert train.run_dir == "runs/char-speedrun"
    # the defaults keep every earlier preset as it was
    assert not small_model.qk_norm and small_model.tie_embeddings and not small_model.zero_init
    assert small_model.logit_softcap == 0
    assert (small_train.optimizer, small_train.lr_schedule) == ("adamw", "cosine")
