"""Mixture-of-heads attention (attention_kind "moh", glassbox.nn.moh): what a user sees.

A fresh MoH with every head active is multi-head attention; with K active heads each token
uses exactly K routed heads plus the shared ones; the balancing loss follows its formula;
the router learns from the main loss; a MoH GPT decodes the same with and without the cache.
"""

from __future__ import annotations

import pytest
import torch
from helpers import scramble
from torch import Tensor, nn

from glassbox.config import ConfigError, ModelConfig
from glassbox.generate import generate
from glassbox.models import GPT, build_model
from glassbox.nn import MixtureOfHeads

SMALL = dict(vocab_size=11, block_size=24, n_layer=2, n_head=4, n_embd=32)
MOH_FIELDS = ("moh_shared_heads", "moh_active_heads", "moh_balance_coef")


def configs(**changes) -> tuple[ModelConfig, ModelConfig]:
    """The multi-head config and its mixture-of-heads twin (the moh_* changes go to it)."""
    base = {k: v for k, v in changes.items() if k not in MOH_FIELDS}
    mha = ModelConfig(**{**SMALL, **base})
    moh = ModelConfig(**{**SMALL, **changes, "attention_kind": "moh"})
    return mha, moh


def zero_routers(model: nn.Module) -> nn.Module:
    """Every router back to zero (the models' GPT-2 init draws them from N(0, 0.02))."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, MixtureOfHeads):
                for router in (m.router, m.stage_router, m.shared_router):
                    if router is not None:
                        router.weight.zero_()
    return model


def tokens(B: int = 2, T: int = 9) -> Tensor:
    return torch.randint(0, 11, (B, T), generator=torch.Generator().manual_seed(1))


# ---- a fresh router with every head active is multi-head attention ---------------------

SCHEMES = [
    dict(),
    dict(pos_encoding="sinusoidal", attention="sdpa"),
    dict(pos_encoding="rope", n_kv_head=2),
    dict(pos_encoding="alibi", attention="manual"),
    dict(pos_encoding="relative"),
    dict(pos_encoding="none", n_kv_head=2, attention="sdpa"),
    dict(pos_encoding="rope", moh_shared_heads=1),
    dict(arch="encoder", n_kv_head=2, moh_shared_heads=2),
]


@pytest.mark.parametrize("all_active", [True, False])
@pytest.mark.parametrize("changes", SCHEMES)
def test_a_fresh_router_with_every_head_active_is_multi_head_attention(changes, all_active):
    mha_config, moh_config = configs(**changes)
    routed = moh_config.n_head - moh_config.moh_shared_heads
    moh_config.moh_active_heads = routed if all_active else 0  # 0 also means all of them
    mha = scramble(build_model(mha_config)).eval()
    moh = build_model(moh_config).eval()
    missing, unexpected = moh.load_state_dict(mha.state_dict(), strict=False)
    assert unexpected == [] and all("router" in name for name in missing)
    zero_routers(moh)
    torch.testing.assert_close(moh(tokens()), mha(tokens()), atol=1e-6, rtol=0)


# ---- the gates ---------------------------------------------------------------------------


def routed_model(n_head: int, shared: int, active: int) -> GPT:
    config = ModelConfig(
        **{**SMALL, "n_head": n_head, "n_embd": 8 * n_head}, attention_kind="moh",
        moh_shared_heads=shared, moh_active_heads=active,
    )  # fmt: skip
    torch.manual_seed(0)
    return scramble(GPT(config)).eval()  # the routers randomised too


@pytest.mark.parametrize(("n_head", "S", "K"), [(4, 0, 2), (6, 2, 3), (4, 0, 1), (4, 1, 3)])
def test_each_token_uses_its_top_k_routed_heads_and_every_shared_head(n_head, S, K):
    model = routed_model(n_head, S, K)
    names = ["hook_head_router_logits", "hook_head_weights", "hook_z", "hook_result"]
    _, cache = model.run_with_cache(tokens(), names_filter=lambda n: n.split(".")[-1] in names)
    for layer in range(2):
        attn = f"blocks.{layer}.attn"
        gates = cache[f"{attn}.hook_head_weights"]  # (B, T, H)
        logits = cache[f"{attn}.hook_head_router_logits"]  # (B, T, R)
        assert gates.shape == (2, 9, n_head) and logits.shape == (2, 9, n_head - S)
        shared, routed = gates[..., :S], gates[..., S:]
        assert (shared > 0).all()
        assert ((routed > 0).sum(-1) == K).all()  # exactly K routed heads per token
        top_k = logits.topk(K, dim=-1).indices.sort(-1).values
        assert torch.equal((routed > 0).nonzero()[:, 2].view(2, 9, K), top_k)
        # A kept routed head's gate is R times its router probability (not renormalised
        # over the kept ones), times 2·alpha_routed with shared heads; the shared gates
        # sum to 2·S·alpha_shared, and the two alphas sum to 1.
        R = n_head - S
        probs = logits.softmax(-1)  # (B, T, R)
        stage = torch.ones(2, 9, 1) if S == 0 else 2 * (1 - shared.sum(-1, keepdim=True) / (2 * S))
        expected = torch.where(routed > 0, probs * R * stage, torch.zeros(()))
        torch.testing.assert_close(routed, expected)
        if K < R:
            assert (routed.sum(-1) < R * stage[..., 0]).all()  # the unkept share is lost
        if S:
            assert not torch.allclose(shared.sum(-1) / S, torch.ones(2, 9))  # really weighted
        # hook_z sees every head; an unpicked head adds nothing to the output.
        off = gates == 0  # (B, T, H)
        if off.any():
            assert cache[f"{attn}.hook_z"][off].abs().min() > 0
            assert cache[f"{attn}.hook_result"][off].abs().max() == 0


def test_the_hook_points_come_in_forward_order():
    model = routed_model(4, 1, 2)
    attn_hooks = [n.split(".", 3)[-1] for n in model.hook_names() if n.startswith("blocks.0.attn")]
    assert attn_hooks == [
        "hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern", "hook_z",
        "hook_head_router_logits", "hook_head_weights", "hook_result",
    ]  # fmt: skip


# ---- the load-balancing loss -------------------------------------------------------------


def expected_balance_loss(logits: Tensor, K: int, coef: float) -> Tensor:
    """coef · R · Σ_r f_r · P_r, counted head by head."""
    R = logits.size(-1)
    probs = logits.reshape(-1, R).softmax(-1)  # (N, R)
    picks = probs.topk(K, dim=-1).indices  # (N, K)
    total = 0.0
    for r in range(R):
        f = (picks == r).sum() / picks.numel()
        total = total + f * probs[:, r].mean()
    return coef * R * total


@pytest.mark.parametrize(("S", "K"), [(0, 2), (2, 1), (1, 3)])
def test_the_balance_loss_follows_its_formula(S, K):
    model = routed_model(6, S, K).train()
    model.blocks[1].attn.balance_coef = 0.5
    logits = []
    record = lambda t, hook: logits.append(t)  # noqa: E731
    with model.hooks([(f"blocks.{l}.attn.hook_head_router_logits", record) for l in (0, 1)]):
        model(tokens())
    losses = model.aux_losses()
    assert list(losses) == ["blocks.0.attn.balance_loss", "blocks.1.attn.balance_loss"]
    for layer, coef in enumerate((0.01, 0.5)):
        expected = expected_balance_loss(logits[layer], K, coef)
        torch.testing.assert_close(losses[f"blocks.{layer}.attn.balance_loss"], expected)


@pytest.mark.parametrize("K", [1, 4])
def test_uniform_routing_costs_the_coefficient_and_collapse_r_times_it(K):
    config = ModelConfig(n_embd=32, attention_kind="moh", moh_balance_coef=0.1, moh_active_heads=K)
    attn = MixtureOfHeads(config)
    uniform = torch.zeros(3, 5, 4)  # a zero router: P_r = 1/R whatever it picks
    _, picks = attn.gates(uniform, torch.zeros(3, 5, 32))
    assert attn.balance_loss(uniform, picks).item() == pytest.approx(0.1)
    collapsed = torch.tensor([30.0, 20.0, 10.0, 0.0]).expand(3, 5, 4)  # all prefer head 0
    _, picks = attn.gates(collapsed, torch.zeros(3, 5, 32))
    # K=1: f = P = (1, 0, 0, 0), so 0.1 · 4 · 1; K=R: f uniform, so 0.1 again
    assert attn.balance_loss(collapsed, picks).item() == pytest.approx(
        0.4 if K == 1 else 0.1, abs=1e-3
    )


# ---- training --------------------------------------------------------------------------


def test_the_routers_learn_from_the_main_output_alone():
    # Two shared and two of three routed heads: a softmax over one head would be a constant.
    config = ModelConfig(
        n_head=5, n_embd=40, attention_kind="moh", moh_shared_heads=2, moh_active_heads=2
    )
    attn = scramble(MixtureOfHeads(config)).eval()  # eval: no balance loss
    x = torch.randn(2, 7, 40, generator=torch.Generator().manual_seed(0))
    attn(x).square().sum().backward()
    assert attn.aux_losses == {}
    for router in (attn.router, attn.stage_router, attn.shared_router):
        assert router.weight.grad.abs().sum() > 0


def test_a_moh_gpt_reports_its_balance_loss_in_training_only():
    model = routed_model(4, 1, 2).train()
    model(tokens())
    assert sorted(model.aux_losses()) == [f"blocks.{l}.attn.balance_loss" for l in (0, 1)]
    model.aux_loss().backward()  # the balance loss trains the routers
    assert model.blocks[0].attn.router.weight.grad.abs().sum() > 0
    model.eval()
    model(tokens())
    assert model.aux_losses() == {} and model.aux_loss().item() == 0.0
    model.train().blocks[0].attn.balance_coef = 0.0  # a zero coefficient records nothing
    model(tokens())
    assert list(model.aux_losses()) == ["blocks.1.attn.balance_loss"]


# ---- decoding with the KV cache ----------------------------------------------------------

DECODING = [
    dict(pos_encoding="rope", moh_active_heads=2),
    dict(n_kv_head=2, attention="sdpa", moh_shared_heads=1, moh_active_heads=1),
    dict(pos_encoding="rope", n_kv_head=2, attention="manual", moh_active_heads=3),
    dict(pos_encoding="alibi", moh_shared_heads=2, moh_active_heads=1),
    dict(pos_encoding="relative", moh_active_heads=2),
]


def decoding_model(**changes) -> GPT:
    torch.manual_seed(0)
    return scramble(GPT(configs(**changes)[1])).eval()


@pytest.mark.parametrize("changes", DECODING)
def test_cached_logits_match_a_full_forward_pass(changes):
    model = decoding_model(**changes)
    idx = tokens(3, 20)
    cache = model.new_cache(3)
    steps = [model(idx[:, :12], cache=cache)]  # prefill 12, then one token at a time
    steps += [model(idx[:, t : t + 1], cache=cache) for t in range(12, 20)]
    torch.testing.assert_close(torch.cat(steps, dim=1), model(idx), atol=1e-4, rtol=0)


@pytest.mark.parametrize("changes", DECODING[:2])
def test_greedy_decoding_gives_the_same_tokens_with_and_without_the_cache(changes):
    model = decoding_model(**changes)
    idx = tokens(2, 5)
    cached = torch.stack(list(generate(model, idx, 15, temperature=0)))
    uncached = torch.stack(list(generate(model, idx, 15, temperature=0, use_cache=False)))
    assert torch.equal(cached, uncached)


# ---- configuration -----------------------------------------------------------------------


def test_the_head_counts_are_checked_when_the_config_is_built():
    moh = dict(n_head=4, n_embd=32, attention_kind="moh")
    with pytest.raises(ConfigError, match=r"moh_shared_heads must be in \[0, n_head\) = \[0, 4\)"):
        ModelConfig(**moh, moh_shared_heads=4)
    with pytest.raises(ConfigError, match=r"moh_active_heads must be in \[0, 3\] \(the routed"):
        ModelConfig(**moh, moh_shared_heads=1, moh_active_heads=4)
    ModelConfig(n_head=4, n_embd=32, moh_shared_heads=4)  # ignored unless the kind is moh
