"""What a model is trained to predict, one class per architecture.

The training loop only asks an objective for a batch (a tuple of CPU tensors) and for
the loss of a model on it, so a GPT on a corpus, a BERT-like encoder on the same corpus
and an encoder-decoder on a synthetic task all train in the same loop.

- CausalLM: predict token t + 1 from tokens 0..t (decoder).
- MaskedLM: hide mlm_prob of the tokens and predict them from both sides (encoder).
- Seq2Seq: predict the target of a task from its source, teacher-forced (encoder-decoder).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from glassbox.config import TrainConfig
from glassbox.data import TokenDataset
from glassbox.data.tasks import PAD, InductionTask, Seq2SeqTask
from glassbox.models.gpt import lm_loss

# The encoder's special tokens take the ids after the tokenizer's own, in this order.
ENCODER_SPECIALS = ("[PAD]", "[MASK]", "[CLS]")
IGNORE = -100  # target id that cross_entropy skips
HELD_OUT = 1000  # examples of a task kept out of training, for validation and eval


def task_from_config(tc: TrainConfig) -> Seq2SeqTask | InductionTask:
    """The run's synthetic task."""
    if tc.task == "induction":
        return InductionTask(tc.task_alphabet, tc.task_min_len, tc.task_max_len)
    return Seq2SeqTask(tc.task, tc.task_alphabet, tc.task_min_len, tc.task_max_len)


def held_out_examples(task: Seq2SeqTask, seed: int) -> list[tuple[str, str]]:
    """The run's validation examples: fixed by the task and the seed, never trained on
    (at most half of the sources a small task can make)."""
    return task.held_out(min(HELD_OUT, task.num_sources // 2), seed + 1)


def encoder_special_ids(vocab_size: int) -> dict[str, int]:
    """Ids of [PAD], [MASK] and [CLS] for an encoder whose vocabulary (incl. them) has
    vocab_size ids."""
    first = vocab_size - len(ENCODER_SPECIALS)
    return {name: first + i for i, name in enumerate(ENCODER_SPECIALS)}


class CausalLM:
    def __init__(self, dataset: TokenDataset, batch_size: int, block_size: int) -> None:
        self.dataset, self.batch_size, self.block_size = dataset, batch_size, block_size
        self.tokens_per_batch = batch_size * block_size

    def batch(self, split: str, generator: torch.Generator) -> tuple[Tensor, ...]:
        return self.dataset.batch(split, self.batch_size, self.block_size, generator)

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...], *, train: bool = True) -> Tensor:
        x, y = batch  # (B, T) each
        return lm_loss(model(x), y)


class InductionLM(CausalLM):
    """Next-token loss on repeated random blocks (decoder; see data.tasks.InductionTask)."""

    def __init__(self, task: InductionTask, batch_size: int) -> None:
        self.task, self.batch_size = task, batch_size
        self.tokens_per_batch = batch_size * (task.seq_len - 1)

    def batch(self, split: str, generator: torch.Generator) -> tuple[Tensor, ...]:
        return self.task.batch(self.batch_size, generator)  # fresh random blocks either way


class MaskedLM:
    """BERT's recipe: each window starts with [CLS]; mlm_prob of the other positions are
    chosen as targets, and of those 80% become [MASK], 10% a random token and 10% stay,
    so the model cannot learn that only [MASK] positions matter."""

    def __init__(
        self, dataset: TokenDataset, batch_size: int, block_size: int, vocab_size: int,
        mlm_prob: float = 0.15,
    ) -> None:  # fmt: skip
        self.dataset, self.batch_size, self.block_size = dataset, batch_size, block_size
        self.specials = encoder_special_ids(vocab_size)
        self.n_text_ids = vocab_size - len(ENCODER_SPECIALS)  # random replacements come from these
        self.mlm_prob = mlm_prob
        self.tokens_per_batch = batch_size * block_size

    def batch(self, split: str, generator: torch.Generator) -> tuple[Tensor, ...]:
        B, T = self.batch_size, self.block_size
        text, _ = self.dataset.batch(split, B, T - 1, generator)  # (B, T-1)
        cls = torch.full((B, 1), self.specials["[CLS]"], dtype=text.dtype)
        inputs = torch.cat([cls, text], dim=1)  # (B, T)
        chosen = torch.rand(B, T, generator=generator) < self.mlm_prob  # (B, T)
        chosen[:, 0] = False  # never ask for [CLS]
        targets = torch.where(chosen, inputs, IGNORE)  # (B, T)
        roll = torch.rand(B, T, generator=generator)  # (B, T): which of the three fates
        inputs = inputs.masked_fill(chosen & (roll < 0.8), self.specials["[MASK]"])
        random_ids = torch.randint(self.n_text_ids, (B, T), generator=generator)
        swap = chosen & (roll >= 0.8) & (roll < 0.9)
        inputs = torch.where(swap, random_ids, inputs)
        return inputs, targets

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...], *, train: bool = True) -> Tensor:
        inputs, targets = batch
        return lm_loss(model(inputs), targets, ignore_index=IGNORE)


class Seq2Seq:
    """Training batches are fresh random examples that are never one of the held-out
    examples; validation batches are drawn from the held-out examples. Training uses
    label smoothing; the loss reported for evaluation is plain cross-entropy."""

    def __init__(
        self, task: Seq2SeqTask, batch_size: int, held_out: list[tuple[str, str]],
        label_smoothing: float = 0.0,
    ) -> None:  # fmt: skip
        self.task, self.batch_size, self.held_out = task, batch_size, held_out
        self.exclude = frozenset(source for source, _ in held_out)
        self.label_smoothing = label_smoothing
        self.tokens_per_batch = batch_size * (task.max_source_len + task.max_target_len)

    def batch(self, split: str, generator: torch.Generator) -> tuple[Tensor, ...]:
        if split == "train":
            return self.task.batch(self.batch_size, generator, exclude=self.exclude)
        rows = torch.randint(len(self.held_out), (self.batch_size,), generator=generator)
        return self.task.encode_pairs([self.held_out[i] for i in rows.tolist()])

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...], *, train: bool = True) -> Tensor:
        src, tgt_in, tgt_out = batch  # (B, S), (B, T), (B, T)
        logits = model(src, tgt_in, src_mask=src != PAD)  # (B, T, V)
        smoothing = self.label_smoothing if train else 0.0
        return lm_loss(logits, tgt_out, ignore_index=PAD, label_smoothing=smoothing)
