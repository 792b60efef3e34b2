"""Muon (glassbox.train.muon): the Newton-Schulz orthogonalization, the update, the split
of parameters between Muon and AdamW, and training and resuming with it."""

import json

import pytest
import torch

from glassbox import runs
from glassbox.checkpoint import _read
from glassbox.config import ModelConfig, TrainConfig
from glassbox.models import GPT
from glassbox.train import configure_optimizer, set_lr
from glassbox.train.muon import Muon, orthogonalize
from glassbox.train.trainer import resume, train

SHAPES = [(32, 96), (96, 32), (128, 512), (384, 128), (48, 50)]


def with_spectrum(shape: tuple[int, int], values: torch.Tensor) -> torch.Tensor:
    """A random matrix of this shape whose singular values are `values`."""
    m, n = shape
    k = min(m, n)
    U = torch.linalg.qr(torch.randn(m, k, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(n, k, dtype=torch.float64))[0]
    return (U * values) @ V.T


@pytest.mark.parametrize("shape", SHAPES)
def test_newton_schulz_sets_every_singular_value_near_one(shape):
    torch.manual_seed(0)
    g = torch.randn(*shape) * 3.7  # the scale of the input does not matter
    o = orthogonalize(g)
    assert o.shape == g.shape
    s = torch.linalg.svdvals(o)
    # the quintic's band (about 0.68-1.14 measured), not exactly 1: coefficients tuned for
    # a steep slope at 0 rather than for convergence
    assert s.min() > 0.6 and s.max() < 1.25, (s.min(), s.max())
    # a spectrum spread over a factor of 30, flattened into the same band
    k = min(shape)
    spread = with_spectrum(shape, torch.logspace(0, -1.5, k, dtype=torch.float64)).float()
    s = torch.linalg.svdvals(orthogonalize(spread))
    assert s.min() > 0.6 and s.max() < 1.25, (s.min(), s.max())


@pytest.mark.parametrize("shape", SHAPES)
def test_newton_schulz_keeps_the_singular_vectors(shape):
    """An odd polynomial of G = U S Vᵀ is U p(S) Vᵀ: in G's own singular bases, the
    result is diagonal, with positive entries (the direction U Vᵀ, each scaled)."""
    torch.manual_seed(1)
    g = torch.randn(*shape, dtype=torch.float64)
    U, S, Vh = torch.linalg.svd(g, full_matrices=False)  # (m, k), (k,), (k, n)
    inner = U.T @ orthogonalize(g).double() @ Vh.T  # (k, k)
    diagonal = inner.diagonal()
    off = inner - torch.diag(diagonal)
    assert off.abs().max() < 1e-4  # float32 arithmetic inside
    assert diagonal.min() > 0.6 and diagonal.max() < 1.25
    # so the result points along U Vᵀ: cosine similarity close to 1
    polar = U @ Vh
    cosine = (orthogonalize(g).double() * polar).sum() / (orthogonalize(g).norm() * polar.norm())
    assert cosine > 0.97


def test_newton_schulz_batches_and_leaves_zero_at_zero():
    torch.manual_seed(0)
    g = torch.randn(3, 40, 24)
    batched = orthogonalize(g)
    for i in range(3):
        torch.testing.assert_close(batched[i], orthogonalize(g[i]), atol=1e-5, rtol=1e-5)
    assert torch.equal(orthogonalize(torch.zeros(8, 16)), torch.zeros(8, 16))  # a zero proj's


def test_a_muon_step_is_nesterov_momentum_orthogonalized_and_scaled():
    torch.manual_seed(0)
    w0 = torch.randn(64, 16)  # tall: the update is scaled by sqrt(64 / 16) = 2
    w = torch.nn.Parameter(w0.clone())
    opt = Muon([{"params": [w], "muon": True}], lr=0.1, momentum=0.9, weight_decay=0.5)
    g1, g2 = torch.randn(64, 16), torch.randn(64, 16)
    w.grad = g1
    opt.step()
    expected = w0 * (1 - 0.1 * 0.5) - 0.1 * 2 * orthogonalize(g1)  # M = 0.1 g1, N ∝ g1
    torch.testing.assert_close(w.data, expected)
    w.grad = g2
    before = w.data.clone()
    opt.step()
    m = 0.9 * 0.1 * g1 + 0.1 * g2  # the running average
    nesterov = 0.1 * g2 + 0.9 * m
    expected = before * (1 - 0.05) - 0.2 * orthogonalize(nesterov)
    torch.testing.assert_close(w.data, expected)
    torch.testing.assert_close(opt.state[w]["momentum_buffer"], m)


@pytest.mark.skipif(not hasattr(torch.optim, "Muon"), reason="torch.optim.Muon needs torch 2.9+")
def test_muon_agrees_with_pytorchs_own():
    """torch.optim.Muon keeps momentum as a sum (B = μB + g), we as an average
    (M = (1 - μ)B); orthogonalization removes the scale. Its Newton-Schulz runs in
    bfloat16, ours in float32: they agree to bfloat16's precision."""
    torch.manual_seed(0)
    w0 = torch.randn(48, 96) * 0.1
    ours, theirs = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(w0.clone())
    opt = Muon([{"params": [ours], "muon": True}], lr=0.02, weight_decay=0.1)
    reference = torch.optim.Muon([theirs], lr=0.02, weight_decay=0.1, momentum=0.95)
    for _ in range(3):
        g = torch.randn(48, 96)
        ours.grad, theirs.grad = g.clone(), g.clone()
        opt.step()
        reference.step()
    step = (theirs.data - w0).abs().max()
    assert (ours.data - theirs.data).abs().max() < 0.03 * step


def test_the_adamw_groups_compute_what_torchs_adamw_computes():
    torch.manual_seed(0)
    w0 = torch.randn(10, 7)
    ours, theirs = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(w0.clone())
    settings = dict(lr=3e-3, betas=(0.8, 0.95), eps=1e-8, weight_decay=0.1)
    opt = Muon([{"params": [ours]}], **settings)
    reference = torch.optim.AdamW([theirs], foreach=False, **settings)
    for _ in range(5):
        g = torch.randn(10, 7)
        ours.grad, theirs.grad = g.clone(), g.clone()
        opt.step()
        reference.step()
    torch.testing.assert_close(ours.data, theirs.data, atol=1e-7, rtol=1e-6)
    assert set(opt.state[ours]) == {"step", "exp_avg", "exp_avg_sq"}


def test_muon_groups_hold_matrices_only():
    with pytest.raises(ValueError, match="2-D matrices only"):
        Muon([{"params": [torch.nn.Parameter(torch.ones(4))], "muon": True}])


def test_muon_gets_the_blocks_matrices_and_adamw_the_rest():
    cfg = ModelConfig(vocab_size=11, n_layer=2, n_head=2, n_embd=16, bias=True,
                      tie_embeddings=False, pos_encoding="learned")  # fmt: skip
    model = GPT(cfg)
    tc = TrainConfig(optimizer="muon", lr=2e-3, muon_lr=0.05, min_lr=1e-4, weight_decay=0.1)
    optimizer = configure_optimizer(model, tc, "cpu")
    assert isinstance(optimizer, Muon)
    names = {id(p): n for n, p in model.named_parameters()}
    muon, matrices, vectors = optimizer.param_groups
    assert muon["muon"] and not matrices["muon"] and not vectors["muon"]
    assert sorted(names[id(p)] for p in muon["params"]) == sorted(
        f"blocks.{i}.{part}.weight" for i in range(2)
        for part in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")
    )  # fmt: skip
    assert sorted(names[id(p)] for p in matrices["params"]) == [
        "lm_head.weight", "pos_emb.table.weight", "tok_emb.weight"
    ]  # fmt: skip
    assert all(p.dim() == 1 for p in vectors["params"])  # biases and norm gains
    assert (muon["weight_decay"], matrices["weight_decay"], vectors["weight_decay"]) == (
        0.1,
        0.1,
        0,
    )
    counted = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(counted) == sorted(names)  # every parameter exactly once
    # one schedule, two scales: AdamW's groups at lr, Muon's at muon_lr
    set_lr(optimizer, 1e-3, tc)  # half of lr
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.025, 1e-3, 1e-3])
    assert json.dumps(optimizer.state_dict()["param_groups"])  # fits the checkpoint header


