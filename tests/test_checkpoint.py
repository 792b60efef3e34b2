import os

import pytest
import torch

from glassbox.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from glassbox.config import ModelConfig, TrainConfig
from glassbox.models import GPT
from glassbox.train.optim import configure_optimizer

CONFIG = ModelConfig(vocab_size=13, block_size=8, n_layer=1, n_head=2, n_embd=8)


def trained_pair():
    torch.manual_seed(0)
    model = GPT(CONFIG)
    optimizer = configure_optimizer(model, TrainConfig(), "cpu")
    model(torch.randint(0, 13, (2, 8))).sum().backward()
    optimizer.step()
    return model, optimizer


def test_save_then_load_gives_identical_logits_and_optimizer_state(tmp_path):
    model, optimizer = trained_pair()
    rng = {"torch": torch.get_rng_state()}
    save_checkpoint(tmp_path / "c.safetensors", model, optimizer, rng, {"step": 7})
    fresh = GPT(CONFIG)
    fresh_opt = configure_optimizer(fresh, TrainConfig(), "cpu")
    got_rng, meta = load_checkpoint(tmp_path / "c.safetensors", fresh, fresh_opt)
    idx = torch.randint(0, 13, (2, 8))
    assert torch.equal(model(idx), fresh(idx))
    assert meta == {"step": 7}
    assert torch.equal(got_rng["torch"], rng["torch"])
    for a, b in zip(optimizer.state.values(), fresh_opt.state.values(), strict=True):
        assert torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, optimizer = trained_pair()
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, model, optimizer, meta={"step": 1})
    before = path.read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(CheckpointError, match="cannot write .*c.safetensors: disk full"):
        save_checkpoint(path, model, optimizer, meta={"step": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temp file left


def test_files_that_are_not_checkpoints_are_refused(tmp_path):
    model = GPT(CONFIG)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_model_state(tmp_path / "junk.safetensors", model)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_model_state(tmp_path / "missing.safetensors", model)
    save_checkpoint(tmp_path / "w.safetensors", model)
    bigger = GPT(ModelConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=8))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model_state(tmp_path / "w.safetensors", bigger)
