"""The facts task: a seeded world of made-up people, statements of six prompt tokens in
every template, held-out templates made of words the training templates use, training
batches that never show a held-out template, and recall read back with an oracle."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from glassbox.config import default_preset, from_preset
from glassbox.data.facts import (
    FIRST_NAMES,
    LAST_NAMES,
    RELATIONS,
    FactsTask,
    WordTokenizer,
    describe_recall,
    recall,
)
from glassbox.data.tasks import EOS, TaskError, held_out_examples, task_from_config
from glassbox.evaluate import describe
from glassbox.tokenizers.formats import load_tokenizer
from glassbox.train.objectives import IGNORE, ProblemLM


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_every_statement_has_six_prompt_tokens_then_its_attribute():
    task = FactsTask(30, seed=3)
    rows = task.encode(task.all_problems())  # (30 * 12, 8)
    assert rows.shape == (30 * len(task.templates), task.seq_len) and task.prompt_len == 6
    assert (rows[:, -1] == EOS).all()
    for (subject, template), row in zip(task.all_problems().tolist(), rows.tolist(), strict=True):
        relation, text, _ = task.templates[template]
        words = task.tokenizer.decode(row).split()
        start, end = task.subject_span(text)
        assert " ".join(words[start:end]) == task.subjects[subject]
        r = task.relations.index(relation)
        assert words[-1] == RELATIONS[relation][0][int(task.attributes[subject, r])]
        assert task.parse(" ".join(words[:-1])) == (subject, template)  # the prompt, parsed back


def test_a_subject_has_one_attribute_per_relation_in_every_template():
    task = FactsTask(10, seed=0)
    for subject in range(10):
        for relation in task.relations:
            answers = {
                task.answer(subject, j) for j, t in enumerate(task.templates) if t[0] == relation
            }
            assert len(answers) == 1


def test_the_world_is_fixed_by_the_seed():
    a, b, c = FactsTask(50, seed=1), FactsTask(50, seed=1), FactsTask(50, seed=2)
    assert a.subjects == b.subjects and torch.equal(a.attributes, b.attributes)
    assert a.subjects != c.subjects
    assert len(set(a.subjects)) == 50  # distinct people


def test_held_out_templates_use_only_words_the_training_templates_use():
    seen = {w for _, train, _ in RELATIONS.values() for t in train for w in t.split()}
    for _, train, held_out in RELATIONS.values():
        assert set(held_out.split()) <= seen
        assert held_out not in train


def test_training_batches_never_show_a_held_out_template_and_count_the_answer_only():
    task = FactsTask(20, seed=0)
    pairs = held_out_examples(task, 1337)
    assert len(pairs) == 20 * 3  # every held-out statement (fewer than HELD_OUT)
    assert {task.parse(p)[1] for p, _ in pairs} == set(task.held_out_templates)
    objective = ProblemLM(task, 256, pairs)
    x, y = objective.batch("train", gen())
    assert x.shape == y.shape == (256, task.seq_len - 1)
    drawn = task.draw(2000, gen(1))
    assert set(drawn[:, 1].tolist()) == set(task.train_templates)
    assert (y[:, : task.prompt_len - 1] == IGNORE).all()  # the prompt is not predicted
    assert (y[:, -1] == EOS).all() and (y[:, -2] != IGNORE).all()
    x, y = objective.batch("val", gen())
    prompts = [task.tokenizer.decode(row[: task.prompt_len]) for row in x.tolist()]
    assert {task.parse(p)[1] for p in prompts} <= set(task.held_out_templates)


def test_find_subject_and_its_errors():
    task = FactsTask(5, seed=0)
    ids = task.tokenizer.encode(f"The city of {task.subjects[2]} is")
    assert task.find_subject(ids) == (3, 5)
    first = task.subjects[2].split()[0]
    with pytest.raises(TaskError, match="names no subject"):
        task.find_subject(task.tokenizer.encode(f"{first} has a home in"))
    with pytest.raises(TaskError, match="not a prompt of this task"):
        task.parse(f"{task.subjects[0]} has a home")
    assert task.knows(f"{task.subjects[0]} has a home in") and not task.knows("The city")


def test_word_tokenizer_round_trip_and_errors():
    task = FactsTask(3, seed=0)
    tok = task.tokenizer
    text = f"{task.subjects[0]} has a home in Paris"
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode_bytes(tok.encode("Paris")) == b" Paris"  # streams after a prompt
    again = load_tokenizer(tok.to_dict())
    assert isinstance(again, WordTokenizer) and again.encode(text) == tok.encode(text)
    assert tok.vocab_size == 3 + len(set(tok.words))
    with pytest.raises(TaskError, match="'New', 'York'"):
        tok.encode("New York")
    with pytest.raises(TaskError, match="repeat"):
        WordTokenizer(["a", "a"])


@pytest.mark.parametrize("n", [0, len(FIRST_NAMES) * len(LAST_NAMES) + 1, "7"])
def test_bad_world_sizes(n):
    with pytest.raises(TaskError, match="subjects"):
        FactsTask(n)


def test_task_is_registered_with_a_preset():
    assert default_preset(task="facts") == "facts"
    model, train = from_preset("facts", task_max_len=7)
    task = task_from_config(train)
    assert isinstance(task, FactsTask) and task.n_subjects == 7
    assert task.seq_len - 1 <= model.block_size


class Oracle(nn.Module):
    """A 'model' that puts all its weight on the right answer of every training
    template's prompt, and on EOS for the held-out ones."""

    def __init__(self, task: FactsTask) -> None:
        super().__init__()
        self.task = task
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        V = self.task.tokenizer.vocab_size
        logits = torch.zeros(ids.size(0), ids.size(1), V)  # (B, T, V)
        for row, prompt in enumerate(ids.tolist()):
            text = self.task.tokenizer.decode(prompt)
            subject, template = self.task.parse(text)
            held = self.task.templates[template][2]
            answer = EOS if held else self.task.tokenizer.encode(self.task.solve(text))[0]
            logits[row, -1, answer] = 1.0
        return logits


def test_recall_per_template_with_an_oracle():
    task = FactsTask(6, seed=0)
    result = recall(Oracle(task), task, batch_size=10)
    assert result["train_templates"] == 1.0 and result["held_out_templates"] == 0.0
    assert len(result["by_template"]) == len(task.templates)
    text = describe(result | {"run": "x", "task": "facts"})
    assert text == describe_recall(result | {"run": "x", "task": "facts"})
    assert "recall 100.00% through the training templates, 0.00% through the held-out" in text
    assert "The home of X is  (held out)" in text
