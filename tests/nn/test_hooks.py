import gc
import weakref

import pytest
import torch
import torch.nn.functional as F

from glassbox.config import ModelConfig
from glassbox.models import GPT, EncoderDecoder
from glassbox.nn.hooks import HookError

SMALL = dict(vocab_size=11, block_size=16, n_layer=2, n_head=4, n_embd=32)


def small_gpt(**changes) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(**{**SMALL, **changes})).eval()


def tokens(B: int = 2, T: int = 10) -> torch.Tensor:
    return torch.randint(0, 11, (B, T), generator=torch.Generator().manual_seed(1))


PER_BLOCK = [
    "hook_resid_pre",
    "ln_1.hook_scale",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_attn_scores",
    "attn.hook_pattern",
    "attn.hook_z",
    "attn.hook_result",
    "hook_attn_out",
    "hook_resid_mid",
    "ln_2.hook_scale",
    "mlp.hook_pre",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
]


def test_the_hook_names_of_a_gpt_are_pinned_in_forward_order():
    expected = ["hook_embed", "hook_pos_embed"]
    for layer in range(2):
        expected += [f"blocks.{layer}.{name}" for name in PER_BLOCK]
    expected += ["ln_f.hook_scale", "hook_logits"]
    assert small_gpt().hook_names() == expected


# Every hook's shape for B=2, T=5, C=32, H=4, H_kv=2, D=8, V=11, MLP width 128: the
# layouts of docs/interpretability.md. q, k, v and z are (B, T, H, D) as in TransformerLens
# (batch, pos, head, d_head), so a hook written for one indexes the same axes in the other.
B, T, C, H, H_KV, D, V, W = 2, 5, 32, 4, 2, 8, 11, 128
BLOCK_SHAPES = {
    "hook_resid_pre": (B, T, C),
    "ln_1.hook_scale": (B, T, 1),
    "attn.hook_q": (B, T, H, D),
    "attn.hook_k": (B, T, H_KV, D),
    "attn.hook_v": (B, T, H_KV, D),
    "attn.hook_attn_scores": (B, H, T, T),
    "attn.hook_pattern": (B, H, T, T),
    "attn.hook_z": (B, T, H, D),
    "attn.hook_result": (B, T, H, C),
    "hook_attn_out": (B, T, C),
    "hook_resid_mid": (B, T, C),
    "ln_2.hook_scale": (B, T, 1),
    "mlp.hook_pre": (B, T, W),
    "mlp.hook_post": (B, T, W),
    "hook_mlp_out": (B, T, C),
    "hook_resid_post": (B, T, C),
}


def test_every_hook_has_its_documented_shape():
    model = small_gpt(n_kv_head=2)
    _, cache = model.run_with_cache(tokens(B, T))
    expected = {"hook_embed": (B, T, C), "hook_pos_embed": (T, C)}
    for layer in range(2):
        expected |= {f"blocks.{layer}.{name}": s for name, s in BLOCK_SHAPES.items()}
    expected |= {"ln_f.hook_scale": (B, T, 1), "hook_logits": (B, T, V)}
    assert {name: tuple(t.shape) for name, t in cache.items()} == expected


def test_cross_attention_hooks_have_the_same_layouts():
    model = EncoderDecoder(ModelConfig(arch="encoder-decoder", **SMALL, n_kv_head=2)).eval()
    S = 7  # source length; the target has T tokens
    _, cache = model.run_with_cache(tokens(B, S), tokens(B, T), names_filter=lambda n: "cross" in n)
    shapes = {name.removeprefix("decoder.blocks.1."): tuple(t.shape) for name, t in cache.items()}
    assert {k: v for k, v in shapes.items() if not k.startswith("decoder.blocks.0.")} == {
        "ln_cross.hook_scale": (B, T, 1),
        "cross_attn.hook_q": (B, T, H, D),
        "cross_attn.hook_k": (B, S, H_KV, D),  # keys and values of the source positions
        "cross_attn.hook_v": (B, S, H_KV, D),
        "cross_attn.hook_attn_scores": (B, H, T, S),
        "cross_attn.hook_pattern": (B, H, T, S),
        "cross_attn.hook_z": (B, T, H, D),
        "cross_attn.hook_result": (B, T, H, C),
        "hook_cross_out": (B, T, C),
        "hook_resid_mid_cross": (B, T, C),
    }


def test_q_k_v_and_z_hooks_index_heads_on_axis_2():
    """Zeroing head 1 through hook_z (B, T, H, D) is the same as zeroing its slice of W_O."""
    model = small_gpt()
    x = tokens()

    def zero_head_1(z, hook):
        z = z.clone()
        z[:, :, 1] = 0
        return z

    ablated = model.run_with_hooks(x, fwd_hooks=[("blocks.0.attn.hook_z", zero_head_1)])
    with torch.no_grad():
        model.blocks[0].attn.W_O[1] = 0  # a view into proj.weight
    torch.testing.assert_close(ablated, model(x))


def test_every_hook_point_fires_once_per_forward_pass():
    model = small_gpt()
    _, cache = model.run_with_cache(tokens())
    assert list(cache) == model.hook_names()


def test_variants_have_only_the_hook_points_that_fire():
    names = small_gpt(pos_encoding="rope", attn_only=True).hook_names()
    assert "hook_pos_embed" not in names
    assert not any("mlp" in n for n in names)
    model = small_gpt(pos_encoding="rope", attn_only=True)
    _, cache = model.run_with_cache(tokens())
    assert list(cache) == names


