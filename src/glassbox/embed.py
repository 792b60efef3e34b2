"""Sentence embeddings from a pretrained BERT-style encoder: one vector per text, such
that texts that mean the same thing get vectors that point the same way.

A sentence-transformers model is three steps, each of which is ours here: WordPiece
(glassbox.tokenizers.wordpiece), the encoder (glassbox.models.encoder, BERT's weights via
glassbox.models.convert) and pooling, which averages the final residual over the real
tokens (or takes [CLS]'s, or the maximum) and, if the folder says so, scales the result
to length 1. The folder's own files say which pooling and how many tokens are read:
modules.json, 1_Pooling/config.json and sentence_bert_config.json.

>>> encoder = load_encoder("path/to/all-MiniLM-L6-v2")  # doctest: +SKIP
>>> vectors = encoder.encode(["A man is eating food.", "Someone is having a meal."])
>>> float(vectors[0] @ vectors[1])  # doctest: +SKIP
0.7553
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from glassbox.errors import GlassboxError
from glassbox.models.convert import bert_config, from_bert_state_dict
from glassbox.models.encoder import Encoder
from glassbox.pretrained import (
    PretrainedError,
    find_source,
    read_hf_config,
    read_json,
    read_weights,
)
from glassbox.tokenizers import TokenizerError, WordPiece

# sentence-transformers' pooling flags, and the pooling each one asks for
_POOLING_FLAGS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
}


class EmbedWarning(UserWarning):
    """A text longer than the model reads: its first max_length tokens were embedded."""


@dataclass
class SentenceEncoder:
    """An encoder, its tokenizer and the pooling that turns its output into one vector.

    name: where it came from (a folder or a hub name); a retrieval index records it, so
    that a query is never embedded by another model than its documents.
    """

    model: Encoder
    tokenizer: WordPiece
    pooling: str = "mean"
    normalize: bool = True
    max_length: int = 512  # tokens read per text, [CLS] and [SEP] included
    name: str = ""

    @property
    def dim(self) -> int:
        return self.model.config.n_embd

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """How many tokens each text has, [CLS] and [SEP] included, before truncation."""
        return [len(self.tokenizer.encode(text)) + 2 for text in texts]

    @torch.inference_mode()
    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, progress: bool = False
    ) -> np.ndarray:
        """Vectors (N, C) float32, one per text, in the order given.

        Texts are sorted by length and batched neighbours with neighbours, so a batch pads
        little. A text longer than max_length is cut to its first max_length tokens, with
        an EmbedWarning naming how many texts were cut.
        """
        if isinstance(texts, str):
            raise GlassboxError("encode takes a list of texts, not one string")
        if batch_size < 1:
            raise GlassboxError(f"batch_size must be at least 1; got {batch_size}")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        counts = self.token_counts(texts)
        cut = sum(n > self.max_length for n in counts)
        if cut:
            warnings.warn(
                f"{cut} of {len(texts)} texts are longer than the {self.max_length} tokens the "
                f"model reads (the longest has {max(counts)}); each was cut to its first "
                f"{self.max_length}",
                EmbedWarning,
                stacklevel=2,
            )
        order = sorted(range(len(texts)), key=counts.__getitem__)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        from tqdm.auto import tqdm

        starts = range(0, len(order), batch_size)
        for start in tqdm(starts, desc="embed", unit="batch", disable=not progress):
            rows = order[start : start + batch_size]
            out[rows] = self._embed([texts[i] for i in rows]).numpy()
        return out

    def _embed(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer.encode_batch(
            texts, truncation=True, max_length=self.max_length, padding=True
        )
        ids = torch.tensor([e.input_ids for e in batch])  # (B, T)
        mask = torch.tensor([e.attention_mask for e in batch], dtype=torch.bool)  # (B, T)
        resid = self.model.resid_final(ids, key_mask=mask)  # (B, T, C)
        vectors = self.model.pool(resid, mask, self.pooling)  # (B, C)
        if self.normalize:
            vectors = torch.nn.functional.normalize(vectors, dim=-1)
        return vectors.float()


def load_encoder(source: str | Path) -> SentenceEncoder:
    """A SentenceEncoder from a Hugging Face BERT folder, a sentence-transformers folder,
    or a model name in the local Hugging Face cache (nothing is downloaded).

    The folder needs config.json (a BERT with GELU and absolute positions), weights
    (model.safetensors, or pytorch_model.bin read with weights_only=True) and vocab.txt.
    A sentence-transformers folder also says its pooling (modules.json, 1_Pooling) and
    length (sentence_bert_config.json); a plain BERT folder gets mean pooling, no
    normalisation and the model's own length, as sentence-transformers would give it.
    """
    folder = find_source(source)
    hf = read_hf_config(folder)
    _check_supported(folder, hf)
    try:
        config = bert_config(hf)
    except (GlassboxError, KeyError, TypeError) as err:
        raise PretrainedError(f"{folder}/config.json: {err}") from None
    try:
        tokenizer = WordPiece.from_folder(folder)
    except TokenizerError as err:
        raise PretrainedError(f"{folder}: {err}") from None
    if tokenizer.vocab_size != config.vocab_size:
        raise PretrainedError(
            f"{folder}: vocab.txt has {tokenizer.vocab_size} tokens but config.json's "
            f"vocab_size is {config.vocab_size}"
        )
    pooling, normalize, max_length = _sentence_settings(folder, config.block_size)
    state, path = read_weights(folder)
    try:
        model = from_bert_state_dict(state, config)
    except (GlassboxError, RuntimeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[-1].strip()
        raise PretrainedError(f"{path}: {first}") from None
    name = str(source) if not Path(source).is_dir() else str(folder)
    return SentenceEncoder(model.eval(), tokenizer, pooling, normalize, max_length, name)


def _check_supported(folder: Path, hf: dict[str, Any]) -> None:
    """One line for each thing our Encoder does not compute the way the folder asks."""
    if hf.get("model_type") != "bert":
        raise PretrainedError(
            f"{folder}: model_type {hf.get('model_type')!r} is not supported; only BERT "
            "encoders (model_type 'bert') load"
        )
    if hf.get("hidden_act", "gelu") != "gelu":
        raise PretrainedError(
            f"{folder}: hidden_act {hf.get('hidden_act')!r} is not supported; only 'gelu'"
        )
    position = hf.get("position_embedding_type", "absolute")
    if position != "absolute":
        raise PretrainedError(
            f"{folder}: position_embedding_type {position!r} is not supported; only "
            "'absolute' (learned positions)"
        )


def _sentence_settings(folder: Path, positions: int) -> tuple[str, bool, int]:
    """(pooling, normalize, max_length) from a sentence-transformers folder's files."""
    modules = _json_or(folder / "modules.json", [])
    kinds = {str(m.get("type", "")).rsplit(".", 1)[-1]: m for m in modules if isinstance(m, dict)}
    pooling = "mean"
    if "Pooling" in kinds:
        pooling_config = _json_or(
            folder / str(kinds["Pooling"].get("path", "")) / "config.json", {}
        )
        chosen = [mode for flag, mode in _POOLING_FLAGS.items() if pooling_config.get(flag)]
        others = [k for k, v in pooling_config.items()
                  if k.startswith("pooling_mode_") and v and k not in _POOLING_FLAGS]  # fmt: skip
        if len(chosen) != 1 or others:
            raise PretrainedError(
                f"{folder}: the pooling config asks for {', '.join(chosen + others) or 'none'}; "
                f"supported is exactly one of {', '.join(_POOLING_FLAGS)}"
            )
        pooling = chosen[0]
    max_length = _json_or(folder / "sentence_bert_config.json", {}).get("max_seq_length")
    if not isinstance(max_length, int) or not 2 < max_length <= positions:
        max_length = positions
    return pooling, "Normalize" in kinds, max_length


def _json_or(path: Path, default: Any) -> Any:
    """A JSON file's contents, or `default` when it is not there."""
    if not path.is_file():
        return default
    data = read_json(path)
    if type(data) is not type(default):
        raise PretrainedError(f"{path} is not a JSON {type(default).__name__}")
    return data


def import_encoder(source: str | Path, run_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write a glassbox run holding a pretrained BERT-style encoder and its WordPiece
    tokenizer, so that `inspect`, the hooks and `count` work on it; its pooling is
    recorded in the config's `imported` entry.

    >>> import_encoder("sentence-transformers/all-MiniLM-L6-v2", "runs/minilm")  # doctest: +SKIP
    PosixPath('runs/minilm')
    """
    from glassbox.pretrained import write_imported_run

    encoder = load_encoder(source)
    imported = {"format": "bert", "source": str(source), "folder": str(find_source(source)),
                "pooling": encoder.pooling, "normalize": encoder.normalize,
                "max_length": encoder.max_length}  # fmt: skip
    return write_imported_run(
        Path(run_dir), encoder.model, encoder.tokenizer, imported, overwrite=overwrite
    )
