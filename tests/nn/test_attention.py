import torch

from glassbox.config import ModelConfig
from glassbox.nn import SelfAttention, manual_attention


def test_manual_attention_is_softmax_of_scaled_scores_with_a_causal_mask():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 1, 1, 4, 8).unbind(0)  # (B=1, H=1, T=4, D=8) each
    out = manual_attention(q, k, v)
    for t in range(4):
        weights = torch.softmax(q[0, 0, t] @ k[0, 0, : t + 1].T / 8**0.5, dim=-1)  # (t+1,)
        torch.testing.assert_close(out[0, 0, t], weights @ v[0, 0, : t + 1])


def test_manual_and_fused_attention_agree():
    torch.manual_seed(0)
    config = ModelConfig(n_embd=64, n_head=4, block_size=32, attention="sdpa")
    fused = SelfAttention(config)
    manual = SelfAttention(ModelConfig(n_embd=64, n_head=4, block_size=32, attention="manual"))
    manual.load_state_dict(fused.state_dict())
    x = torch.randn(3, 32, 64)
    assert (fused(x) - manual(x)).abs().max() < 1e-5


def test_queries_may_be_the_last_positions_of_longer_keys():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 2, 6, 4).unbind(0)
    full = manual_attention(q, k, v)
    last_two = manual_attention(q[:, :, -2:], k, v)
    torch.testing.assert_close(last_two, full[:, :, -2:])
