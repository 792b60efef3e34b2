import math

import pytest
import torch

from glassbox.analysis.circuits import (
    FactoredMatrix,
    circuit_spectra,
    composition_scores,
    copying_score,
    copying_scores,
    full_ov_circuit,
    full_qk_circuit,
    head_weights,
    ov_circuit,
    plot_spectra,
    positional_qk_circuit,
    qk_circuit,
)
from glassbox.config import ModelConfig
from glassbox.errors import GlassboxError
from glassbox.models import GPT
from glassbox.models.encoder import Encoder
from glassbox.models.seq2seq import EncoderDecoder


def tiny(**changes):
    settings = dict(vocab_size=11, block_size=8, n_layer=2, n_head=4, n_embd=32)
    settings.update(changes)
    torch.manual_seed(0)
    return GPT(ModelConfig(**settings)).eval()


def close(a, b, tol=1e-5):
    torch.testing.assert_close(a, b, atol=tol, rtol=tol)


# ---- FactoredMatrix against the dense product ----


@pytest.fixture
def factors():
    torch.manual_seed(0)
    return torch.randn(7, 3, dtype=torch.float64), torch.randn(3, 7, dtype=torch.float64)


def test_factored_basics(factors):
    A, B = factors
    fm, dense = FactoredMatrix(A, B), A @ B
    assert fm.shape == (7, 7) and fm.rank == 3
    close(fm.full(), dense)
    close(fm.T.full(), dense.T)
    close(fm.norm(), torch.linalg.matrix_norm(dense))


def test_factored_matmul(factors):
    A, B = factors
    fm, dense = FactoredMatrix(A, B), A @ B
    other = torch.randn(7, 5, dtype=torch.float64)
    assert isinstance(fm @ other, FactoredMatrix)
    close((fm @ other).full(), dense @ other)
    close((other.T @ fm).full(), other.T @ dense)
    v = torch.randn(7, dtype=torch.float64)
    close(fm @ v, dense @ v)
    close(v @ fm, v @ dense)
    low = FactoredMatrix(torch.randn(7, 2, dtype=torch.float64), torch.randn(2, 7).double())
    for left, right in [(fm, low), (low, fm)]:  # the result keeps the smaller rank
        product = left @ right
        assert isinstance(product, FactoredMatrix) and product.rank == 2
        close(product.full(), left.full() @ right.full())


def test_factored_eigenvalues_are_the_nonzero_ones(factors):
    A, B = factors
    eig = FactoredMatrix(A, B).eigenvalues()
    dense = torch.linalg.eigvals(A @ B)  # 7 values: these 3 and 4 (numerical) zeros
    assert eig.shape == (3,)
    for value in eig:
        assert (dense - value).abs().min() < 1e-8
    assert (dense.abs() > 1e-8).sum() == 3
    close(eig.sum(), torch.trace(A @ B).to(eig.dtype))


def test_factored_svd(factors):
    A, B = factors
    u, s, vh = FactoredMatrix(A, B).svd()
    assert u.shape == (7, 3) and s.shape == (3,) and vh.shape == (3, 7)
    close(u @ torch.diag(s) @ vh, A @ B)
    close(s, torch.linalg.svdvals(A @ B)[:3])
    close(u.T @ u, torch.eye(3, dtype=torch.float64))  # orthonormal columns and rows
    close(vh @ vh.T, torch.eye(3, dtype=torch.float64))


def test_factored_batches_broadcast():
    A, B = torch.randn(4, 1, 6, 2), torch.randn(1, 3, 2, 5)
    fm = FactoredMatrix(A, B)
    assert fm.shape == (4, 3, 6, 5)
    close(fm.norm(), torch.linalg.matrix_norm(A @ B))
    close(fm.T.full(), (A @ B).mT)


def test_factored_errors():
    with pytest.raises(GlassboxError, match="do not chain"):
        FactoredMatrix(torch.randn(4, 2), torch.randn(3, 4))
    with pytest.raises(GlassboxError, match="square"):
        FactoredMatrix(torch.randn(4, 2), torch.randn(2, 5)).eigenvalues()


# ---- head weights reproduce the model's activations ----


