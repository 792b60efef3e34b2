import torch

from glassbox.config import ModelConfig
from glassbox.generate import generate
from glassbox.generate.cpu import PackedLinear, pack_for_cpu
from glassbox.models import GPT


def test_a_packed_model_computes_the_same_logits_and_tokens():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=300, block_size=32, n_layer=2, n_head=4, n_embd=64,
                         bias=True)  # fmt: skip
    model = GPT(config).eval()
    idx = torch.randint(0, 300, (2, 12))
    expected = model(idx)
    tokens = torch.stack(list(generate(model, idx, 10, temperature=0)))
    pack_for_cpu(model, min_weights=1)  # pack every layer, however small
    assert isinstance(model.blocks[0].mlp.fc, PackedLinear)
    assert (model(idx) - expected).abs().max() < 1e-4
    assert torch.equal(torch.stack(list(generate(model, idx, 10, temperature=0))), tokens)


def test_small_layers_stay_as_they_are():
    model = GPT(ModelConfig(vocab_size=65))
    pack_for_cpu(model)
    assert isinstance(model.blocks[0].mlp.fc, torch.nn.Linear)


def test_the_unembedding_is_packed_too():
    model = GPT(ModelConfig(vocab_size=300, block_size=8, n_layer=1, n_head=2, n_embd=16))
    pack_for_cpu(model, min_weights=1)
    assert isinstance(model.unembed, PackedLinear)
    assert "unembed" not in dict(model.named_modules())  # never saved with the weights
