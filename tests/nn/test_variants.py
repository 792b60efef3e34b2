"""Each model variant's defining property, checked on tiny models.

Positions (none, learned, sinusoidal, rope, alibi, relative), norms (layernorm, rmsnorm,
batchnorm) and their placement (pre, post), activations, bias and dropout: for each, a
test of what makes it that variant, plus padding, cross-attention masking and KV-cache
decoding across all of them. Most tests `scramble` a fresh model's weights first: at
GPT-2's init (std 0.02) every position's output is nearly the same, so "equal" would hold
almost by accident; with larger random weights outputs depend strongly on the input and a
comparison between two code paths has something to disagree about.
"""

from __future__ import annotations

import math

import pytest
import torch
from helpers import scramble
from torch import nn

from glassbox.config import (
    ACTIVATIONS,
    ARCHS,
    ATTENTION_IMPLS,
    NORM_PLACEMENTS,
    NORMS,
    POS_ENCODINGS,
    ConfigError,
    ModelConfig,
    override,
)
from glassbox.errors import GlassboxError
from glassbox.generate.decode import generate
from glassbox.generate.seq2seq import greedy_decode
from glassbox.models import GPT, Encoder, EncoderDecoder, build_model
from glassbox.nn import MLP, Block, SelfAttention, Stack
from glassbox.nn.norms import BatchNorm, RMSNorm
from glassbox.nn.positional import (
    ALiBi,
    PositionContext,
    RelativeVectors,
    RotaryPositions,
    apply_rotary,
)

V = 11
SMALL = dict(vocab_size=V, block_size=16, n_layer=2, n_head=4, n_embd=32)
PAD, BOS, EOS = 0, 1, 2  # the seq2seq tasks' special ids


def config(**changes) -> ModelConfig:
    return ModelConfig(**{**SMALL, **changes})


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# --- no positions, no causal mask: permutation equivariance -------------------------------


def test_an_encoder_without_positions_is_permutation_equivariant():
    torch.manual_seed(0)
    model = scramble(Encoder(config(pos_encoding="none"))).eval()
    idx = torch.randint(3, V, (2, 10))
    perm = torch.tensor([3, 7, 0, 9, 1, 5, 2, 8, 6, 4])
    out, out_of_permuted = model(idx), model(idx[:, perm])  # (B, T, V) each
    assert max_diff(out_of_permuted, out[:, perm]) < 1e-4
    assert max_diff(out[:, perm], out) > 0.1  # the permutation really moves outputs around


def test_a_bidirectional_stack_without_positions_is_permutation_equivariant():
    torch.manual_seed(0)
    stack = Stack(config(pos_encoding="none"), causal=False).eval()
    x = torch.randn(3, 12, 32)  # (B, T, C) any residual stream, not just token embeddings
    perm = torch.randperm(12)
    assert max_diff(stack.residual(x[:, perm]), stack.residual(x)[:, perm]) < 1e-5
    causal = Stack(config(pos_encoding="none"), causal=True).eval()
    causal.load_state_dict(stack.state_dict())
    # the causal triangle is itself position information: equivariance is lost
    assert max_diff(causal.residual(x[:, perm]), causal.residual(x)[:, perm]) > 0.1


@pytest.mark.parametrize("pos_encoding", ["learned", "sinusoidal", "rope", "alibi", "relative"])
def test_any_position_encoding_breaks_permutation_equivariance(pos_encoding):
    torch.manual_seed(0)
    model = scramble(Encoder(config(pos_encoding=pos_encoding))).eval()
    idx = torch.randint(3, V, (2, 10))
    perm = torch.tensor([3, 7, 0, 9, 1, 5, 2, 8, 6, 4])
    assert max_diff(model(idx[:, perm]), model(idx)[:, perm]) > 0.05


# --- RoPE: scores depend on the offset only ------------------------------------------------


