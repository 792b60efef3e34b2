"""Facts for a decoder-only GPT to memorise (task facts): made-up people, each with a
home city, a colour and a profession, stated in several sentence templates.

Why a synthetic task: to ask where a model keeps a fact (causal tracing, Meng et al.
2022, glassbox.analysis.tracing) we need facts that the model surely learned from us
and nowhere else, stated in ways we control. Subjects are made-up names of two words,
so a subject spans two tokens and "the last subject token" is a place, as in the paper.
Attributes are real words, one token each, so "the probability of the right answer" is
one number.

Every template has four words besides the two of the subject, so every prompt is six
tokens and its answer sits at position 6 in every row: no padding, nothing to mask but
the prompt, and `glassbox sample` or `inspect --trace` can encode a prompt as the plain
text it is. One template per relation is held out of training: its words all occur in
the other templates, so recall through it measures whether the model can reach a fact
from a phrasing it never saw (the other templates measure memorisation).

A row is a statement, "Arvel Ashby has a home in Lima", then EOS; a problem is
(subject index, template index). Word ids: the specials of glassbox.data.tasks, then
every word of the task in a fixed order. Which subject has which attribute is drawn
from the seed, so a run's configuration rebuilds its world.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from typing import Any

import torch
from torch import Tensor

from glassbox.data.arithmetic import draw_excluding
from glassbox.data.tasks import EOS, SPECIALS, TaskError

TASK = "facts"
FORMAT = "glassbox-words-tokenizer"
VERSION = 1

FIRST_NAMES = [
    "Arvel", "Bexa", "Corin", "Dalu", "Esmi", "Fenwa", "Gorim", "Halsa", "Ivor", "Jessa",
    "Kolm", "Lirra", "Mavo", "Nessa", "Orrin", "Pelta", "Quill", "Rasha", "Sorin", "Tavi",
    "Ulme", "Vessa", "Wendo", "Yara"
]  # fmt: skip
LAST_NAMES = [
    "Ashby", "Brenn", "Calloway", "Dresk", "Elvane", "Farrow", "Grisk", "Holloway", "Istra",
    "Jorvik", "Kettle", "Lumen", "Marsh", "Norrow", "Oakes", "Pell", "Quarry", "Rusk",
    "Stave", "Thorne", "Umber", "Vane", "Wick", "Yarrow"
]  # fmt: skip
MAX_SUBJECTS = len(FIRST_NAMES) * len(LAST_NAMES)

# relation -> (attribute values, training templates, held-out template); "{}" is the
# subject, and every template has four other words (module docstring).
RELATIONS: dict[str, tuple[list[str], list[str], str]] = {
    "city": (
        ["Paris", "Tokyo", "Lima", "Cairo", "Oslo", "Delhi", "Quito", "Rome", "Seoul", "Dakar",
         "Hanoi", "Perth"],
        ["{} has a home in", "The city of {} is", "{} lives and works in"],
        "The home of {} is",
    ),
    "colour": (
        ["red", "blue", "green", "yellow", "purple", "orange", "black", "white", "pink", "brown",
         "grey", "silver"],
        ["{} loves to dress in", "The colour of {} is", "{} paints the house in"],
        "The colour {} loves is",
    ),
    "profession": (
        ["baker", "pilot", "nurse", "farmer", "lawyer", "painter", "sailor", "teacher",
         "dentist", "plumber", "poet", "chemist"],
        ["{} now works as a", "The job of {} is", "{} is known as a"],
        "The job {} has is",
    ),
}  # fmt: skip
SUBJECT_WORDS = 2
TEMPLATE_WORDS = 4


class WordTokenizer:
    """One id per word: the specials of glassbox.data.tasks (<pad>, <bos>, <eos>), then
    `words` in order. Text is split on whitespace, and decoded with one space between
    words (and one before each word, for a stream of tokens after a prompt).

    >>> tok = WordTokenizer(["red", "is"])
    >>> tok.encode("red is red"), tok.decode([3, 4, 2, 3])
    ([3, 4, 3], 'red is')
    """

    def __init__(self, words: Iterable[str]) -> None:
        self.words = list(words)
        if not self.words or not all(isinstance(w, str) and w.split() == [w] for w in self.words):
            raise TaskError("a word tokenizer needs non-empty words without spaces")
        if len(set(self.words)) != len(self.words):
            raise TaskError("the words of a word tokenizer repeat")
        self._ids = {w: len(SPECIALS) + i for i, w in enumerate(self.words)}

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + len(self.words)

    def encode(self, text: str) -> list[int]:
        """Ids of the whitespace-separated words of `text`; an unknown word is an error."""
        words = text.split()
        unknown = [w for w in words if w not in self._ids]
        if unknown:
            shown = ", ".join(repr(w) for w in dict.fromkeys(unknown))
            raise TaskError(f"words outside this task's vocabulary: {shown}")
        return [self._ids[w] for w in words]

    def token_str(self, i: int) -> str:
        """How token `i` is shown: its special name, or its word."""
        if not 0 <= i < self.vocab_size:
            raise TaskError(f"id {i} is outside the vocabulary of {self.vocab_size} tokens")
        return SPECIALS[i] if i < len(SPECIALS) else self.words[i - len(SPECIALS)]

    def _words(self, ids: Iterable[int] | Tensor) -> list[str]:
        """The words of ids up to the first EOS, skipping the other specials."""
        out = []
        for i in ids.tolist() if isinstance(ids, Tensor) else ids:
            if i == EOS:
                break
            if i >= len(SPECIALS):
                out.append(self.token_str(i))
        return out

    def decode(self, ids: Iterable[int] | Tensor) -> str:
        return " ".join(self._words(ids))

    def decode_bytes(self, ids: Iterable[int] | Tensor) -> bytes:
        """Each word after a space: what a stream of generated words appends to a prompt."""
        return "".join(" " + w for w in self._words(ids)).encode("utf-8")

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "type": "words", "words": self.words}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WordTokenizer:
        if data.get("format") != FORMAT or data.get("type") != "words":
            raise TaskError("not a glassbox word tokenizer file")
        if data.get("version") != VERSION:
            raise TaskError(f"unsupported word tokenizer version {data.get('version')}")
        return cls(data.get("words") or [])


def _vocabulary() -> list[str]:
    """Every word of the task, in a fixed order: names, attributes, template words."""
    words = [*FIRST_NAMES, *LAST_NAMES]
    for values, templates, held_out in RELATIONS.values():
        words += values
        for template in [*templates, held_out]:
            words += [w for w in template.split() if w != "{}"]
    return list(dict.fromkeys(words))


class FactsTask:
    """A world of n_subjects made-up people and their attributes, and its statements.

    Templates are numbered relation by relation, the held-out one last in each:
    `templates[j]` is (relation, text, held_out).

    >>> task = FactsTask(4, seed=0)
    >>> task.statement((0, 0)) == f"{task.subjects[0]} has a home in {task.answer(0, 0)}"
    True
    >>> task.prompt_len, task.seq_len, task.subject_span("The city of {} is")
    (6, 8, (3, 5))
    """

    name = TASK
    problem_size = 2  # a problem is (subject, template)

    def __init__(self, n_subjects: int = 100, seed: int = 0) -> None:
        if not isinstance(n_subjects, int) or not 1 <= n_subjects <= MAX_SUBJECTS:
            raise TaskError(
                f"task facts needs 1 to {MAX_SUBJECTS} subjects (--task-max-len); "
                f"got {n_subjects!r}"
            )
        self.n_subjects, self.seed = n_subjects, seed
        generator = torch.Generator().manual_seed(seed)
        pairs = torch.randperm(MAX_SUBJECTS, generator=generator)[:n_subjects].tolist()
        n_last = len(LAST_NAMES)
        self.subjects = [f"{FIRST_NAMES[p // n_last]} {LAST_NAMES[p % n_last]}" for p in pairs]
        self._subject_index = {s: i for i, s in enumerate(self.subjects)}
        self.relations = list(RELATIONS)
        # attribute index of every subject for every relation (n_subjects, n_relations)
        sizes = [len(values) for values, _, _ in RELATIONS.values()]
        self.attributes = torch.stack(
            [torch.randint(n, (n_subjects,), generator=generator) for n in sizes], dim=1
        )  # (n_subjects, n_relations)
        self.templates: list[tuple[str, str, bool]] = []
        for relation, (_, train, held_out) in RELATIONS.items():
            self.templates += [(relation, t, False) for t in train] + [(relation, held_out, True)]
        self.train_templates = [j for j, (_, _, held) in enumerate(self.templates) if not held]
        self.held_out_templates = [j for j, (_, _, held) in enumerate(self.templates) if held]
        self.tokenizer = WordTokenizer(_vocabulary())
        self.prompt_len = SUBJECT_WORDS + TEMPLATE_WORDS
        self.seq_len = self.prompt_len + 2  # the answer, then EOS

    def __repr__(self) -> str:
        return f"FactsTask({self.n_subjects}, seed={self.seed})"

    @property
    def num_sources(self) -> int:
        """How many distinct statements there are (subjects x templates)."""
        return self.n_subjects * len(self.templates)

    # -- facts and statements ------------------------------------------------------------

    def answer(self, subject: int, template: int) -> str:
        """The attribute a statement of `template` about `subject` ends with."""
        relation = self.templates[template][0]
        r = self.relations.index(relation)
        return RELATIONS[relation][0][int(self.attributes[subject, r])]

    def prompt(self, problem: tuple[int, int]) -> str:
        subject, template = problem
        return self.templates[template][1].format(self.subjects[subject])

    def statement(self, problem: tuple[int, int]) -> str:
        return f"{self.prompt(problem)} {self.answer(*problem)}"

    @staticmethod
    def subject_span(template: str) -> tuple[int, int]:
        """Token positions [start, end) of the subject in a prompt of `template`."""
        start = template.split().index("{}")
        return start, start + SUBJECT_WORDS

    def parse(self, prompt: str) -> tuple[int, int]:
        """(subject, template) of a prompt such as "Arvel Ashby has a home in"."""
        words = prompt.split() if isinstance(prompt, str) else []
        for j, (_, template, _) in enumerate(self.templates):
            start, end = self.subject_span(template)
            rest = template.split()
            if len(words) == len(rest) + 1 and words[:start] + ["{}"] + words[end:] == rest:
                subject = self._subject_index.get(" ".join(words[start:end]))
                if subject is not None:
                    return subject, j
        raise TaskError(
            f"{prompt!r} is not a prompt of this task: one of its {len(self.templates)} "
            f"templates with one of its {self.n_subjects} subjects"
        )

    def solve(self, prompt: str) -> str:
        return self.answer(*self.parse(prompt))

    def knows(self, prompt: str) -> bool:
        """Whether `prompt` is a prompt of this task (one of its templates and subjects)."""
        try:
            self.parse(prompt)
        except TaskError:
            return False
        return True

    def find_subject(self, ids: list[int]) -> tuple[int, int]:
        """Positions [start, end) of the first known subject in token ids, or an error."""
        words = [self.tokenizer.token_str(i) for i in ids]
        for start in range(len(words) - SUBJECT_WORDS + 1):
            if " ".join(words[start : start + SUBJECT_WORDS]) in self._subject_index:
                return start, start + SUBJECT_WORDS
        raise TaskError(
            f"the prompt names no subject of this run's facts (e.g. {self.subjects[0]!r})"
        )

    # -- batches -------------------------------------------------------------------------

    def encode(self, problems: Tensor) -> Tensor:
        """Ids of whole rows (B, seq_len): the prompt, the answer, EOS."""
        rows = [self.tokenizer.encode(self.statement(tuple(p))) + [EOS] for p in problems.tolist()]
        return torch.tensor(rows, dtype=torch.long).view(-1, self.seq_len)

    def prompts(self, problems: Tensor) -> Tensor:
        """Ids of the prompts (B, prompt_len) of problems (B, 2)."""
        rows = [self.tokenizer.encode(self.prompt(tuple(p))) for p in problems.tolist()]
        return torch.tensor(rows, dtype=torch.long).view(-1, self.prompt_len)

    def draw(
        self, k: int, generator: torch.Generator, exclude: Set[tuple[int, int]] = frozenset()
    ) -> Tensor:
        """k random statements (k, 2) in the training templates; those in `exclude` are
        redrawn."""
        return draw_excluding(self._draw, k, generator, exclude, self)

    def _draw(self, k: int, generator: torch.Generator) -> Tensor:
        subjects = torch.randint(self.n_subjects, (k,), generator=generator)  # (k,)
        train = torch.tensor(self.train_templates)
        templates = train[torch.randint(len(train), (k,), generator=generator)]  # (k,)
        return torch.stack([subjects, templates], dim=1)  # (k, 2)

    def all_problems(self, templates: Iterable[int] | None = None) -> Tensor:
        """Every (subject, template) of the given templates (default all) (N, 2)."""
        chosen = torch.tensor(list(range(len(self.templates)) if templates is None else templates))
        subjects = torch.arange(self.n_subjects)
        grid = torch.cartesian_prod(subjects, chosen)  # (n_subjects * len(chosen), 2)
        return grid.view(-1, 2)

    def held_out(self, n: int, seed: int) -> list[tuple[str, str]]:
        """Up to n statements in the held-out templates, (prompt, answer) pairs, in an
        order fixed by `seed`: validation shows recall through phrasings never trained
        on. There are n_subjects x 3 of them, fewer than n when the world is small."""
        if n < 0:
            raise TaskError(f"cannot hold out a negative number of examples ({n})")
        problems = self.all_problems(self.held_out_templates)
        order = torch.randperm(len(problems), generator=torch.Generator().manual_seed(seed))
        return [(self.prompt(p), self.answer(*p)) for p in map(tuple, problems[order[:n]].tolist())]


@torch.no_grad()
def recall(model, task: FactsTask, batch_size: int = 1000) -> dict[str, Any]:
    """How often a decoder run's top prediction after each prompt is the right attribute:
    for every template over every subject, and averaged over the training and the
    held-out templates.

    >>> recall(model, task)["train_templates"]  # doctest: +SKIP
    1.0
    """
    device = next(model.parameters()).device
    problems = task.all_problems()  # (N, 2)
    answers = torch.tensor(
        [task.tokenizer.encode(task.answer(*p))[0] for p in problems.tolist()]
    )  # (N,)
    right = []
    for start in range(0, len(problems), batch_size):
        ids = task.prompts(problems[start : start + batch_size]).to(device)  # (b, prompt_len)
        right.append(model(ids)[:, -1].argmax(-1).cpu() == answers[start : start + batch_size])
    right = torch.cat(right).float()  # (N,)
    by_template = {}
    for j, (relation, text, held) in enumerate(task.templates):
        score = right[problems[:, 1] == j].mean().item()
        by_template[text] = {"relation": relation, "held_out": held, "recall": score}

    def mean(templates: list[int]) -> float:
        return right[torch.isin(problems[:, 1], torch.tensor(templates))].mean().item()

    return {
        "subjects": task.n_subjects,
        "train_templates": mean(task.train_templates),
        "held_out_templates": mean(task.held_out_templates),
        "by_template": by_template,
    }


def describe_recall(result: dict[str, Any]) -> str:
    """recall's result as the lines `glassbox eval` prints."""
    lines = [
        f"facts: recall {result['train_templates']:.2%} through the training templates, "
        f"{result['held_out_templates']:.2%} through the held-out ones "
        f"({result['subjects']} subjects, top-1 answer)"
    ]
    for text, score in result["by_template"].items():
        held = "  (held out)" if score["held_out"] else ""
        lines.append(f"  {score['recall']:7.2%}  {text.replace('{}', 'X')}{held}")
    return "\n".join(lines)
