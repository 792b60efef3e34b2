"""The variants of modded-nanogpt's recipe (issue 17, the char-speedrun preset), each by
its defining property: QK-norm, ReLU², an untied and a zero-initialized head, logit
soft-capping. (Muon and the WSD schedule: tests/train/test_muon.py, test_optim.py.)"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import scramble

from glassbox.analysis.count import count_report, param_table
from glassbox.config import ModelConfig
from glassbox.errors import GlassboxError
from glassbox.generate.seq2seq import greedy_decode
from glassbox.models import GPT, Encoder, EncoderDecoder
from glassbox.models.base import softcap
from glassbox.models.convert import check_gpt2_compatible, to_gpt2_state_dict
from glassbox.nn.mlp import ACTIVATIONS
from glassbox.train.finetune import freeze

V = 11
SMALL = dict(vocab_size=V, block_size=16, n_layer=2, n_head=4, n_embd=32)


def config(**changes) -> ModelConfig:
    return ModelConfig(**{**SMALL, **changes})


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# --- QK-norm --------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["decoder", "encoder"])
def test_qk_norm_gives_every_query_and_key_unit_rms_and_bounds_the_scores(arch):
    torch.manual_seed(0)
    cfg = config(arch=arch, qk_norm=True, pos_encoding="rope", n_kv_head=2)
    model = scramble(GPT(cfg) if arch == "decoder" else Encoder(cfg), std=1.0).eval()
    idx = torch.randint(0, V, (2, 12))
    _, cache = model.run_with_cache(idx)
    D = cfg.d_head
    for layer in range(cfg.n_layer):
        for name in ("hook_q", "hook_k"):
            t = cache[f"blocks.{layer}.attn.{name}"]  # (B, T, H or H_kv, D), after RoPE
            rms = t.pow(2).mean(dim=-1).sqrt()
            torch.testing.assert_close(rms, torch.ones_like(rms), atol=1e-4, rtol=0)
        scores = cache[f"blocks.{layer}.attn.hook_attn_scores"]  # (B, H, T, S), -inf masked
        seen = scores[scores.isfinite()]
        assert seen.abs().max() <= math.sqrt(D) + 1e-4  # |q·k| / √D <= |q||k| / √D = √D
    # the same weights without the norm: scores far beyond that bound
    plain_cfg = ModelConfig(**{**vars(cfg), "qk_norm": False})
    plain = GPT(plain_cfg) if arch == "decoder" else Encoder(plain_cfg)
    plain.load_state_dict(model.state_dict())
    _, plain_cache = plain.eval().run_with_cache(idx)
    plain_scores = plain_cache["blocks.0.attn.hook_attn_scores"]
    assert plain_scores[plain_scores.isfinite()].abs().max() > 3 * math.sqrt(D)


def test_qk_norm_adds_no_parameters_and_changes_the_output():
    torch.manual_seed(0)
    normed, plain = GPT(config(qk_norm=True)), GPT(config())
    assert normed.num_params() == plain.num_params()
    scramble(normed)
    plain.load_state_dict(normed.state_dict())
    idx = torch.randint(0, V, (2, 10))
    assert max_diff(normed(idx), plain(idx)) > 0.1


@pytest.mark.parametrize("n_kv_head", [0, 2, 1])
@pytest.mark.parametrize("pos_encoding", ["rope", "learned", "alibi"])
def test_qk_norm_manual_and_fused_attention_agree(pos_encoding, n_kv_head):
    torch.manual_seed(0)
    settings = dict(qk_norm=True, pos_encoding=pos_encoding, n_kv_head=n_kv_head)
    fused = scramble(GPT(config(attention="sdpa", **settings))).eval()
    manual = GPT(config(attention="manual", **settings)).eval()
    manual.load_state_dict(fused.state_dict())
    idx = torch.randint(0, V, (3, 16))
    assert max_diff(fused(idx), manual(idx)) < 1e-4


@pytest.mark.parametrize("attention", ["manual", "sdpa"])
def test_qk_norm_decoding_with_the_kv_cache_equals_the_full_forward_pass(attention):
    torch.manual_seed(0)
    cfg = config(qk_norm=True, pos_encoding="rope", attention=attention, n_kv_head=2)
    model = scramble(GPT(cfg)).eval()
    idx = torch.randint(0, V, (3, 16))
    full = model(idx)
    cache = model.new_cache(3)
    steps = [model(idx[:, :6], cache=cache)]
    steps += [model(idx[:, t : t + 1], cache=cache) for t in range(6, 16)]
    assert max_diff(torch.cat(steps, dim=1), full) < 1e-4 * full.abs().max().item()


def test_qk_norm_cross_attention_decodes_the_same_with_the_cache():
    torch.manual_seed(0)
    model = scramble(EncoderDecoder(config(arch="encoder-decoder", qk_norm=True))).eval()
    src = torch.randint(3, V, (2, 7))
    decoded = greedy_decode(model, src, bos=1, eos=2, max_len=6)  # cached, as generation runs
    for b in range(2):
        prefix = [1]
        for _ in range(len(decoded[b])):  # the whole prefix through the model each step
            prefix.append(int(model(src[b : b + 1], torch.tensor([prefix]))[0, -1].argmax()))
        assert prefix[1:] == decoded[b]


# --- ReLU² ----------------------------------------------------------------------------------


def test_relu2_is_relu_squared():
    h = torch.tensor([-3.0, -0.5, 0.0, 0.5, 1.0, 3.0])
    torch.testing.assert_close(ACTIVATIONS["relu2"](h), torch.tensor([0, 0, 0, 0.25, 1, 9.0]))
    # a smooth corner: the gradient 2·relu(h) is 0 at 0 from both sides
    x = torch.tensor([-1e-3, 0.0, 1e-3, 2.0], requires_grad=True)
    ACTIVATIONS["relu2"](x).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([0.0, 0.0, 2e-3, 4.0]))
    # its hand-written backward agrees with finite differences away from the corner
    h = torch.tensor([-2.0, -0.3, 0.4, 1.5], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ACTIVATIONS["relu2"], (h,))


# --- untied and zero-initialized heads -------------------------------------------------------


@pytest.mark.parametrize("arch", ["decoder", "encoder", "encoder-decoder"])
def test_an_untied_head_is_a_matrix_of_its_own(arch):
    torch.manual_seed(0)
    tied = {"decoder": GPT, "encoder": Encoder, "encoder-decoder": EncoderDecoder}[arch]
    model = tied(config(arch=arch, tie_embeddings=False))
    assert model.tok_emb.weight.data_ptr() != model.lm_head.weight.data_ptr()
    assert tied(config(arch=arch)).lm_head is None
    C = SMALL["n_embd"]
    assert model.num_params() == tied(config(arch=arch)).num_params() + V * C
    assert "lm_head.weight" in model.state_dict()
    x = torch.randn(2, 3, C)
    torch.testing.assert_close(model.unembed(x), x @ model.lm_head.weight.T)
    torch.testing.assert_close(model.W_U, model.lm_head.weight.T)
    with torch.no_grad():  # the embedding no longer moves the output layer
        model.tok_emb.weight.zero_()
    assert model.unembed(x).abs().max() > 0


def test_the_final_residual_through_an_untied_head_gives_the_logits():
    torch.manual_seed(0)
    model = scramble(GPT(config(tie_embeddings=False, logit_softcap=3.0))).eval()
    idx = torch.randint(0, V, (2, 8))
    logits, cache = model.run_with_cache(idx)
    resid = model.ln_f(cache["blocks.1.hook_resid_post"])
    torch.testing.assert_close(logits, 3.0 * torch.tanh(resid @ model.W_U / 3.0))


def test_count_counts_an_untied_head():
    tied, untied = config(), config(tie_embeddings=False)
    table = param_table(untied)
    assert table["head"] == V * SMALL["n_embd"] and param_table(tied)["head"] == 0
    assert table["total"] == GPT(untied).num_params()
    assert count_report(untied)["params"]["total"] == table["total"]


def test_zero_init_starts_every_block_as_the_identity_and_every_logit_at_zero():
    torch.manual_seed(0)
    model = GPT(config(tie_embeddings=False, zero_init=True))
    for block in model.blocks:
        assert not block.attn.proj.weight.any() and not block.mlp.proj.weight.any()
        assert block.mlp.fc.weight.std().item() > 0.01  # the other Linears as usual
    assert not model.lm_head.weight.any()
    idx = torch.randint(0, V, (4, 12))
    logits, cache = model.run_with_cache(idx)
    assert torch.equal(logits, torch.zeros_like(logits))  # exactly uniform predictions
    assert torch.equal(cache["blocks.1.hook_resid_post"], cache["blocks.0.hook_resid_pre"])
    loss = F.cross_entropy(logits.flatten(0, 1), idx.flatten())
    assert loss.item() == pytest.approx(math.log(V))
    # and training moves them: the head first, then (once it is not zero) the blocks
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    targets = idx.roll(-1, dims=1)
    losses = []
    for _ in range(20):
        loss = F.cross_entropy(model(idx).flatten(0, 1), targets.flatten())
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model.lm_head.weight.any() and model.blocks[0].mlp.proj.weight.any()
    assert model(idx).abs().max() > 0.1
    assert losses[-1] < losses[0] - 0.5


def test_zero_init_with_a_tied_head_leaves_the_embedding_alone():
    torch.manual_seed(0)
    model = GPT(config(zero_init=True))
    assert not model.blocks[0].attn.proj.weight.any()
    assert model.tok_emb.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert model(torch.randint(0, V, (1, 5))).abs().max() > 0


def test_freezing_the_head_of_an_untied_model_freezes_lm_head_only():
    model = GPT(config(tie_embeddings=False))
    assert freeze(model, "head") == ["lm_head.weight"]
    assert model.tok_emb.weight.requires_grad
    assert freeze(GPT(config()), "head") == ["tok_emb.weight"]


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(tie_embeddings=False), "tie_embeddings=True"),
        (dict(qk_norm=True), "qk_norm=False"),
        (dict(logit_softcap=30.0), "logit_softcap=0"),
        (dict(activation="relu2"), "activation='relu2'"),
    ],
)
def test_the_gpt2_layout_refuses_what_it_cannot_express(changes, message):
    cfg = config(**{"bias": True, "activation": "gelu_tanh", **changes})
    with pytest.raises(GlassboxError, match=message):
        check_gpt2_compatible(cfg)
    with pytest.raises(GlassboxError, match=message):
        to_gpt2_state_dict(GPT(cfg))
    check_gpt2_compatible(config(bias=True, zero_init=True))  # only the start differs


# --- logit soft-capping ---------------------------------------------------------------------


def test_softcap_bounds_logits_and_leaves_small_ones_almost_unchanged():
    x = torch.linspace(-1000, 1000, 2001)
    capped = softcap(x, 15.0)
    assert capped.abs().max() <= 15.0
    assert (capped.diff() >= 0).all()  # order kept: the same argmax
    small = torch.linspace(-1.5, 1.5, 31)
    # cap·tanh(x/cap) = x - x³/(3 cap²) + ...: within 0.5% for |x| <= cap/10
    assert max_diff(softcap(small, 15.0), small) <= (1.5**3) / (3 * 15.0**2) + 1e-6
    assert torch.equal(softcap(x, 0.0), x)  # 0: off


def test_a_soft_capped_model_caps_what_the_uncapped_one_computes():
    torch.manual_seed(0)
    capped = scramble(GPT(config(logit_softcap=2.0)), std=1.0).eval()
    plain = GPT(config()).eval()
    plain.load_state_dict(capped.state_dict())  # no parameters of its own
    idx = torch.randint(0, V, (2, 10))
    raw = plain(idx)
    assert raw.abs().max() > 10  # scrambled weights: large logits
    out = capped(idx)
    assert out.abs().max() <= 2.0
    torch.testing.assert_close(out, 2.0 * torch.tanh(raw / 2.0))
    torch.testing.assert_close(out.argmax(-1), raw.argmax(-1))
