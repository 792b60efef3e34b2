"""Is meaning a direction in embedding space? Neighbours, analogies, directions and
sentence similarity, measured on a real encoder's vectors (e.g. all-MiniLM-L6-v2).

The claim tested here is the word2vec folklore: that nearby vectors mean similar things,
that relations are offsets (king − man + woman ≈ queen), and that a concept such as gender
or number is one direction shared by many word pairs. Each claim becomes a number with a
baseline beside it, because vector arithmetic often "works" for a reason other than the
relation: the answer may simply be the nearest neighbour of one of the inputs.

Two spaces are searched, both as a `WordSpace` of unit vectors, one per candidate token:

- "input embeddings": the rows of the token-embedding matrix, what the model reads before
  any attention (`input_space`);
- "sentence vectors": the model's output for a word alone ("[CLS] word [SEP]"), mean
  pooled and normalised like sentence-transformers does for this model (`sentence_space`).

Only words that are one WordPiece token have a row, so every word given to these functions
must be a single token of the vocabulary; anything else is a GlassboxError naming how the
word splits. Functions return plain data (lists of (word, score), dicts of figures) and
the `format_*` helpers turn each into text lines for a terminal.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from glassbox.errors import GlassboxError
from glassbox.models import Encoder, evaluating
from glassbox.tokenizers.wordpiece import WordPiece, to_tensors

# Analogy methods. "3cosadd" is b − a + c (Mikolov et al., 2013); the two others are the
# baselines of Linzen (2016), "Issues in evaluating semantic spaces using word analogies":
# the nearest neighbour of c alone, and b + c without subtracting a. If 3CosAdd barely beats
# them, the offset b − a carries little of the answer.
METHODS = ("3cosadd", "only-c", "ignore-a")

# (male, female) and (singular, plural) pairs; each direction is fitted on the first list
# and tested on the second, which it never saw. All words are single MiniLM tokens.
GENDER_FIT = [
    ("he", "she"), ("man", "woman"), ("king", "queen"), ("boy", "girl"),
    ("father", "mother"), ("son", "daughter"), ("brother", "sister"),
    ("husband", "wife"), ("mr", "mrs"), ("his", "her"),
]  # fmt: skip
GENDER_HELD_OUT = [
    ("uncle", "aunt"), ("actor", "actress"), ("prince", "princess"), ("nephew", "niece"),
    ("grandfather", "grandmother"), ("duke", "duchess"), ("emperor", "empress"),
    ("god", "goddess"), ("waiter", "waitress"), ("groom", "bride"),
    ("boyfriend", "girlfriend"), ("monk", "nun"), ("stepfather", "stepmother"),
    ("grandson", "granddaughter"), ("himself", "herself"), ("sir", "madam"),
]  # fmt: skip
PLURAL_FIT = [
    ("cat", "cats"), ("dog", "dogs"), ("car", "cars"), ("house", "houses"),
    ("tree", "trees"), ("book", "books"), ("city", "cities"), ("child", "children"),
    ("day", "days"), ("bird", "birds"),
]  # fmt: skip
PLURAL_HELD_OUT = [
    ("river", "rivers"), ("horse", "horses"), ("song", "songs"), ("school", "schools"),
    ("road", "roads"), ("ship", "ships"), ("friend", "friends"), ("game", "games"),
    ("hand", "hands"), ("window", "windows"), ("door", "doors"), ("island", "islands"),
    ("church", "churches"), ("idea", "ideas"), ("table", "tables"), ("bank", "banks"),
]  # fmt: skip
DIRECTIONS = {"gender": (GENDER_FIT, GENDER_HELD_OUT), "plural": (PLURAL_FIT, PLURAL_HELD_OUT)}

# Hand-written paraphrase pairs. The unrelated pairs are the same sentences re-paired (the
# first of pair i with the second of pair i + 1), so both sets have the same sentences,
# lengths and style and differ only in whether the two mean the same thing.
PARAPHRASES = [
    ("A man is playing a guitar.", "Someone is strumming a guitar."),
    ("The children are laughing in the park.", "Kids are giggling at the playground."),
    ("She bought a new car yesterday.", "Yesterday she purchased a brand-new automobile."),
    ("The meeting was postponed until Friday.", "They moved the meeting to Friday."),
    ("It is raining heavily outside.", "There is a downpour out there."),
    ("The cat is sleeping on the sofa.", "A cat naps on the couch."),
    ("He forgot his keys at home.", "He left his keys in the house."),
    ("The restaurant serves excellent pasta.", "The pasta at that restaurant is great."),
    ("Prices rose sharply last month.", "Last month costs went up steeply."),
    ("The train was late this morning.", "This morning the train arrived behind schedule."),
    ("I cannot find my phone.", "My phone is missing and I can't locate it."),
    ("The doctor examined the patient.", "The physician checked the sick person."),
    ("They are building a bridge over the river.", "A bridge across the river is being built."),
    ("The movie was very boring.", "The film was really dull."),
    ("She runs five kilometres every morning.", "Every morning she jogs five km."),
    ("The company hired twenty new engineers.", "Twenty engineers joined the firm."),
    ("Please close the window.", "Could you shut the window?"),
    ("The lake froze during the night.", "Overnight the lake turned to ice."),
    ("He is learning to speak Spanish.", "He is studying the Spanish language."),
    ("The team won the championship.", "The squad took the title."),
]

# Pairs with nearly the same words and a different or opposite meaning: what the cosine of
# mean-pooled vectors cannot see (word order, negation, antonyms).
CONTRASTS = [
    ("The dog bit the man.", "The man bit the dog."),
    ("She passed the exam.", "She failed the exam."),
    ("The meeting was postponed until Friday.", "The meeting was not postponed until Friday."),
    ("He sold his car to his brother.", "His brother sold his car to him."),
    ("The restaurant serves excellent pasta.", "The restaurant serves terrible pasta."),
    ("Prices rose sharply last month.", "Prices fell sharply last month."),
    ("The train was late this morning.", "The train was early this morning."),
    ("The team won the championship.", "The team lost the championship."),
]

_BRACKETED = re.compile(r"\[.+\]")  # [PAD], [CLS], [unused17], ...


@dataclass
class WordSpace:
    """Candidate tokens and one unit vector each: the space that neighbours, analogies and
    directions search. `tokens` is the whole vocabulary, by id, for naming rows."""

    name: str
    ids: Tensor  # (N,) vocabulary ids of the rows
    vectors: Tensor  # (N, C) unit rows
    tokens: list[str]
    row: dict[int, int] = field(init=False)  # vocabulary id -> row

    def __post_init__(self) -> None:
        self.row = {i: r for r, i in enumerate(self.ids.tolist())}

    def rows(self, tokenizer: WordPiece, words: Sequence[str]) -> Tensor:
        """Row indices (len(words),) of single-token words, or a GlassboxError."""
        rows = []
        for word in words:
            i = token_id(tokenizer, word)
            if i not in self.row:
                raise GlassboxError(
                    f"{word!r} has no row in the {self.name}: not a candidate token"
                )
            rows.append(self.row[i])
        return torch.tensor(rows, dtype=torch.long, device=self.vectors.device)

    def word(self, row: int) -> str:
        return self.tokens[int(self.ids[row])]


def token_id(tokenizer: WordPiece, word: str) -> int:
    """The id of `word` if it is one ordinary token (the tokenizer lowercases it as the
    model does); otherwise a one-line GlassboxError that says how it splits.

    >>> token_id(tokenizer, "King")  # doctest: +SKIP
    2332
    >>> token_id(tokenizer, "glassbox")  # doctest: +SKIP
    GlassboxError: 'glassbox' is not a single token: it splits into 'glass' '##box'
    """
    ids = tokenizer.encode(word)
    if len(ids) != 1:
        pieces = " ".join(repr(tokenizer.tokens[i]) for i in ids) or "nothing"
        raise GlassboxError(f"{word!r} is not a single token: it splits into {pieces}")
    token = tokenizer.tokens[ids[0]]
    if ids[0] == tokenizer.unk_id and word.strip() != token:
        raise GlassboxError(f"{word!r} is not in the vocabulary: it becomes {token}")
    if _BRACKETED.fullmatch(token):
        raise GlassboxError(f"{word!r} is a special token, not a word")
    return ids[0]


def candidate_ids(tokenizer: WordPiece, *, whole_words: bool = False) -> list[int]:
    """Ids of the tokens a search may return: all but the bracketed special and [unused]
    tokens, and with `whole_words` also without the "##" word pieces."""
    return [
        i
        for i, token in enumerate(tokenizer.tokens)
        if not _BRACKETED.fullmatch(token) and not (whole_words and token.startswith("##"))
    ]


def input_space(model: Encoder, tokenizer: WordPiece, *, whole_words: bool = False) -> WordSpace:
    """The rows of the token-embedding matrix, normalised, one per candidate token."""
    ids = torch.tensor(candidate_ids(tokenizer, whole_words=whole_words), dtype=torch.long)
    weight = model.tok_emb.weight.detach()  # (V, C)
    vectors = F.normalize(weight[ids.to(weight.device)].float(), dim=-1)  # (N, C)
    return WordSpace("input embeddings", ids, vectors, tokenizer.tokens)


def sentence_vectors(
    model: Encoder, tokenizer: WordPiece, texts: Sequence[str], *, batch_size: int = 256
) -> Tensor:
    """One unit vector (B, C) per text: "[CLS] text [SEP]" through the encoder, the final
    residual averaged over real tokens ([CLS] and [SEP] included) and normalised, as
    sentence-transformers computes all-MiniLM-L6-v2's embeddings.

    >>> v = sentence_vectors(model, tokenizer, ["A man eats.", "Someone has a meal."])
    >>> (v[0] @ v[1]).item()  # cosine similarity  # doctest: +SKIP
    """
    if not isinstance(model, Encoder):
        raise GlassboxError(f"sentence vectors need an Encoder; got {type(model).__name__}")
    device = model.tok_emb.weight.device
    out = []
    with evaluating(model), torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = to_tensors(
                tokenizer.encode_batch(
                    list(texts[start : start + batch_size]), padding=True, truncation=True
                )
            )
            ids = batch["input_ids"].to(device)  # (B, T)
            mask = batch["attention_mask"].to(device).bool()  # (B, T)
            resid = model.resid_final(ids, key_mask=mask)  # (B, T, C)
            out.append(F.normalize(model.pool(resid, mask, "mean").float(), dim=-1))  # (B, C)
    if not out:
        return torch.zeros(0, model.config.n_embd, device=device)
    return torch.cat(out)  # (B, C)


def sentence_space(
    model: Encoder,
    tokenizer: WordPiece,
    words: Sequence[str] | None = None,
    *,
    batch_size: int = 512,
) -> WordSpace:
    """The sentence vector of each word alone, for the given single-token words or every
    whole-word token of the vocabulary (about 24,000 for BERT's: tens of seconds on a CPU)."""
    if words is None:
        ids = candidate_ids(tokenizer, whole_words=True)
    else:
        ids = list(dict.fromkeys(token_id(tokenizer, w) for w in words))
    texts = [tokenizer.tokens[i] for i in ids]
    vectors = sentence_vectors(model, tokenizer, texts, batch_size=batch_size)  # (N, C)
    return WordSpace(
        "sentence vectors", torch.tensor(ids, dtype=torch.long), vectors, tokenizer.tokens
    )


def _top(space: WordSpace, scores: Tensor, exclude: Tensor, k: int) -> list[tuple[str, float]]:
    """The k best rows of scores (N,), other than the rows in `exclude`."""
    if k < 1:
        raise GlassboxError(f"k must be at least 1; got {k}")
    scores = scores.clone()
    scores[exclude] = float("-inf")
    best = scores.topk(min(k, len(scores) - len(exclude)))
    return [
        (space.word(r), round(s, 4))
        for s, r in zip(best.values.tolist(), best.indices.tolist(), strict=True)
    ]


def neighbours(
    space: WordSpace, tokenizer: WordPiece, word: str, *, k: int = 10
) -> list[tuple[str, float]]:
    """The k candidate tokens nearest to `word` by cosine, the word itself left out.

    >>> neighbours(input_space(model, tokenizer, whole_words=True), tokenizer, "king", k=2)
    [('kings', 0.6904), ('queen', 0.6273)]  # doctest: +SKIP
    """
    row = space.rows(tokenizer, [word])
    return _top(space, space.vectors @ space.vectors[row[0]], row, k)


def _targets(space: WordSpace, a: Tensor, b: Tensor, c: Tensor, method: str) -> Tensor:
    """Query vectors (Q, C) for questions a : b :: c : ?, given their rows (Q,) each."""
    v = space.vectors
    if method == "3cosadd":
        return v[b] - v[a] + v[c]
    if method == "only-c":
        return v[c]
    if method == "ignore-a":
        return v[b] + v[c]
    raise GlassboxError(f"analogy method must be one of {', '.join(METHODS)}; got {method!r}")


def analogy(
    space: WordSpace, tokenizer: WordPiece, a: str, b: str, c: str, *, k: int = 5,
    method: str = "3cosadd",
) -> list[tuple[str, float]]:  # fmt: skip
    """Answers to "a is to b as c is to ?": the k tokens nearest by cosine to b − a + c,
    leaving out a, b and c themselves (3CosAdd), or to a baseline's query (see METHODS).

    >>> analogy(input_space(model, tokenizer), tokenizer, "man", "king", "woman", k=2)
    [('queen', 0.5015), ('kings', 0.4511)]  # doctest: +SKIP
    """
    rows = space.rows(tokenizer, [a, b, c])
    target = _targets(space, rows[:1], rows[1:2], rows[2:], method)[0]  # (C,)
    return _top(space, space.vectors @ F.normalize(target, dim=0), rows, k)


def read_analogies(path: Path | str) -> dict[str, list[tuple[str, str, str, str]]]:
    """Questions "a b c d" by section from a file in the format of word2vec's
    questions-words.txt (the Google analogy set): ": section" lines start a section."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise GlassboxError(f"cannot read the analogy questions {path}: {err}") from None
    sections: dict[str, list[tuple[str, str, str, str]]] = {}
    questions = None
    for n, line in enumerate(lines, 1):
        if line.startswith(":"):
            questions = sections.setdefault(line[1:].strip(), [])
        elif line.strip():
            words = line.split()
            if len(words) != 4:
                raise GlassboxError(f"{path}, line {n}: {len(words)} words where a question has 4")
            if questions is None:
                raise GlassboxError(f"{path}, line {n}: a question before any ': section' line")
            questions.append((words[0], words[1], words[2], words[3]))
    if not any(sections.values()):
        raise GlassboxError(f"{path} holds no analogy questions")
    return sections


def is_syntactic(section: str) -> bool:
    """The Google set's convention: the grammatical sections are named gram1-... gram9-..."""
    return section.startswith("gram")


def evaluate_analogies(
    space: WordSpace,
    tokenizer: WordPiece,
    sections: dict[str, list[tuple[str, str, str, str]]],
    *,
    methods: Sequence[str] = METHODS,
    exclude_inputs: bool = True,
    chunk: int = 512,
) -> dict[str, Any]:
    """Accuracy (top-1, a, b and c excluded) of each method on the questions whose four
    words are all candidate tokens of the space; the others are counted and skipped.
    `exclude_inputs=False` lets a, b and c be answers too, to show how much the standard
    exclusion does.

    Returns {"space", "candidates", "methods", "sections": [{"name", "syntactic", "total",
    "kept", "correct": {method: n}, "accuracy": {method: fraction}}, ...], "semantic",
    "syntactic", "overall"}, the last three summed over sections in the same form.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise GlassboxError(f"analogy methods must be among {', '.join(METHODS)}; got {unknown}")
    rows_of: dict[str, int | None] = {}

    def row(word: str) -> int | None:
        if word not in rows_of:
            ids = tokenizer.encode(word)
            rows_of[word] = space.row.get(ids[0]) if len(ids) == 1 else None
        return rows_of[word]

    results = []
    for name, questions in sections.items():
        kept = [q for q in ([row(w) for w in question] for question in questions) if None not in q]
        correct = dict.fromkeys(methods, 0)
        for start in range(0, len(kept), chunk):
            a, b, c, d = torch.tensor(kept[start : start + chunk], device=space.vectors.device).T
            for method in methods:
                target = F.normalize(_targets(space, a, b, c, method), dim=-1)  # (Q, C)
                scores = target @ space.vectors.T  # (Q, N)
                if exclude_inputs:
                    scores.scatter_(1, torch.stack([a, b, c], dim=1), float("-inf"))
                correct[method] += (scores.argmax(dim=1) == d).sum().item()
        results.append({
            "name": name, "syntactic": is_syntactic(name), "total": len(questions),
            "kept": len(kept), "correct": correct,
        })  # fmt: skip

    def summary(parts: list[dict[str, Any]], name: str) -> dict[str, Any]:
        total = {"name": name, "total": sum(p["total"] for p in parts)}
        total["kept"] = sum(p["kept"] for p in parts)
        total["correct"] = {m: sum(p["correct"][m] for p in parts) for m in methods}
        return total

    semantic = summary([r for r in results if not r["syntactic"]], "semantic")
    syntactic = summary([r for r in results if r["syntactic"]], "syntactic")
    overall = summary(results, "overall")
    for part in [*results, semantic, syntactic, overall]:
        part["accuracy"] = {
            m: part["correct"][m] / part["kept"] if part["kept"] else None for m in methods
        }
    return {
        "space": space.name, "candidates": len(space.ids), "methods": list(methods),
        "exclude_inputs": exclude_inputs, "sections": results, "semantic": semantic,
        "syntactic": syntactic, "overall": overall,
    }  # fmt: skip


def direction(space: WordSpace, tokenizer: WordPiece, pairs: Sequence[tuple[str, str]]) -> Tensor:
    """The unit vector (C,) along the mean of the differences b − a over pairs (a, b), e.g.
    (man, woman), (king, queen): what the pairs' second words have that the first lack."""
    if not pairs:
        raise GlassboxError("a direction needs at least one pair of words")
    a = space.rows(tokenizer, [p[0] for p in pairs])
    b = space.rows(tokenizer, [p[1] for p in pairs])
    return F.normalize((space.vectors[b] - space.vectors[a]).mean(dim=0), dim=0)  # (C,)


def project(
    space: WordSpace, tokenizer: WordPiece, words: Sequence[str], along: Tensor
) -> list[tuple[str, float]]:
    """Each word's cosine with the direction `along` (C,): its position along it."""
    scores = space.vectors[space.rows(tokenizer, words)] @ F.normalize(along, dim=0)  # (n,)
    return [(w, round(s, 4)) for w, s in zip(words, scores.tolist(), strict=True)]


def direction_report(
    space: WordSpace,
    tokenizer: WordPiece,
    fit: Sequence[tuple[str, str]],
    held_out: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    """A direction fitted on the pairs `fit`, tested on the pairs `held_out`: each held-out
    word's projection, and how many held-out pairs it orders right (b above a).

    Returns {"space", "fit", "pairs": [{"a", "b", "a_score", "b_score"}, ...], "separated",
    "held_out", "mean_gap"} (mean_gap: the mean of b_score − a_score).
    """
    if not held_out:
        raise GlassboxError("testing a direction needs at least one held-out pair")
    along = direction(space, tokenizer, fit)
    a = project(space, tokenizer, [p[0] for p in held_out], along)
    b = project(space, tokenizer, [p[1] for p in held_out], along)
    pairs = [
        {"a": x, "b": y, "a_score": sx, "b_score": sy}
        for (x, sx), (y, sy) in zip(a, b, strict=True)
    ]
    gaps = [p["b_score"] - p["a_score"] for p in pairs]
    return {
        "space": space.name, "fit": [list(p) for p in fit], "pairs": pairs,
        "separated": sum(g > 0 for g in gaps), "held_out": len(pairs),
        "mean_gap": round(sum(gaps) / len(gaps), 4),
    }  # fmt: skip


def pair_cosines(
    model: Encoder, tokenizer: WordPiece, pairs: Sequence[tuple[str, str]]
) -> list[float]:
    """The cosine similarity of the two sentence vectors of each pair of texts.

    >>> pair_cosines(model, tokenizer, [("The dog bit the man.", "The man bit the dog.")])
    [0.9778]  # doctest: +SKIP
    """
    u = sentence_vectors(model, tokenizer, [p[0] for p in pairs])  # (n, C)
    v = sentence_vectors(model, tokenizer, [p[1] for p in pairs])  # (n, C)
    return [round(s, 4) for s in (u * v).sum(dim=-1).tolist()]


def similarity_report(
    model: Encoder,
    tokenizer: WordPiece,
    pairs: Sequence[tuple[str, str]] = PARAPHRASES,
    contrasts: Sequence[tuple[str, str]] = CONTRASTS,
) -> dict[str, Any]:
    """Cosine similarity of the sentence vectors of paraphrase pairs, of the same
    sentences re-paired so that no pair means the same (first of i, second of i + 1), and
    of contrast pairs (same words, different meaning).

    Returns {"paraphrase", "unrelated", "contrast": [cosines], "paraphrase_mean",
    "unrelated_mean", "contrast_mean", "paraphrase_min", "unrelated_max",
    "above_unrelated_mean" (paraphrase pairs scoring above the unrelated mean),
    "ordered_fraction" (of all paraphrase × unrelated combinations, the share where the
    paraphrase scores higher: the AUC), "contrast_above_paraphrase_mean"}.
    """
    if len(pairs) < 2:
        raise GlassboxError("re-pairing needs at least two paraphrase pairs")
    same = pair_cosines(model, tokenizer, pairs)
    shifted = [p[1] for p in pairs[1:]] + [pairs[0][1]]
    other = pair_cosines(model, tokenizer, list(zip([p[0] for p in pairs], shifted, strict=True)))
    contrast = pair_cosines(model, tokenizer, contrasts)
    mean_same, mean_other = sum(same) / len(same), sum(other) / len(other)
    ordered = sum(s > o for s in same for o in other) / (len(same) * len(other))
    return {
        "paraphrase": same, "unrelated": other, "contrast": contrast,
        "paraphrase_mean": round(mean_same, 4), "unrelated_mean": round(mean_other, 4),
        "contrast_mean": round(sum(contrast) / len(contrast), 4) if contrast else None,
        "paraphrase_min": min(same), "unrelated_max": max(other),
        "above_unrelated_mean": sum(s > mean_other for s in same),
        "ordered_fraction": round(ordered, 4),
        "contrast_above_paraphrase_mean": sum(c > mean_same for c in contrast),
    }  # fmt: skip


# ---- text for a terminal ---------------------------------------------------------------


def format_scored(scored: Sequence[tuple[str, float]]) -> list[str]:
    """One line per (word, score), ranked: what `neighbours` and `analogy` return."""
    width = max((len(w) for w, _ in scored), default=0)
    return [f"{k:>3}. {w:<{width}}  {s:+.3f}" for k, (w, s) in enumerate(scored, 1)]


def format_analogy_report(report: dict[str, Any]) -> list[str]:
    """A table of `evaluate_analogies`: kept/total questions and accuracy per method."""
    methods = report["methods"]
    summaries = [report[k] for k in ("semantic", "syntactic", "overall")]
    width = max(len(p["name"]) for p in report["sections"] + summaries)
    lines = [
        f"{report['space']}, {report['candidates']} candidate tokens, top-1 accuracy",
        f"{'section':<{width}}  {'kept/total':>11}  " + "  ".join(f"{m:>8}" for m in methods),
    ]

    def row(p: dict[str, Any]) -> str:
        cells = [
            "       -" if p["accuracy"][m] is None else f"{p['accuracy'][m]:>8.1%}" for m in methods
        ]
        return f"{p['name']:<{width}}  {p['kept']:>5}/{p['total']:<5}  " + "  ".join(cells)

    lines += [row(p) for p in report["sections"]] + ["-" * len(lines[1])]
    lines += [row(p) for p in summaries]
    return lines


def format_direction_report(report: dict[str, Any], name: str = "direction") -> list[str]:
    """The held-out pairs of `direction_report` with their projections, then the count."""
    width = max((len(p["a"]) + len(p["b"]) for p in report["pairs"]), default=0) + 3
    lines = [f"{name} on the {report['space']}, fitted on {len(report['fit'])} pairs; held out:"]
    for p in report["pairs"]:
        gap = p["b_score"] - p["a_score"]
        lines.append(
            f"  {p['a'] + ' / ' + p['b']:<{width}}  {p['a_score']:+.3f}  {p['b_score']:+.3f}"
            f"  gap {gap:+.3f}"
        )
    lines.append(
        f"{report['separated']} of {report['held_out']} held-out pairs in the right order "
        f"(mean gap {report['mean_gap']:+.3f})"
    )
    return lines


def format_similarity_report(report: dict[str, Any]) -> list[str]:
    """The means and extremes of `similarity_report`, a few lines."""
    n = len(report["paraphrase"])
    lines = [
        f"paraphrase pairs: mean cosine {report['paraphrase_mean']:.3f}, "
        f"lowest {report['paraphrase_min']:.3f} ({n} pairs)",
        f"unrelated pairs:  mean cosine {report['unrelated_mean']:.3f}, "
        f"highest {report['unrelated_max']:.3f} ({len(report['unrelated'])} pairs)",
        f"{report['above_unrelated_mean']} of {n} paraphrase pairs score above the unrelated mean;"
        f" a paraphrase pair outscores an unrelated one in {report['ordered_fraction']:.1%} of "
        "all comparisons",
    ]
    if report["contrast"]:
        lines.append(
            f"contrast pairs (same words, other meaning): mean cosine "
            f"{report['contrast_mean']:.3f}; {report['contrast_above_paraphrase_mean']} of "
            f"{len(report['contrast'])} score above the paraphrase mean"
        )
    return lines