def run(model, hooks):
    idx = torch.randint(
        0, model.config.vocab_size, (2, 8), generator=torch.Generator().manual_seed(1)
    )
    _, cache = model.run_with_cache(idx, names_filter=hooks)
    return cache


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("n_kv_head", [0, 2])
def test_head_weights_reproduce_q_k_v(norm, n_kv_head):
    model = tiny(norm=norm, n_kv_head=n_kv_head)
    block = model.blocks[1]
    with torch.no_grad():
        block.ln_1.weight.uniform_(0.5, 2.0)  # a gain that folding must get right
    names = ["blocks.1.hook_resid_pre"] + [f"blocks.1.attn.hook_{x}" for x in "qkv"]
    cache = run(model, names)
    x_normed = block.ln_1(cache["blocks.1.hook_resid_pre"]).detach()  # (B, T, C)
    x_hat = x_normed / block.ln_1.weight.detach()  # normalized, gain not applied
    group = 4 // (n_kv_head or 4)
    for head in range(4):
        raw = head_weights(model, 1, head, fold_ln=False)
        folded = head_weights(model, 1, head)
        kv = head // group  # the key/value head this query head reads
        for name, hook, index in [("W_Q", "q", head), ("W_K", "k", kv), ("W_V", "v", kv)]:
            cached = cache[f"blocks.1.attn.hook_{hook}"][:, :, index]  # (B, T, D)
            close(x_normed @ raw[name], cached)
            close(x_hat @ folded[name], cached)


def test_head_weights_reproduce_attn_out():
    model = tiny(bias=True)
    with torch.no_grad():
        model.blocks[0].attn.proj.bias.normal_()
    cache = run(model, ["blocks.0.attn.hook_z", "blocks.0.hook_attn_out"])
    z = cache["blocks.0.attn.hook_z"]  # (B, T, H, D)
    out = sum(z[:, :, h] @ head_weights(model, 0, h)["W_O"] for h in range(4))
    close(out + model.blocks[0].attn.proj.bias.detach(), cache["blocks.0.hook_attn_out"])


def test_head_weights_are_copies():
    model = tiny()
    head_weights(model, 0, 0, fold_ln=False)["W_Q"].zero_()
    assert model.blocks[0].attn.qkv.weight[:8].abs().sum() > 0


def test_post_norm_has_nothing_to_fold():
    model = tiny(norm_placement="post")
    with torch.no_grad():
        model.blocks[0].ln_1.weight.fill_(3.0)
    close(head_weights(model, 0, 1)["W_Q"], head_weights(model, 0, 1, fold_ln=False)["W_Q"])


def test_out_of_range_and_bad_part():
    model = tiny()
    with pytest.raises(
        GlassboxError, match=r"^head 7 is out of range: layer 0 has 4 heads \(0-3\)$"
    ):
        head_weights(model, 0, 7)
    with pytest.raises(GlassboxError, match=r"layer 2 is out of range: the model has 2 layers"):
        ov_circuit(model, 2, 0)
    with pytest.raises(GlassboxError, match="head -1 is out of range"):
        qk_circuit(model, 0, -1)
    seq2seq = EncoderDecoder(ModelConfig(arch="encoder-decoder", vocab_size=11, n_layer=1,
                                         n_head=4, n_embd=32))  # fmt: skip
    with pytest.raises(GlassboxError, match="part='encoder' or part='decoder'"):
        head_weights(seq2seq, 0, 0)
    with pytest.raises(GlassboxError, match="batchnorm"):
        head_weights(tiny(norm="batchnorm"), 0, 0)
    with pytest.raises(GlassboxError, match="uses rope"):
        positional_qk_circuit(tiny(pos_encoding="rope"), 0, 0)


def test_encoder_and_encoder_decoder_stacks():
    config = ModelConfig(arch="encoder-decoder", vocab_size=11, n_layer=1, n_head=4, n_embd=32)
    seq2seq = EncoderDecoder(config)
    for part in ("encoder", "decoder"):
        w_q = getattr(seq2seq, part).blocks[0].attn.qkv.weight[8:16].T
        close(head_weights(seq2seq, 0, 1, part=part, fold_ln=False)["W_Q"], w_q.detach())
    encoder = Encoder(ModelConfig(arch="encoder", vocab_size=11, n_layer=1, n_head=4, n_embd=32))
    assert copying_scores(encoder, part="ignored").shape == (1, 4)


# ---- circuits against dense products ----


