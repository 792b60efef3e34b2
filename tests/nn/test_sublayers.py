"""Sublayers plug in through registries, and may record auxiliary losses.

Each test adds a kind the way new work would (one class, one registry line, its name among
the config's choices), here with monkeypatch so the registries are restored afterwards.
"""

from __future__ import annotations

import pytest
import torch
from helpers import scramble
from torch import Tensor

import glassbox.config
from glassbox.config import ATTENTION_KINDS, MLP_KINDS, POS_ENCODINGS, ModelConfig
from glassbox.generate.cpu import PackedLinear, pack_for_cpu
from glassbox.models import GPT, EncoderDecoder, build_model
from glassbox.nn import ATTENTIONS, MLP, MLPS, POSITION_SCHEMES, AuxLossSource, SelfAttention
from glassbox.nn.positional import LearnedPositions

SMALL = dict(vocab_size=11, block_size=16, n_layer=2, n_head=4, n_embd=32)


def test_the_registries_hold_exactly_the_configurable_kinds():
    assert sorted(MLPS) == sorted(MLP_KINDS)
    assert sorted(ATTENTIONS) == sorted(ATTENTION_KINDS)
    assert sorted(POSITION_SCHEMES) == sorted(POS_ENCODINGS)
    model = GPT(ModelConfig(**SMALL))
    assert type(model.blocks[0].mlp) is MLPS["dense"]
    assert type(model.blocks[0].attn) is ATTENTIONS["mha"]


def register(monkeypatch, registry: dict, choices: str, name: str, cls: type) -> None:
    """What adding a kind takes: a registry line and the name among the config's choices."""
    monkeypatch.setitem(registry, name, cls)
    monkeypatch.setattr(glassbox.config, choices, (*getattr(glassbox.config, choices), name))


class PenalizedMLP(AuxLossSource, MLP):
    """The dense MLP plus a made-up auxiliary loss, recorded in training only (as a
    router's balancing loss would be): 0.1 times the mean square of the hidden layer."""

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.fc(x))  # (B, T, hidden)
        if self.training:
            self.record_aux("l2", 0.1 * h.pow(2).mean())
        return self.dropout(self.proj(h))


def expected_penalty(mlp: MLP, x: Tensor) -> Tensor:
    return 0.1 * mlp.act(mlp.fc(x)).pow(2).mean()


@pytest.fixture
def penalized(monkeypatch):
    register(monkeypatch, MLPS, "MLP_KINDS", "penalized", PenalizedMLP)
    return ModelConfig(**SMALL, mlp="penalized")


def test_a_sublayer_records_an_aux_loss_that_the_model_reports(penalized):
    torch.manual_seed(0)
    model = scramble(GPT(penalized)).train()
    idx = torch.randint(0, 11, (2, 8))
    inputs = []  # what each MLP read: its norm's output, rebuilt from the hooked stream
    hooks = [(f"blocks.{l}.hook_resid_mid", lambda x, hook: inputs.append(x)) for l in (0, 1)]
    with model.hooks(hooks):
        model(idx)
    losses = model.aux_losses()
    assert list(losses) == ["blocks.0.mlp.l2", "blocks.1.mlp.l2"]
    for layer, x in enumerate(inputs):
        block = model.blocks[layer]
        expected = expected_penalty(block.mlp, block.ln_2(x))
        torch.testing.assert_close(losses[f"blocks.{layer}.mlp.l2"], expected)
    total = model.aux_loss()
    assert total.shape == () and total.requires_grad
    torch.testing.assert_close(total, sum(losses.values()))
    total.backward()  # the aux loss trains the weights it depends on
    assert model.blocks[0].mlp.fc.weight.grad.abs().sum() > 0
    # the last MLP's output projection feeds no penalty: the aux loss leaves it alone
    assert model.blocks[1].mlp.proj.weight.grad is None


