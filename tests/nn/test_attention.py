import pytest
import torch
from helpers import scramble

from glassbox.config import ModelConfig
from glassbox.nn import CrossAttention, SelfAttention, manual_attention


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


@pytest.mark.parametrize("n_kv_head", [0, 2])
@pytest.mark.parametrize("cross", [False, True])
def test_per_head_weights_compute_the_hooked_q_k_v_and_the_output(cross, n_kv_head):
    torch.manual_seed(0)
    config = ModelConfig(n_embd=32, n_head=4, n_kv_head=n_kv_head, bias=True)
    attn = scramble(CrossAttention(config) if cross else SelfAttention(config)).eval()
    H, C, D = 4, 32, 8
    for name in ("W_Q", "W_K", "W_V"):
        assert getattr(attn, name).shape == (H, C, D)
    assert attn.W_O.shape == (H, D, C)
    assert attn.b_Q.shape == attn.b_K.shape == attn.b_V.shape == (H, D) and attn.b_O.shape == (C,)
    x, memory = torch.randn(2, 5, C), torch.randn(2, 7, C)
    cache = {}
    hooks = ["hook_q", "hook_k", "hook_v", "hook_z"]
    for hook in hooks:
        getattr(attn, hook).fns.append(lambda t, h, hook=hook: cache.__setitem__(hook, t))
    out = attn(x, memory) if cross else attn(x)
    source = memory if cross else x
    group = H // (n_kv_head or H)  # query heads per key/value head
    for h in range(H):
        close = torch.testing.assert_close
        close(x @ attn.W_Q[h] + attn.b_Q[h], cache["hook_q"][:, :, h])  # (B, T, D)
        close(source @ attn.W_K[h] + attn.b_K[h], cache["hook_k"][:, :, h // group])
        close(source @ attn.W_V[h] + attn.b_V[h], cache["hook_v"][:, :, h // group])
    per_head = torch.einsum("bthd,hdc->bthc", cache["hook_z"], attn.W_O)  # (B, T, H, C)
    torch.testing.assert_close(per_head.sum(dim=2) + attn.b_O, out)


def test_per_head_weights_are_views_of_the_fused_matrices():
    attn = SelfAttention(ModelConfig(n_embd=32, n_head=4))
    storage = attn.qkv.weight.untyped_storage().data_ptr()
    for name in ("W_Q", "W_K", "W_V"):
        assert getattr(attn, name).untyped_storage().data_ptr() == storage
    with torch.no_grad():
        attn.W_O[2] = 0  # writes through to proj.weight
    assert attn.proj.weight[:, 16:24].abs().max() == 0 and attn.proj.weight.abs().max() > 0
    assert attn.b_Q is None and attn.b_O is None  # bias=False


def test_grouped_query_heads_share_their_key_and_value_weights():
    attn = SelfAttention(ModelConfig(n_embd=32, n_head=4, n_kv_head=2))
    assert attn.kv_heads == 2  # resolved count; config.n_kv_head = 0 would mean n_head
    assert torch.equal(attn.W_K[0], attn.W_K[1]) and torch.equal(attn.W_V[2], attn.W_V[3])
    assert not torch.equal(attn.W_K[1], attn.W_K[2])
    assert SelfAttention(ModelConfig(n_embd=32, n_head=4)).kv_heads == 4