@pytest.mark.parametrize("pos_encoding", ["learned", "sinusoidal"])
def test_circuits_match_dense(pos_encoding):
    model = tiny(pos_encoding=pos_encoding)
    with torch.no_grad():
        model.ln_f.weight.uniform_(0.5, 2.0)
    w = head_weights(model, 1, 2)
    scale = math.sqrt(32) if pos_encoding == "sinusoidal" else 1.0
    W_E = model.tok_emb.weight.detach() * scale  # as the tokens enter the stream
    W_U = model.ln_f.weight.detach()[:, None] * model.tok_emb.weight.detach().T
    table = model.pos_emb.table
    W_pos = (table.weight if pos_encoding == "learned" else table).detach()
    OV, QK = w["W_V"] @ w["W_O"], w["W_Q"] @ w["W_K"].T
    close(ov_circuit(model, 1, 2).full(), OV)
    close(qk_circuit(model, 1, 2).full(), QK)
    assert full_ov_circuit(model, 1, 2).shape == (11, 11)
    close(full_ov_circuit(model, 1, 2).full(), W_E @ OV @ W_U)
    close(full_qk_circuit(model, 1, 2).full(), W_E @ QK @ W_E.T)
    close(positional_qk_circuit(model, 1, 2).full(), W_pos @ QK @ W_pos.T, tol=1e-4)
    W_U_raw = model.tok_emb.weight.detach().T
    close(full_ov_circuit(model, 1, 2, fold_ln=False).full(),
          W_E @ ov_circuit(model, 1, 2, fold_ln=False).full() @ W_U_raw)  # fmt: skip


# ---- copying scores ----


def identity_model():
    """n_embd == vocab and tok_emb = I, so the full OV circuit is W_OV itself."""
    model = tiny(vocab_size=8, n_embd=8, n_head=2, n_layer=1, attn_only=True)
    with torch.no_grad():
        model.tok_emb.weight.copy_(torch.eye(8))
    return model


def set_ov(model, head, w_v, w_o):
    """Write a head's W_V (C, D) and W_O (D, C) into the fused weights."""
    attn, C, D = model.blocks[0].attn, 8, 4
    with torch.no_grad():
        attn.qkv.weight[2 * C + head * D : 2 * C + (head + 1) * D] = w_v.T
        attn.proj.weight[:, head * D : (head + 1) * D] = w_o.T


def test_copying_score_of_hand_built_heads():
    model = identity_model()
    embed = torch.eye(8)[:, :4]  # (C, D): reads and writes the first 4 directions
    set_ov(model, 0, embed, embed.T)  # W_OV = projection onto them: eigenvalues 1, 1, 1, 1
    assert copying_score(model, 0, 0) == pytest.approx(1.0, abs=1e-6)
    set_ov(model, 0, embed, -2 * embed.T)  # suppresses the token it attends to
    assert copying_score(model, 0, 0) == pytest.approx(-1.0, abs=1e-6)
    rotate = torch.tensor([[0.0, 1, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 1], [0, 0, -1, 0]])
    set_ov(model, 0, embed, rotate @ embed.T)  # a rotation: eigenvalues ±i, sum 0
    assert copying_score(model, 0, 0) == pytest.approx(0.0, abs=1e-6)
    set_ov(model, 1, embed, embed.T)
    scores = copying_scores(model)
    assert scores.shape == (1, 2)
    assert scores[0, 0].item() == pytest.approx(0.0, abs=1e-6)
    assert scores[0, 1].item() == pytest.approx(1.0, abs=1e-6)


def test_copying_scores_match_one_by_one():
    model = tiny()
    scores = copying_scores(model)
    assert scores.shape == (2, 4) and scores.abs().max() <= 1
    for layer in range(2):
        for head in range(4):
            assert scores[layer, head].item() == pytest.approx(copying_score(model, layer, head))


# ---- composition scores ----


