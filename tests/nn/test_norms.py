import torch

from glassbox.config import ModelConfig
from glassbox.models import GPT
from glassbox.nn.norms import RMSNorm, make_norm


def test_rmsnorm_divides_by_the_root_mean_square():
    x = torch.randn(3, 5, 16)
    norm = RMSNorm(16)
    with torch.no_grad():
        norm.weight.fill_(2.0)
    expected = 2.0 * x / (x.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt()
    torch.testing.assert_close(norm(x), expected)
    assert (norm(x) / 2).pow(2).mean(-1).sub(1).abs().max() < 1e-3  # unit RMS before the gain


def test_the_norm_is_a_config_value():
    assert isinstance(make_norm(ModelConfig(norm="rmsnorm")), RMSNorm)
    assert isinstance(make_norm(ModelConfig()), torch.nn.LayerNorm)
    model = GPT(ModelConfig(vocab_size=11, n_layer=2, norm="rmsnorm"))
    assert all(isinstance(m, RMSNorm) for m in (model.ln_f, model.blocks[1].ln_2))
