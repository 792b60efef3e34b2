import math

import torch

from glassbox.nn import SinusoidalPositions


def test_sinusoids_follow_the_paper():
    pe = SinusoidalPositions(block_size=50, n_embd=16)
    table = pe(torch.arange(50))  # (T, C)
    t, i = 7, 3
    angle = t / 10000 ** (2 * i / 16)
    assert math.isclose(table[t, 2 * i].item(), math.sin(angle), abs_tol=1e-6)
    assert math.isclose(table[t, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-6)
    assert not list(pe.parameters())  # nothing to train
    assert "table" not in pe.state_dict()  # nothing to save


def test_rope_scores_depend_only_on_the_offset():
    from glassbox.nn.positional import RotaryPositions, apply_rotary

    rope = RotaryPositions(block_size=64, d_head=16)
    q, k = torch.randn(2, 1, 1, 1, 16).unbind(0)  # (B, H, T=1, D) each

    def score(m, n):
        qm = apply_rotary(q, *rope(torch.tensor([m])))
        kn = apply_rotary(k, *rope(torch.tensor([n])))
        return (qm * kn).sum().item()

    assert math.isclose(score(5, 2), score(40, 37), rel_tol=1e-4, abs_tol=1e-5)
    assert math.isclose(score(2, 5), score(30, 33), rel_tol=1e-4, abs_tol=1e-5)
    assert not math.isclose(score(5, 2), score(5, 3), rel_tol=1e-3)
    # a rotation keeps lengths
    rotated = apply_rotary(q, *rope(torch.tensor([9])))
    assert math.isclose(rotated.norm().item(), q.norm().item(), rel_tol=1e-5)


def test_rope_and_none_add_nothing_to_the_embeddings():
    from glassbox.config import ModelConfig
    from glassbox.models import GPT

    for pos in ("rope", "none"):
        model = GPT(ModelConfig(vocab_size=11, n_layer=1, pos_encoding=pos))
        assert model.pos_emb is None
        assert model.num_params() == model.num_params(include_positions=False)