def test_composition_matches_the_dense_formulas():
    model = tiny(n_kv_head=2)
    scores = composition_scores(model)
    assert set(scores) == {"q", "k", "v"} and scores["q"].shape == (2, 4, 2, 4)
    fro = torch.linalg.matrix_norm
    for h1 in range(4):
        w1 = head_weights(model, 0, h1)
        ov1 = w1["W_V"] @ w1["W_O"]
        for h2 in range(4):
            w2 = head_weights(model, 1, h2)
            qk2, ov2 = w2["W_Q"] @ w2["W_K"].T, w2["W_V"] @ w2["W_O"]
            q = fro(ov1 @ qk2) / (fro(ov1) * fro(qk2))
            k = fro(qk2 @ ov1.T) / (fro(ov1) * fro(qk2))
            v = fro(ov1 @ ov2) / (fro(ov1) * fro(ov2))
            for kind, want in zip("qkv", (q, k, v), strict=True):
                close(scores[kind][0, h1, 1, h2], want)
    for kind in "qkv":  # nothing computed from a layer to itself or to an earlier one
        assert scores[kind][1].abs().sum() == 0 and scores[kind][0, :, 0].abs().sum() == 0


def test_k_composition_of_a_constructed_pair():
    """Head (0, 1) reads dims 0-7 and writes dims 8-15; head (1, 2) takes its keys from
    dims 8-15 and its queries from dims 16-23. K-composition is then ||E_c E_aᵀ|| /
    (||E_a E_bᵀ|| ||E_c E_bᵀ||) = √8 / (√8 √8), and Q-composition 0."""
    model = tiny()
    C, D = 32, 8
    E = torch.eye(C)
    E_a, E_b, E_c = E[:, 0:8], E[:, 8:16], E[:, 16:24]  # (C, D) each
    with torch.no_grad():
        a0, a1 = model.blocks[0].attn, model.blocks[1].attn
        a0.qkv.weight[2 * C + D : 2 * C + 2 * D] = E_a.T  # W_V of head 1
        a0.proj.weight[:, D : 2 * D] = E_b  # W_O of head 1 is E_bᵀ
        a1.qkv.weight[2 * D : 3 * D] = E_c.T  # W_Q of head 2
        a1.qkv.weight[C + 2 * D : C + 3 * D] = E_b.T  # W_K of head 2
    scores = composition_scores(model)
    k = scores["k"][0, :, 1]  # (H, H): earlier head by later head
    assert k[1, 2].item() == pytest.approx(1 / math.sqrt(D), rel=1e-5)
    assert scores["q"][0, 1, 1, 2].item() == pytest.approx(0.0, abs=1e-6)
    others = torch.cat([k.flatten()[: 1 * 4 + 2], k.flatten()[1 * 4 + 3 :]])
    assert k[1, 2] > 1.5 * others.max()  # random pairings sit near 1/sqrt(C)


# ---- ranks and spectra ----


def test_circuit_ranks_match_matrix_rank_of_the_product():
    """d_head 8 < d_model 32: every circuit has rank <= 8, and the factored rank is what
    torch.linalg.matrix_rank says of the explicit 32 x 32 product, also for a head made
    to use only 3 directions (W_V with 5 of its 8 columns zeroed)."""
    model = tiny()
    D = model.config.d_head
    with torch.no_grad():
        start = 2 * 32 + 1 * D  # layer 0's W_V rows for head 1 start after Q and K
        model.blocks[0].attn.qkv.weight[start + 3 : start + D] = 0.0
    spectra = circuit_spectra(model)
    assert spectra["ov"]["singular_values"].shape == (2, 4, D)
    for layer in range(2):
        for head in range(4):
            for kind, circuit in (("ov", ov_circuit), ("qk", qk_circuit)):
                full = circuit(model, layer, head).full()  # (32, 32)
                rank = int(spectra[kind]["rank"][layer, head])
                assert rank == int(torch.linalg.matrix_rank(full)) <= D
                close(spectra[kind]["singular_values"][layer, head], torch.linalg.svdvals(full)[:D])
    assert spectra["ov"]["rank"][0, 1] == 3 and spectra["qk"]["rank"][0, 1] == D
    assert (spectra["ov"]["singular_values"].diff(dim=-1) <= 1e-7).all()  # largest first


def test_spectra_in_the_inspect_report_and_their_plot(tmp_path):
    from glassbox.analysis.inspect import circuits_report, describe_inspection

    model = tiny()
    report = circuits_report(model)
    assert report["ov_rank"] == [[8] * 4] * 2 and report["d_head"] == 8
    assert len(report["qk_singular_values"][1][3]) == 8
    text = describe_inspection({"circuits": report})
    assert "W_OV rank per head (rows: layers; each is 32 x 32, d_head 8)" in text
    assert "W_QK singular values per head, largest first" in text
    assert plot_spectra(model, tmp_path / "spectra.png").stat().st_size > 0
