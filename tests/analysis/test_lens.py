import pytest
import torch
import torch.nn.functional as F
from helpers import scramble

from glassbox.analysis.lens import (
    direct_logit_attribution,
    logit_diff,
    logit_lens,
    logit_lens_table,
)
from glassbox.config import ModelConfig
from glassbox.errors import GlassboxError
from glassbox.models import Encoder, EncoderDecoder, build_model
from glassbox.nn.hooks import HookPoint
from glassbox.tokenizers import CharTokenizer

SMALL = dict(vocab_size=11, block_size=16, n_layer=2, n_head=4, n_embd=32)


def random_model(**changes):
    """A small model whose every weight, norm gain and bias is random and large enough
    that attention patterns and norm scales are far from their initial uniform values."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(**{**SMALL, **changes})).eval()
    return scramble(model)


def no_hooks_left(model):
    return all(not m.fns for m in model.modules() if isinstance(m, HookPoint))


TOKENS = torch.tensor([[1, 5, 2, 9, 3, 3, 0, 7], [4, 4, 10, 6, 1, 2, 8, 5]])


@pytest.mark.parametrize(
    "changes",
    [dict(), dict(arch="encoder"), dict(norm="rmsnorm", pos_encoding="rope"),
     dict(norm_placement="post"), dict(attn_only=True, bias=True)],
)  # fmt: skip
def test_the_last_row_is_the_models_own_top_k_exactly(changes):
    model = random_model(**changes)
    lens = logit_lens(model, TOKENS, top_k=4)
    probs = model(TOKENS).softmax(dim=-1)  # (B, T, V)
    assert torch.equal(lens["top_ids"][-1], probs.topk(4).indices)
    assert torch.equal(lens["top_probs"][-1], probs.topk(4).values)
    assert no_hooks_left(model)


def test_rows_name_their_readout_points_and_row_0_reads_the_embeddings():
    model = random_model(n_layer=3)
    lens = logit_lens(model, TOKENS[0], top_k=2, return_logits=True)  # (T,) is a batch of 1
    assert lens["layers"] == ["embed", "blocks.0", "blocks.1", "final"]
    assert lens["hook_names"] == [
        "blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre", "blocks.2.hook_resid_pre",
        "blocks.2.hook_resid_post",
    ]  # fmt: skip
    assert lens["top_ids"].shape == lens["top_probs"].shape == (4, 1, 8, 2)
    assert lens["logits"].shape == (4, 1, 8, 11)
    T = TOKENS.size(1)
    embed = model.tok_emb(TOKENS[:1]) + model.pos_emb(torch.arange(T))  # (1, T, C)
    expected = F.linear(model.ln_f(embed), model.tok_emb.weight)
    torch.testing.assert_close(lens["logits"][0], expected)
    assert (lens["top_probs"][..., :-1] >= lens["top_probs"][..., 1:]).all()  # likeliest first


def test_the_lens_leaves_the_training_flag_alone():
    model = random_model().train()
    logit_lens(model, TOKENS)
    assert model.training and all(m.training for m in model.modules())


def test_encoder_decoder_and_bad_arguments_are_refused():
    with pytest.raises(GlassboxError, match="GPT or an Encoder .* got EncoderDecoder"):
        logit_lens(EncoderDecoder(ModelConfig(**SMALL, arch="encoder-decoder")), TOKENS)
    with pytest.raises(GlassboxError, match="top_k must be in 1..11; got 12"):
        logit_lens(random_model(), TOKENS, top_k=12)
    with pytest.raises(GlassboxError, match="tokens must be"):
        logit_lens(random_model(), TOKENS[None])


def test_table_rows_show_tokens_and_probabilities():
    tok = CharTokenizer("ab cdefghij")  # 11 characters, one per id; id 2 is a space
    model = random_model()
    lens = logit_lens(model, TOKENS, top_k=3)
    rows = logit_lens_table(lens, tok, position=-1, batch_index=1)
    assert rows[0] == ["layer", "top 1", "top 2", "top 3"]
    assert [r[0] for r in rows[1:]] == ["embed", "blocks.0", "final"]
    ids, probs = lens["top_ids"][-1, 1, -1].tolist(), lens["top_probs"][-1, 1, -1].tolist()
    shown = ["␣" if i == 2 else tok.decode([i]) for i in ids]
    assert rows[-1][1:] == [f"{s} {p:.2f}" for s, p in zip(shown, probs, strict=True)]
    with pytest.raises(GlassboxError, match="position 8 is out of range for size 8"):
        logit_lens_table(lens, tok, position=8)


@pytest.mark.parametrize(
    "changes",
    [dict(), dict(bias=True), dict(norm="rmsnorm"), dict(bias=True, pos_encoding="sinusoidal"),
     dict(pos_encoding="rope", n_kv_head=2), dict(attn_only=True, bias=True),
     dict(arch="encoder", bias=True)],
)  # fmt: skip
def test_the_terms_sum_to_the_logit(changes):
    model = random_model(**changes)
    logits = model(TOKENS)  # the fused path: no hook on the final norm
    for target, position, b in [(3, -1, 0), (7, 2, 1), (0, 5, 1)]:
        parts = direct_logit_attribution(model, TOKENS, target, position=position, batch_index=b)
        assert sum(parts.values()) == pytest.approx(logits[b, position, target].item(), abs=1e-4)
    assert no_hooks_left(model)


def test_the_terms_are_named_in_forward_order():
    parts = direct_logit_attribution(random_model(bias=True), TOKENS, 3)
    heads = [f"blocks.{{l}}.attn.head{h}" for h in range(4)]
    layer = heads + ["blocks.{l}.attn.bias", "blocks.{l}.mlp"]
    expected = ["embed", "pos_embed"] + [n.format(l=l) for l in range(2) for n in layer]
    assert list(parts) == expected + ["ln_f.bias"]
    plain = direct_logit_attribution(random_model(pos_encoding="rope", attn_only=True), TOKENS, 3)
    assert list(plain) == ["embed"] + [h.format(l=l) for l in range(2) for h in heads]


def test_a_head_with_zeroed_output_weights_contributes_nothing():
    model = random_model(bias=True)
    D = model.config.d_head
    with torch.no_grad():
        model.blocks[1].attn.proj.weight[:, 2 * D : 3 * D] = 0.0  # head 2 of layer 1
    parts = direct_logit_attribution(model, TOKENS, 5, position=4)
    assert parts["blocks.1.attn.head2"] == 0.0
    assert parts["blocks.1.attn.head1"] != 0.0
    assert sum(parts.values()) == pytest.approx(model(TOKENS)[0, 4, 5].item(), abs=1e-4)


def test_dla_refuses_post_norm_batchnorm_and_bad_targets():
    with pytest.raises(GlassboxError, match="needs a pre-norm model"):
        direct_logit_attribution(random_model(norm_placement="post"), TOKENS, 1)
    with pytest.raises(GlassboxError, match="this model uses batchnorm"):
        direct_logit_attribution(random_model(norm="batchnorm"), TOKENS, 1)
    with pytest.raises(GlassboxError, match="target token 11 is out of range: vocab_size is 11"):
        direct_logit_attribution(random_model(), TOKENS, 11)
    with pytest.raises(GlassboxError, match="batch_index 2 is out of range"):
        direct_logit_attribution(random_model(), TOKENS, 1, batch_index=2)
    assert isinstance(random_model(arch="encoder"), Encoder)


def test_logit_diff_is_the_batch_mean_at_one_position():
    logits = torch.zeros(2, 3, 4)
    logits[0, -1, 1], logits[0, -1, 2] = 3.0, 1.0  # diff 2
    logits[1, -1, 1], logits[1, -1, 2] = 0.0, 4.0  # diff -4
    logits[:, 0, 1] = 10.0
    assert logit_diff(logits, correct=1, wrong=2).item() == -1.0
    assert logit_diff(logits, correct=1, wrong=2, position=0).item() == 10.0