def test_rope_query_key_scores_depend_only_on_the_offset():
    torch.manual_seed(0)
    rope = RotaryPositions(block_size=64, d_head=16)
    q, k = torch.randn(2, 1, 1, 3, 16).unbind(0)  # (B=1, T=1, H=3, D) each: one content vector

    def scores(m: int, n: int) -> torch.Tensor:
        qm = apply_rotary(q, *rope(torch.tensor([m])))
        kn = apply_rotary(k, *rope(torch.tensor([n])))
        return (qm * kn).sum(-1).flatten()  # (H,) one score per head

    for m, n, d in [(5, 2, 7), (2, 5, 30), (0, 0, 41), (10, 3, 50)]:
        torch.testing.assert_close(scores(m, n), scores(m + d, n + d), atol=1e-5, rtol=1e-4)
    assert max_diff(scores(5, 2), scores(5, 3)) > 1e-2  # another offset, another score
    assert max_diff(scores(5, 2), scores(2, 5)) > 1e-2  # and the sign of the offset matters
    # at offset 0 the rotation cancels: the plain dot product
    torch.testing.assert_close(scores(9, 9), (q * k).sum(-1).flatten(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_a_rope_attention_layer_is_unchanged_when_every_position_shifts(causal):
    torch.manual_seed(0)
    cfg = config(pos_encoding="rope", block_size=32)
    attn = scramble(SelfAttention(cfg)).eval()
    rope = RotaryPositions(cfg.block_size, cfg.d_head)
    x = torch.randn(2, 8, 32)

    def at(positions: torch.Tensor) -> torch.Tensor:
        return attn(x, causal=causal, positions=PositionContext(rotary=rope(positions)))

    base, shifted, stretched = (
        at(torch.arange(8)),
        at(torch.arange(8) + 13),
        at(torch.arange(8) * 2),
    )
    assert max_diff(base, shifted) < 1e-5
    assert max_diff(base, stretched) > 1e-2  # offsets changed: so did the output


# --- ALiBi ---------------------------------------------------------------------------------


def published_alibi_slopes(n: int) -> list[float]:
    """Press et al.'s reference recipe (github.com/ofirpress/attention_with_linear_biases)."""

    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n).is_integer():
        return power_of_2(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_2(closest) + published_alibi_slopes(2 * closest)[0::2][: n - closest]


def test_alibi_bias_is_minus_slope_times_distance_with_the_published_slopes():
    alibi = ALiBi(8)
    slopes = [2.0**-h for h in range(1, 9)]  # 1/2, 1/4, ..., 1/256
    torch.testing.assert_close(alibi.slopes, torch.tensor(slopes))
    bias = alibi(torch.arange(6), torch.arange(6))  # (1, H, T, S)
    assert bias.shape == (1, 8, 6, 6)
    for h in range(8):
        for i in range(6):
            for j in range(6):
                assert math.isclose(bias[0, h, i, j].item(), -slopes[h] * abs(i - j), abs_tol=1e-7)
    # queries may be the last positions of longer keys (decoding with a cache)
    torch.testing.assert_close(alibi(torch.arange(4, 6), torch.arange(6)), bias[:, :, 4:])


@pytest.mark.parametrize("n_head", [1, 2, 3, 5, 6, 12, 16, 24])
def test_alibi_slopes_for_any_head_count_follow_the_reference(n_head):
    slopes = ALiBi(n_head).slopes
    assert slopes.shape == (n_head,)
    assert (slopes > 0).all() and len(set(slopes.tolist())) == n_head
    torch.testing.assert_close(slopes, torch.tensor(published_alibi_slopes(n_head)))


@pytest.mark.parametrize("pos_encoding", ["alibi", "relative", "none"])
def test_models_without_a_position_table_run_past_block_size(pos_encoding):
    torch.manual_seed(0)
    model = scramble(GPT(config(pos_encoding=pos_encoding, block_size=8))).eval()
    idx = torch.randint(0, V, (2, 20))
    logits = model(idx)
    assert logits.shape == (2, 20, V) and torch.isfinite(logits).all()
    changed = idx.clone()
    changed[:, 15] = (idx[:, 15] + 1) % V
    after = model(changed)
    assert max_diff(after[:, :15], logits[:, :15]) < 1e-6  # still causal at length 20
    assert max_diff(after[:, 15:], logits[:, 15:]) > 1e-3
    encoder = Encoder(config(pos_encoding=pos_encoding, block_size=8)).eval()
    assert encoder(idx).shape == (2, 20, V)


@pytest.mark.parametrize("pos_encoding", ["learned", "sinusoidal", "rope"])
def test_position_tables_refuse_sequences_longer_than_block_size(pos_encoding):
    idx = torch.randint(0, V, (1, 20))
    for model in (GPT(config(pos_encoding=pos_encoding, block_size=8)),
                  Encoder(config(pos_encoding=pos_encoding, block_size=8))):  # fmt: skip
        with pytest.raises(GlassboxError, match="longer than block_size 8"):
            model(idx)
        assert model(idx[:, :8]).shape == (1, 8, V)  # block_size itself is fine


def test_an_alibi_encoder_is_equivariant_to_reversing_the_sequence():
    # -slope * |i - j| is symmetric in i and j, so only distance matters, not direction;
    # learned positions know which end is which.
    torch.manual_seed(0)
    idx = torch.randint(3, V, (2, 9))
    alibi = scramble(Encoder(config(pos_encoding="alibi"))).eval()
    assert max_diff(alibi(idx.flip(1)), alibi(idx).flip(1)) < 1e-4
    learned = scramble(Encoder(config(pos_encoding="learned"))).eval()
    assert max_diff(learned(idx.flip(1)), learned(idx).flip(1)) > 0.05


# --- relative positions (Shaw et al.) ------------------------------------------------------


def test_relative_offsets_beyond_the_maximum_share_one_vector():
    torch.manual_seed(0)
    rel = RelativeVectors(max_distance=2, d_head=8)
    offsets = torch.arange(-6, 7)[None, :]  # (T=1, S=13): key - query from -6 to 6
    keys, values = rel(offsets)  # (1, 13, D) each
    for table, out in ((rel.keys.weight, keys[0]), (rel.values.weight, values[0])):
        for i, offset in enumerate(range(-6, 7)):
            row = min(max(offset, -2), 2) + 2  # the clipped offset's row of the table
            assert torch.equal(out[i], table[row])
        assert len({tuple(r.tolist()) for r in out}) == 5  # -2, -1, 0, 1, 2 and no more


def relative_state(state: dict, table_rows) -> dict:
    """A copy of state whose relative tables are rebuilt row by row by table_rows(table)."""
    return {name: table_rows(t) if ".relative." in name else t.clone() for name, t in state.items()}


def test_max_relative_distance_changes_only_what_long_sequences_see():
    torch.manual_seed(0)
    near = scramble(Encoder(config(pos_encoding="relative", max_relative_distance=2))).eval()
    far = Encoder(config(pos_encoding="relative", max_relative_distance=5)).eval()

    def extend(table):  # K=2 rows -> K=5 rows: offsets beyond +-2 repeat the edge rows
        return table[(torch.arange(-5, 6).clamp(-2, 2) + 2)]

    far.load_state_dict(relative_state(near.state_dict(), extend))
    long, short = torch.randint(3, V, (2, 12)), torch.randint(3, V, (2, 3))
    assert max_diff(far(long), near(long)) < 1e-5  # clipping at 2 == repeating the edge rows
    # now give offsets 3..5 (and -3..-5) their own vectors: only sequences long enough to
    # contain such offsets can tell
    with torch.no_grad():
        for block in far.blocks:
            for table in (block.attn.relative.keys.weight, block.attn.relative.values.weight):
                table[:3].normal_(0, 0.3)
                table[-3:].normal_(0, 0.3)
    assert max_diff(far(short), near(short)) < 1e-5  # offsets within -2..2 only
    assert max_diff(far(long), near(long)) > 1e-2


def test_relative_vectors_enter_the_scores_and_only_offsets_matter():
    torch.manual_seed(0)
    idx = torch.randint(3, V, (2, 9))
    model = scramble(Encoder(config(pos_encoding="relative", max_relative_distance=4))).eval()
    # Random tables tell left from right: reversing the sequence is not a symmetry.
    assert max_diff(model(idx.flip(1)), model(idx).flip(1)) > 0.05
    # Tables symmetric in the offset (a[o] == a[-o]) leave only distances, like ALiBi: the
    # model becomes reversal-equivariant, which no absolute position scheme would be.
    model.load_state_dict(relative_state(model.state_dict(), lambda t: (t + t.flip(0)) / 2))
    assert max_diff(model(idx.flip(1)), model(idx).flip(1)) < 1e-4
    # Zero tables: exactly a model with no positions at all (same other weights).
    model.load_state_dict(relative_state(model.state_dict(), torch.zeros_like))
    plain = Encoder(config(pos_encoding="none")).eval()
    plain.load_state_dict(model.state_dict(), strict=False)
    assert max_diff(model(idx), plain(idx)) < 1e-5
    assert len(model.state_dict()) > len(plain.state_dict())  # the tables are the difference


# --- padding never changes real positions --------------------------------------------------


@pytest.mark.parametrize("attention", ["manual", "sdpa"])
@pytest.mark.parametrize("pos_encoding", POS_ENCODINGS)
def test_right_padding_leaves_an_encoders_real_positions_unchanged(pos_encoding, attention):
    torch.manual_seed(0)
    model = scramble(Encoder(config(pos_encoding=pos_encoding, attention=attention))).eval()
    lengths = [5, 9, 12]
    batch = torch.randint(3, V, (3, 12))  # padding slots hold arbitrary (non-pad) ids
    key_mask = torch.arange(12)[None, :] < torch.tensor(lengths)[:, None]  # (B, T)
    together = model(batch, key_mask=key_mask)
    for b, n in enumerate(lengths):
        alone = model(batch[b : b + 1, :n])
        assert max_diff(together[b : b + 1, :n], alone) < 1e-5
    # without the mask the padding is read as text: the test can tell
    assert max_diff(model(batch)[:1, :5], model(batch[:1, :5])) > 1e-3


@pytest.mark.parametrize("attention", ["manual", "sdpa"])
@pytest.mark.parametrize("pos_encoding", POS_ENCODINGS)
def test_left_padding_leaves_a_decoders_real_positions_unchanged(pos_encoding, attention):
    torch.manual_seed(0)
    model = scramble(GPT(config(pos_encoding=pos_encoding, attention=attention))).eval()
    lengths = [4, 11, 12]
    batch = torch.randint(3, V, (3, 12))
    key_mask = torch.arange(12)[None, :] >= 12 - torch.tensor(lengths)[:, None]  # (B, T)
    together = model(batch, key_mask=key_mask)
    for b, n in enumerate(lengths):
        alone = model(batch[b : b + 1, 12 - n :])
        assert max_diff(together[b : b + 1, 12 - n :], alone) < 1e-5
    assert max_diff(model(batch)[:1, 8:], model(batch[:1, 8:])) > 1e-3


@pytest.mark.parametrize("pos_encoding", ["learned", "rope", "relative"])
def test_cross_attention_ignores_padded_source_positions(pos_encoding):
    torch.manual_seed(0)
    model = scramble(EncoderDecoder(config(arch="encoder-decoder", pos_encoding=pos_encoding)))
    model.eval()
    src = torch.randint(3, V, (2, 8))
    src[0, 5:], src[1, 3:] = PAD, PAD
    src_mask = src != PAD
    tgt = torch.cat([torch.full((2, 1), BOS), torch.randint(3, V, (2, 6))], dim=1)
    logits = model(src, tgt, src_mask=src_mask)
    other = src.masked_scatter(~src_mask, torch.randint(0, V, (int((~src_mask).sum()),)))
    assert not torch.equal(other, src)
    assert max_diff(model(other, tgt, src_mask=src_mask), logits) < 1e-6
    # the padded memory is really there: unmasked, it changes the decoder's logits
    assert max_diff(model(other, tgt), model(src, tgt)) > 1e-3
    # and the padded batch computes what each source computes alone
    for b, n in enumerate([5, 3]):
        alone = model(src[b : b + 1, :n], tgt[b : b + 1])
        assert max_diff(logits[b : b + 1], alone) < 1e-5


# --- norms ---------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", NORMS)
def test_only_batchnorm_in_training_mixes_sequences_of_a_batch(norm):
    torch.manual_seed(0)
    model = scramble(GPT(config(norm=norm)))
    idx = torch.randint(0, V, (4, 10))
    other = idx.clone()
    other[3] = (idx[3] + 1) % V  # change another sequence only
    model.train()
    train_change = max_diff(model(idx)[:3], model(other)[:3])
    model.eval()
    eval_change = max_diff(model(idx)[:3], model(other)[:3])
    assert eval_change < 1e-5  # at evaluation no norm looks beyond its own token
    if norm == "batchnorm":
        assert train_change > 1e-3  # batch statistics carry row 3 into rows 0..2
        assert any(isinstance(m, BatchNorm) for m in model.modules())
    else:
        assert train_change < 1e-5


def test_batchnorm_in_training_lets_a_causal_model_see_the_future():
    torch.manual_seed(0)
    model = scramble(GPT(config(norm="batchnorm")))
    idx = torch.randint(0, V, (2, 10))
    later = idx.clone()
    later[:, 8] = (idx[:, 8] + 1) % V
    model.train()
    assert max_diff(model(idx)[:, :8], model(later)[:, :8]) > 1e-3  # the batch mean leaks
    model.eval()
    assert max_diff(model(idx)[:, :8], model(later)[:, :8]) < 1e-6


def test_batchnorm_at_evaluation_uses_its_running_statistics():
    torch.manual_seed(0)
    model = GPT(config(norm="batchnorm"))
    norm = model.blocks[0].ln_1.norm
    before = norm.running_mean.clone()
    model.train()
    model(torch.randint(0, V, (4, 10)))
    assert max_diff(norm.running_mean, before) > 0  # training updated them
    model.eval()
    x = torch.randn(3, 7, 32) * 3 + 1
    expected = (x - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps)
    expected = expected * norm.weight + norm.bias
    assert max_diff(model.blocks[0].ln_1(x), expected) < 1e-5
    saved = norm.running_mean.clone()
    model(torch.randint(0, V, (4, 10)))
    assert torch.equal(norm.running_mean, saved)  # evaluation does not update them


# --- pre-norm and post-norm ----------------------------------------------------------------


def silence_sublayers(block: nn.Module) -> None:
    """Zero every projection that writes into the residual stream (weights and biases)."""
    with torch.no_grad():
        sublayers = [block.attn, block.mlp] + (
            [block.cross_attn] if block.cross_attn is not None else []
        )
        for proj in (sublayer.proj for sublayer in sublayers):
            proj.weight.zero_()
            if proj.bias is not None:
                proj.bias.zero_()


@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("placement", NORM_PLACEMENTS)
def test_a_block_computes_the_documented_formula(placement, cross):
    # pre: x + f(norm(x)) per sublayer; post: norm(x + f(x)) per sublayer
    torch.manual_seed(0)
    block = scramble(Block(config(norm_placement=placement), cross=cross)).eval()
    x, memory = torch.randn(2, 6, 32), torch.randn(2, 4, 32)

    def cross_attn(h):
        return block.cross_attn(h, memory)

    sublayers = [(block.ln_1, block.attn)]
    sublayers += [(block.ln_cross, cross_attn)] if cross else []
    sublayers += [(block.ln_2, block.mlp)]
    expected = x
    for norm, f in sublayers:
        if placement == "pre":
            expected = expected + f(norm(expected))
        else:
            expected = norm(expected + f(expected))
    assert max_diff(block(x, memory=memory if cross else None), expected) < 1e-5


@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_pre_norm_block_with_silent_sublayers_is_the_identity(bias, cross):
    torch.manual_seed(0)
    block = scramble(Block(config(bias=bias), cross=cross)).eval()
    x = torch.randn(2, 6, 32) * 3 + 1  # far from normalized
    memory = torch.randn(2, 4, 32) if cross else None
    assert max_diff(block(x, memory=memory), x) > 0.1  # a live block changes the stream
    silence_sublayers(block)
    assert torch.equal(block(x, memory=memory), x)  # x + 0 + 0: the residual path is bare


@pytest.mark.parametrize("cross", [False, True])
def test_post_norm_block_output_is_normalized_and_not_the_identity(cross):
    torch.manual_seed(0)
    block = Block(config(norm_placement="post"), cross=cross).eval()  # at init: unit gains
    x = torch.randn(2, 6, 32) * 3 + 1
    memory = torch.randn(2, 4, 32) if cross else None
    for silent in (False, True):
        if silent:
            silence_sublayers(block)
        y = block(x, memory=memory)  # (B, T, C)
        assert y.mean(-1).abs().max() < 1e-5  # every token: mean 0 ...
        assert (y.var(-1, unbiased=False) - 1).abs().max() < 1e-3  # ... and variance 1
        assert max_diff(y, x) > 1.0  # the identity path goes through a norm
    # silenced, the block is norm(norm(x)) (three norms with cross-attention): x normalized
    expected = torch.nn.functional.layer_norm(x, (32,))
    assert max_diff(y, expected) < 1e-4


@pytest.mark.parametrize("norm", NORMS)
def test_post_norm_models_have_no_final_norm(norm):
    for placement, final in (("pre", (nn.LayerNorm, RMSNorm, BatchNorm)), ("post", nn.Identity)):
        cfg = config(norm=norm, norm_placement=placement)
        for stack in (GPT(cfg), Encoder(cfg)):
            assert isinstance(stack.ln_f, final)
        model = EncoderDecoder(config(arch="encoder-decoder", norm=norm, norm_placement=placement))
        assert isinstance(model.encoder.ln_f, final) and isinstance(model.decoder.ln_f, final)
    assert isinstance(GPT(config(norm=norm)).blocks[0].ln_1, (nn.LayerNorm, RMSNorm, BatchNorm))


# --- activations ---------------------------------------------------------------------------


def test_swiglu_keeps_the_mlp_parameter_count():
    def count(activation: str) -> int:
        return sum(p.numel() for p in MLP(config(activation=activation)).parameters())

    gelu, swiglu = count("gelu"), count("swiglu")
    assert gelu == 2 * 32 * 128  # fc (C -> 4C) and proj (4C -> C), no biases
    assert abs(swiglu - gelu) / gelu < 0.01  # three matrices of 2/3 the width
    assert count("relu") == count("relu2") == count("gelu_tanh") == gelu
    mlp = MLP(config(activation="swiglu"))
    assert mlp.fc.out_features == 2 * mlp.proj.in_features == 2 * (2 * 128 // 3)


def _swiglu(t: torch.Tensor) -> torch.Tensor:
    gate, value = t.chunk(2, dim=-1)
    return gate * torch.sigmoid(gate) * value


GELU_K = math.sqrt(2 / math.pi)
REFERENCE_ACTIVATIONS = {  # the formulas, written out
    "gelu": lambda t: 0.5 * t * (1 + torch.erf(t / math.sqrt(2))),
    "gelu_tanh": lambda t: 0.5 * t * (1 + torch.tanh(GELU_K * (t + 0.044715 * t**3))),
    "relu": lambda t: t.clamp(min=0),
    "relu2": lambda t: t.clamp(min=0) ** 2,
    "swiglu": _swiglu,
}


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_the_mlp_hidden_layer_is_its_activation(activation):
    torch.manual_seed(0)
    model = scramble(GPT(config(activation=activation))).eval()
    hidden = []
    hook = model.blocks[0].mlp.proj.register_forward_pre_hook(lambda m, a: hidden.append(a[0]))
    try:
        model(torch.randint(0, V, (2, 10)))
    finally:
        hook.remove()
    (h,) = hidden  # (B, T, hidden): the input of the MLP's output projection
    mlp = model.blocks[0].mlp
    assert h.shape == (2, 10, mlp.proj.in_features)
    if activation in ("relu", "relu2"):
        assert h.min() >= 0 and (h == 0).float().mean() > 0.2  # negatives clipped to 0
    else:
        assert h.min() < 0  # gelu and silu let small negative values through
    x = torch.randn(50, 32)
    pre = mlp.fc(x)
    expected = REFERENCE_ACTIVATIONS[activation](pre)
    assert max_diff(mlp.act(pre), expected) < 1e-5
    assert max_diff(mlp(x), mlp.proj(expected)) < 1e-5


def test_exact_and_tanh_gelu_differ_slightly():
    torch.manual_seed(0)
    exact = scramble(GPT(config(activation="gelu"))).eval()
    tanh = GPT(config(activation="gelu_tanh")).eval()
    tanh.load_state_dict(exact.state_dict())
    idx = torch.randint(0, V, (2, 10))
    assert 1e-6 < max_diff(exact(idx), tanh(idx)) < 0.1


# --- bias and dropout ----------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("arch", ARCHS)
def test_bias_false_means_no_bias_parameters_at_all(arch, norm):
    without = build_model(config(arch=arch, norm=norm, bias=False))
    names = [name for name, _ in without.named_parameters()]
    assert names and not [n for n in names if "bias" in n]
    with_bias = build_model(config(arch=arch, norm=norm, bias=True))
    linears = [m for m in with_bias.modules() if isinstance(m, nn.Linear)]
    assert linears and all(m.bias is not None for m in linears)
    layernorms = [m for m in with_bias.modules() if isinstance(m, nn.LayerNorm)]
    assert all(m.bias is not None for m in layernorms)
    assert bool(layernorms) == (norm == "layernorm")  # RMSNorm has a gain and no bias


@pytest.mark.parametrize("arch", ARCHS)
def test_dropout_is_random_in_training_and_off_at_evaluation(arch):
    torch.manual_seed(0)
    model = scramble(build_model(config(arch=arch, dropout=0.2)))
    plain = build_model(config(arch=arch, dropout=0.0))
    plain.load_state_dict(model.state_dict())
    idx = torch.randint(3, V, (2, 10))
    args = (idx, idx) if arch == "encoder-decoder" else (idx,)
    model.train()
    first, second = model(*args), model(*args)
    assert max_diff(first, second) > 1e-3  # a new mask each call
    model.eval()
    a, b = model(*args), model(*args)
    assert torch.equal(a, b)
    assert max_diff(a, plain.eval()(*args)) < 1e-6  # evaluation: as if there were no dropout
    assert max_diff(first, a) > 1e-3


def test_every_sublayer_output_is_dropped_out_in_training():
    """Each residual write (attention and MLP) has its own dropout: about p of its
    elements are exactly zero in training, none at evaluation."""
    torch.manual_seed(0)
    model = scramble(build_model(config(dropout=0.3)))
    idx = torch.randint(3, V, (8, 12))
    names = ["blocks.0.hook_attn_out", "blocks.0.hook_mlp_out"]
    for training, expected in ((True, 0.3), (False, 0.0)):
        model.train(training)
        with torch.no_grad():
            _, cache = model.run_with_cache(idx, names_filter=names)
        for name in names:
            zeros = (cache[name] == 0).float().mean().item()
            assert abs(zeros - expected) < 0.05, (name, training, zeros)


# --- every variant decodes the same with and without the KV cache ---------------------------


@pytest.mark.parametrize("placement", NORM_PLACEMENTS)
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("pos_encoding", POS_ENCODINGS)
def test_cached_greedy_generation_equals_uncached(pos_encoding, norm, placement):
    torch.manual_seed(0)
    model = scramble(GPT(config(pos_encoding=pos_encoding, norm=norm, norm_placement=placement)))
    if norm == "batchnorm":  # give the running statistics something to hold
        model.train()
        for _ in range(3):
            model(torch.randint(0, V, (4, 16)))
    model.eval()
    idx = torch.randint(0, V, (3, 4))
    key_mask = torch.ones(3, 4, dtype=torch.bool)
    key_mask[0, :2] = False  # one left-padded prompt in the batch
    options = dict(temperature=0, key_mask=key_mask)
    cached = torch.stack(list(generate(model, idx, 12, **options)))  # (N, B): 4 + 12 <= 16
    uncached = torch.stack(list(generate(model, idx, 12, use_cache=False, **options)))
    assert torch.equal(cached, uncached)
    # the logits agree too, step by step along the generated text
    tokens = torch.cat([idx, cached.T], dim=1)  # (B, 16)
    mask = torch.cat([key_mask, torch.ones(3, 12, dtype=torch.bool)], dim=1)
    full = model(tokens, key_mask=mask)  # (B, 16, V)
    cache = model.new_cache(3)
    steps = [model(tokens[:, :4], cache=cache, key_mask=mask[:, :4])]
    steps += [model(tokens[:, t : t + 1], cache=cache) for t in range(4, 16)]
    scale = full.abs().max().item()  # scrambled weights: logits of tens; fp32 noise
    assert max_diff(torch.cat(steps, dim=1)[:, 2:], full[:, 2:]) < 1e-4 * scale
    assert (full[:, 3:-1].argmax(-1) == cached.T).all()


@pytest.mark.parametrize("norm", ["layernorm", "batchnorm"])
@pytest.mark.parametrize("placement", NORM_PLACEMENTS)
@pytest.mark.parametrize("pos_encoding", POS_ENCODINGS)
def test_encoder_decoder_cached_greedy_equals_full_recomputation(pos_encoding, placement, norm):
    torch.manual_seed(0)
    cfg = config(arch="encoder-decoder", pos_encoding=pos_encoding, norm_placement=placement,
                 norm=norm)  # fmt: skip
    model = scramble(EncoderDecoder(cfg), std=0.3)
    if norm == "batchnorm":
        model.train()
        model(torch.randint(3, V, (4, 8)), torch.randint(3, V, (4, 8)))
    model.eval()
    src = torch.randint(3, V, (3, 7))
    src[1, 4:] = PAD
    src_mask = src != PAD
    decoded = greedy_decode(model, src, bos=BOS, eos=EOS, max_len=6, src_mask=src_mask)
    for b in range(3):
        prefix, expected = [BOS], []
        for _ in range(6):  # the whole target prefix through the model at every step
            logits = model(src[b : b + 1], torch.tensor([prefix]), src_mask=src_mask[b : b + 1])
            token = int(logits[0, -1].argmax())
            if token == EOS:
                break
            expected.append(token)
            prefix.append(token)
        assert decoded[b] == expected


# --- unknown names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, choices",
    [("arch", ARCHS), ("pos_encoding", POS_ENCODINGS), ("norm", NORMS),
     ("norm_placement", NORM_PLACEMENTS), ("activation", ACTIVATIONS),
     ("attention", ATTENTION_IMPLS)],
)  # fmt: skip
def test_unknown_variant_names_are_a_one_line_config_error(field, choices):
    with pytest.raises(ConfigError) as info:
        ModelConfig(**{field: "bogus"})
    message = str(info.value)
    assert "\n" not in message and field in message and "'bogus'" in message
    assert all(choice in message for choice in choices)
    assert isinstance(info.value, GlassboxError)
    with pytest.raises(ConfigError, match="bogus"):  # the CLI's path: strings from a command line
        override(ModelConfig(), {field: "bogus"})
    assert choices and all(ModelConfig(**{field: c}) for c in choices)  # every choice builds
