import pytest
import torch

from glassbox.config import ModelConfig
from glassbox.errors import GlassboxError
from glassbox.models import GPT
from glassbox.models.convert import (
    from_gpt2_state_dict,
    gpt2_config,
    gpt2_hf_config,
    to_gpt2_state_dict,
)

CONFIG = ModelConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16, bias=True,
                     activation="gelu_tanh")  # fmt: skip


def test_round_trip_through_the_gpt2_layout():
    torch.manual_seed(0)
    model = GPT(CONFIG).eval()
    state = to_gpt2_state_dict(model)
    assert state["transformer.h.0.attn.c_attn.weight"].shape == (16, 48)  # Conv1D: (in, out)
    assert state["lm_head.weight"] is state["transformer.wte.weight"]
    again = from_gpt2_state_dict(state, CONFIG).eval()
    idx = torch.randint(0, 50, (2, 16))
    assert torch.equal(model(idx), again(idx))


def test_layouts_gpt2_cannot_express_are_refused():
    with pytest.raises(GlassboxError, match="bias=True"):
        to_gpt2_state_dict(GPT(ModelConfig(vocab_size=50, n_layer=1)))
    with pytest.raises(GlassboxError, match="missing"):
        from_gpt2_state_dict({}, CONFIG)


def test_hugging_face_gpt2_computes_our_logits():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = GPT(CONFIG).eval()
    hf_config = transformers.GPT2Config(
        vocab_size=50, n_positions=16, n_embd=16, n_layer=2, n_head=2,
        activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    hf = transformers.GPT2LMHeadModel(hf_config).eval()
    hf.load_state_dict(to_gpt2_state_dict(model), strict=False)
    idx = torch.randint(0, 50, (3, 16))
    with torch.no_grad():
        assert (hf(idx).logits - model(idx)).abs().max() < 1e-4


def test_gpt2_configs_translate_both_ways():
    for mine in (CONFIG, ModelConfig(vocab_size=7, block_size=8, n_layer=3, n_head=2,
                                     n_embd=8, mlp_ratio=2, bias=True, activation="relu",
                                     norm_eps=1e-6, dropout=0.05)):  # fmt: skip
        hf = gpt2_hf_config(mine)
        assert hf["model_type"] == "gpt2" and hf["n_positions"] == mine.block_size
        assert gpt2_config(hf) == mine
    assert gpt2_hf_config(CONFIG)["activation_function"] == "gelu_new"
    assert gpt2_hf_config(CONFIG)["n_inner"] is None  # GPT-2's own 4 * n_embd
    # an absent field is GPT2Config's default: GPT-2 small
    small = gpt2_config({"model_type": "gpt2"})
    assert (small.n_layer, small.n_embd, small.vocab_size, small.block_size) == (
        12,
        768,
        50257,
        1024,
    )
    assert small.activation == "gelu_tanh"


def test_openai_names_and_mask_buffers_load_like_hugging_faces():
    torch.manual_seed(0)
    model = GPT(CONFIG).eval()
    state = {k.removeprefix("transformer."): v for k, v in to_gpt2_state_dict(model).items()
             if k != "lm_head.weight"}  # fmt: skip
    state["h.0.attn.bias"] = torch.ones(1, 1, 16, 16)
    again = from_gpt2_state_dict(state, CONFIG).eval()
    idx = torch.randint(0, 50, (2, 16))
    assert torch.equal(model(idx), again(idx))
    state["h.0.attn.c_attn.weight"] = state["h.0.attn.c_attn.weight"].t()
    with pytest.raises(GlassboxError, match=r"h.0.attn.c_attn.weight has shape \(48, 16\)"):
        from_gpt2_state_dict(state, CONFIG)
