import pytest

from glassbox.config import ModelConfig, TrainConfig
from glassbox.models import GPT
from glassbox.train import configure_optimizer, lr_at


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
