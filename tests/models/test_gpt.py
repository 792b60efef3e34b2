import pytest
import torch

from glassbox.config import ModelConfig
from glassbox.errors import GlassboxError
from glassbox.models.gpt import GPT
from glassbox.train.objectives import lm_loss

SMALL = dict(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16)


def test_logits_have_one_row_per_position_and_token():
    model = GPT(ModelConfig(**SMALL))
    assert model(torch.randint(0, 11, (3, 16))).shape == (3, 16, 11)


@pytest.mark.parametrize("attention", ["sdpa", "manual", "auto"])
@pytest.mark.parametrize("pos_encoding", ["learned", "sinusoidal"])
def test_changing_a_later_token_leaves_earlier_logits_unchanged(attention, pos_encoding):
    torch.manual_seed(0)
    model = GPT(ModelConfig(**SMALL, attention=attention, pos_encoding=pos_encoding)).eval()
    idx = torch.randint(0, 11, (1, 16))
    changed = idx.clone()
    changed[0, 10] = (idx[0, 10] + 1) % 11
    a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_manual_and_fused_models_agree():
    torch.manual_seed(0)
    fused = GPT(ModelConfig(**SMALL, attention="sdpa"))
    manual = GPT(ModelConfig(**SMALL, attention="manual"))
    manual.load_state_dict(fused.state_dict())
    idx = torch.randint(0, 11, (2, 16))
    assert (fused(idx) - manual(idx)).abs().max() < 1e-5


def test_unembedding_is_the_token_embedding():
    model = GPT(ModelConfig(**SMALL))
    x = torch.randn(1, 1, 16)
    torch.testing.assert_close(
        torch.nn.functional.linear(x, model.tok_emb.weight), x @ model.tok_emb.weight.T
    )
    # tied weights count once: embeddings + positions + blocks + final norm, no head matrix
    C, V, T, L = 16, 11, 16, 2
    per_block = 4 * C * C + 2 * 4 * C * C + 2 * C  # attention, MLP, two norm gains
    assert model.num_params() == V * C + T * C + L * per_block + C
    assert model.num_params(include_positions=False) == model.num_params() - T * C


def test_gpt2_small_parameter_count():
    config = ModelConfig(
        vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, bias=True
    )
    with torch.device("meta"):  # count without allocating half a gigabyte
        model = GPT(config)
    assert model.num_params() == 124_439_808


def test_residual_projections_get_scaled_init():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=50, block_size=16, n_layer=8, n_head=4, n_embd=128)
    model = GPT(config)
    std_proj = torch.cat([b.attn.proj.weight.flatten() for b in model.blocks]).std().item()
    std_fc = torch.cat([b.mlp.fc.weight.flatten() for b in model.blocks]).std().item()
    assert std_fc == pytest.approx(0.02, rel=0.05)
    assert std_proj == pytest.approx(0.02 / (2 * 8) ** 0.5, rel=0.05)


def test_overfits_one_batch():
    torch.manual_seed(0)
    model = GPT(ModelConfig(**SMALL))
    idx = torch.randint(0, 11, (4, 17))
    x, y = idx[:, :-1], idx[:, 1:]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(300):
        loss = lm_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1


def test_sequence_longer_than_the_context_is_an_error():
    model = GPT(ModelConfig(**SMALL))
    with pytest.raises(GlassboxError, match="longer than block_size 16"):
        model(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize(
    "changes",
    [
        dict(pos_encoding="rope"),
        dict(pos_encoding="none"),
        dict(norm="rmsnorm"),
        dict(activation="swiglu"),
    ],
)
def test_variants_stay_causal(changes):
    torch.manual_seed(0)
    model = GPT(ModelConfig(**SMALL, **changes)).eval()
    idx = torch.randint(0, 11, (1, 16))
    changed = idx.clone()
    changed[0, 10] = (idx[0, 10] + 1) % 11
    torch.testing.assert_close(model(idx)[:, :10], model(changed)[:, :10])


def test_swiglu_keeps_the_mlp_about_the_same_size():
    gelu = GPT(ModelConfig(vocab_size=11, n_embd=128, n_head=4)).blocks[0].mlp
    swiglu = GPT(ModelConfig(vocab_size=11, n_embd=128, n_head=4, activation="swiglu"))
    n_gelu = sum(p.numel() for p in gelu.parameters())
    n_swiglu = sum(p.numel() for p in swiglu.blocks[0].mlp.parameters())
    assert abs(n_swiglu - n_gelu) / n_gelu < 0.01
