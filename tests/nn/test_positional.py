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
    q, k = torch.randn(2, 1, 1, 1, 16).unbind(0)  # (B, T=1, H, D) each

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
        assert not model.pos_emb.adds_embedding and model.hook_pos_embed is None
        assert model.num_params() == model.num_params(include_positions=False)


def test_the_registry_holds_every_configurable_scheme_and_its_flags():
    from glassbox.config import POS_ENCODINGS, ModelConfig
    from glassbox.nn.positional import POSITION_SCHEMES, make_positions

    assert sorted(POSITION_SCHEMES) == sorted(POS_ENCODINGS)
    tables = {name for name, scheme in POSITION_SCHEMES.items() if scheme.has_table}
    assert tables == {"learned", "sinusoidal", "rope"}
    for name in POS_ENCODINGS:
        config = ModelConfig(vocab_size=11, pos_encoding=name)
        assert config.position_table == (name in tables)
        scheme = make_positions(config)
        assert isinstance(scheme, POSITION_SCHEMES[name])
        assert scheme.adds_embedding == (name in ("learned", "sinusoidal"))
        assert scheme.token_scale == (math.sqrt(128) if name == "sinusoidal" else 1.0)


def test_each_scheme_puts_into_the_context_only_what_it_adds():
    from glassbox.config import POS_ENCODINGS, ModelConfig
    from glassbox.nn.positional import make_positions

    used = {}
    for name in POS_ENCODINGS:
        scheme = make_positions(ModelConfig(vocab_size=11, n_head=4, pos_encoding=name))
        context = scheme.context(torch.arange(3, 5), start=3, T=2)  # 2 new after 3 cached
        used[name] = {
            f for f in ("rotary", "score_bias", "offsets") if getattr(context, f) is not None
        }
        if context.rotary is not None:
            assert context.rotary[0].shape == (2, 1, 32)  # (T, 1, D): broadcasts over heads
        if context.score_bias is not None:
            assert context.score_bias.shape == (1, 4, 2, 5)  # (1, H, T, S)
        if context.offsets is not None:
            assert context.offsets.tolist() == [[-3, -2, -1, 0, 1], [-4, -3, -2, -1, 0]]
    expected = {"rope": {"rotary"}, "alibi": {"score_bias"}, "relative": {"offsets"}}
    assert used == {name: expected.get(name, set()) for name in POS_ENCODINGS}
