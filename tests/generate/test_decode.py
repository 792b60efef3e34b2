import pytest
import torch

from glassbox.config import ModelConfig
from glassbox.errors import GlassboxError
from glassbox.generate import generate, generate_batch
from glassbox.models import GPT
from glassbox.tokenizers import CharTokenizer

VARIANTS = [
    dict(),
    dict(pos_encoding="sinusoidal"),
    dict(attention="sdpa"),
    dict(attention="manual", n_kv_head=2),
    dict(attention="sdpa", n_kv_head=1),
    dict(pos_encoding="rope"),
    dict(pos_encoding="rope", attention="sdpa", n_kv_head=2, norm="rmsnorm", activation="swiglu"),
    dict(pos_encoding="none"),
    # modded-nanogpt's recipe (char-speedrun): normalized q and k are what the cache holds
    dict(
        pos_encoding="rope",
        norm="rmsnorm",
        qk_norm=True,
        activation="relu2",
        tie_embeddings=False,
        logit_softcap=5.0,
    ),
    dict(qk_norm=True, attention="sdpa", n_kv_head=2, logit_softcap=5.0),
]


def make_model(**changes):
    torch.manual_seed(0)
    settings = dict(vocab_size=23, block_size=24, n_layer=2, n_head=4, n_embd=32)
    return GPT(ModelConfig(**{**settings, **changes})).eval()


@pytest.mark.parametrize("changes", VARIANTS)
def test_cached_logits_match_a_full_forward_pass(changes):
    model = make_model(**changes)
    idx = torch.randint(0, 23, (3, 20))
    full = model(idx)  # (B, T, V)
    cache = model.new_cache(3)
    steps = [model(idx[:, :12], cache=cache)]  # prefill 12, then decode one at a time
    steps += [model(idx[:, t : t + 1], cache=cache) for t in range(12, 20)]
    assert (torch.cat(steps, dim=1) - full).abs().max() < 1e-4
    assert cache.length == 20


@pytest.mark.parametrize("changes", VARIANTS)
def test_greedy_decoding_gives_the_same_tokens_with_and_without_the_cache(changes):
    model = make_model(**changes)
    idx = torch.randint(0, 23, (2, 5))
    cached = torch.stack(list(generate(model, idx, 15, temperature=0)))
    uncached = torch.stack(list(generate(model, idx, 15, temperature=0, use_cache=False)))
    assert torch.equal(cached, uncached)


def test_sampling_with_a_seed_agrees_with_and_without_the_cache():
    model = make_model()
    idx = torch.randint(0, 23, (2, 5))
    options = dict(temperature=0.9, top_k=10, top_p=0.9, seed=5)
    cached = torch.stack(list(generate(model, idx, 15, **options)))
    uncached = torch.stack(list(generate(model, idx, 15, use_cache=False, **options)))
    assert torch.equal(cached, uncached)


def test_the_cache_is_preallocated_and_holds_only_the_kv_heads():
    model = make_model(n_kv_head=2)
    cache = model.new_cache(batch_size=3)
    assert cache.k.shape == (2, 3, 2, 24, 8)  # (L, B, H_kv, block_size, D)
    pointer = cache.k.data_ptr()
    model(torch.randint(0, 23, (3, 4)), cache=cache)
    for _ in range(5):
        model(torch.randint(0, 23, (3, 1)), cache=cache)
    assert cache.k.data_ptr() == pointer and cache.length == 9
    with pytest.raises(GlassboxError, match="longer than block_size 24"):
        model(torch.randint(0, 23, (3, 16)), cache=cache)
    small = model.new_cache(batch_size=1, max_len=6)
    with pytest.raises(GlassboxError, match="holds 6 positions"):
        model(torch.randint(0, 23, (1, 7)), cache=small)


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("changes", VARIANTS[:3] + VARIANTS[5:6])
def test_a_padded_prompt_gives_the_same_tokens_as_alone(use_cache, changes):
    model = make_model(**changes)
    short, long = torch.randint(0, 23, (1, 4)), torch.randint(0, 23, (1, 9))
    batch = torch.zeros(2, 9, dtype=torch.long)
    batch[0, 5:], batch[1] = short[0], long[0]
    key_mask = torch.ones(2, 9, dtype=torch.bool)
    key_mask[0, :5] = False
    together = torch.stack(list(generate(model, batch, 10, temperature=0, key_mask=key_mask,
                                         use_cache=use_cache)))  # fmt: skip
    alone = torch.stack(list(generate(model, short, 10, temperature=0, use_cache=use_cache)))
    assert torch.equal(together[:, 0], alone[:, 0])


def test_generation_runs_past_the_context_window():
    model = make_model()
    idx = torch.randint(0, 23, (1, 30))  # longer than block_size 24: cropped
    cached = torch.stack(list(generate(model, idx, 40, temperature=0)))
    uncached = torch.stack(list(generate(model, idx, 40, temperature=0, use_cache=False)))
    assert cached.shape == uncached.shape == (40, 1)
    assert torch.equal(cached[:1], uncached[:1])  # same window for the first token


def test_stop_tokens_end_the_loop_once_every_row_has_stopped():
    model = make_model()
    idx = torch.randint(0, 23, (1, 5))
    first = [int(t) for t in generate(model, idx, 10, temperature=0)]
    stopped = [int(t) for t in generate(model, idx, 10, temperature=0, stop_tokens=[first[3]])]
    assert stopped == first[: first.index(first[3]) + 1]


def test_generate_batch_cuts_each_text_at_its_stop_string():
    model = make_model(vocab_size=5)
    tok = CharTokenizer("abcde")
    texts = generate_batch(model, tok, ["ab", "cdeab"], 12, temperature=0)
    alone = generate_batch(model, tok, ["ab"], 12, temperature=0)
    assert texts[0] == alone[0] and len(texts[1]) == 12
    stop = texts[1][3:5]
    cut = generate_batch(model, tok, ["ab", "cdeab"], 12, temperature=0, stop=[stop])
    assert cut[1] == texts[1][: texts[1].index(stop)]


def test_bad_input_is_a_clear_error():
    model = make_model()
    with pytest.raises(GlassboxError, match=r"\[0, 23\)"):
        list(generate(model, torch.tensor([[1, 40]]), 3))
    with pytest.raises(GlassboxError, match="max_new_tokens"):
        list(generate(model, torch.tensor([[1]]), -1))


@pytest.mark.parametrize("attention", ["manual", "sdpa"])
def test_bfloat16_decoding_runs_with_a_half_size_cache(attention):
    from glassbox.device import autocast

    model = make_model(attention=attention)
    idx = torch.randint(0, 23, (2, 12))
    cache = model.new_cache(2, dtype=torch.bfloat16)
    assert cache.bytes() * 2 == model.new_cache(2).bytes()
    with autocast("cpu", "bfloat16"):
        full = model(idx).float()
        steps = [model(idx[:, :6], cache=cache)]
        steps += [model(idx[:, t : t + 1], cache=cache) for t in range(6, 12)]
    cached = torch.cat(steps, dim=1).float()
    assert (cached - full).abs().max() < 0.05  # bf16 keeps ~3 significant digits
    key_mask = torch.ones(2, 12, dtype=torch.bool)
    key_mask[0, :4] = False
    out = list(generate(model, idx, 8, temperature=0, key_mask=key_mask, dtype="bfloat16"))
    assert len(out) == 8 and all(0 <= int(t) < 23 for step in out for t in step)