def test_aux_losses_are_replaced_by_every_forward_pass(penalized):
    torch.manual_seed(0)
    model = scramble(GPT(penalized)).train()
    model(torch.randint(0, 11, (2, 8)))
    first = model.aux_loss().item()
    model(torch.randint(0, 11, (3, 5)))
    second = model.aux_loss().item()
    assert first != second and len(model.aux_losses()) == 2  # replaced, not accumulated
    model.eval()
    model(torch.randint(0, 11, (2, 8)))  # nothing recorded at evaluation: all cleared
    assert model.aux_losses() == {}
    assert model.aux_loss().item() == 0.0


def test_a_model_without_aux_sources_reports_a_zero_scalar():
    model = GPT(ModelConfig(**SMALL))
    model(torch.randint(0, 11, (2, 8)))
    zero = model.aux_loss()
    assert zero.shape == () and zero.item() == 0.0 and zero.dtype == torch.float32
    assert model.aux_losses() == {}


def test_an_encoder_decoder_reports_both_stacks(penalized):
    config = ModelConfig(**{**vars(penalized), "arch": "encoder-decoder"})
    model = EncoderDecoder(config).train()
    src, tgt = torch.randint(0, 11, (2, 7)), torch.randint(0, 11, (2, 5))
    model(src, tgt)
    assert sorted(model.aux_losses()) == sorted(
        f"{part}.blocks.{l}.mlp.l2" for part in ("encoder", "decoder") for l in (0, 1)
    )


def test_a_plugged_in_mlp_is_initialized_trained_and_packed_like_the_dense_one(penalized):
    torch.manual_seed(0)
    model = GPT(ModelConfig(**{**vars(penalized), "n_layer": 8, "n_embd": 128}))
    proj = torch.cat([b.mlp.proj.weight.flatten() for b in model.blocks])
    assert proj.std().item() == pytest.approx(0.02 / 4, rel=0.05)  # the scaled residual init
    model.eval()
    idx = torch.randint(0, 11, (2, 6))
    expected = model(idx)
    pack_for_cpu(model, min_weights=1)
    assert isinstance(model.blocks[0].mlp.fc, PackedLinear)
    assert (model(idx) - expected).abs().max() < 1e-4


class HalfAttention(SelfAttention):
    """Multi-head attention whose output is halved: a stand-in for a new attention kind."""

    def forward(self, x: Tensor, **kwargs) -> Tensor:
        return super().forward(x, **kwargs) / 2


def test_an_attention_kind_plugs_in_with_one_registration(monkeypatch):
    register(monkeypatch, ATTENTIONS, "ATTENTION_KINDS", "half", HalfAttention)
    torch.manual_seed(0)
    plain = scramble(build_model(ModelConfig(**SMALL))).eval()
    half = build_model(ModelConfig(**SMALL, attention_kind="half")).eval()
    half.load_state_dict(plain.state_dict())
    assert isinstance(half.blocks[0].attn, HalfAttention)
    assert half.hook_names() == plain.hook_names()  # the hook points come with the base class
    idx = torch.randint(0, 11, (2, 8))
    _, cache = half.run_with_cache(idx, names_filter="blocks.0.hook_attn_out")
    _, plain_cache = plain.run_with_cache(idx, names_filter="blocks.0.hook_attn_out")
    torch.testing.assert_close(
        cache["blocks.0.hook_attn_out"], plain_cache["blocks.0.hook_attn_out"] / 2
    )


class DoubledPositions(LearnedPositions):
    """Learned positions added twice over: a stand-in for a new position scheme."""

    def embed(self, positions: Tensor) -> Tensor:
        return 2 * self.table(positions)


def test_a_position_scheme_plugs_in_with_one_registration(monkeypatch):
    register(monkeypatch, POSITION_SCHEMES, "POS_ENCODINGS", "doubled", DoubledPositions)
    torch.manual_seed(0)
    learned = scramble(GPT(ModelConfig(**SMALL))).eval()
    doubled = GPT(ModelConfig(**SMALL, pos_encoding="doubled")).eval()
    state = learned.state_dict()
    doubled.load_state_dict({**state, "pos_emb.table.weight": state["pos_emb.table.weight"] / 2})
    idx = torch.randint(0, 11, (2, 8))
    torch.testing.assert_close(doubled(idx), learned(idx))
    assert doubled.config.position_table  # inherited flags: a table of block_size rows