def test_a_muon_run_learns_and_resumes_exactly(tiny_configs, tmp_path):
    # dropout > 0 so that the RNG state matters too; lr (the AdamW groups': embedding and
    # the zero-initialized head) raised so that 12 steps move the loss visibly
    settings = dict(optimizer="muon", dropout=0.1, tie_embeddings=False, zero_init=True,
                    lr=1e-2, min_lr=1e-3, lr_schedule="wsd", decay_fraction=0.5)  # fmt: skip
    result = train(*tiny_configs(run_dir=str(tmp_path / "full"), **settings), progress=False)
    full = (tmp_path / "full" / runs.METRICS).read_text().splitlines()
    evals = [json.loads(r)["val_loss"] for r in full if '"eval"' in r]
    assert evals[-1] < evals[0] - 0.3  # it learned
    tensors, header = _read(tmp_path / "full" / runs.CHECKPOINT)
    assert any(k.endswith(".momentum_buffer") for k in tensors)
    assert any(k.endswith(".exp_avg_sq") for k in tensors)
    assert [g["muon"] for g in header["optimizer_groups"]] == [True, False, False]
    assert result.step == 12

    def crash_after_iteration_6(row):
        if row["kind"] == "train" and row["iter"] == 6:
            raise KeyboardInterrupt  # the checkpoint of iteration 4 is the last one

    configs = tiny_configs(run_dir=str(tmp_path / "crash"), **settings)
    with pytest.raises(KeyboardInterrupt):
        train(*configs, progress=False, callback=crash_after_iteration_6)
    resume(tmp_path / "crash", progress=False)
    resumed = (tmp_path / "crash" / runs.METRICS).read_text().splitlines()

    def losses(lines):
        rows = [json.loads(line) for line in lines]
        return [(r["iter"], r.get("loss"), r.get("val_loss"), r.get("lr")) for r in rows]

    assert losses(resumed) == losses(full)  # bit-for-bit, lr included
