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
    assert isinstance(model.head_logits, PackedLinear)
    assert "head_logits" not in dict(model.named_modules())  # never saved with the weights


def test_an_untied_soft_capped_head_packs_and_keeps_its_cap():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=300, block_size=16, n_layer=1, n_head=2, n_embd=16,
                         tie_embeddings=False, logit_softcap=0.5)  # fmt: skip
    model = GPT(config).eval()
    with torch.no_grad():
        model.lm_head.weight.normal_(0, 1.0)  # logits well past the cap
    idx = torch.randint(0, 300, (2, 8))
    expected = model(idx)
    assert expected.abs().max() > 0.4  # the cap is what bounds them
    pack_for_cpu(model, min_weights=1)
    assert isinstance(model.lm_head, PackedLinear)
    logits = model(idx)
    assert (logits - expected).abs().max() < 1e-4
    assert logits.abs().max() <= 0.5
