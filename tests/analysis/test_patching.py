import pytest
import torch
import torch.nn.functional as F
from helpers import scramble

from glassbox.analysis.lens import logit_diff
from glassbox.analysis.patching import (
    ablate_heads,
    patch_heads,
    patch_heads_by_position,
    patch_residual,
)
from glassbox.config import ModelConfig
from glassbox.errors import GlassboxError
from glassbox.models import build_model
from glassbox.nn.hooks import HookPoint

SMALL = dict(vocab_size=11, block_size=16, n_layer=2, n_head=4, n_embd=32)
ALL_HEADS = [(layer, head) for layer in range(2) for head in range(4)]
CLEAN = torch.tensor([[1, 5, 2, 9, 3, 3, 0, 7], [4, 4, 10, 6, 1, 2, 8, 5]])


def random_model(**changes):
    """A small model with every weight, gain and bias random and large (std 0.3), so that
    patches make visible differences."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(**{**SMALL, **changes})).eval()
    return scramble(model)


def corrupt(p):
    """CLEAN with the token at position p changed, and nothing else."""
    corrupted = CLEAN.clone()
    corrupted[:, p] = (CLEAN[:, p] + 1) % 11
    return corrupted


def metric(logits):  # (B, T, V) -> a number that reads the last position
    return logit_diff(logits, correct=3, wrong=6)


def no_hooks_left(model):
    return all(not m.fns for m in model.modules() if isinstance(m, HookPoint))


def test_patching_every_position_at_layer_0_restores_the_clean_run_exactly():
    model = random_model()
    corrupted = corrupt(3)
    _, cache = model.run_with_cache(CLEAN, names_filter="blocks.0.hook_resid_pre")
    clean_resid = cache["blocks.0.hook_resid_pre"]
    with model.hooks([("blocks.0.hook_resid_pre", lambda x, hook: clean_resid)]):
        patched = model(corrupted)
    assert metric(patched).item() == metric(model(CLEAN)).item()
    assert metric(model(corrupted)).item() != metric(model(CLEAN)).item()


def test_patch_residual_where_the_prompts_differ_in_the_middle():
    model = random_model()
    p = 3
    corrupted = corrupt(p)
    clean_m, corrupted_m = metric(model(CLEAN)).item(), metric(model(corrupted)).item()
    # one patched run per forward pass: the same shapes as the reference runs, so the
    # comparisons below can be exact
    grid = patch_residual(model, CLEAN, corrupted, metric, runs_per_pass=1)
    assert grid.shape == (2, 8)
    # Layer 0 is the embedding: patching position p is the clean prompt, any other
    # position is already the same in both prompts.
    assert grid[0, p].item() == clean_m
    assert (grid[0, :p] == corrupted_m).all() and (grid[0, p + 1 :] == corrupted_m).all()
    # Causal: before p the two runs are identical at every layer, so the patch is a no-op.
    assert (grid[:, :p] == corrupted_m).all()
    # Later layers, after p: the difference has spread, and patching one place is partial.
    assert (grid[1, p:] != corrupted_m).any()


@pytest.mark.parametrize("runs_per_pass", [5, 16])
def test_stacking_runs_in_one_pass_changes_nothing(runs_per_pass):
    model = random_model()
    corrupted = corrupt(3)
    for patch in (patch_residual, patch_heads, patch_heads_by_position):
        one_by_one = patch(model, CLEAN, corrupted, metric, runs_per_pass=1)
        stacked = patch(model, CLEAN, corrupted, metric, runs_per_pass=runs_per_pass)
        torch.testing.assert_close(stacked, one_by_one, rtol=0, atol=1e-6)


def test_patch_residual_where_the_prompts_differ_at_the_last_position():
    model = random_model()
    corrupted = corrupt(7)
    clean_m, corrupted_m = metric(model(CLEAN)).item(), metric(model(corrupted)).item()
    grid = patch_residual(model, CLEAN, corrupted, metric, runs_per_pass=1)
    # Every other position is the same in both runs at every layer, so putting the last
    # position's clean stream back at any layer is the clean run, there.
    assert (grid[:, 7] == clean_m).all()
    assert (grid[:, :7] == corrupted_m).all()


def test_patch_heads_match_one_head_patched_by_hand():
    model = random_model()
    corrupted = corrupt(2)
    grid = patch_heads(model, CLEAN, corrupted, metric, runs_per_pass=3)
    assert grid.shape == (2, 4)
    _, cache = model.run_with_cache(CLEAN, names_filter=lambda n: n.endswith("hook_z"))
    for layer, head in [(0, 1), (1, 3)]:
        clean_z = cache[f"blocks.{layer}.attn.hook_z"]

        def patch(z, hook, head=head, clean_z=clean_z):  # z (B, T, H, D)
            z = z.clone()
            z[:, :, head] = clean_z[:, :, head]
            return z

        by_hand = model.run_with_hooks(
            corrupted, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", patch)]
        )
        assert grid[layer, head].item() == pytest.approx(metric(by_hand).item(), abs=1e-6)


def test_patching_every_head_restores_an_attention_only_model_where_tokens_agree():
    # Attention-only: the last position's stream is its own embedding plus the heads'
    # outputs. The prompts differ at position 2 only, so with every head's z patched the
    # last position computes exactly what the clean run does.
    model = random_model(attn_only=True)
    corrupted = corrupt(2)
    _, cache = model.run_with_cache(CLEAN, names_filter=lambda n: n.endswith("hook_z"))
    fwd_hooks = [(name, lambda z, hook: cache[hook.name]) for name in cache]
    patched = model.run_with_hooks(corrupted, fwd_hooks=fwd_hooks)
    assert metric(patched).item() == metric(model(CLEAN)).item()
    assert metric(model(corrupted)).item() != metric(model(CLEAN)).item()


def test_identical_prompts_give_the_clean_metric_everywhere():
    model = random_model()
    clean_m = metric(model(CLEAN)).item()
    assert (patch_heads(model, CLEAN, CLEAN, metric, runs_per_pass=1) == clean_m).all()
    by_position = patch_heads_by_position(model, CLEAN, CLEAN, metric, runs_per_pass=1)
    assert by_position.shape == (2, 4, 8) and (by_position == clean_m).all()


def test_patch_heads_by_position_is_a_no_op_before_the_difference():
    model = random_model()
    corrupted = corrupt(4)
    grid = patch_heads_by_position(model, CLEAN, corrupted, metric, runs_per_pass=1)
    assert (grid[:, :, :4] == metric(model(corrupted)).item()).all()
    assert (grid[:, :, 4:] != metric(model(corrupted)).item()).any()


def test_zero_ablating_every_head_leaves_only_the_embeddings():
    model = random_model(attn_only=True)
    logits = ablate_heads(model, CLEAN, ALL_HEADS)
    T = CLEAN.size(1)
    embed = model.tok_emb(CLEAN) + model.pos_emb(torch.arange(T))  # (B, T, C)
    expected = F.linear(model.ln_f(embed), model.tok_emb.weight)
    torch.testing.assert_close(logits, expected)


def test_mean_ablation_uses_the_reference_mean():
    model = random_model()
    reference = torch.randint(0, 11, (3, 10), generator=torch.Generator().manual_seed(1))
    _, cache = model.run_with_cache(reference, names_filter="blocks.1.attn.hook_z")
    mean = cache["blocks.1.attn.hook_z"].mean(dim=(0, 1))  # (H, D) from (B, T, H, D)

    def by_hand(z, hook):
        z = z.clone()
        z[:, :, 2] = mean[2]
        return z

    expected = model.run_with_hooks(CLEAN, fwd_hooks=[("blocks.1.attn.hook_z", by_hand)])
    logits = ablate_heads(model, CLEAN, [(1, 2)], how="mean", reference=reference)
    torch.testing.assert_close(logits, expected)
    assert not torch.allclose(logits, model(CLEAN))


def test_mean_ablation_on_a_repeated_token_is_not_zero_ablation():
    # The brief guessed these might agree; they do not. What holds instead: without
    # position information, a repeated token gives every position the same stream, so
    # each head's z is already its own mean and mean ablation changes nothing.
    model = random_model(pos_encoding="none")
    repeated = torch.full((2, 8), 4)
    mean_ablated = ablate_heads(model, repeated, ALL_HEADS, how="mean")
    torch.testing.assert_close(mean_ablated, model(repeated))
    assert not torch.allclose(mean_ablated, ablate_heads(model, repeated, ALL_HEADS))


def test_ablation_errors_are_one_line():
    model = random_model()
    with pytest.raises(GlassboxError) as info:
        ablate_heads(model, CLEAN, [(0, 0), (1, 9)])
    assert str(info.value) == "head 9 is out of range: layer 1 has 4 heads (0-3)"
    with pytest.raises(
        GlassboxError, match=r"layer 2 is out of range: the model has 2 layers \(0-1\)"
    ):
        ablate_heads(model, CLEAN, [(2, 0)])
    with pytest.raises(GlassboxError, match="how must be one of zero, mean; got 'resample'"):
        ablate_heads(model, CLEAN, [(0, 0)], how="resample")
    with pytest.raises(GlassboxError, match="reference is only used with how='mean'"):
        ablate_heads(model, CLEAN, [(0, 0)], reference=CLEAN)


def test_patching_errors_are_one_line():
    model = random_model()
    with pytest.raises(GlassboxError, match=r"same shape; got \(2, 8\) and \(2, 7\)"):
        patch_residual(model, CLEAN, CLEAN[:, :7], metric)
    with pytest.raises(GlassboxError, match=r"one-element tensor; got shape \(2,\)"):
        patch_heads(model, CLEAN, CLEAN, lambda logits: logits[:, -1, 0])
    with pytest.raises(GlassboxError, match="GPT or an Encoder"):
        patch_heads(build_model(ModelConfig(**SMALL, arch="encoder-decoder")), CLEAN, CLEAN, metric)


def test_hooks_are_removed_and_the_mode_restored_when_something_raises():
    model = random_model().train()

    def broken(logits):
        raise RuntimeError("metric failed")

    with pytest.raises(RuntimeError, match="metric failed"):
        patch_residual(model, CLEAN, corrupt(3), broken)
    assert no_hooks_left(model) and model.training

    def fail_in_a_patched_run(x, hook):  # the clean run (B = 2) passes; a stacked one fails
        if x.size(0) > 2:
            raise RuntimeError("forward failed")

    remove = model.add_hook("blocks.1.hook_resid_post", fail_in_a_patched_run)
    try:
        for run in (patch_residual, patch_heads, patch_heads_by_position):
            with pytest.raises(RuntimeError, match="forward failed"):
                run(model, CLEAN, corrupt(3), metric, runs_per_pass=4)
    finally:
        remove()
    too_long = torch.zeros(1, 20, dtype=torch.long)  # block_size is 16
    with pytest.raises(GlassboxError, match="longer than block_size"):
        ablate_heads(model, too_long, [(0, 0)])
    assert no_hooks_left(model) and all(m.training for m in model.modules())


def test_an_encoder_can_be_patched_too():
    model = random_model(arch="encoder")
    grid = patch_residual(model, CLEAN, corrupt(3), metric, runs_per_pass=1)
    assert grid.shape == (2, 8)
    assert grid[0, 3].item() == metric(model(CLEAN)).item()
