import numpy as np
import pytest
import torch

from glassbox.data import DataError, TokenDataset, write_tokens
from glassbox.tokenizers import CharTokenizer


def test_tokens_are_a_uint16_memmap_split_90_10(tmp_path):
    text = "abcdefghij" * 100
    tok = CharTokenizer.train(text)
    n = write_tokens([text[:300], text[300:]], tok.encode, tok.vocab_size, tmp_path / "t.bin")
    assert n == 1000
    assert (tmp_path / "t.bin").stat().st_size == 2000  # two bytes per token
    ds = TokenDataset(tmp_path / "t.bin", tok.vocab_size)
    assert isinstance(ds.splits["train"], np.memmap)
    assert (len(ds.splits["train"]), len(ds.splits["val"])) == (900, 100)


def test_large_vocabularies_use_uint32(tmp_path):
    write_tokens(["x"], lambda s: [70_000], 70_001, tmp_path / "t.bin")
    assert (tmp_path / "t.bin").stat().st_size == 4


def test_batches_are_windows_with_targets_shifted_by_one(tmp_path):
    tok = CharTokenizer.train("0123456789")
    write_tokens(["0123456789" * 50], tok.encode, tok.vocab_size, tmp_path / "t.bin")
    ds = TokenDataset(tmp_path / "t.bin", tok.vocab_size)
    x, y = ds.batch("train", 5, 8, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 8) and x.dtype == torch.int64
    assert torch.equal((x + 1) % 10, y)  # the text counts up, so y is x + 1


def test_full_pass_covers_the_split_once(tmp_path):
    write_tokens(["a" * 1000], lambda s: [0] * len(s), 1, tmp_path / "t.bin")
    ds = TokenDataset(tmp_path / "t.bin", 1)
    seen = sum(x.numel() for x, _ in ds.windows("val", 16, 4))
    assert seen == (100 - 1) // 16 * 16


def test_a_corpus_shorter_than_the_context_is_an_error(tmp_path):
    write_tokens(["a" * 200], lambda s: [0] * len(s), 1, tmp_path / "t.bin")
    with pytest.raises(DataError, match="fewer than block_size"):
        TokenDataset(tmp_path / "t.bin", 1).check_fits(block_size=64)


def test_a_failed_encode_leaves_no_partial_token_file(tmp_path):
    from glassbox.data import write_tokens

    def encode(text):
        if text == "bad":
            raise ValueError("cannot encode")
        return [1, 2, 3]

    with pytest.raises(ValueError):
        write_tokens(["ok", "bad"], encode, 65, tmp_path / "tokens.bin")
    assert list(tmp_path.iterdir()) == []
