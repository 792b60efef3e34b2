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
