"""The toy model of superposition reproduces Elhage et al. (2022): dense features get
orthogonal directions, a linear model keeps m features, sparse features share directions
(a pentagon for 5 in 2), and 2 features in 1 dimension go antipodal once they are sparse.

Every training here is seeded, and each claim was checked on seeds 0 to 5 before it was
pinned to one; where a single run can stop in a local minimum, the test keeps the best of
a few restarts, as the paper does."""

import json
import math
import re

import pytest
import torch

from glassbox.analysis.superposition import (
    PHASES,
    feature_norms,
    gram,
    n_represented,
    phase_diagram,
    superposition,
    train_toy,
)
from glassbox.cli import main
from glassbox.errors import GlassboxError


def test_readouts_of_a_hand_made_W():
    # features 0 and 2 antipodal along x, feature 1 alone along y, feature 3 ignored
    W = torch.tensor([[[1.0, 0.0, -1.0, 0.0], [0.0, 2.0, 0.0, 0.1]]])  # (I=1, m=2, n=4)
    assert feature_norms(W).tolist() == [pytest.approx([1.0, 2.0, 1.0, 0.1])]
    assert n_represented(W).tolist() == [3]
    assert gram(W)[0, 0, 2] == -1 and gram(W)[0, 1, 1] == 4
    # feature 1's overlap with feature 3 is (1 · 0.1)², and feature 3 lies along feature 1
    expected = [[1.0, 0.01, 1.0, 4.0]]
    assert torch.allclose(superposition(W), torch.tensor(expected), atol=1e-6)


def test_the_same_seed_gives_the_same_weights():
    first = train_toy([0.0, 0.9], 0.9, steps=20, batch_size=64, seed=3)
    again = train_toy([0.0, 0.9], 0.9, steps=20, batch_size=64, seed=3)
    other = train_toy([0.0, 0.9], 0.9, steps=20, batch_size=64, seed=4)
    assert torch.equal(first.W, again.W) and torch.equal(first.loss, again.loss)
    assert not torch.equal(first.W, other.W)


def test_dense_features_get_orthogonal_directions_and_the_rest_nothing():
    result = train_toy([0.0], 0.9, restarts=4, batch_size=512, seed=0)
    W, norms = result.W[0], feature_norms(result.W)[0]  # (2, 5), (5,)
    assert norms[:2].tolist() == pytest.approx([1.0, 1.0], abs=0.02)  # the 2 most important
    assert norms[2:].max() < 0.1
    cosine = W[:, 0] @ W[:, 1] / (norms[0] * norms[1])
    assert abs(cosine) < 0.02


def test_a_linear_model_keeps_at_most_m_features_at_any_sparsity():
    sparsities = [0.0, 0.5, 0.9, 0.97, 0.99]
    decaying = 0.9 ** torch.arange(5.0)  # (n,)
    importance = torch.stack([decaying] * 5 + [torch.ones(5)] * 5)  # (I=10, n)
    result = train_toy(sparsities * 2, importance, relu=False, batch_size=512, seed=0)
    W, equal = result.W[:5], result.W[5:]  # (5, m, n) each
    assert n_represented(W).tolist() == [2] * 5  # like PCA: the top 2, at any S
    assert feature_norms(W)[:, 2:].max() < 0.3
    # With equal importance any 2 dimensions do as well, so the norms can spread over all
    # 5 features; but WᵀW is still a projection onto 2 dimensions: eigenvalues 1, 1, 0, 0, 0
    eigenvalues = torch.linalg.eigvalsh(gram(equal))  # (5, n), ascending
    assert torch.allclose(eigenvalues[:, -2:], torch.ones(5, 2), atol=0.01)
    assert eigenvalues[:, :-2].abs().max() < 1e-4


def test_sparse_features_of_equal_importance_form_a_pentagon():
    result = train_toy([0.9, 0.97], 1.0, restarts=4, batch_size=512, seed=0)
    assert n_represented(result.W).tolist() == [5, 5]
    for W in result.W:  # (2, 5)
        angles = torch.atan2(W[1], W[0]).sort().values  # (5,)
        gaps = torch.diff(torch.cat([angles, angles[:1] + 2 * math.pi]))
        assert torch.rad2deg(gaps).tolist() == pytest.approx([72.0] * 5, abs=2)
        norms = feature_norms(W[None])[0]
        assert norms.max() / norms.min() < 1.02
    assert superposition(result.W).min() > 0.5  # each overlaps its neighbours


def test_two_features_in_one_dimension_go_antipodal_when_sparse():
    diagram = phase_diagram([0.0, 0.95], [0.5, 2.0], seed=0)
    names = [[PHASES[p] for p in row] for row in diagram.phase.tolist()]
    assert names == [
        ["not represented", "dedicated dimension"],  # dense: the more important one wins
        ["superposition", "superposition"],  # sparse: both, in opposite directions
    ]
    assert diagram.cosine[1].tolist() == [-1.0, -1.0]
    assert torch.allclose(diagram.norms[1], torch.ones(2, 2), atol=0.03)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(sparsity=[0.5], n_hidden=5, n_features=5), "fewer than the 5 features; got 5"),
        (dict(sparsity=[1.0]), "in [0, 1)"),
        (dict(sparsity=[]), "at least one sparsity"),
        (dict(sparsity=[0.5], steps=0), "must be positive"),
        (dict(sparsity=[0.5], importance=torch.ones(3)), "importance must be"),
        (dict(sparsity=[0.5], init=torch.zeros(1, 2, 3)), "init must have shape"),
    ],
)
def test_bad_arguments_are_glassbox_errors(kwargs, message):
    with pytest.raises(GlassboxError, match=re.escape(message)):
        train_toy(**kwargs)


def test_cli_prints_a_table_and_writes_figures_and_a_summary(tmp_path, capsys):
    out = tmp_path / "toy"
    argv = ["superposition", "--sparsity", "0", "0.9", "--steps", "30", "--out", str(out)]
    assert main([*argv, "--phase"]) == 0
    printed = capsys.readouterr().out
    assert "represented" in printed and "superposition" in printed
    for name in ("columns.png", "gram.png", "norms.png", "phase.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG"), name
    summary = json.loads((out / "summary.json").read_text())
    assert [row["sparsity"] for row in summary["toy"]["instances"]] == [0.0, 0.9]
    assert len(summary["toy"]["instances"][0]["norms"]) == 5
    assert set(sum(summary["phase"]["phase"], [])) <= set(PHASES)


@pytest.mark.parametrize(
    "flags",
    [
        ["--dims", "5"],
        ["--dims", "0"],
        ["--sparsity", "1"],
        ["--sparsity", "-0.1"],
        ["--steps", "0"],
        ["--importance", "0"],
        ["--restarts", "0"],
    ],
)
def test_cli_bad_inputs_are_one_line(flags, capsys):
    assert main(["superposition", *flags]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("glassbox: error: "), err