def test_final_residual_through_final_norm_and_unembedding_gives_the_logits():
    model = small_gpt()
    logits, cache = model.run_with_cache(tokens())
    resid = cache["blocks.1.hook_resid_post"]
    manual = F.linear(model.ln_f(resid), model.tok_emb.weight)
    torch.testing.assert_close(manual, logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(cache["hook_logits"], logits)


def test_per_head_results_plus_output_bias_sum_to_the_attention_output():
    model = small_gpt(bias=True)
    with torch.no_grad():
        model.blocks[0].attn.proj.bias.normal_()
    _, cache = model.run_with_cache(tokens())
    result = cache["blocks.0.attn.hook_result"]  # (B, T, H, C)
    total = result.sum(dim=2) + model.blocks[0].attn.proj.bias
    torch.testing.assert_close(total, cache["blocks.0.hook_attn_out"], atol=1e-5, rtol=0)


def test_cached_pattern_is_causal_and_rows_sum_to_one():
    _, cache = small_gpt().run_with_cache(tokens(), names_filter="blocks.0.attn.hook_pattern")
    pattern = cache["blocks.0.attn.hook_pattern"]  # (B, H, T, T)
    torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:-1]))
    assert pattern.triu(diagonal=1).abs().max() == 0


def test_layernorm_scale_hook_holds_the_inverse_standard_deviation():
    model = small_gpt()
    _, cache = model.run_with_cache(tokens(), names_filter=lambda n: n.startswith("blocks.0"))
    x = cache["blocks.0.hook_resid_pre"]
    expected = torch.rsqrt(x.var(dim=-1, unbiased=False, keepdim=True) + 1e-5)
    torch.testing.assert_close(cache["blocks.0.ln_1.hook_scale"], expected, atol=1e-4, rtol=1e-4)


def test_names_filter_and_device_and_detach():
    model = small_gpt()
    names = ["blocks.1.hook_resid_mid", "hook_embed"]
    _, cache = model.run_with_cache(tokens(), names_filter=names, device="cpu")
    assert sorted(cache) == sorted(names)
    assert not any(t.requires_grad for t in cache.values())
    _, cache = model.run_with_cache(tokens(), names_filter=lambda n: n.endswith("hook_z"))
    assert list(cache) == ["blocks.0.attn.hook_z", "blocks.1.attn.hook_z"]


def test_a_hook_can_replace_an_activation():
    model = small_gpt()
    x = tokens()

    def zero(t, hook):
        return torch.zeros_like(t)

    hooks = [
        (f"blocks.{layer}.hook_{part}_out", zero) for layer in range(2) for part in ("attn", "mlp")
    ]
    ablated = model.run_with_hooks(x, fwd_hooks=hooks)
    # with every sublayer silenced the logits come from the embeddings alone
    embed = model.tok_emb(x) + model.pos_emb(torch.arange(x.size(1)))
    torch.testing.assert_close(ablated, F.linear(model.ln_f(embed), model.tok_emb.weight))
    assert not torch.allclose(ablated, model(x))


def test_hooks_are_removed_when_a_hook_raises():
    model = small_gpt()

    def broken(t, hook):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        model.run_with_hooks(tokens(), fwd_hooks=[("blocks.0.hook_resid_mid", broken)])
    assert all(not model.hook_point(n).fns for n in model.hook_names())
    with pytest.raises(RuntimeError), model.hooks([("hook_embed", broken)]):
        model(tokens())
    assert not model.hook_point("hook_embed").fns


def test_a_hook_returning_the_wrong_shape_is_an_error():
    model = small_gpt()
    with pytest.raises(HookError, match="returned shape"):
        model.run_with_hooks(tokens(), fwd_hooks=[("hook_embed", lambda t, h: t[:, :1])])


def test_repeated_run_with_cache_keeps_nothing_alive():
    model = small_gpt()
    refs = []
    for _ in range(5):
        _, cache = model.run_with_cache(tokens())
        refs += [weakref.ref(t) for t in cache.values()]
        del cache
    gc.collect()
    assert all(ref() is None for ref in refs)
    assert all(not model.hook_point(n).fns for n in model.hook_names())


def test_unknown_hook_names_are_clear_errors_with_suggestions():
    model = small_gpt()
    with pytest.raises(HookError, match="did you mean blocks.0.hook_resid_pre"):
        model.run_with_cache(tokens(), names_filter=["blocks.0.hook_resid_pr"])
    with pytest.raises(HookError, match="no hook point named 'blocks.0.cross_attn.hook_pattern'"):
        model.run_with_cache(tokens(), names_filter=["blocks.0.cross_attn.hook_pattern"])
    _, cache = model.run_with_cache(tokens(), names_filter=["hook_embed"])
    with pytest.raises(HookError, match="in this cache"):
        cache["hook_logits"]


def test_tokens_outside_the_vocabulary_are_a_clear_error():
    with pytest.raises(HookError, match=r"token ids must be in \[0, 11\)"):
        small_gpt().run_with_cache(torch.tensor([[1, 2, 11]]))


def test_encoder_decoder_has_cross_attention_hooks_in_its_decoder():
    model = EncoderDecoder(ModelConfig(arch="encoder-decoder", **SMALL)).eval()
    names = model.hook_names()
    assert "decoder.blocks.0.cross_attn.hook_pattern" in names
    assert not any(n.startswith("encoder.") and "cross" in n for n in names)
    src, tgt = tokens(2, 7), tokens(2, 5)
    mask = torch.ones_like(src, dtype=torch.bool)
    mask[0, 5:] = False
    logits, cache = model.run_with_cache(src, tgt, src_mask=mask)
    pattern = cache["decoder.blocks.1.cross_attn.hook_pattern"]  # (B, H, T_tgt, S_src)
    assert pattern.shape == (2, 4, 5, 7)
    assert pattern[0, :, :, 5:].max() == 0  # padded source positions get no attention
    torch.testing.assert_close(cache["hook_logits"], logits)
