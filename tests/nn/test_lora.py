"""LoRA adapters: an adapted model starts equal to its base, trains only r·(in+out)
parameters per Linear, and merges back into a plain model with the same logits."""

import pytest
import torch
from helpers import scramble
from torch import nn

from glassbox.config import ModelConfig, TrainConfig
from glassbox.models import GPT
from glassbox.nn.lora import LoRAError, LoRALinear, add_lora, lora_layers, merge_lora
from glassbox.train.optim import configure_optimizer

CONFIG = ModelConfig(vocab_size=23, block_size=16, n_layer=2, n_head=2, n_embd=16, bias=True)


def gpt(config: ModelConfig = CONFIG, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return scramble(GPT(config), seed=seed).eval()


def tokens(seed: int = 1) -> torch.Tensor:
    return torch.randint(
        0, CONFIG.vocab_size, (3, 12), generator=torch.Generator().manual_seed(seed)
    )


def trained_adapters(model: GPT, steps: int = 5) -> GPT:
    """A few AdamW steps on random next-token targets, so that every B is nonzero."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.05)
    x, y = tokens(2), tokens(3)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model


def test_an_adapted_model_starts_exactly_equal_to_its_base():
    base, adapted = gpt(), gpt()
    add_lora(adapted, rank=4, alpha=8)
    x = tokens()
    assert torch.equal(adapted(x), base(x))
    # and A is not zero: the equality is B = 0 at work, not an empty adapter
    assert all(layer.lora_A.abs().sum() > 0 for layer in lora_layers(adapted).values())


def test_the_attention_and_mlp_linears_of_every_block_get_adapters():
    model = gpt()
    names = add_lora(model, rank=2)
    assert names == [
        f"blocks.{i}.{t}" for i in range(2) for t in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")
    ]
    # an attention-only model has no MLP to adapt
    attn_only = GPT(ModelConfig(vocab_size=23, n_layer=2, n_embd=16, n_head=2, attn_only=True))
    assert add_lora(attn_only, rank=2) == ["blocks.0.attn.qkv", "blocks.0.attn.proj",
                                            "blocks.1.attn.qkv", "blocks.1.attn.proj"]  # fmt: skip


def test_only_the_adapters_train_and_they_hold_r_times_in_plus_out_parameters():
    model, r = gpt(), 3
    add_lora(model, rank=r)
    C = CONFIG.n_embd
    # per block: qkv C -> 3C, proj C -> C, fc C -> 4C, mlp proj 4C -> C
    per_block = r * ((C + 3 * C) + (C + C) + (C + 4 * C) + (4 * C + C))
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    assert sum(trainable.values()) == CONFIG.n_layer * per_block
    assert all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    # the optimizer gets exactly those, and a step leaves every other weight as it was
    before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = configure_optimizer(model, TrainConfig(lr=0.05), "cpu")
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == sum(
        trainable.values()
    )
    trained_adapters(model)
    for name, p in model.named_parameters():
        if name in before:
            assert torch.equal(p, before[name]), name
    assert any(layer.lora_B.abs().sum() > 0 for layer in lora_layers(model).values())


def test_the_merged_model_computes_what_the_adapted_one_does():
    model = trained_adapters(add_lora_returning(gpt(), rank=4, alpha=6))
    x = tokens()
    with torch.no_grad():
        adapted = model(x)
        merged = merge_lora(model)(x)
    assert (adapted - merged).abs().max() < 1e-5
    assert not lora_layers(model)
    assert type(model.blocks[0].attn.qkv) is nn.Linear
    # the merged model's weights carry the names of a model never adapted (export, convert)
    assert set(model.state_dict()) == set(GPT(CONFIG).state_dict())
    # and the update really moved the weights away from the base's
    assert (merged - gpt()(x)).abs().max() > 1e-3


def add_lora_returning(model, **kwargs):
    add_lora(model, **kwargs)
    return model


def test_analyses_see_the_adapted_weights():
    """W_Q, W_O and the per-head result hook read `weight`, which includes B A."""
    model = trained_adapters(add_lora_returning(gpt(), rank=2))
    attn = model.blocks[1].attn
    w_q, w_o = attn.W_Q.detach().clone(), attn.W_O.detach().clone()
    x = tokens()
    with torch.no_grad():
        plain = model(x)
        with model.hooks([("blocks.1.attn.hook_result", lambda t, hook: t)]):
            per_head = model(x)  # computed through W_O rather than proj
    assert (plain - per_head).abs().max() < 1e-5
    merge_lora(model)
    assert torch.allclose(attn.W_Q, w_q, atol=1e-6) and torch.allclose(attn.W_O, w_o, atol=1e-6)


def test_alpha_scales_the_update_and_defaults_to_the_rank():
    layer = LoRALinear(nn.Linear(4, 5), rank=2)
    assert layer.scale == 1.0
    with torch.no_grad():
        layer.lora_B.normal_()
    doubled = LoRALinear(layer.base, rank=2, alpha=4)
    doubled.load_state_dict(layer.state_dict())
    x = torch.randn(3, 4)
    assert torch.allclose(doubled(x) - layer.base(x), 2 * (layer(x) - layer.base(x)), atol=1e-6)


def test_a_generator_leaves_the_global_rng_alone():
    model = gpt()
    state = torch.get_rng_state()
    add_lora(model, rank=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rank": 0}, "rank must be a positive integer"),
        ({"rank": -2}, "rank must be a positive integer"),
        ({"rank": 2, "alpha": -1.0}, "alpha must be a finite number"),
        ({"rank": 2, "targets": ("attn.q",)}, "unknown LoRA target 'attn.q'"),
    ],
)
def test_bad_adapter_settings_are_one_clear_error(kwargs, message):
    model = gpt()
    with pytest.raises(LoRAError, match=message):
        add_lora(model, **kwargs)
    assert not lora_layers(model)
    assert all(p.requires_grad for p in model.parameters())  # nothing was changed


def test_adapting_twice_is_an_error():
    model = gpt()
    add_lora(model, rank=2)
    with pytest.raises(LoRAError, match="already has LoRA adapters"):
        add_lora(model, rank=2)
