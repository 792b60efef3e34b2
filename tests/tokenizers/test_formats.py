import base64
import json
from collections import Counter

import pytest

from glassbox.tokenizers import (
    BPETokenizer,
    CharTokenizer,
    TokenizerError,
    load_gpt2,
    load_tiktoken,
    open_tokenizer,
)
from glassbox.tokenizers.bpe_train import learn_bpe
from glassbox.tokenizers.formats import gpt2_byte_alphabet
from glassbox.tokenizers.patterns import split

TEXT = "Hello world, hello there!\n\tThe world says hello back. 'Tis so, it's said.\n" * 4


@pytest.fixture(scope="module")
def learned():
    counts = Counter(c.encode() for c in split(TEXT, "gpt2"))
    tokens, merges = learn_bpe(counts, 280)
    tok = BPETokenizer({t: i for i, t in enumerate(tokens)}, "gpt2", {"<|endoftext|>": 280})
    return tok, tokens, merges


def test_gpt2_byte_alphabet_is_gpt2s():
    alphabet = gpt2_byte_alphabet()
    assert len(set(alphabet)) == 256
    # As in GPT-2's encoder.json: "Ġ" is a space, "Ċ" a newline, "ĉ" a tab, "Ā" the byte 0.
    assert (alphabet[32], alphabet[10], alphabet[9], alphabet[0]) == ("Ġ", "Ċ", "ĉ", "Ā")
    assert (
        alphabet[ord("!")] == "!"
        and alphabet[0xA0] == "ł"
        and alphabet[0xAD] == "Ń"
        and alphabet[0xFF] == "ÿ"
    )


def write_gpt2_files(folder, tokens, merges):
    alphabet = gpt2_byte_alphabet()

    def spell(data):
        return "".join(alphabet[b] for b in data)

    encoder = {spell(t): i for i, t in enumerate(tokens)}
    encoder["<|endoftext|>"] = len(tokens)
    lines = ["#version: 0.2"] + [f"{spell(tokens[a])} {spell(tokens[b])}" for a, b, _ in merges]
    (folder / "encoder.json").write_text(json.dumps(encoder), encoding="utf-8")
    (folder / "vocab.bpe").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_gpt2_files_load_into_the_same_tokenizer(learned, tmp_path):
    tok, tokens, merges = learned
    write_gpt2_files(tmp_path, tokens, merges)
    loaded = load_gpt2(tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    assert loaded.ranks == tok.ranks
    assert loaded.special_tokens == {"<|endoftext|>": 280}
    assert loaded.encode(TEXT) == tok.encode(TEXT)
    assert open_tokenizer(str(tmp_path)).encode(TEXT) == tok.encode(TEXT)


def test_gpt2_merges_out_of_id_order_are_refused(learned, tmp_path):
    _, tokens, merges = learned
    write_gpt2_files(tmp_path, tokens, merges[::-1])
    with pytest.raises(TokenizerError, match="not increasing"):
        load_gpt2(tmp_path / "encoder.json", tmp_path / "vocab.bpe")


def test_tiktoken_file_round_trip_and_bad_lines(learned, tmp_path):
    tok, tokens, _ = learned
    path = tmp_path / "mine.tiktoken"
    lines = [f"{base64.b64encode(t).decode()} {i}" for i, t in enumerate(tokens)]
    path.write_text("\n".join(lines) + "\n")
    loaded = load_tiktoken(path, pattern="gpt2")
    assert loaded.ranks == tok.ranks and loaded.special_tokens == {}
    assert loaded.encode(TEXT) == tok.encode(TEXT)
    assert load_tiktoken(path).pattern != loaded.pattern  # an unknown name: cl100k's pattern
    path.write_text(lines[0] + "\nnot a rank line at all\n")
    with pytest.raises(TokenizerError, match=r"mine.tiktoken:2 is not '<base64 token> <rank>'"):
        load_tiktoken(path)


def test_open_tokenizer_reads_runs_json_files_and_names(learned, tmp_path):
    tok, _, _ = learned
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "tokenizer.json").write_text(CharTokenizer("ab").to_json())
    assert open_tokenizer(str(tmp_path / "run")).encode("ba") == [1, 0]
    tok.save(tmp_path / "bpe.json")
    assert open_tokenizer(str(tmp_path / "bpe.json")).encode(TEXT) == tok.encode(TEXT)
    with pytest.raises(TokenizerError, match="no tokenizer 'nowhere'"):
        open_tokenizer("nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TokenizerError, match="neither"):
        open_tokenizer(str(tmp_path / "empty"))
