"""The mixture-of-experts MLP (`--mlp moe`): routing, capacity, auxiliary losses, and a GPT
built with it training, decoding and refusing a dense checkpoint."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glassbox.checkpoint import CheckpointError, load_model_state, save_checkpoint
from glassbox.config import ConfigError, ModelConfig
from glassbox.generate import generate
from glassbox.generate.cpu import pack_for_cpu
from glassbox.models import GPT
from glassbox.nn import MLP, MoE

TINY = dict(vocab_size=11, block_size=16, n_layer=2, n_head=1, n_embd=8)
SMALL = dict(vocab_size=23, block_size=24, n_layer=2, n_head=4, n_embd=32)


def make_moe(**changes) -> MoE:
    torch.manual_seed(0)
    return MoE(ModelConfig(**{**TINY, "mlp": "moe", **changes}))


def randn(*shape: int, seed: int = 1) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def steer(moe: MoE, logits: Tensor) -> Tensor:
    """An input x (1, N, C) whose router logits are exactly `logits` (N, E): the router
    reads only the first E channels, one each; the other channels are random."""
    N, E = logits.shape
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[:, :E] = torch.eye(E)
    x = randn(1, N, moe.router.in_features)
    x[0, :, :E] = logits
    return x


def test_one_expert_with_top_1_is_the_dense_mlp():
    torch.manual_seed(0)
    config = ModelConfig(**TINY, mlp="moe", n_experts=1, moe_top_k=1)
    dense, moe = MLP(config), MoE(config)
    moe.experts[0].load_state_dict(dense.state_dict())
    x = randn(2, 5, 8)
    torch.testing.assert_close(moe(x), dense(x), atol=1e-6, rtol=0)


def test_routing_hooks_have_their_shapes_and_top_2_weights_sum_to_one():
    torch.manual_seed(0)
    model = GPT(ModelConfig(**SMALL, mlp="moe", n_experts=4, moe_top_k=2)).eval()
    names = [f"blocks.1.mlp.{h}" for h in ("hook_router_logits", "hook_experts",
                                           "hook_routing_weights")]  # fmt: skip
    _, cache = model.run_with_cache(torch.randint(0, 23, (2, 5)), names_filter=names)
    logits, experts, weights = (cache[n] for n in names)
    assert logits.shape == (2, 5, 4)
    assert experts.shape == weights.shape == (2, 5, 2) and experts.dtype == torch.int64
    assert (experts[..., 0] != experts[..., 1]).all()  # two different experts per token
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 5))
    # the chosen experts are the two most probable, weighted in proportion to probability
    top = logits.float().softmax(-1).topk(2, dim=-1)
    assert torch.equal(experts, top.indices)
    torch.testing.assert_close(weights, top.values / top.values.sum(-1, keepdim=True))


def expected_output(moe: MoE, x: Tensor, logits: Tensor, kept: list[tuple[int, int]]) -> Tensor:
    """The output (1, N, C) when exactly the (token, expert) assignments in `kept` are
    served, each weighted by its renormalized top-k probability."""
    top = logits.softmax(-1).topk(moe.top_k, dim=-1)
    weights = top.values / top.values.sum(-1, keepdim=True) if moe.top_k > 1 else top.values
    out = torch.zeros_like(x)
    for token, expert in kept:
        slot = top.indices[token].tolist().index(expert)
        out[0, token] += weights[token, slot] * moe.experts[expert](x[0, token])
    return out


def test_capacity_serves_the_first_tokens_and_drops_the_rest():
    # 8 tokens, all preferring expert 0 of 2; capacity = ceil(1.0 * 8 * 1 / 2) = 4
    # capacity applies in training (a batch's work balanced), so the module is in train mode
    moe = make_moe(n_experts=2, moe_top_k=1, dropless=False, capacity_factor=1.0).train()
    logits = torch.tensor([[2.0, -1.0]]).repeat(8, 1)  # (N, E)
    x = steer(moe, logits)
    with torch.no_grad():
        out = moe(x)
        expected = expected_output(moe, x, logits, [(t, 0) for t in range(4)])
    torch.testing.assert_close(out, expected)
    assert (out[0, 4:] == 0).all()  # past capacity: nothing from the expert
    assert moe.last_load.tolist() == [4, 0] and moe.last_dropped == 0.5


def test_capacity_serves_all_first_choices_before_any_second_choice():
    # 4 tokens, top-2 of 3 experts; capacity = ceil(0.75 * 4 * 2 / 3) = 2 per expert
    moe = make_moe(n_experts=3, moe_top_k=2, dropless=False, capacity_factor=0.75).train()
    # choices (first, second): token 0 (1, 0), token 1 (1, 0), token 2 (0, 1), token 3 (0, 2)
    logits = torch.tensor([[2.0, 3, 0], [2, 3, 0], [3, 2, 0], [3, 0, 2]])
    x = steer(moe, logits)
    with torch.no_grad():
        out = moe(x)
    # expert 0 is full with the first choices of tokens 2 and 3, so the second choices of
    # tokens 0 and 1 are dropped; expert 1 is full with tokens 0 and 1, dropping token 2's
    kept = [(0, 1), (1, 1), (2, 0), (3, 0), (3, 2)]
    torch.testing.assert_close(out, expected_output(moe, x, logits, kept))
    assert moe.last_load.tolist() == [2, 2, 1] and moe.last_dropped == 3 / 8


@pytest.mark.parametrize("dropless", [True, False])
def test_dropless_or_eval_mode_serves_every_assignment(dropless):
    # in eval mode a capacity never applies: one token's output may not depend on the
    # others' routing (causality, and the KV cache's equality with a full pass)
    moe = make_moe(n_experts=2, moe_top_k=1, dropless=dropless, capacity_factor=1.0).eval()
    logits = torch.tensor([[2.0, -1.0]]).repeat(8, 1)
    x = steer(moe, logits)
    with torch.no_grad():
        out = moe(x)
        expected = expected_output(moe, x, logits, [(t, 0) for t in range(8)])
    torch.testing.assert_close(out, expected)
    assert moe.last_load.tolist() == [8, 0] and moe.last_dropped == 0.0


def test_balance_and_z_losses_follow_their_formulas():
    moe = make_moe(n_experts=4, moe_top_k=2, moe_balance_coef=0.03, moe_z_coef=0.002).train()
    x = randn(3, 7, 8)
    moe(x)
    logits = x @ moe.router.weight.T  # (B, T, E)
    probs = logits.softmax(-1).reshape(-1, 4)  # (N, E)
    chosen = probs.topk(2, dim=-1).indices  # (N, K)
    f = torch.stack([(chosen == e).float().sum() / chosen.numel() for e in range(4)])
    balance = 0.03 * 4 * (f * probs.mean(0)).sum()
    z = 0.002 * torch.logsumexp(logits, -1).pow(2).mean()
    assert sorted(moe.aux_losses) == ["balance_loss", "z_loss"]
    torch.testing.assert_close(moe.aux_losses["balance_loss"], balance)
    torch.testing.assert_close(moe.aux_losses["z_loss"], z)


def test_a_uniform_router_gets_exactly_the_balance_coefficient():
    moe = make_moe(n_experts=4, moe_top_k=1, moe_balance_coef=0.01, moe_z_coef=0.002).train()
    logits = torch.eye(4).repeat(2, 1) * 1e-3  # (N, E): 8 tokens, 2 to each expert
    x = steer(moe, logits)
    moe(x)
    assert moe.last_load.tolist() == [2, 2, 2, 2]
    assert moe.aux_losses["balance_loss"].item() == pytest.approx(0.01, rel=1e-6)
    with torch.no_grad():
        moe.router.weight.zero_()  # every probability exactly 1/E
    moe(x)
    assert moe.aux_losses["balance_loss"].item() == pytest.approx(0.01, rel=1e-6)
    assert moe.aux_losses["z_loss"].item() == pytest.approx(0.002 * math.log(4) ** 2, rel=1e-6)


def test_a_zero_coefficient_records_nothing_and_evaluation_records_nothing():
    moe = make_moe(moe_balance_coef=0.0, moe_z_coef=0.01).train()
    moe(randn(2, 3, 8))
    assert list(moe.aux_losses) == ["z_loss"]
    moe = make_moe().eval()
    moe(randn(2, 3, 8))
    assert moe.aux_losses == {}


@pytest.mark.parametrize("top_k", [1, 2])
def test_the_router_learns_from_the_main_loss_alone(top_k):
    moe = make_moe(n_experts=4, moe_top_k=top_k, moe_balance_coef=0.0, moe_z_coef=0.0).train()
    moe(randn(2, 6, 8)).pow(2).sum().backward()
    assert moe.aux_losses == {}
    assert moe.router.weight.grad.abs().sum() > 0


def test_shared_experts_add_their_outputs_unweighted():
    moe = make_moe(n_experts=4, moe_top_k=2, n_shared_experts=2).eval()
    x = randn(2, 5, 8)
    with torch.no_grad():
        out = moe(x)
        shared = moe.shared[0](x) + moe.shared[1](x)
        moe.shared = nn.ModuleList()  # the routed part alone
        torch.testing.assert_close(out, moe(x) + shared)


def moe_gpt(**changes) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(**{**SMALL, "mlp": "moe", "n_experts": 4, **changes}))


def test_a_moe_gpt_trains_with_its_aux_losses_in_training_only():
    model = moe_gpt(moe_top_k=2).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    idx = torch.randint(0, 23, (4, 12), generator=torch.Generator().manual_seed(1))
    losses = []
    for _ in range(5):
        logits = model(idx[:, :-1])
        lm = F.cross_entropy(logits.flatten(0, 1), idx[:, 1:].flatten())
        if not losses:
            assert sorted(model.aux_losses()) == [
                f"blocks.{l}.mlp.{name}" for l in (0, 1) for name in ("balance_loss", "z_loss")
            ]
            torch.testing.assert_close(model.aux_loss(), sum(model.aux_losses().values()))
        loss = lm + model.aux_loss()
        optimizer.zero_grad()
        loss.backward()
        if not losses:
            assert model.blocks[0].mlp.router.weight.grad.abs().sum() > 0
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    model.eval()
    model(idx)
    assert model.aux_losses() == {} and model.aux_loss().item() == 0.0


@pytest.mark.parametrize("changes", [dict(moe_top_k=1), dict(moe_top_k=2, n_shared_experts=1)])
def test_moe_decoding_is_the_same_with_and_without_the_cache(changes):
    model = moe_gpt(**changes).eval()
    idx = torch.randint(0, 23, (2, 5), generator=torch.Generator().manual_seed(1))
    cached = torch.stack(list(generate(model, idx, 15, temperature=0)))
    uncached = torch.stack(list(generate(model, idx, 15, temperature=0, use_cache=False)))
    assert torch.equal(cached, uncached)
    full = model(idx)  # and the logits of one-token steps match the full pass
    cache = model.new_cache(2)
    with torch.inference_mode():
        steps = [model(idx[:, t : t + 1], cache=cache) for t in range(5)]
    assert (torch.cat(steps, dim=1) - full).abs().max() < 1e-4


def test_a_packed_moe_gpt_gives_the_same_logits():
    model = moe_gpt().eval()
    idx = torch.randint(0, 23, (2, 6))
    expected = model(idx)
    pack_for_cpu(model, min_weights=1)
    assert (model(idx) - expected).abs().max() < 1e-4


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(n_experts=2, moe_top_k=3), r"moe_top_k \(--top-k\) must be between 1 and n_exp"),
        (dict(n_experts=0), "n_experts must be at least 1; got 0"),
        (dict(capacity_factor=0.0), "capacity_factor must be > 0"),
        (dict(capacity_factor=-1.0, dropless=False), "capacity_factor must be > 0"),
        (dict(attn_only=True), "an attn_only model has none"),
    ],
)
def test_bad_moe_settings_are_one_clear_config_error(changes, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**SMALL, mlp="moe", **changes)


def test_a_dense_checkpoint_does_not_load_into_a_moe_model(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "dense.safetensors", GPT(ModelConfig(**SMALL)))
    with pytest.raises(CheckpointError, match=r"lacks blocks\.0\.mlp\.experts\.0\..* more"):
        load_model_state(tmp_path / "dense.safetensors", moe_gpt())
