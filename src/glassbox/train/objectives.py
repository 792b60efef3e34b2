"""What a model is trained to predict, one class per architecture.

The training loop only asks an objective for a batch (a tuple of CPU tensors) and for
the loss of a model on it, so a GPT on a corpus, a BERT-like encoder on the same corpus
and an encoder-decoder on a synthetic task all train in the same loop.

- CausalLM: predict token t + 1 from tokens 0..t (decoder).
- MaskedLM: hide mlm_prob of the tokens and predict them from both sides (encoder).
- Seq2Seq: predict the target of a task from its source, teacher-forced (encoder-decoder).
- ProblemLM: a CausalLM on rows "problem=answer" (addition-gpt, calculator), counted
  on what follows the problem only (decoder).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glassbox import runs
from glassbox.config import PROBLEM_TASKS, ModelConfig, TrainConfig
from glassbox.data import TokenDataset
from glassbox.data.arithmetic import AdditionTask
from glassbox.data.calculator import CalculatorTask
from glassbox.data.tasks import PAD, InductionTask, Seq2SeqTask, held_out_examples, task_from_config
from glassbox.models.encoder import ENCODER_SPECIALS, encoder_special_ids

IGNORE = -100  # target id that cross_entropy skips


def lm_loss(
    logits: Tensor, targets: Tensor, *, ignore_index: int = IGNORE, label_smoothing: float = 0.0
) -> Tensor:
    """Mean cross-entropy of logits (B, T, V) against targets (B, T), skipping targets
    equal to ignore_index (masked LM: unchosen positions; seq2seq: padding)."""
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
        ignore_index=ignore_index, label_smoothing=label_smoothing,
    )  # fmt: skip


def with_aux(model: nn.Module, loss: Tensor, train: bool) -> Tensor:
    """The training loss plus the auxiliary losses (a router's load balancing, say) that
    the model's sublayers recorded in this forward pass. Evaluation reports the
    prediction loss alone, so validation losses compare across architectures."""
    if not train:
        return loss
    return loss + getattr(model, "module", model).aux_loss()  # a DDP wrapper holds the model


class CausalLM:
    def __init__(self, dataset: TokenDataset, batch_size: int, block_size: int) -> None:
        self.dataset, self.batch_size, self.block_size = dataset, batch_size, block_size
        self.tokens_per_batch = batch_size * block_size

    def batch(self, split: str, generator: torch.Generator) -> tuple[Tensor, ...]:
        return self.dataset.batch(split, self.batch_size, self.block_size, generator)

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...], *, train: bool = True) -> Tensor:
        x, y = batch  # (B, T) each
        return with_aux(model, lm_loss(model(x), y), train)


class InductionLM(CausalLM):
    """Next-token loss on repeated random blocks (decoder; see data.tasks.InductionTask)."""

    def __init__(self, task: InductionTask, batch_size: int) -> None:
        self.task, self.batch_size = task, batch_size
        self.tokens_per_batch = batch_size * (task.seq_len - 1)

    def batch(self, split: str, generator: torch.Generator) -> tuple[Tensor, ...]:
        return self.task.batch(self.batch_size, generator)  # fresh random blocks either way


class ProblemLM(CausalLM):
    """Next-token loss on rows "problem=answer<eos>" of a decoder task (addition-gpt's
    "a+b=c", the calculator's "a*b=trace>answer"), teacher-forced. With mask_problem the
    targets up to and including '=' are IGNORE, so only what follows counts: operands are
    random, and predicting them would only add noise. PAD after a row's EOS never counts.
    Training rows are fresh problems, never a held-out one; validation rows are held-out
    problems.

    >>> task = AdditionTask(1, 2)
    >>> x, y = ProblemLM(task, 1, []).batch("train", torch.Generator().manual_seed(0))
    >>> task.tokenizer.decode(x[0]), y[0].tolist()  # 3 + 23 = 26: "026" least digit first
    ('03+23=620', [-100, -100, -100, -100, -100, 9, 5, 3, 2])
    """

    def __init__(
        self, task: AdditionTask | CalculatorTask, batch_size: int,
        held_out: list[tuple[str, str]], mask_problem: bool = True,
    ) -> None:  # fmt: skip
        self.task, self.batch_size, self.mask_problem = task, batch_size, mask_problem
        problems = [task.parse(problem) for problem, _ in held_out]
        width = task.problem_size  # numbers per problem: (a, b) or (op, a, b)
        self.held_out = torch.tensor(problems, dtype=torch.long).view(-1, width)  # (n, width)
        self.exclude = frozenset(problems)
        self.tokens_per_batch = batch_size * (task.seq_len - 1)

    def batch(self, split: str, generator: torch.Generator) -> tuple[Tensor, ...]:
        if split == "train":
            problems = self.task.draw(self.batch_size, generator, self.exclude)  # (B, width)
        else:
            rows = torch.randint(len(self.held_out), (self.batch_size,), generator=generator)
            problems = self.held_out[rows]  # (B, width)
        seq = self.task.encode(problems)  # (B, L)
        x, y = seq[:, :-1], seq[:, 1:].clone()  # (B, L - 1) each: y[t] follows x[:t + 1]
        y[y == PAD] = IGNORE  # the padding after a short row's EOS
        if self.mask_problem:
            # y[t] for t < prompt_len - 1 is a token of the problem (the last of them is '=')
            y[:, : self.task.prompt_len - 1] = IGNORE
        return x, y


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
        return with_aux(model, lm_loss(model(inputs), targets, ignore_index=IGNORE), train)


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
        loss = lm_loss(logits, tgt_out, ignore_index=PAD, label_smoothing=smoothing)
        return with_aux(model, loss, train)


def build_objective(mc: ModelConfig, tc: TrainConfig):
    """What the run's model learns to predict (glassbox.train.objectives), with its data."""
    if tc.task == "induction":
        return InductionLM(task_from_config(tc), tc.batch_size)
    if tc.task in PROBLEM_TASKS:
        task = task_from_config(tc)
        held_out = held_out_examples(task, tc.seed)
        return ProblemLM(task, tc.batch_size, held_out, tc.mask_problem)
    if tc.task:
        task = task_from_config(tc)
        return Seq2Seq(task, tc.batch_size, held_out_examples(task, tc.seed), tc.label_smoothing)
    if mc.arch == "encoder":
        text_vocab = mc.vocab_size - len(ENCODER_SPECIALS)
        dataset = runs.load_tokens(tc.run_dir, text_vocab, mc.block_size - 1)
        return MaskedLM(dataset, tc.batch_size, mc.block_size, mc.vocab_size, tc.mlm_prob)
    dataset = runs.load_tokens(tc.run_dir, mc.vocab_size, mc.block_size)
    return CausalLM(dataset, tc.batch_size, mc.block_size)
