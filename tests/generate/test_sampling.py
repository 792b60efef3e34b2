import pytest
import torch

from glassbox.config import ModelConfig
from glassbox.errors import GlassboxError
from glassbox.generate import generate, generate_text, sample_next
from glassbox.models import GPT
from glassbox.tokenizers import CharTokenizer


@pytest.fixture
def model():
    torch.manual_seed(0)
    return GPT(ModelConfig(vocab_size=5, block_size=8, n_layer=1, n_head=2, n_embd=8))


def test_temperature_zero_is_greedy():
    logits = torch.tensor([[0.1, 3.0, 0.2], [5.0, 0.0, 0.0]])
    assert sample_next(logits, temperature=0).tolist() == [1, 0]


def test_top_k_and_top_p_only_draw_allowed_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(2000, 1)
    g = torch.Generator().manual_seed(0)
    assert set(sample_next(logits, top_k=2, generator=g).tolist()) == {0, 1}
    # top_p=0.8: 0.5 + 0.3 reach it, so 2 and 3 are never drawn
    assert set(sample_next(logits, top_p=0.8, generator=g).tolist()) == {0, 1}
    assert set(sample_next(logits, top_p=0.81, generator=g).tolist()) == {0, 1, 2}
    assert set(sample_next(logits, top_p=0.1, generator=g).tolist()) == {0}


def test_sampling_is_deterministic_under_a_seed(model):
    idx = torch.zeros(1, 1, dtype=torch.long)
    a = torch.stack(list(generate(model, idx, 20, seed=3)))
    b = torch.stack(list(generate(model, idx, 20, seed=3)))
    c = torch.stack(list(generate(model, idx, 20, seed=4)))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_prompts_longer_than_the_context_are_cropped(model):
    long_prompt = torch.randint(0, 5, (1, 30))
    out = list(generate(model, long_prompt, 3, temperature=0))
    cropped = list(generate(model, long_prompt[:, -8:], 3, temperature=0))
    assert out == cropped


def test_generate_text_streams_decoded_pieces(model):
    tok = CharTokenizer("abcde")
    pieces = list(generate_text(model, tok, "abc", 6, temperature=0))
    assert len(pieces) == 6 and all(len(p) == 1 and p in "abcde" for p in pieces)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"max_new_tokens": -1}, "max_new_tokens"),
        ({"temperature": -0.5}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_p": 1.5}, "top_p"),
    ],
)
def test_bad_sampling_settings_are_errors(model, bad, message):
    settings = {"max_new_tokens": 3, **bad}
    with pytest.raises(GlassboxError, match=message):
        list(generate(model, torch.zeros(1, 1, dtype=torch.long), **settings))
