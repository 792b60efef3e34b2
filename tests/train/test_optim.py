import pytest

from glassbox.config import ModelConfig, TrainConfig
from glassbox.models import GPT
from glassbox.train import configure_optimizer, lr_at, set_lr


def test_schedule_warms_up_linearly_then_decays_by_cosine_to_min_lr():
    c = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_iters=100, lr_decay_iters=2000)
    assert lr_at(0, c) == pytest.approx(1e-5)
    assert lr_at(49, c) == pytest.approx(5e-4)
    assert lr_at(100, c) == pytest.approx(1e-3)
    assert lr_at(1050, c) == pytest.approx(5.5e-4)  # halfway: mean of lr and min_lr
    assert lr_at(2000, c) == lr_at(5000, c) == pytest.approx(1e-4)
    lrs = [lr_at(i, c) for i in range(100, 2001)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def test_weight_decay_applies_to_matrices_only():
    model = GPT(ModelConfig(vocab_size=10, n_layer=1, n_head=2, n_embd=8, bias=True))
    optimizer = configure_optimizer(model, TrainConfig(weight_decay=0.1), "cpu")
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"])
    assert all(p.dim() == 1 for p in no_decay["params"])
    n_decay = sum(len(g["params"]) for g in optimizer.param_groups)
    assert n_decay == len(list(model.parameters()))


def test_wsd_warms_up_holds_then_decays_linearly_over_the_last_fraction():
    c = TrainConfig(lr=1e-3, min_lr=1e-4, warmup_iters=100, lr_decay_iters=2000,
                    lr_schedule="wsd", decay_fraction=0.25)  # fmt: skip
    assert [lr_at(i, c) for i in (0, 49)] == pytest.approx([1e-5, 5e-4])  # the same warmup
    # stable: lr itself from the end of the warmup to the start of the decay, at 1500
    assert all(lr_at(i, c) == 1e-3 for i in range(100, 1501))
    # decay: a straight line from lr at 1500 to min_lr at 2000, then min_lr
    assert lr_at(1750, c) == pytest.approx(5.5e-4)
    assert lr_at(1900, c) == pytest.approx(1e-3 - 0.8 * 9e-4)
    steps = [lr_at(i, c) - lr_at(i + 1, c) for i in range(1500, 1999)]
    assert steps == pytest.approx([9e-4 / 500] * len(steps))
    assert lr_at(2000, c) == lr_at(5000, c) == pytest.approx(1e-4)
    # a decay longer than what follows the warmup starts when the warmup ends
    c = TrainConfig(lr=1e-3, min_lr=0.0, warmup_iters=10, lr_decay_iters=20,
                    lr_schedule="wsd", decay_fraction=1.0)  # fmt: skip
    assert lr_at(9, c) == lr_at(10, c) == pytest.approx(1e-3)
    assert lr_at(15, c) == pytest.approx(5e-4)


def test_adamw_groups_all_get_the_scheduled_lr():
    model = GPT(ModelConfig(vocab_size=10, n_layer=1, n_head=2, n_embd=8))
    config = TrainConfig(lr=1e-3, muon_lr=0.5)  # muon_lr is Muon's alone
    optimizer = configure_optimizer(model, config, "cpu")
    set_lr(optimizer, 4e-4, config)
    assert [g["lr"] for g in optimizer.param_groups] == [4e-4, 4e-4]
