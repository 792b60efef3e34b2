"""What each architecture is trained to predict: BERT's masking recipe and the seq2seq
objective's held-out split and label smoothing, checked by their statistics and by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from glassbox.config import ModelConfig
from glassbox.data import TokenDataset
from glassbox.data.tasks import PAD, Seq2SeqTask, held_out_examples
from glassbox.models.encoder import ENCODER_SPECIALS, encoder_special_ids
from glassbox.train.objectives import IGNORE, MaskedLM, Seq2Seq


class StandIn(nn.Module):
    """A fake model with fixed outputs; like every glassbox model it reports its
    auxiliary losses (none)."""

    def aux_loss(self) -> torch.Tensor:
        return torch.zeros(())


N_TEXT = 20  # ids of the text tokenizer; the encoder's specials come after them


@pytest.fixture
def dataset(tmp_path):
    ids = np.random.default_rng(0).integers(0, N_TEXT, 200_000).astype(np.uint16)
    path = tmp_path / "tokens.bin"
    ids.tofile(path)
    return TokenDataset(path, N_TEXT)


def masked_batch(dataset, mlm_prob: float, B: int, T: int, seed: int = 0):
    """An MLM batch and the unmasked windows it came from (the same generator replayed)."""
    objective = MaskedLM(dataset, B, T, N_TEXT + len(ENCODER_SPECIALS), mlm_prob)
    generator = torch.Generator().manual_seed(seed)
    state = generator.get_state()
    inputs, targets = objective.batch("train", generator)
    generator.set_state(state)
    text, _ = dataset.batch("train", B, T - 1, generator)  # (B, T-1): what was drawn first
    return objective, inputs, targets, text


def within(observed: float, expected: float, n: int, sigmas: float = 5.0) -> bool:
    """observed is a fraction of n Bernoulli(expected) draws: within a few standard errors."""
    return abs(observed - expected) <= sigmas * math.sqrt(expected * (1 - expected) / n)


@pytest.mark.parametrize("mlm_prob", [0.15, 0.4])
def test_masked_lm_follows_berts_recipe(dataset, mlm_prob):
    B, T = 512, 65
    objective, inputs, targets, text = masked_batch(dataset, mlm_prob, B, T)
    special = encoder_special_ids(N_TEXT + 3)
    assert special == {"[PAD]": N_TEXT, "[MASK]": N_TEXT + 1, "[CLS]": N_TEXT + 2}
    assert inputs.shape == targets.shape == (B, T)
    assert inputs.dtype == targets.dtype == torch.long
    # every window starts with [CLS], which is never a target
    assert (inputs[:, 0] == special["[CLS]"]).all() and (targets[:, 0] == IGNORE).all()
    assert not (inputs[:, 1:] == special["[CLS]"]).any()
    assert not (inputs == special["[PAD]"]).any()
    original = torch.cat([inputs[:, :1], text], dim=1)  # (B, T): the window before masking
    chosen = targets != IGNORE  # (B, T)
    n_positions = B * (T - 1)
    assert within(chosen.sum().item() / n_positions, mlm_prob, n_positions)
    assert torch.equal(targets[chosen], original[chosen])  # a target is the hidden token
    assert torch.equal(inputs[~chosen], original[~chosen])  # the rest is left alone
    n = int(chosen.sum())
    picked, truth = inputs[chosen], original[chosen]
    masked = picked == special["[MASK]"]
    kept = picked == truth
    swapped = ~masked & ~kept
    # 80% [MASK]; 10% a random text id (which is the original one time in N_TEXT); 10% kept
    assert within(masked.float().mean().item(), 0.8, n)
    assert within(swapped.float().mean().item(), 0.1 * (1 - 1 / N_TEXT), n)
    assert within(kept.float().mean().item(), 0.1 + 0.1 / N_TEXT, n)
    assert (picked[swapped] < N_TEXT).all()  # replacements are text, never a special
    assert len(set(picked[swapped].tolist())) == N_TEXT  # drawn from all of it
    assert not (inputs[~chosen] == special["[MASK]"]).any()


def test_masked_lm_batches_are_reproducible_and_vary(dataset):
    _, a_in, a_tg, _ = masked_batch(dataset, 0.15, 8, 33, seed=3)
    _, b_in, b_tg, _ = masked_batch(dataset, 0.15, 8, 33, seed=3)
    _, c_in, _, _ = masked_batch(dataset, 0.15, 8, 33, seed=4)
    assert torch.equal(a_in, b_in) and torch.equal(a_tg, b_tg)
    assert not torch.equal(a_in, c_in)


def test_masked_lm_loss_counts_only_the_targets(dataset):
    objective, inputs, targets, _ = masked_batch(dataset, 0.15, 4, 17)
    V = N_TEXT + 3
    logits = torch.randn(4, 17, V)

    class Fixed(StandIn):
        def forward(self, idx):
            assert torch.equal(idx, inputs)
            return logits

    chosen = targets != IGNORE
    by_hand = -logits.log_softmax(-1)[chosen].gather(1, targets[chosen][:, None]).mean()
    torch.testing.assert_close(objective.loss(Fixed(), (inputs, targets)), by_hand)


# --- seq2seq -------------------------------------------------------------------------------


def small_task() -> Seq2SeqTask:
    return Seq2SeqTask("reverse", alphabet="ab", min_len=1, max_len=3)  # 2 + 4 + 8 sources


def decoded_sources(task: Seq2SeqTask, src: torch.Tensor) -> list[str]:
    return [task.tokenizer.decode(row) for row in src]


def test_seq2seq_train_batches_never_hold_a_held_out_source():
    task = small_task()
    held_out = held_out_examples(task, seed=1337)
    assert len(held_out) == task.num_sources // 2 == 7  # half of a small task's sources
    held = {source for source, _ in held_out}
    objective = Seq2Seq(task, 64, held_out)
    generator = torch.Generator().manual_seed(0)
    train_sources = set()
    for _ in range(10):
        src, tgt_in, tgt_out = objective.batch("train", generator)
        train_sources.update(decoded_sources(task, src))
    assert train_sources.isdisjoint(held)
    assert len(train_sources) == task.num_sources - len(held)  # every other source comes up
    # teeth: the same draws without the exclusion do produce held-out sources
    plain = set()
    for _ in range(10):
        plain.update(decoded_sources(task, task.batch(64, generator)[0]))
    assert plain & held


def test_seq2seq_validation_batches_hold_only_held_out_examples():
    task = small_task()
    held_out = held_out_examples(task, seed=1337)
    assert held_out == held_out_examples(task, seed=1337)  # fixed by the seed
    objective = Seq2Seq(task, 64, held_out)
    generator = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(5):
        src, tgt_in, tgt_out = objective.batch("val", generator)
        for s, t_in, t_out in zip(src, tgt_in, tgt_out, strict=True):
            source = task.tokenizer.decode(s)
            pair = (source, task.tokenizer.decode(t_out))
            assert pair in held_out  # the source and its correct target
            assert task.tokenizer.decode(t_in) == pair[1]  # BOS + target, shifted right
            seen.add(source)
    assert seen == {source for source, _ in held_out}


class Confident(StandIn):
    """Puts `margin` more logit on the right next token than on every other one, and
    where the target is PAD (which the loss must skip) on a wrong token instead."""

    def __init__(self, answers: torch.Tensor, vocab_size: int, margin: float) -> None:
        super().__init__()
        favourite = torch.where(answers == PAD, PAD + 1, answers)  # (B, T)
        self.logits = margin * F.one_hot(favourite, vocab_size).float()  # (B, T, V)

    def forward(self, src, tgt_in, *, src_mask):
        assert torch.equal(src_mask, src != PAD)
        return self.logits


def test_label_smoothing_raises_the_training_loss_of_a_confident_model():
    task = small_task()
    batch = task.batch(16, torch.Generator().manual_seed(0))
    src, tgt_in, tgt_out = batch
    V, eps = task.tokenizer.vocab_size, 0.1
    model = Confident(tgt_out, V, margin=12.0)
    smoothed = Seq2Seq(task, 16, [], label_smoothing=eps)
    train_loss = smoothed.loss(model, batch, train=True)
    eval_loss = smoothed.loss(model, batch, train=False)
    assert eval_loss < 1e-4  # right with near certainty: plain cross-entropy is ~0
    assert train_loss > eval_loss + 0.5  # smoothing punishes the certainty
    # by hand: -(1 - eps) log p(target) - eps/V * sum_c log p(c), over non-PAD targets
    log_p = model.logits.log_softmax(-1)  # (B, T, V)
    real = tgt_out != PAD
    assert not real.all()  # rows of several lengths: some targets are padding
    per_token = -(1 - eps) * log_p.gather(-1, tgt_out[..., None])[..., 0] - eps / V * log_p.sum(-1)
    torch.testing.assert_close(train_loss, per_token[real].mean())
    torch.testing.assert_close(
        eval_loss, -log_p.gather(-1, tgt_out[..., None])[..., 0][real].mean()
    )
    # without smoothing, training and evaluation compute the same loss
    plain = Seq2Seq(task, 16, [], label_smoothing=0.0)
    assert plain.loss(model, batch, train=True) == plain.loss(model, batch, train=False)
    # an unsure model (uniform logits) is not punished: smoothing pulls toward uniform
    unsure = Confident(tgt_out, V, margin=0.0)
    assert math.isclose(smoothed.loss(unsure, batch).item(), math.log(V), rel_tol=1e-6)


def test_training_losses_add_the_models_auxiliary_losses(dataset, monkeypatch):
    """Whatever a sublayer records (a router's balancing loss, say) is added to the
    training loss by every objective, and left out of the evaluation loss."""
    from glassbox.models import GPT
    from glassbox.train.objectives import CausalLM

    model = GPT(ModelConfig(vocab_size=N_TEXT, block_size=8, n_layer=1, n_head=2, n_embd=16))
    monkeypatch.setattr(model, "aux_loss", lambda: torch.tensor(0.25))
    objective = CausalLM(dataset, batch_size=2, block_size=8)
    batch = objective.batch("train", torch.Generator().manual_seed(0))
    with_aux = objective.loss(model, batch, train=True)
    without = objective.loss(model, batch, train=False)
    assert with_aux.item() == pytest.approx(without.item() + 0.25)


class FixedLogits(StandIn):
    """A decoder stand-in whose logits (B, T, V) are given."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits


@pytest.mark.parametrize("mask_problem", [True, False])
def test_addition_loss_ignores_the_problem_positions(mask_problem):
    from glassbox.data.arithmetic import AdditionTask
    from glassbox.train.objectives import ProblemLM

    task = AdditionTask(1, 3)
    objective = ProblemLM(task, 8, [], mask_problem=mask_problem)
    x, y = objective.batch("train", torch.Generator().manual_seed(0))
    logits = torch.randn(*x.shape, task.tokenizer.vocab_size, generator=torch.Generator())
    base = objective.loss(FixedLogits(logits), (x, y)).item()
    problem = task.prompt_len - 1  # positions whose next token is part of "a+b="
    changed = logits.clone()
    changed[:, :problem] = 10 * torch.randn(8, problem, logits.size(-1))
    moved = objective.loss(FixedLogits(changed), (x, y)).item()
    assert (moved == pytest.approx(base)) is mask_problem
    answer_changed = logits.clone()
    answer_changed[:, problem] += 5 * F.one_hot(y[:, problem], logits.size(-1))  # first digit
    assert objective.loss(FixedLogits(answer_changed), (x, y)).item() < base
