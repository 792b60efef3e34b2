"""Residual connections removed by hooks: the output and its gradient are exactly those of
the blocks' sublayers chained by hand, the hooks leave with the `with` block, and the
experiment that trains both ways returns its curves, gradient norms and figure."""

from __future__ import annotations

import pytest
import torch
from helpers import scramble

from glassbox.analysis.residuals import (
    gradient_norms,
    no_residuals,
    plot_residual_experiment,
    residual_experiment,
)
from glassbox.config import ModelConfig
from glassbox.errors import GlassboxError
from glassbox.models import GPT


def tiny(**changes) -> GPT:
    settings = dict(vocab_size=11, block_size=8, n_layer=3, n_head=2, n_embd=16)
    torch.manual_seed(0)
    return scramble(GPT(ModelConfig(**{**settings, **changes})).eval())


def by_hand(model: GPT, x: torch.Tensor) -> torch.Tensor:
    """Logits of the same weights with every block computing mlp(ln_2(attn(ln_1(h))))."""
    T = x.size(1)
    h = model.tok_emb(x) + model.pos_emb.embed(torch.arange(T))  # (B, T, C)
    for block in model.blocks:
        h = block.attn(block.ln_1(h), causal=True)
        if block.mlp is not None:
            h = block.mlp(block.ln_2(h))
    return model.unembed(model.ln_f(h))  # (B, T, V)


@pytest.mark.parametrize("attn_only", [False, True])
def test_no_residuals_is_the_chain_of_sublayers_exactly(attn_only):
    model = tiny(attn_only=attn_only)
    x = torch.randint(11, (2, 8), generator=torch.Generator().manual_seed(1))
    with no_residuals(model):
        hooked = model(x)
    expected = by_hand(model, x)
    assert torch.equal(hooked, expected)
    assert not torch.allclose(model(x), expected)  # the hooks are gone: residuals again
    assert all(not model.hook_point(n).fns for n in model.hook_names())


def test_gradients_without_residuals_are_those_of_the_chain():
    model = tiny()
    x = torch.randint(11, (2, 8), generator=torch.Generator().manual_seed(2))
    y = torch.randint(11, (2, 8), generator=torch.Generator().manual_seed(3))
    norms = gradient_norms(model, x, y, residual=False)
    assert all(p.grad is None for p in model.parameters())  # cleared again afterwards
    loss = torch.nn.functional.cross_entropy(by_hand(model, x).flatten(0, 1), y.flatten())
    loss.backward()
    expected = torch.stack(
        [
            torch.stack([p.grad.pow(2).sum() for p in b.parameters()]).sum().sqrt()
            for b in model.blocks
        ]
    )
    torch.testing.assert_close(norms, expected)
    assert norms.shape == (3,) and (norms > 0).all()
    model.zero_grad(set_to_none=True)
    assert not torch.allclose(gradient_norms(model, x, y), norms)


def test_hooks_are_removed_when_the_body_raises():
    model = tiny()
    with pytest.raises(RuntimeError), no_residuals(model):
        raise RuntimeError("boom")
    assert all(not model.hook_point(n).fns for n in model.hook_names())


def test_post_norm_and_encoders_are_refused():
    with (
        pytest.raises(GlassboxError, match="pre-norm decoders"),
        no_residuals(tiny(norm_placement="post")),
    ):
        pass


def test_the_experiment_returns_curves_norms_and_a_figure(tmp_path):
    text = "the quick brown fox jumps over the lazy dog. " * 30
    result = residual_experiment(text, depths=(1, 2), steps=10, n_embd=16, block_size=16,
                                 batch_size=4)  # fmt: skip
    runs = result["runs"]
    assert [(r["depth"], r["residual"]) for r in runs] == [
        (1, True),
        (1, False),
        (2, True),
        (2, False),
    ]
    for run in runs:
        assert len(run["losses"]) == 10 and len(run["init_grad_norms"]) == run["depth"]
        assert run["final_loss"] < result["settings"]["chance"] + 1
    path = plot_residual_experiment(result, tmp_path / "residuals.png")
    assert path.stat().st_size > 0
    with pytest.raises(GlassboxError, match="steps"):
        residual_experiment(text, steps=3)
